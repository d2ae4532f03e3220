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

    Raises ValueError if the gradient differs between two inputs (the model is not affine, so it has no
    single boundary direction).
    """
    def gradient(x: tf.Tensor) -> np.ndarray:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            score = logits[:, positive_class] - logits[:, negative_class]
        return tape.gradient(score, x).numpy().ravel()

    at_zero = gradient(tf.zeros((1, *input_shape), tf.float32))
    at_random = gradient(tf.random.stateless_normal((1, *input_shape), seed=(0, 1)))
    scale = max(1.0, float(np.abs(at_zero).max()))
    if not np.allclose(at_zero, at_random, atol=atol * scale, rtol=1e-4):
        raise ValueError("the model is not affine in its input: its boundary has no single weight vector")
    return at_zero


def tilting_angle(model, x_reference: np.ndarray, y_reference: np.ndarray, positive_class: int = 1,
                  negative_class: int = 0) -> float:
    """theta between an affine model's input-space weights and the nearest-centroid direction of the
    reference data (the full training set, as the paper), in degrees."""
    w = input_space_weights(model, x_reference.shape[1:], positive_class, negative_class)
    keep = np.isin(y_reference, (positive_class, negative_class))
    w_star = nearest_centroid_direction(x_reference[keep], y_reference[keep], positive_class)
    return angle_degrees(w, w_star)
