"""`tf.function` for functions that are traced once by design, and gradient passes as graphs of their own.

TensorFlow warns ("N out of the last M calls triggered tf.function retracing") when one Python function is
traced often. It keys that count on the function's code object, so every closure made by the same line
shares one count: ten attacks, each traced once for its own input signature, read as one function
retraced ten times. tfadv compiles one function per attack and input signature (static shapes are faster
on CPU) and bounds how many signatures it makes, so that count measures nothing useful here.

own_graph_helps / call_as_own_graph: see own_graph_helps for why an attack's gradient pass is sometimes
better compiled apart from the loop around it. compiled_inline: XLA for the element-wise steps TensorFlow's own
kernels run slowly.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf


def compile_once(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """tf.function(fn, **kwargs) whose retracing count is its own, not shared with sibling closures.

    A functools.partial has no code object, so TensorFlow keys the count on the partial itself.
    """
    return tf.function(functools.partial(fn), **kwargs)


def own_graph_helps(model: Any) -> bool:
    """Should an attack on `model` take its gradient passes in a graph of their own (call_as_own_graph)?

    Yes on a machine without GPUs for a model with float32 max pooling: there TensorFlow's oneDNN pass gives
    MaxPoolGrad its oneDNN kernel only after rewriting the forward MaxPool, and in a while-loop body it visits
    the nodes in an order that changes from trace to trace, so about half the traces of an attack loop kept
    TensorFlow's own MaxPoolGrad and ran 1.7 times slower (digits CNN, batch 448). Elsewhere a separate graph
    only adds a function call per step. Decided from the model's layers, so nothing is traced twice.
    """
    if tf.config.list_logical_devices("GPU"):
        return False
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=False) if callable(flatten) else getattr(model, "layers", ())
    pools = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D)
    return any(isinstance(layer, pools) and layer.compute_dtype == "float32" for layer in layers)


def call_as_own_graph(own_graph: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args); with `own_graph` and inside a traced function, as a call to a function graph of its own
    that is not inlined, which TensorFlow's graph passes then optimise on its own (see own_graph_helps)."""
    if not own_graph or not tf.inside_function():
        return fn(*args)
    return tf.function(functools.partial(fn), autograph=False, experimental_attributes={"_noinline": True})(*args)


def compiled_inline(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args); inside a traced function, compiled by XLA as a cluster of its own (a fresh function for each
    call site and trace, so nothing retraces). For element-wise work over whole batches in an attack's loop:
    TensorFlow's own Select kernel, for one, ran 11-18 times slower than XLA's on a CPU (geometry.select_per_sample)."""
    if not tf.inside_function():
        return fn(*args)
    return tf.function(functools.partial(fn), jit_compile=True, autograph=False)(*args)
