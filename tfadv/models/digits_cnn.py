"""A small CNN on scikit-learn's digits, shaped like the ImageNet models of the `minibatch` paper.

Like `keras.applications` models it takes RGB pixels in [0, 255], rescales inside the graph and ends in a
Dense layer with a softmax activation, so the same Keras loss paths apply (the logits shortcut in float32,
clipped float16 probabilities under mixed_float16). After training, its confidence is calibrated by
temperature scaling on held-out data (Guo et al. 2017) and the temperature is folded into the last layer:
an over-confident (saturated) model has input gradients that are exactly zero whatever the batch size,
which would hide the paper's mechanism rather than show it.
"""
from __future__ import annotations

import keras
import numpy as np


def build_digits_cnn(image_size: int = 32, num_classes: int = 10, width: int = 16) -> keras.Model:
    """Conv(width)-pool-Conv(2 width)-pool-Dense(2 width)-Dense(softmax), input float32 RGB [0, 255].

    Built under the current `keras.mixed_precision` policy; the input stays float32.
    """
    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name="rgb_0_255")
    x = keras.layers.Rescaling(1.0 / 255.0)(pixels)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2 * width, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(pixels, outputs, name="digits_cnn")


def logits_of(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The pre-softmax values of a model whose last layer is Dense(softmax), in float32."""
    head = model.layers[-1]
    features = keras.Model(model.inputs, head.input)
    kernel, bias = (np.asarray(w, np.float32) for w in head.get_weights())
    h = np.asarray(features.predict(x, batch_size=batch_size, verbose=0), np.float32)
    return h @ kernel + bias


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (a 1-D search on log T)."""

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def train_digits_cnn(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = 30,
    width: int = 16,
    calibration_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[keras.Model, dict[str, float]]:
    """Train in float32 on images in [0, 255], then calibrate on a held-out part of the training data.

    Returns the model (temperature folded into its last layer) and facts about it: the temperature, the
    held-out accuracy and the mean confidence before and after calibration (expected calibration error).
    """
    if keras.mixed_precision.global_policy().name != "float32":
        raise RuntimeError("train_digits_cnn trains in float32; set the global policy to 'float32' first")
    keras.utils.set_random_seed(seed)
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_cal = int(round(calibration_fraction * len(x_train)))
    cal, fit = order[:n_cal], order[n_cal:]
    model = build_digits_cnn(x_train.shape[1], int(y_train.max()) + 1, width)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.fit(x_train[fit], y_train[fit], batch_size=32, epochs=epochs, shuffle=True, verbose=0)

    logits = logits_of(model, x_train[cal])
    temperature = fit_temperature(logits, y_train[cal])
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel / temperature, bias / temperature])

    before = _calibration(logits, y_train[cal])
    after = _calibration(logits / temperature, y_train[cal])
    info = {
        "temperature": temperature,
        "heldout_accuracy": after["accuracy"],
        "heldout_confidence_before": before["confidence"],
        "heldout_confidence_after": after["confidence"],
        "heldout_ece_before": before["ece"],
        "heldout_ece_after": after["ece"],
    }
    return model, info


def _calibration(logits: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Accuracy, mean confidence and the expected calibration error (equal-width confidence bins)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = sum(
        abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    return {"accuracy": float(correct.mean()), "confidence": float(confidence.mean()), "ece": float(ece)}

