"""What every tfadv attack shares: validated arguments and inputs, one compiled `tf.function` per input
signature, per-sample stateless random starts. FGM and PGD (tfadv.attacks.gradient) are built on it.

FGM and PGD: the whole attack compiled into one `tf.function`.

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

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry


class Attack:
    """Base of every attack: threat model, validation, compiled call, random starts.

    Subclasses implement `_attack(x, y_onehot, sample_ids, restart, with_stats)`, traced once per input
    signature, returning x_adv (and a dict of per-sample statistics when `with_stats`).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        eps: float,
        norm: str | int | float,
        from_logits: bool,
        clip_min: float | None,
        clip_max: float | None,
        targeted: bool,
        seed: int | None,
        jit_compile: bool,
    ):
        name = type(self).__name__
        self.model = model
        self.norm = geometry.canonical_norm(norm)
        self.eps = _non_negative(name, "eps", eps)
        if (clip_min is None) != (clip_max is None):
            raise ValueError(f"{name}: give both clip_min and clip_max, or neither")
        if clip_min is not None and not float(clip_min) < float(clip_max):
            raise ValueError(f"{name}: clip_min must be < clip_max, got {clip_min} and {clip_max}")
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        self.from_logits = bool(from_logits)
        self.targeted = bool(targeted)
        self.seed = None if seed is None else int(seed)
        self.jit_compile = bool(jit_compile)
        #: Which cross-entropy Keras computed on the model output (set by gradient attacks when traced).
        self.loss_path: str | None = None
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

    # ------------------------------------------------------------------------------ shared numerics
    def _success(self, y_pred: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
        hit = tf.equal(tf.argmax(y_pred, axis=-1), tf.argmax(y_onehot, axis=-1))
        return hit if self.targeted else tf.logical_not(hit)

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
        raise NotImplementedError


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
