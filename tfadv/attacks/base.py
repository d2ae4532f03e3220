"""What every tfadv attack shares: validated arguments and inputs, a check of the model's output kind,
one compiled `tf.function` per input signature, per-sample stateless random starts, and per-sample
reduction weights (batch-size emulation). FGM and PGD (tfadv.attacks.gradient) are built on it.

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
- Random starts are stateless, keyed on (seed, sample id, restart). Without `sample_ids`, a sample's id is
  its position in the stream of samples the attack has seen since construction or `reset()`, so
  consecutive batches get fresh starts and a stream crafted in batches of 1 or of 64 gets the same ones.
  With `reduction="sum"` and a seed, a sample's adversarial example does not depend on its batch.
- Under 16-bit compute or loss scaling, non-finite gradient entries (float16 overflow) are set to zero,
  as ART does, and `stats` counts them; theirs would propagate NaN into the image.
- `l2_normalization="exact"` gives a unit step for any non-zero gradient (rescaled norm, exact-zero guard),
  removing the 1e-12 floor that makes the mean reduction weaken L2 attacks (cleverhans PR #1175).
- `loss_scale` (a constant or "per_sample") removes float16 underflow in the backward pass of a
  mixed-precision model without changing the step (a positive per-sample factor leaves sign(g) and
  g/||g|| unchanged; the factor is divided out in float32).

The logits/probabilities rule: `from_logits` must say what the model outputs; before the first compiled
call the attack runs the model once on a few samples and refuses `from_logits=False` on outputs that are
not probability rows, and `from_logits=True` on softmax rows or on scores a final sigmoid, hard sigmoid or
tanh squashed (`check_output_kind=False` opts out).
Keras' cross-entropy silently uses the softmax's logits when the probabilities come straight from a
softmax layer, and clips at 1e-7 when anything (such as the float16 -> float32 cast) sits in between.
tfadv calls the loss exactly as the authors did; `stats["loss_path"]` says which path Keras took
("custom_loss" for a `loss=` other than Keras' categorical cross-entropies). A `loss=` whose own
`from_logits` contradicts the attack's is refused (tfadv.losses.per_sample_loss_fn).

Batch-size emulation: with the model in inference mode a sample's gradient depends on its batch only
through the reduction (the mean divides each sample's loss gradient by the batch size B). The loss is
therefore reduced as sum_i l_i / B_i with a per-sample B_i: the real batch size by default, or
`emulated_batch_size`, which reproduces sample by sample what crafting in batches of B_i computes. The
same weights make padding exact: a short batch is padded up to a size already compiled (or the next
power of two) and the padding is dropped, so a dataset's last batch and the shrinking batches of
restarts reuse compiled functions instead of tracing new ones.
"""
from __future__ import annotations

import threading
from typing import Any

import keras
import tensorflow as tf

from tfadv import geometry, labels, losses, model_outputs, tracing, validation


class Attack:
    """Base of every attack: threat model, validation, compiled call, random starts.

    Subclasses implement `_attack(x, y_onehot, *, sample_ids, restart, batch_sizes, with_stats)`, traced
    once per input signature, returning x_adv (and a dict of per-sample statistics when `with_stats`).
    `batch_sizes` is None for a plain batch (a mean reduction divides by N), or (N,) float32: the B_i
    each sample's loss is averaged over (emulation, padding; see the module docstring). An attack that
    sums per-sample losses may ignore it. Subclasses call the model through `self.forward(x, training)`,
    which picks the `output_index` output.
    """

    #: Whether the attack follows the input gradient (FGM, PGD, APGD, FAB); Square only queries scores.
    needs_input_gradient = True

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
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        name = type(self).__name__
        if not callable(model):
            raise TypeError(f"{name}: model must be a Keras model, got {type(model).__name__}")
        self.model = model
        try:
            self.norm = geometry.canonical_norm(norm)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        self.eps = validation.real(name, "eps", eps, minimum=0.0)
        self.clip_min = validation.optional_real(name, "clip_min", clip_min)
        self.clip_max = validation.optional_real(name, "clip_max", clip_max)
        if (clip_min is None) != (clip_max is None):
            raise ValueError(f"{name}: give both clip_min and clip_max, or neither")
        if clip_min is not None and not self.clip_min < self.clip_max:
            raise ValueError(f"{name}: clip_min must be < clip_max, got {clip_min} and {clip_max}")
        self.from_logits = validation.flag(name, "from_logits", from_logits)
        self.targeted = validation.flag(name, "targeted", targeted)
        self.seed = None if seed is None else validation.integer(name, "seed", seed)
        self.jit_compile = validation.flag(name, "jit_compile", jit_compile)
        self.output_index = model_outputs.check_output_index(name, model, output_index)
        self.check_output_kind = validation.flag(name, "check_output_kind", check_output_kind)
        #: Gradient passes in a graph of their own (tfadv.tracing.own_graph_helps).
        self._own_graph = tracing.own_graph_helps(model)
        #: Which cross-entropy Keras computed on the model output (set by gradient attacks when traced).
        self.loss_path: str | None = None
        self._compiled: dict[tuple, Any] = {}
        self._num_classes: int | None = None
        self._eps_scale_judged = False
        self._label_meaning_judged = False
        with tf.init_scope():
            self._stream_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="attack_samples_seen")
        # Threads calling one attack must get disjoint ids: eagerly, the read and the advance are two ops
        # another thread can come between. (In a graph, automatic control dependencies order them.)
        self._stream_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- public
    def __call__(
        self,
        x: Any,
        y: Any,
        *,
        sample_ids: Any = None,
        restart: int = 0,
        emulated_batch_size: Any = None,
        return_stats: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, Any]]:
        """Adversarial examples for `x` with labels `y` (class ids (N,) or (N, 1), or exactly one-hot (N, C)).

        For a targeted attack `y` holds the targets. `sample_ids` (N,) key each sample's random start;
        by default they continue the stream of samples seen so far (see `reset`): pass global dataset
        indices to make results independent of batching and call order. `emulated_batch_size` (an int
        or one per sample) makes the mean reduction divide each sample's loss by that batch size instead
        of N (inference mode only). With `return_stats=True` also returns per-sample diagnostics (numpy
        when eager) and the Keras loss path.
        """
        x, y_onehot = self._inputs(x, y)
        n = x.shape[0]
        ids = self._sample_ids(sample_ids, x)
        batch_sizes = self._batch_sizes(emulated_batch_size, x)
        if tf.executing_eagerly():
            restart = validation.integer(type(self).__name__, "restart", restart, minimum=0)
        rows = self._padded_rows(n, x.shape[1:])
        if rows is not None and rows != n and batch_sizes is None:
            # Padding must not change the mean's 1/n. Only when there is padding: an unpadded batch takes the
            # plain path whatever was compiled before, so its answer does not depend on the calls before it.
            batch_sizes = tf.fill([n], tf.cast(n, tf.float32))
        run = self._compiled_for(rows, x.shape[1:], int(y_onehot.shape[-1]), return_stats, batch_sizes is not None)
        inputs = [x, y_onehot, ids] + ([] if batch_sizes is None else [batch_sizes])
        out = run(*[_pad(t, rows) for t in inputs], tf.cast(restart, tf.int64))
        x_adv, stats = out if return_stats else (out, {})
        if rows != n:
            x_adv, stats = x_adv[:n], {k: v[:n] for k, v in stats.items()}
        if not return_stats:
            return x_adv
        if tf.executing_eagerly():
            stats = {k: v.numpy() for k, v in stats.items()}
        stats["loss_path"] = self.loss_path
        return x_adv, stats

    def reset(self) -> None:
        """Restart the sample stream: the next call without `sample_ids` draws the starts of ids 0, 1, ..."""
        self._stream_position.assign(0)

    def forward(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The model's class scores for `x` (its `output_index` output)."""
        return model_outputs.select_output(type(self).__name__, self.model(x, training=training), self.output_index)

    def check_model_output(self, x: Any) -> None:
        """Run the output-kind check now, on (a few samples of) `x`; a no-op after the first time."""
        if self._num_classes is None:
            self._inspect(tf.convert_to_tensor(x, tf.float32)[: model_outputs.PROBE_SAMPLES])

    @property
    def num_classes(self) -> int | None:
        """The model's class count, known once its output was checked (check_model_output or a call)."""
        return self._num_classes

    @property
    def restarts_differ(self) -> bool:
        """Whether restarts start from different random points (FAB's later restarts do, without rand_init)."""
        return True

    def tracing_count(self) -> int:
        """How many times the compiled attack has been traced (for retracing checks)."""
        return sum(f.experimental_get_tracing_count() for f in self._compiled.values())

    # ------------------------------------------------------------------------------------- checking
    def _inputs(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Validated (eager) or converted (inside a tf.function) x and one-hot labels."""
        if tf.executing_eagerly():
            return self._validated(x, y)
        x = tf.convert_to_tensor(x, tf.float32)
        if self._num_classes is None:
            self._inspect_while_tracing(x)
        # Not checked eagerly here: checked in the graph, so that a bad label fails the run instead of
        # becoming an all-zero or soft row that the attack would read as a true class.
        return x, labels.checked_one_hot_tensor(tf.convert_to_tensor(y), self._num_classes, type(self).__name__)

    def _validated(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        name = type(self).__name__
        if isinstance(x, tf.data.Dataset):
            raise TypeError(f"{name}: x is a tf.data.Dataset, but an attack takes one batch: call it per batch "
                            "(for x, y in dataset: ...), or give the dataset to tfadv.evaluation.robust_accuracy, "
                            "auto_attack or check_gradient_masking")
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"{name}: x must be floating point, got dtype {x.dtype.name} (an adversarial example "
                            "is not a grid of integers): convert it on the scale the model reads, e.g. uint8 "
                            "images as x.astype('float32') with clip_max=255, or divided by 255 with clip_max=1")
        x = tf.cast(x, tf.float32)
        expected_rank = _model_input_rank(self.model)
        if x.shape.rank < 2 or (expected_rank is not None and x.shape.rank != expected_rank):
            want = f"rank {expected_rank}" if expected_rank is not None else "rank >= 2"
            raise ValueError(f"{name}: x must be a batch of {want} (N, ...), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: no samples: x has shape {tuple(x.shape)}; give at least one sample")
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(f"{name}: x contains NaN or Inf")
        needs_range = self.clip_min is not None or not self._eps_scale_judged
        low, high = (float(tf.reduce_min(x)), float(tf.reduce_max(x))) if needs_range else (None, None)
        if self.clip_min is not None:
            tolerance = 1e-5 * (self.clip_max - self.clip_min)
            if low < self.clip_min - tolerance or high > self.clip_max + tolerance:
                raise ValueError(
                    f"{name}: x lies in [{low:g}, {high:g}], outside [clip_min, clip_max] = "
                    f"[{self.clip_min:g}, {self.clip_max:g}]"
                )
        if not self._eps_scale_judged:  # said once per attack, on the first data it sees
            self._eps_scale_judged = True
            validation.warn_if_eps_tiny(name, self.eps, self.norm, x.shape[1:], self.clip_min, self.clip_max,
                                        data_span=high - low)
        self.check_model_output(x)
        y_onehot = labels.one_hot_tensor(tf.constant(labels.check(y, self._num_classes, name, n=x.shape[0])),
                                         self._num_classes)
        if not self._label_meaning_judged:  # said once per attack, on the first batch it sees
            self._label_meaning_judged = True
            self._warn_if_labels_look_misread(x[: model_outputs.PROBE_SAMPLES], y_onehot[: model_outputs.PROBE_SAMPLES])
        return x, y_onehot

    def _warn_if_labels_look_misread(self, x: tf.Tensor, y_onehot: tf.Tensor) -> None:
        """`y` means different things to the targeted attacks of the two families: PGD's and FGM's
        (cleverhans') take the target classes, AutoAttack's (APGD, Square, FAB with targeted=True) the true
        labels, choosing their targets among the runner-up classes. Passing one for the other runs without
        error and reports a success of about 100%, so one forward pass of the first samples says when `y`
        looks like the other kind: every sample already classified as its "target", or none as its "label"."""
        targets_given = self.targeted
        true_labels_given = bool(getattr(self, "target_classes", 0))
        n = int(x.shape[0])
        if not (targets_given or true_labels_given) or n < model_outputs.PROBE_SAMPLES:
            return
        predicted = model_outputs.predicted_classes(self.forward(x, training=False))
        agree = int(tf.reduce_sum(tf.cast(tf.equal(predicted, tf.argmax(y_onehot, axis=-1)), tf.int32)))
        name = type(self).__name__
        if targets_given and agree == n:
            validation.warn_caller(
                f"{name}(targeted=True) reads y as the TARGET classes, but the model already classifies each of the "
                f"first {n} samples as its y, so every one counts as a success before any step: y looks like the "
                "true labels. Pass the classes to aim for; for AutoAttack's targeted attack on the true labels use "
                "APGD(targeted=True)", validation.EvaluationWarning)
        if true_labels_given and agree == 0:
            validation.warn_caller(
                f"{name}(targeted=True) reads y as the TRUE labels (AutoAttack's targeted attack, which picks its "
                f"targets among the runner-up classes), but the model classifies none of the first {n} samples as "
                "its y, so every one counts as fooled before any step: y looks like target classes. To aim at given "
                "classes use PGD or FGM with targeted=True", validation.EvaluationWarning)

    def _inspect(self, probe: tf.Tensor, check_gradient: bool = True) -> None:
        """One eager forward pass on a few samples: the class count, the output-kind check and, for an
        attack that follows input gradients, that the output has one at all (require_input_gradient)."""
        with tf.GradientTape() as tape:
            tape.watch(probe)
            y_pred = self.forward(probe, training=False)
        model_outputs.check_class_scores(type(self).__name__, y_pred)
        if self.check_output_kind:
            model_outputs.check_output_kind(
                type(self).__name__, y_pred, self.from_logits, setting=f"from_logits={self.from_logits}",
                to_logits="pass from_logits=True", to_probabilities="pass from_logits=False",
            )
            if self.from_logits:
                model_outputs.check_not_squashed(
                    type(self).__name__, self.model, self.output_index, setting="from_logits=True")
        if self.needs_input_gradient and check_gradient:
            # Here, before any compute: inside the attack a missing gradient would surface only when traced,
            # and FAB's Jacobian (vectorised by pfor) even reads it as zero.
            losses.require_input_gradient(tape.gradient(y_pred, probe), type(self).__name__)
        self._num_classes = int(y_pred.shape[-1])

    def _inspect_while_tracing(self, x: tf.Tensor) -> None:
        """First call inside a tf.function: x is symbolic, so probe the model eagerly on random inputs
        of x's sample shape drawn in the clip range (or around zero when the range is open)."""
        sample_shape = x.shape[1:]
        if not sample_shape.is_fully_defined():
            raise ValueError(
                f"{type(self).__name__}: the first call inside a tf.function needs a known sample shape "
                f"(got {tuple(x.shape)}); call the attack (or check_model_output) eagerly once first"
            )
        with tf.init_scope():
            low, high = (self.clip_min, self.clip_max) if self.clip_min is not None else (-1.0, 1.0)
            shape = [model_outputs.PROBE_SAMPLES] + sample_shape.as_list()
            # init_scope pauses every gradient tape, so no gradient check here: traced, the gradient passes of
            # PGD, FGM, APGD and FAB-T refuse a missing gradient themselves (require_input_gradient).
            self._inspect(tf.random.stateless_uniform(shape, [0, 0], low, high), check_gradient=False)

    def _sample_ids(self, sample_ids: Any, x: tf.Tensor) -> tf.Tensor:
        """The given ids, or the next positions of the sample stream (advancing it)."""
        if sample_ids is None and tf.executing_eagerly():
            # Host integers, read and advanced under a lock: CI twice saw a worker of train_async get a range
            # of the wrong length (24, then 0 ids for 8 samples) from tensors computed off the variable.
            n = int(x.shape[0])
            with self._stream_lock:
                start = int(self._stream_position.numpy())
                self._stream_position.assign(start + n)
            return tf.range(start, start + n, dtype=tf.int64)
        if sample_ids is None:
            n = tf.shape(x, out_type=tf.int64)[0]
            end = self._stream_position.assign_add(n)
            return tf.ensure_shape(tf.range(end - n, end), x.shape[:1])
        ids = tf.convert_to_tensor(sample_ids)
        if tf.executing_eagerly() and (not ids.dtype.is_integer or ids.shape != (x.shape[0],)):
            raise ValueError(
                f"{type(self).__name__}: sample_ids must be {x.shape[0]} integers (one per sample), got "
                f"dtype {ids.dtype.name} and shape {tuple(ids.shape)}"
            )
        return tf.cast(ids, tf.int64)

    def _batch_sizes(self, emulated_batch_size: Any, x: tf.Tensor) -> tf.Tensor | None:
        """(N,) float32: the batch size each sample's loss is averaged over under a mean reduction, or
        None for the real one. Kept apart so a plain call runs the very graph (sum / N) it always ran:
        grappler rewrites a constant 1/N differently from a per-sample divisor (1-ulp differences)."""
        if emulated_batch_size is None:
            return None
        n = tf.shape(x)[0]
        name = type(self).__name__
        if getattr(self, "training", False):
            raise ValueError(
                f"{name}: emulated_batch_size needs the model in inference mode (training=False): with "
                "training=True BatchNorm's batch statistics depend on the real batch, so emulation is not exact"
            )
        sizes = tf.convert_to_tensor(emulated_batch_size)
        if tf.executing_eagerly():
            _check_batch_sizes(name, sizes, x.shape[0])
        return tf.cast(tf.broadcast_to(sizes, [n]), tf.float32)

    # ------------------------------------------------------------------------------------ compiling
    def _compiled_sizes(self, sample_shape: tf.TensorShape) -> list[int]:
        return sorted({k[0] for k in self._compiled if k[1] == tuple(sample_shape) and k[0] is not None})

    def _short(self, n: int | None, sample_shape: tf.TensorShape) -> bool:
        """A batch shorter than one already compiled (a dataset's last batch, a restart's leftovers),
        with the model in inference mode, where padding is exact because rows do not interact."""
        compiled = self._compiled_sizes(sample_shape)
        return n is not None and not getattr(self, "training", False) and bool(compiled) and n < compiled[-1]

    def _padded_rows(self, n: int | None, sample_shape: tf.TensorShape) -> int | None:
        """The compiled batch size a batch of n runs in: n itself, or for a short batch the smallest
        compiled size in [n, next power of two], else that power of two (capped at the largest compiled
        size). Short batches thus compile at most log2(largest) more functions."""
        if not self._short(n, sample_shape):
            return n
        compiled = self._compiled_sizes(sample_shape)
        bucket = min(1 << (n - 1).bit_length(), compiled[-1])
        reusable = [size for size in compiled if n <= size <= bucket]
        return reusable[0] if reusable else bucket

    def _compiled_for(
        self, rows: int | None, sample_shape: tf.TensorShape, classes: int, with_stats: bool, weighted: bool
    ):
        """One tf.function per input signature. Shapes are kept static, batch size included: on CPU a
        free batch dimension measured slower (shape arithmetic moves to run time); `_padded_rows` bounds
        how many batch sizes get compiled. `weighted`: the call passes per-sample batch sizes."""
        key = (rows, tuple(sample_shape), classes, with_stats, weighted)
        if key not in self._compiled:
            signature = [
                tf.TensorSpec((rows, *sample_shape), tf.float32),
                tf.TensorSpec((rows, classes), tf.float32),
                tf.TensorSpec((rows,), tf.int64),
            ] + [tf.TensorSpec((rows,), tf.float32)] * weighted + [tf.TensorSpec((), tf.int64)]

            def attack(x, y_onehot, sample_ids, *rest):
                batch_sizes, restart = rest if weighted else (None, rest[0])
                return self._attack(
                    x, y_onehot, sample_ids=sample_ids, restart=restart, batch_sizes=batch_sizes, with_stats=with_stats
                )

            self._compiled[key] = tracing.compile_once(attack, input_signature=signature, jit_compile=self.jit_compile)
        return self._compiled[key]

    # ------------------------------------------------------------------------------ shared numerics
    def _success(self, y_pred: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
        hit = tf.equal(model_outputs.predicted_classes(y_pred), tf.argmax(y_onehot, axis=-1))
        return hit if self.targeted else tf.logical_not(hit)

    def _start(self, x: tf.Tensor, sample_ids: tf.Tensor, restart: tf.Tensor) -> tf.Tensor:
        if not self.rand_init:
            return x
        if self.seed is None:
            base_seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
        else:
            base_seed = tf.constant(self.seed, tf.int64)
        return geometry.random_start_point(
            x, eps=self.eps, norm=self.norm, seed=base_seed, sample_ids=sample_ids, restart=restart,
            clip_min=self.clip_min, clip_max=self.clip_max, l2_rand_init=self.l2_rand_init,
        )

    def _attack(self, x, y_onehot, *, sample_ids, restart, batch_sizes, with_stats: bool):
        raise NotImplementedError


def _pad(t: tf.Tensor, rows: int | None) -> tf.Tensor:
    """Repeat the first row up to `rows` rows (real, in-range inputs whose results are dropped)."""
    n = t.shape[0]
    if rows is None or n == rows:
        return t
    return tf.concat([t, tf.repeat(t[:1], rows - n, axis=0)], axis=0)


def _check_batch_sizes(name: str, sizes: tf.Tensor, n: int) -> None:
    if not sizes.dtype.is_integer or sizes.shape.rank > 1 or (sizes.shape.rank == 1 and sizes.shape[0] != n):
        raise ValueError(
            f"{name}: emulated_batch_size must be an integer or {n} integers (one per sample), got dtype "
            f"{sizes.dtype.name} and shape {tuple(sizes.shape)}"
        )
    if n and int(tf.reduce_min(sizes)) < 1:
        raise ValueError(f"{name}: emulated_batch_size must be >= 1, got {sizes.numpy()!r}")


def _non_negative(owner: str, name: str, value: float) -> float:
    """A finite number >= 0 (kept for subclasses; see tfadv.validation)."""
    return validation.real(owner, name, value, minimum=0.0)


def _model_input_rank(model: keras.Model) -> int | None:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return len(inputs[0].shape)
