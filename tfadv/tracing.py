"""`tf.function` for functions that are traced once by design.

TensorFlow warns ("N out of the last M calls triggered tf.function retracing") when one Python function is
traced often. It keys that count on the function's code object, so every closure made by the same line
shares one count: ten attacks, each traced once for its own input signature, read as one function
retraced ten times. tfadv compiles one function per attack and input signature (static shapes are faster
on CPU) and bounds how many signatures it makes, so that count measures nothing useful here.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf


def compile_once(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """tf.function(fn, **kwargs) whose retracing count is its own, not shared with sibling closures.

    A functools.partial has no code object, so TensorFlow keys the count on the partial itself.
    """
    return tf.function(functools.partial(fn), **kwargs)



def call_as_own_graph(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), a gradient pass; inside a traced function on a machine without GPUs, and if its graph
    holds a float32 MaxPoolGrad, as a call to a function graph of its own (not inlined).

    Why: on x86 CPUs TensorFlow's oneDNN pass gives MaxPoolGrad its oneDNN kernel only after it has rewritten
    the forward MaxPool, and in a while-loop body it visits the nodes in an order that changes from trace to
    trace. About half the traces of an attack loop kept TensorFlow's own MaxPoolGrad and ran 1.7 times slower
    (digits CNN, batch 448). A gradient pass in a graph of its own is rewritten every time. Elsewhere a
    separate graph would only add a function call per step (measurable at batch 1), so fn is called inline.
    """
    if not tf.inside_function() or tf.config.list_logical_devices("GPU"):
        return fn(*args)
    own = tf.function(functools.partial(fn), autograph=False, experimental_attributes={"_noinline": True})
    graph = own.get_concrete_function(*args).graph
    if not any(op.type.startswith("MaxPoolGrad") and op.get_attr("T") == tf.float32 for op in graph.get_operations()):
        return fn(*args)
    return own(*args)
