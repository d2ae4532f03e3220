"""The MNIST CNN of Madry et al.'s mnist_challenge (model.py): the `efficient` paper's network."""
from __future__ import annotations

import keras


def madry_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10, logits: bool = True
) -> keras.Model:
    """conv 32 5x5 -> max-pool 2 -> conv 64 5x5 -> max-pool 2 -> FC 1024 -> FC num_classes.

    'SAME' padding and ReLU as in mnist_challenge. With `logits=False` a float32 softmax is appended, so the
    probabilities stay float32 under a mixed-precision policy.
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    if not logits:
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name="madry_mnist_cnn")
