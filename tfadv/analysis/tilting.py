"""Boundary tilting (Tanay & Griffin 2016; Galloway et al. 2019, Section 3).

The tilting angle theta of a linear classifier w.x + b is the angle between its weight vector w and the
nearest-centroid classifier's direction w* = nu_1 - nu_0 (for MNIST 3 vs 7: "average 7" minus "average 3"
over the full training set). theta = 0 is the nearest-centroid boundary; a boundary tilted along
low-variance directions has theta near 90 degrees and lets small perturbations cross it.

For a batch-normalised linear model the weight vector that counts is the one in input space, w_i * gamma_i
/ sqrt(var_i + c) with BN's inference statistics; `input_space_weights` reads it off any affine Keras
model as the input gradient of its decision score.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def nearest_centroid_direction(x: np.ndarray, y: np.ndarray, positive_class: int = 1) -> np.ndarray:
    """w* = mean(x | y = positive_class) - mean(x | y != positive_class), flattened."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y must be class ids of shape ({len(x)},), got {y.shape}")
    positive = y == positive_class
    if positive.all() or not positive.any():
        raise ValueError(f"need samples of class {positive_class} and of another class to form centroids")
    return x[positive].mean(axis=0) - x[~positive].mean(axis=0)


def angle_degrees(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two vectors in degrees, in [0, 180]."""
    u = np.asarray(u, np.float64).ravel()
    v = np.asarray(v, np.float64).ravel()
    if u.shape != v.shape:
        raise ValueError(f"vectors have different sizes: {u.size} and {v.size}")
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise ValueError("the angle to a zero vector is undefined")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def input_space_weights(model, input_shape: tuple[int, ...], positive_class: int = 1,
                        negative_class: int = 0, atol: float = 1e-4) -> np.ndarray:
    """Input-space weight vector of an affine model: d(logit_pos - logit_neg)/dx, in inference mode.

    The model outputs logits, one per class (positive_class and negative_class index them), or a single
    logit (a sigmoid model), read as the score of class 1 against class 0: then the classes must be the
    defaults (1, 0). Raises ValueError if the gradient differs between two inputs (the model is not affine,
    so it has no single boundary direction).
    """
    width = _output_width(model, input_shape)
    _check_classes_index_outputs(width, positive_class, negative_class)

    def gradient(x: tf.Tensor) -> np.ndarray:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            score = logits[:, 0] if width == 1 else logits[:, positive_class] - logits[:, negative_class]
        return tape.gradient(score, x).numpy().ravel()

    at_zero = gradient(tf.zeros((1, *input_shape), tf.float32))
    at_random = gradient(tf.random.stateless_normal((1, *input_shape), seed=(0, 1)))
    scale = max(1.0, float(np.abs(at_zero).max()))
    if not np.allclose(at_zero, at_random, atol=atol * scale, rtol=1e-4):
        raise ValueError("the model is not affine in its input: its boundary has no single weight vector "
                         "(a model ending in softmax or sigmoid must output the logits before it)")
    return at_zero


def _output_width(model, input_shape: tuple[int, ...]) -> int:
    """Logits per sample of the model (one forward pass), refusing outputs that are not (batch, logits)."""
    shape = tuple(model(tf.zeros((1, *input_shape), tf.float32), training=False).shape)
    if len(shape) != 2:
        raise ValueError(f"the model must output logits of shape (batch, classes) or (batch, 1), got {shape}")
    return int(shape[1])


def _check_classes_index_outputs(width: int, positive_class: int, negative_class: int) -> None:
    if positive_class == negative_class:
        raise ValueError(f"positive_class and negative_class must differ, both are {positive_class}")
    if width == 1:
        # A single logit scores class 1 against class 0 of the labels it was trained on; which of two other
        # ids that is cannot be read off the model, and a wrong guess would give 180 - theta silently.
        if (positive_class, negative_class) != (1, 0):
            raise ValueError(
                f"the model outputs one logit (a sigmoid model): it scores class 1 against class 0 of its "
                f"training labels, so positive_class={positive_class}, negative_class={negative_class} cannot "
                "be told apart in it. Relabel y_reference as the model was trained (1: the class its logit "
                "scores, 0: the other) and leave positive_class=1, negative_class=0"
            )
        return
    if not (0 <= positive_class < width and 0 <= negative_class < width):
        raise ValueError(
            f"positive_class={positive_class} and negative_class={negative_class} must index the model's "
            f"{width} logits (output shape (batch, C) with C > {max(positive_class, negative_class)}): they are "
            "both label ids of y_reference and output indices of the model, so pass the two classes' output "
            "indices and relabel y_reference to them if its ids differ"
        )


def _check_reference_classes(y: np.ndarray, positive_class: int, negative_class: int) -> None:
    """Both classes must occur in the reference labels (else no centroid), said with the ids that do occur."""
    missing = [f"{name}={c}" for name, c in (("positive_class", positive_class), ("negative_class", negative_class))
               if not np.any(y == c)]
    if missing:
        present = np.unique(y)
        shown = f"{present[:10].tolist()}{' ...' if len(present) > 10 else ''}"
        raise ValueError(
            f"y_reference has no samples of {' and '.join(missing)} (its classes: {shown}): pass the label ids of "
            "the two classes as positive_class and negative_class (e.g. positive_class=7, negative_class=3 "
            "for MNIST labels 3 and 7)"
        )


def tilting_angle(model, x_reference: np.ndarray, y_reference: np.ndarray, positive_class: int = 1,
                  negative_class: int = 0) -> float:
    """theta between an affine model's input-space weights and the nearest-centroid direction of the
    reference data (the full training set, as the paper), in degrees. positive_class and negative_class are
    both label ids in y_reference and output indices of the model (see `input_space_weights`)."""
    y_reference = np.asarray(y_reference)
    _check_reference_classes(y_reference, positive_class, negative_class)
    w = input_space_weights(model, x_reference.shape[1:], positive_class, negative_class)
    keep = np.isin(y_reference, (positive_class, negative_class))
    w_star = nearest_centroid_direction(x_reference[keep], y_reference[keep], positive_class)
    return angle_degrees(w, w_star)
