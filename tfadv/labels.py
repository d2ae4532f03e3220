"""Labels, read one way everywhere (attacks, evaluation, training, the Hessian tool).

Accepted: class ids (N,); Keras' sparse (N, 1), as keras.datasets gives CIFAR-10's labels, read as the ids
they are, as Keras' sparse losses read them (an argmax over one column would make every label class 0);
or one-hot rows (N, C). A single-score head (C = 1) is refused elsewhere (model_outputs.check_class_scores),
so a one-column label is never a one-hot row.

One-hot means exactly one-hot (every entry 0 or 1) wherever a label must name one true class: an attack
fools, and an accuracy counts, against that class (DLR, the margin and FAB read it as `y_onehot > 0`), and a
soft row (label smoothing, mixup) names none, or the wrong one (a 0.5/0.5 row reads as its lower class).
Only a loss reads a whole row as a target distribution, so soft rows pass where labels feed a loss:
training's graph-side conversions (one_hot_tensor, ids_tensor) and `one_hot` (the Hessian tool), or any
`check(..., soft_ok=True)`. Attacks and evaluation use `check` and `checked_one_hot_tensor`, which refuse them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

ACCEPTED = "class ids (N,) or (N, 1), or one-hot (N, C)"
#: How far a one-hot (or soft) label row's sum may sit from 1 (float32 rounding).
ROW_SUM_TOLERANCE = 1e-3
#: What to do with soft rows where one true class is needed.
SOFT_ROWS_FIX = ("soft or smoothed labels (label smoothing, mixup) have no single true class to attack or to count "
                 "as correct; pass class ids instead, e.g. np.argmax(y, axis=-1) when the largest entry is the true class")


def is_one_hot(shape: Sequence[int | None]) -> bool:
    """Rows of class scores (N, C), not ids. A width unknown at trace time reads as one-hot: ids come as
    (N,) or (N, 1), whose shapes are known."""
    return len(shape) == 2 and shape[1] != 1


def check(y: Any, num_classes: int | None = None, name: str = "labels", n: int | None = None, *,
          soft_ok: bool = False) -> np.ndarray:
    """`y` as a numpy array, refused by name unless it is one of ACCEPTED (with `n` rows): ids integers in
    [0, num_classes), one-hot rows `num_classes` wide with every entry 0 or 1 and one 1 per row.
    `soft_ok`: also accept soft rows (non-negative, summing to 1), for a loss only (see the module docstring)."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or (n is not None and len(y) != n):
        rows = f", with N = {n}" if n is not None else ""
        raise ValueError(f"{name}: y must be {ACCEPTED}{rows}, got shape {y.shape}")
    if is_one_hot(y.shape):
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"{name}: one-hot labels have {y.shape[1]} columns, the model has {num_classes} classes")
        _check_rows(y, name, soft_ok)
        return y
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: class-id labels must be integers, got dtype {y.dtype}")
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    return y


def _check_rows(y: np.ndarray, name: str, soft_ok: bool) -> None:
    """Rows of a distribution (non-negative, summing to 1) and, unless `soft_ok`, exactly one-hot."""
    if not y.size:
        return
    rows = y.astype(np.float64)
    if not (np.all(rows >= 0) and np.all(np.abs(rows.sum(axis=1) - 1.0) < ROW_SUM_TOLERANCE)):
        raise ValueError(f"{name}: one-hot label rows must be non-negative and sum to 1")
    if soft_ok:
        return
    # Entries of 0 or 1 in a row summing to 1 (within the tolerance) hold exactly one 1.
    soft = np.flatnonzero(~np.all((rows == 0.0) | (rows == 1.0), axis=1))
    if len(soft):
        example = np.array2string(y[soft[0]], precision=3, threshold=12)
        raise ValueError(f"{name}: label rows must be exactly one-hot (every entry 0 or 1), but {len(soft)} of "
                         f"{len(y)} rows are soft, e.g. row {soft[0]} = {example}: {SOFT_ROWS_FIX}")


def class_ids(y: Any, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Checked labels as class ids (N,) int64 (the argmax of one-hot rows; soft rows are refused)."""
    y = check(y, num_classes, name)
    return np.argmax(y, axis=-1) if is_one_hot(y.shape) else y.reshape(-1).astype(np.int64)


def ids_tensor(y: tf.Tensor) -> tf.Tensor:
    """Labels as class ids (N,) int32, in a graph (not checked: check them eagerly first, or use
    checked_one_hot_tensor). Soft rows give their argmax, as Keras' accuracy reads them in training."""
    if is_one_hot(y.shape):
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    return tf.reshape(tf.cast(y, tf.int32), [-1])


def one_hot_tensor(y: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Labels as one-hot rows (N, num_classes) float32, in a graph (not checked: check them eagerly first,
    or use checked_one_hot_tensor). Soft rows pass as they are, for a loss (training)."""
    if is_one_hot(y.shape):
        return tf.cast(y, tf.float32)
    return tf.one_hot(tf.reshape(tf.cast(y, tf.int32), [-1]), num_classes, dtype=tf.float32)


def checked_one_hot_tensor(y: tf.Tensor, num_classes: int, name: str = "labels") -> tf.Tensor:
    """one_hot_tensor for labels that must name one true class, checked in the graph: what `check` refuses
    eagerly (ids outside [0, num_classes), rows not exactly one-hot) fails the run with its reason, where
    tf.one_hot would silently make an all-zero row and a soft row would reach `y_onehot > 0`. Dtypes and
    widths are checked at trace time."""
    if is_one_hot(y.shape):
        if y.shape[1] is not None and y.shape[1] != num_classes:
            raise ValueError(f"{name}: one-hot labels have {y.shape[1]} columns, the model has {num_classes} classes")
        rows = tf.cast(y, tf.float32)
        valid = tf.reduce_all(tf.equal(rows, 0.0) | tf.equal(rows, 1.0)) & tf.reduce_all(
            tf.equal(tf.reduce_sum(rows, axis=-1), 1.0))
        reason = f"{name}: label rows must be exactly one-hot (every entry 0 or 1, one 1 per row): {SOFT_ROWS_FIX}"
    else:
        if not y.dtype.is_integer:
            raise TypeError(f"{name}: class-id labels must be integers, got dtype {y.dtype.name}")
        ids = tf.cast(y, tf.int64)  # a narrow dtype (uint8) cannot hold every class count
        valid = tf.reduce_all((ids >= 0) & (ids < num_classes))
        reason = f"{name}: labels must lie in [0, {num_classes})"
    with tf.control_dependencies([tf.debugging.Assert(valid, [reason])]):
        return tf.identity(one_hot_tensor(y, num_classes))


def one_hot(y: Any, num_classes: int, name: str = "labels", *, soft_ok: bool = True) -> np.ndarray:
    """Checked labels as rows (N, num_classes) float32, for a loss: soft rows pass as they are unless
    `soft_ok=False` (a loss reads a whole row; its only caller, the Hessian tool, measures a training loss,
    which may be label-smoothed)."""
    y = check(y, num_classes, name, soft_ok=soft_ok)
    return y.astype(np.float32) if is_one_hot(y.shape) else np.eye(num_classes, dtype=np.float32)[y.reshape(-1)]
