"""The attack loss: a Keras loss evaluated per sample, then reduced the Keras way.

Keeping the per-sample vector (and reducing it here, in one place) gives three things the anchors lack:
the reduction is an explicit choice ("sum_over_batch_size" = the mean, the paper's baseline and Keras'
default; "sum" = the paper's batch correction), per-sample loss values stay available for selecting the
best iterate, and per-sample loss scaling can undo fp16 underflow without changing the attack's math.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import keras
import tensorflow as tf

from tfadv import tracing

Reduction = Literal["sum_over_batch_size", "sum"]
#: Which cross-entropy Keras computes (keras_loss_path); "custom_loss" for any loss other than Keras'
#: categorical cross-entropies, whose handling of the model output is its own.
LossPath = Literal["from_logits", "softmax_logits_shortcut", "clipped_probabilities", "custom_loss"]

#: The losses keras_loss_path describes (Keras' categorical cross-entropies, the attacks' default).
_KERAS_CROSS_ENTROPIES = (keras.losses.CategoricalCrossentropy, keras.losses.SparseCategoricalCrossentropy)

#: Keras' reduction names, with its alias "mean" for "sum_over_batch_size".
_REDUCTIONS = {"sum_over_batch_size": "sum_over_batch_size", "mean": "sum_over_batch_size", "sum": "sum"}

#: Cap on a sample's upstream loss gradient after per-sample scaling: far below float16's max (65504)
#: so that the softmax backward pass (a handful of multiply-adds) cannot overflow.
_FP16_SAFE_UPSTREAM = 2.0**10


def canonical_reduction(reduction: str) -> Reduction:
    """Keras' reduction names; "none" makes no sense for a gradient step and is refused."""
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'sum_over_batch_size' (the mean, Keras' default) or 'sum', got {reduction!r}"
        )
    return _REDUCTIONS[reduction]


def per_sample_loss_fn(loss: keras.losses.Loss | None, from_logits: bool, owner: str = "loss") -> keras.losses.Loss:
    """A copy of `loss` (default: CategoricalCrossentropy) that returns one value per sample. A loss whose
    own `from_logits` contradicts `from_logits` (what the model outputs) is refused: the copy keeps the
    loss's setting, so it would read logits as probabilities (zero gradients) or the reverse."""
    if loss is None:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits, reduction="none")
    if not isinstance(loss, keras.losses.Loss):
        raise TypeError(f"{owner}: loss must be a keras.losses.Loss instance, got {type(loss).__name__}")
    config = dict(loss.get_config(), reduction="none")
    if "from_logits" in config and bool(config["from_logits"]) != bool(from_logits):
        raise ValueError(
            f"{owner}: loss={type(loss).__name__}(from_logits={config['from_logits']}) contradicts "
            f"from_logits={from_logits}: the loss would read the model's {_output_kind(from_logits)} as "
            f"{_output_kind(config['from_logits'])}. Build the loss with from_logits={from_logits} (from_logits "
            "says what the model outputs), or leave loss=None for the default cross-entropy"
        )
    return type(loss).from_config(config)


def _output_kind(from_logits: bool) -> str:
    return "logits" if from_logits else "probabilities"


def attack_loss_path(loss: keras.losses.Loss, y_pred: tf.Tensor, from_logits: bool) -> LossPath:
    """keras_loss_path for Keras' categorical cross-entropies; "custom_loss" for any other loss, whose
    reading of the output (clipping, shortcuts) is its own, so no cross-entropy path can be claimed for it."""
    if isinstance(loss, _KERAS_CROSS_ENTROPIES):
        return keras_loss_path(y_pred, from_logits)
    return "custom_loss"


def loss_labels(loss: keras.losses.Loss, y_onehot: tf.Tensor) -> tf.Tensor:
    """The label format the loss expects: class ids for the Sparse* losses, one-hot otherwise."""
    if isinstance(loss, (keras.losses.SparseCategoricalCrossentropy,)):
        return tf.argmax(y_onehot, axis=-1)
    return y_onehot


def reduce_loss(per_sample: tf.Tensor, reduction: Reduction, batch_sizes: tf.Tensor | None = None) -> tf.Tensor:
    """Keras' reduction of a per-sample loss vector (loss.py `reduce_values`).

    The mean is sum_i l_i / B_i with B_i = `batch_sizes` (default: all N). Weighting each sample (rather
    than dividing the sum) by 1/B_i gives the same float32 factor 1/B_i in the backward pass as Keras'
    sum / N, so a batch of samples with different B_i reproduces, sample by sample, batches of those sizes.
    """
    if reduction == "sum":
        return tf.reduce_sum(per_sample)
    if batch_sizes is None:
        return tf.reduce_sum(per_sample) / tf.cast(tf.size(per_sample), per_sample.dtype)
    return tf.reduce_sum(per_sample * tf.cast(mean_weights(batch_sizes), per_sample.dtype))


def reduction_factor(reduction: Reduction, batch_sizes: tf.Tensor) -> tf.Tensor:
    """d(reduced loss)/d(per-sample loss): 1 for "sum", 1/B (B a scalar batch size or one per sample)
    for the mean."""
    if reduction == "sum":
        return tf.constant(1.0, tf.float32)
    return mean_weights(batch_sizes)


def mean_weights(batch_sizes: tf.Tensor) -> tf.Tensor:
    """1/B_i in float32, correctly rounded (as Keras' scalar sum / N gets it).

    Divided in float64: in a compiled graph grappler's constant folding rewrites 1/x as the Reciprocal op,
    whose vectorized float32 CPU kernel is one ulp low for 30% of the integers up to 2^20 (1/32 gives
    0x1.fffffep-6), and a weight one ulp off is enough for PGD's steps to move examples 1.5e-3 eps from real
    batches' (measured: digits CNN, 32 L2 steps). The float64 quotient rounded to float32 is exact there
    (tests/test_emulation.py).
    """
    return tf.cast(1.0 / tf.cast(batch_sizes, tf.float64), tf.float32)


def loss_scaled_gradient(
    loss_fn: Callable[[tf.Tensor], tuple[tf.Tensor, Any]],
    x: tf.Tensor,
    scale: float | tf.Tensor | None = None,
    own_graph: bool = False,
    owner: str = "the attack",
) -> tuple[tf.Tensor, Any]:
    """(d loss / d x, aux) for loss_fn(x) -> (scalar loss, aux), back-propagating scale * loss.

    A 16-bit backward pass underflows on small gradients; scaling the loss first (a constant, or the
    optimizer's dynamic loss scale during training) keeps them representable, and dividing the scale out
    again in float32 leaves the gradient itself unchanged, so the L2 step (whose 1e-12 floor is not
    scale-invariant) sees the true gradient. Attacks and adversarial training both take gradients here.
    `own_graph`: inside a traced function, run the pass as a graph of its own (tracing.own_graph_helps).
    `owner` names the caller in the error raised when x has no gradient at all (require_input_gradient).
    """
    def gradient_pass(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, aux = loss_fn(x)
            if scale is not None:
                loss = loss * scale
        grad = require_input_gradient(tape.gradient(loss, x), owner)
        return (grad if scale is None else grad / scale), aux

    return tracing.call_as_own_graph(own_graph, gradient_pass, x)


class NoInputGradientError(ValueError):
    """The model's output has no gradient with respect to its input (require_input_gradient)."""


def require_input_gradient(grad: tf.Tensor | None, owner: str) -> tf.Tensor:
    """`grad`, or a clear error when it is None: tf.GradientTape found no differentiable path from the input
    to the loss. (A zero gradient of a differentiable model is another case, reported by the masking checks.)"""
    if grad is None:
        raise NoInputGradientError(
            f"{owner}: the model's output has no gradient with respect to its input x (tf.GradientTape returned "
            "None): no differentiable path leads from x to the output, as behind non-differentiable preprocessing "
            "(tf.round, a cast to an integer, tf.stop_gradient). A gradient attack cannot search such a model: its "
            "robust accuracy would overstate robustness. Evaluate it with a gradient-free attack "
            "(tfadv.attacks.Square), or with BPDA: make the step the identity in the backward pass, "
            "x + tf.stop_gradient(step(x) - x)"
        )
    return grad


def keras_loss_path(y_pred: tf.Tensor, from_logits: bool, loss_dtype: tf.DType = tf.float32) -> LossPath:
    """Which cross-entropy Keras computes on this model output (keras/src/backend/tensorflow/nn.py).

    Keras' probability-space cross-entropy silently switches to the softmax's logits when `y_pred` comes
    straight from a Keras softmax (attribute `_keras_logits`, or a graph `Softmax` op). Anything in between,
    such as the float16 -> float32 cast of a mixed-precision model, drops the shortcut: the probabilities
    are then clipped to [1e-7, 1 - 1e-7] and a sample whose true-class probability is below 1e-7 has a zero
    gradient. Decided at trace time, from the symbolic tensor.
    """
    if from_logits:
        return "from_logits"
    if y_pred.dtype != loss_dtype:
        return "clipped_probabilities"
    if getattr(y_pred, "_keras_logits", None) is not None:
        return "softmax_logits_shortcut"
    op = getattr(y_pred, "op", None)
    if not tf.executing_eagerly() and op is not None and op.type == "Softmax":
        return "softmax_logits_shortcut"
    return "clipped_probabilities"


def per_sample_loss_scale(
    loss: keras.losses.Loss, y_true: tf.Tensor, y_pred: tf.Tensor, from_logits: bool
) -> tf.Tensor:
    """Per-sample weights w_i that make each sample's logit gradient O(1) before backprop.

    Measured in float32 on the model output: the gradient of the loss with respect to the output, pulled
    back through the softmax Jacobian when the output is probabilities, p * (g - <g, p>). w_i = 1/max|.|,
    capped so the upstream gradient stays far from float16 overflow. A positive per-sample factor leaves
    sign(g) and g/||g|| unchanged, so the attack's math is untouched; the caller divides it out again.
    """
    probs = tf.stop_gradient(tf.cast(y_pred, tf.float32))
    with tf.GradientTape() as tape:
        tape.watch(probs)
        values = loss(y_true, probs)
    upstream = tape.gradient(values, probs)
    if from_logits:
        logit_grad = upstream
    else:
        logit_grad = probs * (upstream - tf.reduce_sum(upstream * probs, axis=-1, keepdims=True))
    logit_scale = tf.reduce_max(tf.abs(logit_grad), axis=-1)
    upstream_scale = tf.reduce_max(tf.abs(upstream), axis=-1)
    weight = tf.math.divide_no_nan(tf.ones_like(logit_scale), logit_scale)
    weight = tf.where(logit_scale > 0, weight, tf.ones_like(weight))
    overflow_cap = tf.math.divide_no_nan(tf.fill(tf.shape(upstream_scale), _FP16_SAFE_UPSTREAM), upstream_scale)
    weight = tf.where(upstream_scale > 0, tf.minimum(weight, overflow_cap), weight)
    return tf.stop_gradient(weight)
