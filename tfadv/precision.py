"""Keras dtype policies for one block of code (experiment grids switch precision cell by cell)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import keras


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
