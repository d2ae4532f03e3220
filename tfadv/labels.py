"""Labels, read one way everywhere (attacks, evaluation, training, the Hessian tool).

Accepted: class ids (N,); Keras' sparse (N, 1), as keras.datasets gives CIFAR-10's labels, read as the ids
they are, as Keras' sparse losses read them (an argmax over one column would make every label class 0);
or one-hot rows (N, C). A single-score head (C = 1) is refused elsewhere (model_outputs.check_class_scores),
so a one-column label is never a one-hot row.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

ACCEPTED = "class ids (N,) or (N, 1), or one-hot (N, C)"
#: How far a one-hot (or soft) label row's sum may sit from 1 (float32 rounding).
ROW_SUM_TOLERANCE = 1e-3


def is_one_hot(shape: Sequence[int | None]) -> bool:
    """Rows of class scores (N, C), not ids. A width unknown at trace time reads as one-hot: ids come as
    (N,) or (N, 1), whose shapes are known."""
    return len(shape) == 2 and shape[1] != 1


def check(y: Any, num_classes: int | None = None, name: str = "labels", n: int | None = None) -> np.ndarray:
    """`y` as a numpy array, refused by name unless it is one of ACCEPTED (with `n` rows): ids integers in
    [0, num_classes), one-hot rows `num_classes` wide, non-negative and summing to 1."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or (n is not None and len(y) != n):
        rows = f", with N = {n}" if n is not None else ""
        raise ValueError(f"{name}: y must be {ACCEPTED}{rows}, got shape {y.shape}")
    if is_one_hot(y.shape):
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"{name}: one-hot labels have {y.shape[1]} columns, the model has {num_classes} classes")
        rows = y.astype(np.float64)
        if y.size and not (np.all(rows >= 0) and np.all(np.abs(rows.sum(axis=1) - 1.0) < ROW_SUM_TOLERANCE)):
            raise ValueError(f"{name}: one-hot label rows must be non-negative and sum to 1")
        return y
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: class-id labels must be integers, got dtype {y.dtype}")
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    return y


def class_ids(y: Any, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Checked labels as class ids (N,) int64 (the argmax of one-hot rows)."""
    y = check(y, num_classes, name)
    return np.argmax(y, axis=-1) if is_one_hot(y.shape) else y.reshape(-1).astype(np.int64)


def ids_tensor(y: tf.Tensor) -> tf.Tensor:
    """Labels as class ids (N,) int32, in a graph (not checked: check them eagerly first)."""
    if is_one_hot(y.shape):
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    return tf.reshape(tf.cast(y, tf.int32), [-1])


def one_hot_tensor(y: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Labels as one-hot rows (N, num_classes) float32, in a graph (not checked: check them eagerly first)."""
    if is_one_hot(y.shape):
        return tf.cast(y, tf.float32)
    return tf.one_hot(tf.reshape(tf.cast(y, tf.int32), [-1]), num_classes, dtype=tf.float32)


def one_hot(y: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Checked labels as one-hot rows (N, num_classes) float32."""
    y = check(y, num_classes, name)
    return y.astype(np.float32) if is_one_hot(y.shape) else np.eye(num_classes, dtype=np.float32)[y.reshape(-1)]
