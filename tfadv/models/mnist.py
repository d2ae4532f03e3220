"""The MNIST CNN of Madry et al.'s mnist_challenge (model.py): the `efficient` paper's network."""
from __future__ import annotations

from typing import Literal

import keras

#: "mnist_challenge": its model.py, weights tf.truncated_normal(stddev=0.1) and biases 0.1;
#: "keras": Keras' defaults (Glorot-uniform kernels, zero biases).
Init = Literal["mnist_challenge", "keras"]
INITS = ("mnist_challenge", "keras")
REFERENCE_STDDEV = 0.1
REFERENCE_BIAS = 0.1


def _initializers(init: Init) -> dict:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "keras":
        return {}
    # Keras' TruncatedNormal re-draws beyond two standard deviations, as tf.truncated_normal does.
    return {"kernel_initializer": keras.initializers.TruncatedNormal(stddev=REFERENCE_STDDEV),
            "bias_initializer": keras.initializers.Constant(REFERENCE_BIAS)}


def madry_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10, logits: bool = True,
    init: Init = "keras",
) -> keras.Model:
    """conv 32 5x5 -> max-pool 2 -> conv 64 5x5 -> max-pool 2 -> FC 1024 -> FC num_classes.

    'SAME' padding and ReLU as in mnist_challenge. With `logits=False` a float32 softmax is appended, so the
    probabilities stay float32 under a mixed-precision policy. `init="mnist_challenge"` initialises every
    layer as its model.py does (truncated normal, std 0.1; biases 0.1).
    """
    layer_init = _initializers(init)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 5, padding="same", activation="relu", **layer_init)(inputs)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", **layer_init)(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1024, activation="relu", **layer_init)(x)
    outputs = keras.layers.Dense(num_classes, name="logits", **layer_init)(x)
    if not logits:
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name="madry_mnist_cnn")
