"""Models, data and the near-tie test shared by the AutoAttack tests (test_apgd, test_square, test_fab,
test_compaction, test_autoattack, test_masking), the models built once per test session."""
import functools

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits


@functools.lru_cache(maxsize=None)
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype("float32")[..., None], data.target.astype("int64")


def small_cnn(classes: int = 10, softmax: bool = False, quantise: bool = False, seed: int = 0) -> keras.Model:
    """Conv(8)-Dense(32)-Dense(classes) on 8x8 digits. `quantise`: the input is first rounded to 5 grey
    levels with a zero gradient (0 * x + stop_gradient(round(4 x) / 4)): gradient masking on purpose."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = inputs
    if quantise:
        h = keras.layers.Lambda(lambda t: 0.0 * t + tf.stop_gradient(tf.round(4.0 * t) / 4.0))(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax" if softmax else None)(h))


@functools.lru_cache(maxsize=None)
def trained_cnn(quantise: bool = False) -> keras.Model:
    """The small CNN with a softmax head trained on the first 1,400 digits (~95% held-out accuracy)."""
    x, y = digits()
    model = small_cnn(softmax=True, quantise=quantise)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[:1400], y[:1400], epochs=10, batch_size=64, verbose=0)
    return model


def held_out(n: int, offset: int = 1400) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits()
    return x[offset : offset + n], y[offset : offset + n]


#: A point whose top two logits are closer than this is classified by float rounding: two correct
#: implementations may disagree on it (the step-by-step comparisons of test_apgd and test_fab leave it out).
TIE = 1e-5


def near_tie(logits: np.ndarray) -> np.ndarray:
    """Per row: are the two largest logits within TIE of each other?"""
    top_two = np.sort(np.asarray(logits), axis=-1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0] < TIE
