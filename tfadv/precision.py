"""Keras dtype policies: one block of code under a policy (experiment grids switch precision cell by cell),
and whether a model's backward pass can overflow."""
from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

SIXTEEN_BIT = ("float16", "bfloat16")


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy ("float32", "mixed_float16", "mixed_bfloat16") for a block and
    restore the previous one afterwards. Models must be built inside the block to take the policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def may_overflow(model: keras.Layer, loss_scaled: bool | None = None) -> bool:
    """Can a backward pass through `model` produce Inf/NaN? Only with a 16-bit layer or a scaled loss.

    loss_scaled=None reads it off the model: a compiled model scales its loss iff its optimizer is a
    keras.optimizers.LossScaleOptimizer.

    Attacks zero non-finite gradient entries only then: checking every step in float32 costs about 18% of a
    PGD step on the Madry MNIST CNN (measured).
    """
    if loss_scaled is None:
        loss_scaled = isinstance(getattr(model, "optimizer", None), keras.optimizers.LossScaleOptimizer)
    return loss_scaled or any(getattr(layer, "compute_dtype", None) in SIXTEEN_BIT for layer in _layers(model))


def _layers(layer: keras.Layer) -> Iterator[keras.Layer]:
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _layers(child)


def loss_scale(optimizer: keras.optimizers.Optimizer | None) -> tf.Tensor | None:
    """The factor `optimizer.scale_loss` multiplies a loss by (a LossScaleOptimizer's dynamic scale or
    `loss_scale_factor`), or None when it does not scale. Input gradients back-propagate through the
    scaled loss so float16 does not underflow, then divide the factor out (losses.loss_scaled_gradient)."""
    if optimizer is None:
        return None
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or getattr(optimizer, "loss_scale_factor", None):
        return tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
    return None
