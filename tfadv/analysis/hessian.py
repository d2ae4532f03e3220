"""Top eigenvalue of the training-loss Hessian with respect to a model's trainable weights.

Power iteration on exact Hessian-vector products (Pearlmutter's trick: the gradient of <grad L, v>, by
nested tapes, i.e. reverse over reverse, which takes Keras variables as they are; forward-over-reverse with
tf.autodiff.ForwardAccumulator would need their underlying tf.Variables), the algorithm of Yao et al.'s
HessianFlow (`hessianflow/eigen.py`), with its relative stopping test (since 2019; absolute before):

    v <- v / ||v||,  v ~ N(0, I);   repeat:  w = H v,  lambda = <w, v>,  v = w / ||w||
    until |lambda - lambda_prev| <= tol * |lambda_prev|  or  max_iterations Hessian-vector products.

L is the mean cross-entropy over a fixed data subset, with the model in inference mode: BatchNorm uses its
moving statistics and Dropout is off (HessianFlow calls `model.eval()` first), so L is a deterministic
function of the weights. BatchNorm's gamma and beta are trainable and included; its moving statistics are
not. The subset is processed in chunks and the chunk HVPs summed, which is exact because inference-mode
L is a plain mean over samples. No weight-decay term unless `weight_decay` is given.

Power iteration converges to the eigenvalue of largest *magnitude*. `which="largest_magnitude"` (what
HessianFlow and PyHessian return) reports that value with its sign; `which="largest"` returns the largest
algebraic eigenvalue: when the first run ends on a negative eigenvalue mu, a second run on H - mu I (all of
whose eigenvalues are >= 0) finds lambda_max - mu.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import keras
import numpy as np
import tensorflow as tf

from tfadv import labels
from tfadv.losses import loss_labels, per_sample_loss_fn

Which = Literal["largest_magnitude", "largest"]
Vector = list  # a list of tensors shaped like the model's trainable variables


@dataclasses.dataclass(frozen=True)
class PowerIteration:
    """Stopping rule and data subset of one power-iteration run.

    `num_samples` takes the first n samples of the data passed in (None: all of it); `batch_size` is the
    chunk size of the Hessian-vector product, a memory knob that does not change the result.
    """

    max_iterations: int
    tolerance: float
    num_samples: int | None = None
    batch_size: int = 200

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 or None, got {self.num_samples}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


#: HessianFlow as Yao et al. ran it: every driver calls get_eigen(maxIter=10, tol=1e-2) on one batch, the
#: first 200 images of the test loader, in eval mode, without weight decay (relative stopping test).
HESSIANFLOW = PowerIteration(max_iterations=10, tolerance=1e-2, num_samples=200, batch_size=200)
#: The same data, iterated to PyHessian's defaults (maxIter=100, tol=1e-3).
CONVERGED = PowerIteration(max_iterations=100, tolerance=1e-3, num_samples=200, batch_size=200)
PRESETS = {"hessianflow": HESSIANFLOW, "converged": CONVERGED}


@dataclasses.dataclass(frozen=True)
class HessianEigenvalue:
    """Result of `top_hessian_eigenvalue`. `iterations` counts Hessian-vector products (both runs when
    `which="largest"` needed a shifted run); `converged` is False when the cap stopped the iteration."""

    eigenvalue: float
    iterations: int
    converged: bool
    which: Which


def _dot(a: Vector, b: Vector) -> tf.Tensor:
    return tf.add_n([tf.reduce_sum(x * y) for x, y in zip(a, b)])


def _normalize(v: Vector) -> Vector:
    norm = tf.sqrt(_dot(v, v))
    # A zero vector (e.g. a zero Hessian) stays zero instead of becoming NaN.
    return [tf.math.divide_no_nan(x, norm) for x in v]


def power_iteration(
    matvec: Callable[[Vector], Vector],
    v0: Vector,
    max_iterations: int | tf.Tensor,
    tolerance: float | tf.Tensor,
    shift: float | tf.Tensor = 0.0,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Power iteration on the operator v -> matvec(v) - shift * v, as one tf.while_loop.

    Returns (Rayleigh quotient of the last iterate, iterations used, converged). Graph-friendly: call it
    inside a tf.function so the whole loop compiles once.
    """
    shift = tf.cast(shift, tf.float32)
    tolerance = tf.cast(tolerance, tf.float32)

    def body(i, v, eigenvalue, converged):
        w = [hv - shift * x for hv, x in zip(matvec(v), v)]
        new_eigenvalue = _dot(w, v)
        converged = (i > 0) & (tf.abs(new_eigenvalue - eigenvalue) <= tolerance * tf.abs(eigenvalue))
        return i + 1, _normalize(w), new_eigenvalue, converged

    def cond(i, v, eigenvalue, converged):
        return (i < max_iterations) & tf.logical_not(converged)

    start = (tf.constant(0), _normalize(v0), tf.constant(0.0), tf.constant(False))
    iterations, _, eigenvalue, converged = tf.while_loop(cond, body, start)
    return eigenvalue, iterations, converged


def _validate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    if not model.trainable_variables:
        raise ValueError("model has no trainable variables; build it (call it on a batch) first")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty with the same length, got {len(x)} and {len(y)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf")


def top_hessian_eigenvalue(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    settings: PowerIteration | str = CONVERGED,
    from_logits: bool = True,
    loss: keras.losses.Loss | None = None,
    which: Which = "largest_magnitude",
    weight_decay: float = 0.0,
    seed: int = 0,
) -> HessianEigenvalue:
    """Top eigenvalue of the Hessian of mean loss(model(x, training=False), y) w.r.t. the trainable weights.

    `settings` is a `PowerIteration` or a preset name ("hessianflow", "converged"). `loss` defaults to
    cross-entropy (`from_logits` says what the model outputs); a loss given must reduce by the mean (Keras'
    default), the training loss whose Hessian Kamath et al. and HessianFlow measure. `weight_decay` c adds
    the Hessian of (c/2)||theta||^2, i.e. c*I; HessianFlow used none. `seed` fixes the random start vector.
    """
    measure = hessian_eigenvalue_fn(model, settings=settings, from_logits=from_logits, loss=loss, which=which,
                                    weight_decay=weight_decay)
    return measure(x, y, seed=seed)


def hessian_eigenvalue_fn(
    model: keras.Model,
    *,
    settings: PowerIteration | str = CONVERGED,
    from_logits: bool = True,
    loss: keras.losses.Loss | None = None,
    which: Which = "largest_magnitude",
    weight_decay: float = 0.0,
) -> Callable[..., HessianEigenvalue]:
    """`top_hessian_eigenvalue` of `model` with its settings fixed: a function `(x, y, seed=0)` whose power
    iteration is compiled once, so that measuring many weights (copied into `model`) or many data sets of one
    size traces once instead of once per call."""
    if isinstance(settings, str):
        if settings not in PRESETS:
            raise ValueError(f"settings must be one of {sorted(PRESETS)} or a PowerIteration, got {settings!r}")
        settings = PRESETS[settings]
    if which not in ("largest_magnitude", "largest"):
        raise ValueError(f"which must be 'largest_magnitude' or 'largest', got {which!r}")
    _check_mean_reduction(loss)
    loss_fn = per_sample_loss_fn(loss, from_logits)

    @tf.function
    def run(v0: Vector, shift: tf.Tensor, x: tf.Tensor, y: tf.Tensor):
        hvp = _mean_loss_hvp(model, x, y, loss_fn, settings.batch_size, weight_decay)
        return power_iteration(hvp, v0, settings.max_iterations, settings.tolerance, shift)

    def measure(x: np.ndarray, y: np.ndarray, seed: int = 0) -> HessianEigenvalue:
        _validate(model, x, y)
        n = len(x) if settings.num_samples is None else min(settings.num_samples, len(x))
        x = tf.constant(np.asarray(x[:n], dtype="float32"))
        num_classes = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
        if num_classes is None:
            num_classes = int(model(x[:1], training=False).shape[-1])
        rows = labels.one_hot(y[:n], num_classes, name="top_hessian_eigenvalue")
        y = tf.constant(loss_labels(loss_fn, tf.constant(rows)))
        v0 = [tf.random.stateless_normal(p.shape, seed=[seed, i]) for i, p in enumerate(model.trainable_variables)]
        eigenvalue, iterations, converged = (t.numpy() for t in run(v0, tf.constant(0.0), x, y))
        if which == "largest" and eigenvalue < 0:
            shifted, more, converged = (t.numpy() for t in run(v0, tf.constant(eigenvalue), x, y))
            eigenvalue, iterations = shifted + eigenvalue, iterations + more
        return HessianEigenvalue(float(eigenvalue), int(iterations), bool(converged), which)

    measure.tracing_count = run.experimental_get_tracing_count  # for retracing checks
    return measure


#: Keras reductions that are the mean over samples here (no sample weights are passed).
MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def _check_mean_reduction(loss: keras.losses.Loss | None) -> None:
    """Refuse a loss reducing other than by the mean: the tool always measures the mean loss's Hessian, so a
    "sum" loss would get an eigenvalue n times smaller than the loss it names, without a word."""
    reduction = getattr(loss, "reduction", "sum_over_batch_size")
    if loss is not None and reduction not in MEAN_REDUCTIONS:
        raise ValueError(
            f"loss={type(loss).__name__}(reduction={reduction!r}): the Hessian tool measures the mean loss over "
            "the samples (the training loss of Kamath et al. and HessianFlow), not this reduction. Build the "
            "loss with the default reduction ('sum_over_batch_size'); for the Hessian of the summed loss "
            "(weight_decay=0), multiply the eigenvalue by the number of samples measured"
        )


def _mean_loss_hvp(model: keras.Model, x: tf.Tensor, y: tf.Tensor, loss_fn, batch_size: int,
                   weight_decay: float):
    """v -> H v for the mean loss over all of (x, y) (plus weight_decay * v), accumulated over chunks of
    `batch_size` so that memory does not grow with the sample count."""
    params, n = model.trainable_variables, int(x.shape[0])
    num_chunks = -(-n // batch_size)
    zero = tf.UnconnectedGradients.ZERO

    def chunk_hvp(v: Vector, x_chunk: tf.Tensor, y_chunk: tf.Tensor) -> Vector:
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                outputs = model(x_chunk, training=False)
                total = tf.reduce_sum(tf.cast(loss_fn(y_chunk, outputs), tf.float32))
            grads = inner.gradient(total, params, unconnected_gradients=zero)
            grad_dot_v = _dot([tf.cast(g, tf.float32) for g in grads], v)
        return outer.gradient(grad_dot_v, params, unconnected_gradients=zero)

    def hvp(v: Vector) -> Vector:
        # Sum of per-chunk HVPs of the summed loss, then / n: the HVP of the mean over all n samples.
        def body(i, total):
            chunk = slice(i * batch_size, (i + 1) * batch_size)
            return i + 1, [t + h for t, h in zip(total, chunk_hvp(v, x[chunk], y[chunk]))]

        start = (tf.constant(0), [tf.zeros_like(vi) for vi in v])
        _, total = tf.while_loop(lambda i, _: i < num_chunks, body, start)
        return [t / n + weight_decay * vi for t, vi in zip(total, v)]

    return hvp
