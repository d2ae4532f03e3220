"""Per-sample scores the AutoAttack family optimises, all computed on logits: cross-entropy, the margin,
and the Difference of Logits Ratio (DLR) of Croce & Hein (ICML 2020, eq. 6 and its targeted form).

A Keras classifier often outputs probabilities. `output_logits` recovers logits from them without
Keras' cross-entropy clipping: the softmax's own input when the output comes straight from a Keras softmax,
else log(p). log(p) equals the logits up to a per-sample shift (the log-sum-exp), and every score here is
invariant to that shift: cross-entropy and the margin by construction, DLR because it only uses
differences of logits. Where p has underflowed to 0 the information is gone, and the gradient through
log(max(p, tiny)) is zero there: tfadv.evaluation.check_gradient_masking reports that case.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import model_outputs

#: DLR's denominator guard (the paper's and the reference code's value).
DLR_EPSILON = 1e-12
#: Classes DLR needs (the 3rd largest logit) and targeted DLR needs (the 4th largest).
DLR_MIN_CLASSES = 3
TARGETED_DLR_MIN_CLASSES = 4

_TINY = np.finfo(np.float32).tiny


def output_logits(y_pred: tf.Tensor, from_logits: bool) -> tf.Tensor:
    """Logits (or log-probabilities, equal to them up to a per-sample shift) of a model output, float32."""
    if from_logits:
        return tf.cast(y_pred, tf.float32)
    keras_logits = getattr(y_pred, "_keras_logits", None)  # set by Keras' softmax activation
    if keras_logits is not None and keras_logits.dtype == tf.float32:
        return keras_logits
    op = getattr(y_pred, "op", None)
    if not tf.executing_eagerly() and op is not None and op.type == "Softmax" and y_pred.dtype == tf.float32:
        return op.inputs[0]
    return tf.math.log(tf.maximum(tf.cast(y_pred, tf.float32), _TINY))


def cross_entropy(z: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """-log softmax(z)_y, exact on logits (no clipping)."""
    return tf.reduce_logsumexp(z, axis=-1) - tf.reduce_sum(z * y_onehot, axis=-1)


def _true_and_best_other(z: tf.Tensor, y_onehot: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    z_true = tf.reduce_sum(z * y_onehot, axis=-1)
    others = tf.where(y_onehot > 0, tf.constant(-np.inf, z.dtype), z)
    return z_true, tf.reduce_max(others, axis=-1)


def margin(z: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """z_y - max_{i != y} z_i: negative exactly when the sample is misclassified (the Square attack's loss)."""
    z_true, z_other = _true_and_best_other(z, y_onehot)
    return z_true - z_other


def dlr(z: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12), z sorted decreasing as pi (eq. 6)."""
    top = tf.math.top_k(z, k=DLR_MIN_CLASSES).values
    return -margin(z, y_onehot) / (top[:, 0] - top[:, 2] + DLR_EPSILON)


def targeted_dlr(z: tf.Tensor, y_onehot: tf.Tensor, target_onehot: tf.Tensor) -> tf.Tensor:
    """Targeted DLR = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12) (Croce & Hein 2020, sec. 3)."""
    top = tf.math.top_k(z, k=TARGETED_DLR_MIN_CLASSES).values
    z_true = tf.reduce_sum(z * y_onehot, axis=-1)
    z_target = tf.reduce_sum(z * target_onehot, axis=-1)
    return -(z_true - z_target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPSILON)


def ranked_target(z: tf.Tensor, y_onehot: tf.Tensor, rank: int | tf.Tensor) -> tf.Tensor:
    """One-hot of the class with the `rank`-th largest score among the classes other than y (rank 1 is
    the runner-up). AutoAttack's targeted attacks try ranks 1..k on the clean output."""
    others = tf.where(y_onehot > 0, tf.constant(-np.inf, z.dtype), z)
    order = tf.argsort(others, axis=-1, direction="DESCENDING", stable=True)
    target = tf.gather(order, tf.cast(rank, tf.int32) - 1, axis=-1)
    return tf.one_hot(target, tf.shape(z)[-1], dtype=tf.float32)


def model_classes(model) -> int | None:
    """The class count of a single-output model whose output shape is known before any call, else None."""
    from tfadv import model_outputs

    outputs = model_outputs.known_outputs(model)
    if outputs is None or len(outputs) != 1 or outputs[0].shape[-1] is None:
        return None
    return int(outputs[0].shape[-1])


def check_target_count(owner: str, targets: int, classes: int | None) -> None:
    """A targeted run per target rank needs that many wrong classes."""
    if classes is not None and targets > classes - 1:
        raise ValueError(f"{owner}: n_target_classes = {targets} but the model has only {classes - 1} wrong classes")


def misclassified(y_pred: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """argmax(output) != y, a non-finite output row included: the one success test every attack and the cascade
    share."""
    return tf.not_equal(model_outputs.predicted_classes(y_pred), tf.argmax(y_onehot, axis=-1))
