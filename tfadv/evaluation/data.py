"""Evaluation inputs: arrays, or a batched tf.data.Dataset of (x, y) as Keras' `evaluate` takes.

Robust accuracy, the AutoAttack cascade and the masking checks revisit samples (restarts, later attacks on
the samples still robust, per-sample results), so a dataset is read once, in its order, into numpy arrays:
sample i of the result is the i-th sample the dataset yields (its global index for the random starts). A
dataset that reshuffles on every pass yields another order each call, so auto_attack's state file, keyed on
the data, will not resume it: shuffle with a seed and reshuffle_each_iteration=False, or not at all.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf


def evaluation_arrays(name: str, x: Any, y: Any) -> tuple[Any, Any]:
    """(x, y) unchanged, or the (x, y) batches of the dataset `x` concatenated (then `y` must be None)."""
    if not isinstance(x, tf.data.Dataset):
        if y is None:
            raise ValueError(f"{name}: y is required unless x is a tf.data.Dataset of (x, y) batches")
        return x, y
    if y is not None:
        raise ValueError(f"{name}: x is a tf.data.Dataset, which yields (x, y) batches: leave y out")
    if int(x.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError(f"{name}: the dataset repeats forever; evaluate a finite one (dataset.take(n))")
    xs, ys = [], []
    for element in x:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            got = f"{len(element)}-tuples" if isinstance(element, (tuple, list)) else type(element).__name__
            raise ValueError(f"{name}: the dataset must yield (x, y) batches, got {got} (sample weights are not used: "
                             "map them away)")
        xs.append(np.asarray(element[0]))
        ys.append(np.asarray(element[1]))
    if not xs:
        raise ValueError(f"{name}: the dataset yields no batches")
    if xs[0].ndim == 0 or ys[0].ndim == 0:
        raise ValueError(f"{name}: the dataset yields single samples; batch it first (dataset.batch(n))")
    return np.concatenate(xs), np.concatenate(ys)


def class_ids(y: Any, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Labels as class ids (N,) int64: the argmax of one-hot rows (N, C), else the ids, given as (N,) or as
    Keras' sparse (N, 1) (keras.datasets' CIFAR-10 labels), which an argmax would read as all class 0.
    With `num_classes`, ids outside [0, num_classes) and one-hot rows of another width are refused (1-based
    labels would otherwise never match a prediction)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"{name}: one-hot labels have {y.shape[1]} columns, the model has {num_classes} classes")
        return np.argmax(y, axis=-1)
    if y.ndim not in (1, 2):
        raise ValueError(f"{name}: y must be class ids (N,) or (N, 1), or one-hot (N, C), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: class-id labels must be integers, got dtype {y.dtype}")
    ids = y.reshape(-1).astype(np.int64)
    if num_classes is not None and ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got values in [{ids.min()}, {ids.max()}]")
    return ids
