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
    """(x, y) unchanged, or the (x, y) batches of the dataset `x` concatenated (then `y` must be None).
    No samples at all is refused: an accuracy of none is undefined, and a NaN would travel on silently."""
    if not isinstance(x, tf.data.Dataset):
        if y is None:
            raise ValueError(f"{name}: y is required unless x is a tf.data.Dataset of (x, y) batches")
        require_samples(name, x)
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
    x = np.concatenate(xs)
    require_samples(name, x)
    return x, np.concatenate(ys)


def require_samples(name: str, x: Any) -> None:
    """Refuse an x of no samples, naming `name` and the shape."""
    shape = tuple(np.shape(x))
    if shape and shape[0] == 0:
        raise ValueError(f"{name}: no samples: x has shape {shape}; evaluate at least one sample")
