"""FGM and PGD: the whole attack compiled into one `tf.function`.

Faithful to the released TF code of Redgrave & Crum 2023 (AdvCVPR23/Adversarial-Mini-Batching,
attack_model.py) with the defaults:

- the loss is the Keras loss called on the model's output, as theirs (default CategoricalCrossentropy on
  one-hot labels; `from_logits=False` for Keras applications, which output probabilities), reduced with
  Keras' "sum_over_batch_size" (the mean, eq. 1) or "sum" (the batch correction, eq. 5);
- L-inf step: eps * sign(g); L2 step: eps * g / sqrt(max(1e-12, ||g||^2)) per sample ("clamped");
- PGD: start x + noise clipped to [clip_min, clip_max]; each of `steps` iterations takes one FGM step of
  `step_size`, clips to the range, projects the perturbation onto the eps ball and clips again (their order);
- FGM is PGD with one step of size eps and no random start, which is exactly their FGM.

Where tfadv deliberately differs, each as an option or a documented default:

- L2 random start: theirs draws a uniform cube, normalises it to length eps per sample, then scales the
  *whole batch* by one U(0, 1) radius. tfadv's default draws uniformly in each sample's ball
  (`l2_rand_init="uniform_ball"`); `l2_rand_init="batch_radius"` reproduces theirs.
- Random starts are stateless, keyed on (seed, sample id, restart): with `reduction="sum"` and a seed, a
  sample's adversarial example does not depend on the batch it is crafted in. Theirs use the global RNG.
- Under 16-bit compute or loss scaling, non-finite gradient entries (float16 overflow) are set to zero,
  as ART does, and `stats` counts them; theirs would propagate NaN into the image.
- `l2_normalization="exact"` gives a unit step for any non-zero gradient (rescaled norm, exact-zero guard),
  removing the 1e-12 floor that makes the mean reduction weaken L2 attacks (cleverhans PR #1175).
- `loss_scale` (a constant or "per_sample") removes float16 underflow in the backward pass of a
  mixed-precision model without changing the step (a positive per-sample factor leaves sign(g) and
  g/||g|| unchanged; the factor is divided out in float32).

Keras' cross-entropy silently uses the softmax's logits when the probabilities come straight from a
softmax layer, and clips at 1e-7 when anything (such as the float16 -> float32 cast) sits in between.
tfadv calls the loss exactly as the authors did; `stats["loss_path"]` says which path Keras took.
"""
from __future__ import annotations

import numbers
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, losses, precision

Select = Literal["last", "max_loss", "first_success"]
_SELECT = ("last", "max_loss", "first_success")


class _GradientAttack:
    """Shared machinery of FGM and PGD: validation, the compiled loop, diagnostics."""

    def __init__(
        self,
        model: keras.Model,
        *,
        eps: float,
        norm: str | int | float,
        steps: int,
        step_size: float,
        rand_init: bool,
        reduction: str | None,
        from_logits: bool,
        clip_min: float | None,
        clip_max: float | None,
        loss: keras.losses.Loss | None,
        targeted: bool,
        seed: int | None,
        l2_normalization: geometry.L2Normalization,
        l2_rand_init: str,
        loss_scale: float | str | None,
        training: bool,
        select: Select,
        jit_compile: bool,
    ):
        name = type(self).__name__
        self.model = model
        self.norm = geometry.canonical_norm(norm)
        self.eps = _non_negative(name, "eps", eps)
        self.step_size = _non_negative(name, "step_size", step_size)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"{name}: steps must be an integer >= 1, got {steps!r}")
        self.steps = int(steps)
        if reduction is None:
            reduction = getattr(loss, "reduction", None) or "sum_over_batch_size"
        self.reduction = losses.canonical_reduction(reduction)
        if (clip_min is None) != (clip_max is None):
            raise ValueError(f"{name}: give both clip_min and clip_max, or neither")
        if clip_min is not None and not float(clip_min) < float(clip_max):
            raise ValueError(f"{name}: clip_min must be < clip_max, got {clip_min} and {clip_max}")
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        if l2_normalization not in ("clamped", "exact"):
            raise ValueError(f"{name}: l2_normalization must be 'clamped' or 'exact', got {l2_normalization!r}")
        if l2_rand_init not in ("uniform_ball", "batch_radius"):
            raise ValueError(f"{name}: l2_rand_init must be 'uniform_ball' or 'batch_radius', got {l2_rand_init!r}")
        if select not in _SELECT:
            raise ValueError(f"{name}: select must be one of {_SELECT}, got {select!r}")
        if loss_scale is not None and loss_scale != "per_sample":
            if isinstance(loss_scale, str) or not float(loss_scale) > 0 or not np.isfinite(float(loss_scale)):
                raise ValueError(f"{name}: loss_scale must be None, a positive number or 'per_sample', got {loss_scale!r}")
            loss_scale = float(loss_scale)
        self.from_logits = bool(from_logits)
        self.loss = losses.per_sample_loss_fn(loss, self.from_logits)
        self.targeted = bool(targeted)
        self.seed = None if seed is None else int(seed)
        self.rand_init = bool(rand_init)
        self.l2_normalization = l2_normalization
        self.l2_rand_init = l2_rand_init
        self.loss_scale = loss_scale
        self._guard_nonfinite = precision.may_overflow(model, loss_scaled=loss_scale is not None)
        self.training = bool(training)
        self.select = select
        self.jit_compile = bool(jit_compile)
        #: Which cross-entropy Keras computed on the model output (set when the attack is traced).
        self.loss_path: losses.LossPath | None = None
        self._compiled: dict[tuple, Any] = {}
        self._num_classes: int | None = None

    # ----------------------------------------------------------------------------------------- public
    def __call__(
        self,
        x: Any,
        y: Any,
        *,
        sample_ids: Any = None,
        restart: int = 0,
        return_stats: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, Any]]:
        """Adversarial examples for `x` with labels `y` (class ids (N,) or one-hot (N, C)).

        For a targeted attack `y` holds the targets. `sample_ids` (N,) key each sample's random start
        (default 0..N-1): pass global dataset indices to make results independent of batching.
        With `return_stats=True` also returns per-sample diagnostics (numpy) and the Keras loss path.
        """
        if tf.executing_eagerly():
            x, y_onehot = self._validated(x, y)
        else:
            x = tf.convert_to_tensor(x, tf.float32)
            y_onehot = self._one_hot(tf.convert_to_tensor(y), x)
        n = tf.shape(x)[0]
        ids = tf.range(n, dtype=tf.int64) if sample_ids is None else tf.cast(sample_ids, tf.int64)
        if tf.executing_eagerly() and ids.shape[0] != x.shape[0]:
            raise ValueError(f"sample_ids has {ids.shape[0]} entries for a batch of {x.shape[0]}")
        run = self._compiled_for(x, y_onehot, return_stats)
        out = run(x, y_onehot, ids, tf.cast(restart, tf.int64))
        if not return_stats:
            return out
        x_adv, stats = out
        if tf.executing_eagerly():
            stats = {k: v.numpy() for k, v in stats.items()}
        stats["loss_path"] = self.loss_path
        return x_adv, stats

    def tracing_count(self) -> int:
        """How many times the compiled attack has been traced (for retracing checks)."""
        return sum(f.experimental_get_tracing_count() for f in self._compiled.values())

    # ------------------------------------------------------------------------------------- checking
    def _validated(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        name = type(self).__name__
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"{name}: x must be floating point, got dtype {x.dtype.name}; convert it first")
        x = tf.cast(x, tf.float32)
        expected_rank = _model_input_rank(self.model)
        if x.shape.rank < 2 or (expected_rank is not None and x.shape.rank != expected_rank):
            want = f"rank {expected_rank}" if expected_rank is not None else "rank >= 2"
            raise ValueError(f"{name}: x must be a batch of {want} (N, ...), got shape {tuple(x.shape)}")
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(f"{name}: x contains NaN or Inf")
        if self.clip_min is not None:
            tolerance = 1e-5 * (self.clip_max - self.clip_min)
            low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            if low < self.clip_min - tolerance or high > self.clip_max + tolerance:
                raise ValueError(
                    f"{name}: x lies in [{low:g}, {high:g}], outside [clip_min, clip_max] = "
                    f"[{self.clip_min:g}, {self.clip_max:g}]"
                )
        y = tf.convert_to_tensor(y)
        if y.shape.rank not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name}: y must be class ids (N,) or one-hot (N, C) with N = {x.shape[0]}, got shape {tuple(y.shape)}"
            )
        classes = self._classes(x)
        if y.shape.rank == 1:
            if not y.dtype.is_integer:
                raise TypeError(f"{name}: class-id labels must be integers, got dtype {y.dtype.name}")
            low, high = int(tf.reduce_min(y)), int(tf.reduce_max(y))
            if low < 0 or high >= classes:
                raise ValueError(f"{name}: labels must lie in [0, {classes}), got values in [{low}, {high}]")
        else:
            if y.shape[1] != classes:
                raise ValueError(f"{name}: one-hot labels have {y.shape[1]} columns, the model has {classes} classes")
            y = tf.cast(y, tf.float32)
            rows_ok = tf.reduce_all(tf.abs(tf.reduce_sum(y, axis=1) - 1.0) < 1e-3)
            if not bool(rows_ok & tf.reduce_all(y >= 0)):
                raise ValueError(f"{name}: one-hot label rows must be non-negative and sum to 1")
        return x, self._one_hot(y, x)

    def _classes(self, x: tf.Tensor) -> int:
        if self._num_classes is None:
            outputs = getattr(self.model, "outputs", None)
            width = outputs[0].shape[-1] if outputs else None
            if width is None:
                width = self.model(x[:1], training=False).shape[-1]
            self._num_classes = int(width)
        return self._num_classes

    def _one_hot(self, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        if y.shape.rank == 2:
            return tf.cast(y, tf.float32)
        return tf.one_hot(tf.cast(y, tf.int32), self._classes(x), dtype=tf.float32)

    # ------------------------------------------------------------------------------------ compiling
    def _compiled_for(self, x: tf.Tensor, y_onehot: tf.Tensor, with_stats: bool):
        """One tf.function per input signature. Shapes are kept static, batch size included: on CPU a
        free batch dimension measured slower (shape arithmetic moves to run time), and a dataset has at
        most two batch sizes (full and last)."""
        key = (tuple(x.shape), int(y_onehot.shape[-1]), with_stats)
        if key not in self._compiled:
            signature = [
                tf.TensorSpec(x.shape, tf.float32),
                tf.TensorSpec((x.shape[0], y_onehot.shape[-1]), tf.float32),
                tf.TensorSpec((x.shape[0],), tf.int64),
                tf.TensorSpec((), tf.int64),
            ]

            def attack(x, y_onehot, sample_ids, restart):
                return self._attack(x, y_onehot, sample_ids, restart, with_stats)

            self._compiled[key] = tf.function(attack, input_signature=signature, jit_compile=self.jit_compile)
        return self._compiled[key]

    # --------------------------------------------------------------------------------- the numerics
    def _objective_and_gradient(self, x_adv: tf.Tensor, y_onehot: tf.Tensor):
        """Per-sample objective (the loss, negated if targeted), predictions and the input gradient of
        the reduced objective, in float32 and free of loss scaling (not yet checked for non-finites)."""
        labels = losses.loss_labels(self.loss, y_onehot)
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            y_pred = self.model(x_adv, training=self.training)
            self.loss_path = losses.keras_loss_path(y_pred, self.from_logits)
            objective = self.loss(labels, y_pred)
            if self.targeted:
                objective = -objective
            if self.loss_scale == "per_sample":
                weights = losses.per_sample_loss_scale(self.loss, labels, y_pred, self.from_logits)
                backprop = tf.reduce_sum(objective * weights)
            elif self.loss_scale is not None:
                backprop = losses.reduce_loss(objective, self.reduction) * self.loss_scale
            else:
                backprop = losses.reduce_loss(objective, self.reduction)
        grad = tape.gradient(backprop, x_adv)
        if self.loss_scale == "per_sample":
            factor = losses.reduction_factor(self.reduction, tf.shape(x_adv)[0])
            grad = grad * geometry.broadcast_per_sample(factor / weights, grad)
        elif self.loss_scale is not None:
            grad = grad / self.loss_scale
        return objective, y_pred, grad

    def _finite(self, grad: tf.Tensor) -> tf.Tensor:
        return geometry.finite_or_zero(grad) if self._guard_nonfinite else grad

    def _success(self, y_pred: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
        hit = tf.equal(tf.argmax(y_pred, axis=-1), tf.argmax(y_onehot, axis=-1))
        return hit if self.targeted else tf.logical_not(hit)

    def _step(self, x: tf.Tensor, x_adv: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
        direction = geometry.steepest_ascent(grad, self.norm, self.l2_normalization)
        x_adv = geometry.clip_to_range(x_adv + self.step_size * direction, self.clip_min, self.clip_max)
        delta = geometry.project(x_adv - x, self.eps, self.norm)
        return geometry.clip_to_range(x + delta, self.clip_min, self.clip_max)

    def _start(self, x: tf.Tensor, sample_ids: tf.Tensor, restart: tf.Tensor) -> tf.Tensor:
        if not self.rand_init:
            return x
        if self.seed is None:
            base_seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
        else:
            base_seed = tf.constant(self.seed, tf.int64)
        seeds = geometry.sample_seeds(base_seed, sample_ids, restart)
        delta = geometry.random_start(tf.shape(x), self.eps, self.norm, seeds, self.l2_rand_init)
        return geometry.clip_to_range(x + delta, self.clip_min, self.clip_max)

    def _attack(self, x, y_onehot, sample_ids, restart, with_stats: bool):
        x_adv = self._start(x, sample_ids, restart)
        n = tf.shape(x)[0]
        best = x_adv
        best_objective = tf.fill([n], tf.constant(-np.inf, tf.float32))
        frozen = tf.zeros([n], tf.bool)

        def advance(x_adv, best, best_objective, frozen):
            """One step; also keeps the selected iterate (the loss and prediction seen are x_adv's)."""
            objective, y_pred, raw_grad = self._objective_and_gradient(x_adv, y_onehot)
            grad = self._finite(raw_grad)
            if self.select == "max_loss":
                better = objective > best_objective
                best = tf.where(geometry.broadcast_per_sample(better, x_adv), x_adv, best)
                best_objective = tf.where(better, objective, best_objective)
            elif self.select == "first_success":
                frozen = frozen | self._success(y_pred, y_onehot)
            stepped = self._step(x, x_adv, grad)
            if self.select == "first_success":
                stepped = tf.where(geometry.broadcast_per_sample(frozen, x_adv), x_adv, stepped)
            return stepped, best, best_objective, frozen, raw_grad

        # The first step is peeled off the loop so its gradient can be reported.
        x_adv, best, best_objective, frozen, first_raw_grad = advance(x_adv, best, best_objective, frozen)
        for _ in tf.range(self.steps - 1):
            x_adv, best, best_objective, frozen = advance(x_adv, best, best_objective, frozen)[:4]

        if self.select == "max_loss" or with_stats:
            final_objective, final_pred, _ = self._objective_and_gradient(x_adv, y_onehot)
        if self.select == "max_loss":
            better = final_objective > best_objective
            x_adv = tf.where(geometry.broadcast_per_sample(better, x_adv), x_adv, best)
        if not with_stats:
            return x_adv
        if self.select == "max_loss":
            final_pred = self.model(x_adv, training=False)
        delta = x_adv - x
        axes = list(range(1, x.shape.rank))
        first_grad = self._finite(first_raw_grad)
        stats = {
            "grad_l2_first": geometry.l2_norm(first_grad),
            "grad_zero_first": tf.reduce_all(tf.equal(first_grad, 0.0), axis=axes),
            "floor_clamped_first": geometry.legacy_floor_clamps(first_grad),
            "nonfinite_grad_first": tf.reduce_any(tf.logical_not(tf.math.is_finite(first_raw_grad)), axis=axes),
            "perturbation_l2": geometry.l2_norm(delta),
            "perturbation_linf": geometry.linf_norm(delta),
            "prediction": tf.argmax(final_pred, axis=-1),
            "success": self._success(final_pred, y_onehot),
        }
        return x_adv, stats


class FGM(_GradientAttack):
    """Fast Gradient Method (Goodfellow et al.): x + eps * sign(g) for L-inf, x + eps * g/||g||_2 for L2,
    clipped to [clip_min, clip_max]."""

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        *,
        reduction: str | None = None,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        loss: keras.losses.Loss | None = None,
        targeted: bool = False,
        l2_normalization: geometry.L2Normalization = "clamped",
        loss_scale: float | str | None = None,
        training: bool = False,
        jit_compile: bool = False,
    ):
        super().__init__(
            model, eps=eps, norm=norm, steps=1, step_size=eps, rand_init=False, reduction=reduction,
            from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, loss=loss, targeted=targeted,
            seed=None, l2_normalization=l2_normalization, l2_rand_init="uniform_ball",
            loss_scale=loss_scale, training=training, select="last", jit_compile=jit_compile,
        )


class PGD(_GradientAttack):
    """Projected Gradient Descent (Madry et al.): a random start in the eps ball, then `steps` FGM steps
    of `step_size`, each followed by projection onto the eps ball and the clip range:
    x^{t+1} = clip(x + Proj_eps(clip(x^t + step_size * dir(grad)) - x)).

    `select` picks what is returned per sample: the "last" iterate (as Madry et al. and the paper),
    the "max_loss" iterate seen, or the "first_success" (a sample stops moving once it is fooled).
    """

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        steps: int = 10,
        step_size: float | None = None,
        rand_init: bool = True,
        *,
        reduction: str | None = None,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        loss: keras.losses.Loss | None = None,
        targeted: bool = False,
        seed: int | None = None,
        l2_normalization: geometry.L2Normalization = "clamped",
        l2_rand_init: str = "uniform_ball",
        loss_scale: float | str | None = None,
        training: bool = False,
        select: Select = "last",
        jit_compile: bool = False,
    ):
        if step_size is None:
            step_size = 2.5 * float(eps) / steps if isinstance(steps, numbers.Integral) and steps > 0 else eps
        super().__init__(
            model, eps=eps, norm=norm, steps=steps, step_size=step_size, rand_init=rand_init,
            reduction=reduction, from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, loss=loss,
            targeted=targeted, seed=seed, l2_normalization=l2_normalization, l2_rand_init=l2_rand_init,
            loss_scale=loss_scale, training=training, select=select, jit_compile=jit_compile,
        )


def _non_negative(owner: str, name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number >= 0, got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return number


def _model_input_rank(model: keras.Model) -> int | None:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return len(inputs[0].shape)
