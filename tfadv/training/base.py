"""What every adversarial-training model shares: the threat model, coupled weight decay, the weight update
on a crafted batch, clean/adversarial metrics and the inference-mode evaluation attack.

Subclasses override `train_step` only. Build them from any Keras model (Sequential, Functional or
subclassed; the trainer shares its weights), or functional-style from `(inputs, outputs)`;
keras.models.clone_model clones one with its adversarial settings:

    model = FastAdversarialModel(network, eps=8 / 255, alpha=10 / 255)
    model.compile(optimizer=keras.optimizers.SGD(CyclicLearningRate(0.2, total_steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, ...)

Metric names say which inputs they were computed on: `adv_` = adversarial inputs, no prefix = clean
inputs, in fit, evaluate and callbacks alike. `fit` runs no clean pass, so it logs `adv_loss` (the
training objective, weight decay included), `adv_accuracy` and `adv_<name>` of each compiled metric on the
batch the weights were updated on (tfadv.training.metrics). `evaluate` logs `loss`, `accuracy` and the
compiled metrics on clean inputs, and `adv_loss`, `adv_accuracy` and the `adv_` compiled metrics
under a PGD attack (`eval_steps` steps of `eval_step_size`, random start) with the model in inference
mode; its starts are keyed on the batch's position in the call, so every call returns the same numbers (in
one compilation mode: XLA draws other starts, see `seed`). Weight decay is in every logged loss, as Keras'
regularization losses are in `loss` and `val_loss`. x may be one array or tensor, or a one-entry dict keyed
by the model's input name (`adversarial_input` for a wrapped model).
As in Keras, sample and class weights weigh the loss and the `weighted_metrics`, not `accuracy`,
`adv_accuracy` or the `metrics`. The epoch logs are the metrics over all the epoch's samples (under a
distribution strategy too), and Keras' callbacks in mode="auto" (ModelCheckpoint, EarlyStopping,
ReduceLROnPlateau) know which way each of these metrics improves.

After each compile, before the first step of fit, evaluate, train_on_batch or test_on_batch, the compiled
loss's `from_logits` (however Keras was given the loss) is checked against what the model outputs (as
tfadv.attacks do; `check_output_kind=False` opts out). Inputs outside [clip_min, clip_max] stop fit and
evaluate with an error naming the range, under XLA too (tfadv.training.input_range).
"""
from __future__ import annotations

import secrets
import sys
import weakref
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, labels, model_outputs, precision, tracing, validation
from tfadv.training import crafting, input_range, metrics, schedules, wrapping

WeightDecayOn = Literal["all", "kernels"]


def correct(y: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """1.0 where the top prediction is the label (tfadv.labels: ids (N,) or (N, 1), or one-hot (N, C))."""
    model_outputs.check_class_scores("adversarial training", y_pred)  # at trace time: the static shape
    predicted = tf.cast(model_outputs.predicted_classes(y_pred), tf.int32)
    return tf.cast(tf.equal(predicted, labels.ids_tensor(y)), tf.float32)


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


class _Cloneable(type):
    """Lets keras.models.clone_model clone a wrapper. Keras rebuilds a functional subclass as
    `cls(inputs, outputs, name=...)`, which carries none of the adversarial settings: those of the model being
    cloned are filled in (the clone's layers and weights are Keras', fresh or from the user's clone_function)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        source = wrapping.model_being_cloned(sys._getframe(1))
        if type(source) is cls:
            kwargs = {**source.adversarial_settings(), **kwargs}
        return super().__call__(*args, **kwargs)


class AdversarialModel(keras.Model, metaclass=_Cloneable):
    """Base class; use PGDAdversarialModel, FastAdversarialModel, FreeAdversarialModel or StaleAdversarialModel.

    Args (keyword-only, shared by all):
        eps: radius of the threat model, in input units (8/255 for [0, 1] images).
        norm: "inf" or "2".
        clip_min, clip_max: valid input range (None = open).
        attack_training_mode: BatchNorm/Dropout mode while crafting the *training* attack. True = batch
            statistics, moving averages updated by every attack pass (Wong, Shafahi, Madry's code);
            False = inference mode (MadryLab/robustness). Evaluation attacks always use inference mode.
        weight_decay: coupled L2, wd/2 * sum ||w||^2 added to the loss before loss scaling, which is what
            PyTorch's SGD(weight_decay=wd) and Madry's `wd * sum(tf.nn.l2_loss(w))` compute. Keep the
            optimizer's own (decoupled) weight_decay unset when reproducing those codes. As Keras does with
            regularization losses, the logged losses include it everywhere: fit's adv_loss and evaluate's
            loss and adv_loss (so val_adv_loss is the quantity adv_loss is).
        weight_decay_on: "all" trainable variables (PyTorch SGD: BN and biases too) or "kernels" only
            (Madry/Shafahi TF code).
        eval_steps, eval_step_size: the PGD attack of `evaluate` (default step eps/4 = 2/255 at 8/255, as
            Wong et al. and the seed evaluate); eval_steps=0 reports clean metrics only.
        seed: seeds every random start. The training attack's draws are keyed on (seed, step, replica, row),
            so a run resumed from a checkpoint draws what the uninterrupted run would have drawn; evaluate's on
            (seed + 1, the sample's position in the evaluated data), so it gives the same numbers on every call,
            for any batch size or replica count (crafting.evaluation_start). Both hold in the same compilation
            mode: TensorFlow's XLA lowering of its stateless generators draws other numbers than its graph
            and eager kernels, so steps compiled with XLA (jit_compile=True, or Keras' default "auto" on a
            GPU) draw differently from steps without it, for the same seed.
        check_output_kind: check the compiled loss's from_logits against the model's outputs before the
            first step (False for a deliberately unusual head).
        l2_normalization: for norm "2", the attacks' "clamped" (cleverhans: a 1e-12 floor on the squared
            gradient norm, which under a mean loss shortens confident samples' steps more the larger the
            batch: warned about after compile) or "exact" (each sample's gradient normalised whatever its scale).
        input_shape, output_index (wrapping a model only): the per-sample input shape of a subclassed
            model that has not been called yet; which output of a multi-output model holds the scores.
    """

    #: Keys of `get_config` owned by this class; subclasses extend it.
    _adversarial_keys: tuple[str, ...] = (
        "eps", "norm", "clip_min", "clip_max", "attack_training_mode", "weight_decay",
        "weight_decay_on", "eval_steps", "eval_step_size", "seed", "check_output_kind", "l2_normalization",
    )
    #: Free and Stale keep per-row state for `batch_size` rows and refuse larger batches.
    _per_row_state = False
    #: The compiled metrics' copies for adversarial inputs (tfadv.training.metrics) and the compiled metrics
    #: they copy. Kept out of Keras' attribute tracking, as Keras keeps its own compiled metrics.
    _adversarial_metrics: metrics.AdversarialMetrics | None = None
    _adversarial_metrics_of: Any = None
    #: adv_accuracy, accuracy and adv_loss as one entry of `metrics` (metrics.OwnMetrics).
    _own_metrics: metrics.OwnMetrics | None = None
    #: A weak reference to the compiled loss the checks before the first step were made for: they are made
    #: again after each compile (a weak reference, as Keras' saving would store a strong one as the loss's).
    _checked_loss: weakref.ref | None = None

    def __init__(
        self,
        *args: Any,
        eps: float,
        norm: str = "inf",
        clip_min: float | None = 0.0,
        clip_max: float | None = 1.0,
        attack_training_mode: bool = True,
        weight_decay: float = 0.0,
        weight_decay_on: WeightDecayOn = "all",
        eval_steps: int = 10,
        eval_step_size: float | None = None,
        seed: int | None = None,
        check_output_kind: bool = True,
        l2_normalization: geometry.L2Normalization = "clamped",
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        args, kwargs = wrapping.functional_arguments(owner, args, kwargs)
        super().__init__(*args, **kwargs)
        self.eps = validation.real(owner, "eps", eps, positive=True)
        try:
            self.norm = geometry.canonical_norm(norm)
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None
        self.clip_min = validation.optional_real(owner, "clip_min", clip_min)
        self.clip_max = validation.optional_real(owner, "clip_max", clip_max)
        if clip_min is not None and clip_max is not None and not self.clip_min < self.clip_max:
            raise ValueError(f"{owner}: clip_min must be below clip_max, got clip_min={clip_min}, clip_max={clip_max}")
        self.attack_training_mode = validation.flag(owner, "attack_training_mode", attack_training_mode)
        self.weight_decay = validation.real(owner, "weight_decay", weight_decay, minimum=0.0)
        if weight_decay_on not in ("all", "kernels"):
            raise ValueError(f"{owner}: weight_decay_on must be 'all' or 'kernels', got {weight_decay_on!r}")
        self.weight_decay_on = weight_decay_on
        self.eval_steps = validation.integer(owner, "eval_steps", eval_steps, minimum=0)
        self.eval_step_size = (
            self.eps / 4 if eval_step_size is None else validation.real(owner, "eval_step_size", eval_step_size, positive=True)
        )
        validation.warn_if_short_reach(f"{owner} (the attack of evaluate)", self.eps, self.eval_steps,
                                       self.eval_step_size)
        self.seed = secrets.randbelow(2**31) if seed is None else validation.integer(owner, "seed", seed)
        self.check_output_kind = validation.flag(owner, "check_output_kind", check_output_kind)
        if l2_normalization not in ("clamped", "exact"):
            raise ValueError(f"{owner}: l2_normalization must be 'clamped' or 'exact', got {l2_normalization!r}")
        self.l2_normalization = l2_normalization

        self.adv_accuracy = metrics.tracker("adv_accuracy", "up")
        self.clean_accuracy = metrics.tracker("accuracy", "up")
        self.adv_loss = metrics.tracker("adv_loss", "down")
        # Set around Keras' attribute tracking: the metrics above are tracked (and saved) as attributes already,
        # and the input-range count is scratch state, kept out of the saved model and of the logs.
        object.__setattr__(self, "_own_metrics", metrics.OwnMetrics([self.adv_accuracy, self.clean_accuracy,
                                                                     self.adv_loss]))
        object.__setattr__(self, "input_range", input_range.InputRange(owner, self.clip_min, self.clip_max))
        # Counters keying the random starts: saved with the weights, advanced once per step.
        self.train_counter = keras.Variable(
            0, dtype="int64", trainable=False, aggregation="only_first_replica", name="adversarial_train_counter"
        )
        self.eval_counter = keras.Variable(
            0, dtype="int64", trainable=False, aggregation="only_first_replica", name="adversarial_eval_counter"
        )

    # ----------------------------------------------------------------------------------------------
    # Checks before the first compiled step.

    #: Optimizer updates per fit step (Free-m makes m).
    updates_per_step = 1

    def fit(self, *args: Any, **kwargs: Any):
        given = wrapping.fit_arguments(args, kwargs)
        self.check_weights(wrapping.given_weights(given.get("x"), given.get("sample_weight"),
                                                  given.get("class_weight")))
        self.check_before_compute(given.get("batch_size"), given.get("x"), fit_default=True)
        if self.compiled:
            steps = wrapping.planned_fit_steps(given)
            schedules.warn_if_schedule_ends_early(type(self).__name__, self.optimizer,
                                                  None if steps is None else steps * self.updates_per_step)
        args, kwargs = wrapping.with_callback(keras.Model.fit, args, kwargs, input_range.RangeCheck(self.input_range))
        return super().fit(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any):
        self.check_before_compute(None)
        self.eval_counter.assign(0)  # samples evaluated so far: the same starts on every call
        args, kwargs = wrapping.with_callback(keras.Model.evaluate, args, kwargs,
                                              input_range.RangeCheck(self.input_range))
        return super().evaluate(*args, **kwargs)

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> Any:
        """Keras' train_on_batch, with the checks fit makes (its logs are read on return, so the input-range
        count costs no extra wait)."""
        self.check_weights(wrapping.given_weights(x, sample_weight, class_weight))
        self.check_before_compute(wrapping.leading_size(x), x)
        self.input_range.reset()
        logs = super().train_on_batch(x, y, sample_weight=sample_weight, class_weight=class_weight,
                                      return_dict=return_dict)
        self.input_range.raise_if_any("the batch given to train_on_batch")
        return logs

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Keras' test_on_batch, with the checks evaluate makes."""
        self.check_before_compute(None)
        self.input_range.reset()
        logs = super().test_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)
        self.input_range.raise_if_any("the batch given to test_on_batch")
        return logs

    def check_before_compute(self, batch_size: Any = None, data: Any = None, *, fit_default: bool = False) -> None:
        """The output-kind and eps-scale checks (once per compile) and, for per-row state, the fit batch size
        (fit_default: None is Keras' default of 32 for arrays). Also builds the optimizer now, as Keras does
        under a distribution strategy: a traced step that raises (a trace-time check) then leaves no
        half-created optimizer variables behind to break the next fit."""
        owner = type(self).__name__
        if self._per_row_state:
            wrapping.check_batch_size(owner, self.batch_size, batch_size, data, fit_default=fit_default)
        if not self.compiled:
            return
        if not self.checked_since_compile():
            if self.check_output_kind:
                wrapping.check_output_kind(owner, self, (self.clip_min, self.clip_max))
            span = _span(self.single_input(data)) if self.clip_min is None else None
            validation.warn_if_eps_tiny(owner, self.eps, self.norm, self.inputs[0].shape[1:], self.clip_min,
                                        self.clip_max, data_span=span)
            self.warn_if_l2_steps_shrink_with_the_batch()
            self.mark_checked()
        if not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def warn_if_l2_steps_shrink_with_the_batch(self) -> None:
        """The attacks' L2 pitfall (Redgrave & Crum), here through the compiled loss: its mean divides each
        sample's input gradient by the batch size before the clamped normalisation's 1e-12 floor."""
        if self.norm != "2" or self.l2_normalization != "clamped" or getattr(self.loss, "reduction", None) == "sum":
            return
        validation.warn_caller(
            f"{type(self).__name__}: norm=2 crafting under the compiled loss's mean divides each sample's input "
            "gradient by the batch size before the clamped L2 normalisation's 1e-12 floor, so confident samples take "
            "shorter steps and the adversarial batches (and adv_accuracy in fit and evaluate) are weaker the larger "
            "the batch (Redgrave & Crum). Pass l2_normalization='exact' to normalise each sample's gradient whatever "
            "its scale", validation.EvaluationWarning)

    def check_weights(self, given: str | None) -> None:
        """Refuse sample or class weights (`given` says which were given, None: none) before anything is
        traced, if this model cannot weigh its samples (StaleAdversarialModel overrides this)."""

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        # Keras builds the compiled metrics (and the adversarial copies, through compute_metrics) before the
        # first step only under a distribution strategy; otherwise while tracing train_step. A step refused at
        # trace time (Stale given weights by a generator) then leaves a tf.function that may no longer create
        # them, and the corrected next fit fails ("Creating variables on a non-first call"). So build them
        # first, from the batches' specs: unlike Keras' distributed path, this draws no batch from the data,
        # which would start a new pass over it (a shuffled dataset would then train on another order).
        if self._distribute_strategy is not None:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
            return
        if data_batch is None:
            data_batch = _batch_spec(iterator)
        if data_batch is not None:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data_batch)
            with self.distribute_strategy.scope():  # the input as the steps take it (unpack)
                self._symbolic_build(data_batch=(self.single_input(x), y, sample_weight))

    def checked_since_compile(self) -> bool:
        """Were the checks made for the loss of the last compile? (Each compile makes a new compiled loss;
        keyed on it, not on `compile`, which Keras' loading calls through compile_from_config.)"""
        return self._checked_loss is not None and self._checked_loss() is self._compiled_loss_key()

    def mark_checked(self) -> None:
        object.__setattr__(self, "_checked_loss", weakref.ref(self._compiled_loss_key()))

    def _compiled_loss_key(self) -> Any:
        # Compiled without a loss (nothing to check against, and no step could run): the optimizer.
        compiled = getattr(self, "_compile_loss", None)
        return compiled if compiled is not None else self.optimizer

    def training_state(self) -> list[tf.Variable]:
        """What the train step carries from one batch to the next besides the weights and the optimizer
        (Free's perturbation, Stale's queue). Keras' checkpoints leave it out; TimedBackupAndRestore saves it."""
        return []

    def check_rows(self, x: tf.Tensor) -> None:
        """Trace-time check of a static batch size against the per-row state's `batch_size` rows."""
        rows = x.shape[0]
        if rows is not None and rows > self.batch_size:
            raise ValueError(
                f"{type(self).__name__} was built with batch_size={self.batch_size}, but fit feeds batches of "
                f"{rows}: build it with batch_size={rows} (or more), or batch the data by at most {self.batch_size}"
            )

    # ----------------------------------------------------------------------------------------------
    # Pieces the subclasses' train_step is made of.

    def unpack(self, data) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """(x, y, sample_weight), x as float32 and checked to lie in [clip_min, clip_max]: an image in
        [0, 255] attacked with eps 8/255 would otherwise train silently against a vanishing threat
        (tfadv.training.input_range: asserts, and a count read by fit and evaluate, as XLA drops asserts).
        x may also be a one-entry dict keyed by the model's input name, as for any functional model."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.cast(self.single_input(x), tf.float32)
        return self.input_range.checked(x), y, sample_weight

    @property
    def input_name(self) -> str:
        """The key of the model's input in a dict of inputs: the key of a functional model built on a dict,
        else the name of its input layer (`adversarial_input` for a wrapped model), as Keras' input check names it."""
        struct = self._inputs_struct
        return next(iter(struct)) if isinstance(struct, dict) else self.inputs[0]._keras_history.operation.name

    def single_input(self, x: Any) -> Any:
        """x itself, or the input a one-entry dict (or one-element list) holds (wrapping.single_input)."""
        return wrapping.single_input(type(self).__name__, x, self.input_name)

    def attack_loss(self, y: tf.Tensor, training: bool):
        """loss_fn(x_adv) for crafting: the compiled loss (crafting applies the optimizer's loss scale)."""

        def loss_fn(x_adv: tf.Tensor) -> tf.Tensor:
            y_pred = self(x_adv, training=training)
            return self.compute_loss(x=x_adv, y=y, y_pred=y_pred, training=training)

        return loss_fn

    @property
    def threat(self) -> crafting.Threat:
        return crafting.Threat(self.eps, self.norm, self.clip_min, self.clip_max, self.l2_normalization)

    @property
    def guard_nonfinite(self) -> bool:
        """Zero non-finite input-gradient entries while crafting? Only where float16 can overflow."""
        return precision.may_overflow(self)

    def random_start(self, x: tf.Tensor) -> tf.Tensor:
        """The training attack's starting point, keyed on (seed, row, train_counter)."""
        return crafting.random_start(x, threat=self.threat, seed=self.seed, counter=self.train_counter)

    def perturb(
        self, x: tf.Tensor, y: tf.Tensor, start: tf.Tensor, *, steps: int, step_size: float, training: bool
    ) -> tf.Tensor:
        """x_adv after `steps` PGD steps from the point `start`, against the compiled loss, the model in
        `training` mode (the steps of tfadv.attacks.PGD)."""
        return crafting.pgd(
            self.attack_loss(y, training=training), x, start, steps=steps, step_size=step_size,
            threat=self.threat, scale=precision.loss_scale(self.optimizer), guard_nonfinite=self.guard_nonfinite,
            own_graph=tracing.own_graph_helps(self),
        )

    def l2_penalty(self) -> tf.Tensor:
        """wd/2 * sum ||w||^2, divided by the replica count like Keras' own losses (gradients are summed)."""
        if self.weight_decay == 0.0:
            return tf.constant(0.0)
        variables = self.trainable_variables
        if self.weight_decay_on == "kernels":
            variables = [v for v in variables if v.path.split("/")[-1].endswith("kernel")]
        total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
        return 0.5 * self.weight_decay * total / num_replicas()

    def descent_loss(self, x: tf.Tensor, y: tf.Tensor, sample_weight: tf.Tensor | None):
        """Forward pass in training mode on the batch the weights learn from; returns (y_pred, loss)."""
        y_pred = self(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        return y_pred, loss + tf.cast(self.l2_penalty(), loss.dtype)

    def apply_gradients(self, tape: tf.GradientTape, loss: tf.Tensor) -> None:
        """Weight update with Keras' loss scaling (scale_loss was applied inside the tape by the caller)."""
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)

    def fit_on_batch(self, x_adv: tf.Tensor, y: tf.Tensor, sample_weight: tf.Tensor | None = None) -> dict:
        """One weight update on an adversarial batch (one forward, one backward), metrics, logs."""
        with tf.GradientTape() as tape:
            y_pred, loss = self.descent_loss(x_adv, y, sample_weight)
            scaled = self.optimizer.scale_loss(loss)
        self.apply_gradients(tape, scaled)
        self.train_counter.assign_add(1)
        return self.record_training(x_adv, y, y_pred, loss, sample_weight)

    @property
    def adversarial_metrics(self) -> metrics.AdversarialMetrics | None:
        """The compiled metrics' copies for adversarial inputs, made afresh for each compile. (Made here, not
        in an overridden `compile`, which would stop Keras from recompiling a loaded model.)"""
        compiled = getattr(self, "_compile_metrics", None)
        if self._adversarial_metrics_of is not compiled:
            copy = metrics.adversarial_copy(type(self).__name__, compiled)
            object.__setattr__(self, "_adversarial_metrics", copy)
            object.__setattr__(self, "_adversarial_metrics_of", compiled)
        return self._adversarial_metrics

    @property
    def metrics(self) -> list:
        """Keras' metrics, with the adversarial copies of the compiled ones right after the compiled ones, and
        the wrapper's own metrics last, as one OwnMetrics entry (where Keras' callbacks find their direction)."""
        listed, adversarial, own = super().metrics, self.adversarial_metrics, self._own_metrics
        if adversarial is not None:
            after = listed.index(self._compile_metrics) + 1 if self._compile_metrics in listed else len(listed)
            listed.insert(after, adversarial)
        if own is not None:
            listed = [metric for metric in listed if not any(metric is mine for mine in own.metrics)] + [own]
        return listed

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Under a distribution strategy Keras builds the compiled metrics symbolically, in its scope, through
        # this method; the adversarial copies are built with them (variables cannot be made in a replica).
        adversarial = self.adversarial_metrics
        if adversarial is not None and not adversarial.built:
            adversarial.build(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def build_adversarial_metrics(self, y_spec: tf.TensorSpec) -> None:
        """Build the adversarial copies now, in the current (strategy) scope, for labels like `y_spec`: what
        Keras' fit does for the compiled metrics, for loops that drive train_step themselves."""
        adversarial = self.adversarial_metrics
        if adversarial is not None and not adversarial.built:
            output = self.outputs[0]
            adversarial.build(keras.KerasTensor(y_spec.shape, y_spec.dtype.name),
                              keras.KerasTensor((None,) + tuple(output.shape[1:]), output.dtype))

    def record_training(self, x_adv, y, y_pred, loss, sample_weight) -> dict:
        """Metrics of the batch the weights were updated on: adversarial inputs, so `adv_` names."""
        self.record_adversarial(x_adv, y, y_pred, loss, sample_weight)
        return self.training_logs()

    def record_adversarial(self, x_adv, y, y_pred, loss, sample_weight) -> None:
        """adv_loss, adv_accuracy and the compiled metrics' adversarial copies, on one adversarial batch.
        As in Keras, sample weights weigh the loss and the weighted_metrics only (adv_accuracy is a `metrics=`)."""
        self.adv_loss.update_state(loss * num_replicas(), sample_weight=tf.shape(x_adv)[0])
        self.adv_accuracy.update_state(correct(y, y_pred))
        adversarial = self.adversarial_metrics
        if adversarial is not None:
            adversarial.update_state(y, y_pred, sample_weight=sample_weight)

    def training_logs(self) -> dict:
        """What fit logs: the adversarial loss, accuracy and compiled metrics (fit pays for no clean pass).
        A compiled metric named like one of the wrapper's (`weighted_metrics=["accuracy"]`) is the one logged:
        the user asked for it by name."""
        logs = {"adv_loss": self.adv_loss.result(), "adv_accuracy": self.adv_accuracy.result()}
        adversarial = self.adversarial_metrics
        if adversarial is not None and adversarial.built:
            logs.update(adversarial.result())
        return logs

    def reset_metrics(self) -> None:
        """Keras' reset, plus the compiled metric objects while Keras has not built them: they are built in
        the first evaluate (fit never computes them), and Keras skips an unbuilt CompileMetrics, so a metric
        object the user had used before (one `metrics=[AUC()]` list compiled into two models) would carry its
        old counts into the first evaluate after fit."""
        super().reset_metrics()
        compiled = getattr(self, "_compile_metrics", None)
        if compiled is not None and not compiled.built:
            for metric in keras.tree.flatten([compiled._user_metrics, compiled._user_weighted_metrics]):
                if isinstance(metric, keras.metrics.Metric):
                    metric.reset_state()

    def get_metrics_result(self) -> dict:
        """Keras' metric results, without compiled metrics that were never built: compiled metrics are
        computed on clean inputs, i.e. in evaluate only, so during fit they stay unbuilt. A compiled metric
        named like one of the wrapper's own (a compiled "accuracy") wins: the user asked for it by name."""
        results = {}
        for metric in self.metrics:
            if not getattr(metric, "built", True):
                continue
            result = metric.result()
            named = result if isinstance(result, dict) else {metric.name: result}
            if metric is self._own_metrics:  # listed last (see metrics)
                for name, value in named.items():
                    results.setdefault(name, value)
            else:
                results.update(named)
        if tf.executing_eagerly():
            results = {name: float(value) if np.ndim(value) == 0 else np.asarray(value) for name, value in results.items()}
        return results

    def _flatten_metrics_in_order(self, logs: dict) -> Any:
        # The list form of evaluate (return_dict=False). Keras lists a name once per metric object that has it,
        # and a compiled "accuracy" shares its name with the wrapper's clean accuracy: each name once here.
        names: list[str] = []
        for metric in self.metrics:
            inner = metric.metrics if isinstance(metric, (metrics.CompileMetrics, metrics.MetricsList)) else [metric]
            for name in (m.name for m in inner):
                if name in logs and name not in names:
                    names.append(name)
        values = [logs[name] for name in names + sorted(set(logs) - set(names))]
        return values[0] if len(values) == 1 else values

    def _get_metrics_result_or_logs(self, logs: Any) -> Any:
        # Keras takes the metrics' own results for the epoch logs only when their names equal the step's logs,
        # and here they never do (fit computes no clean metrics; evaluate with eval_steps=0 no adversarial
        # ones). Keras would then log the last step's values: under a distribution strategy, a mean of the
        # replicas' own running means, not the metric over all samples. So: the metrics' results for the names
        # the step logs (a name no metric has, Stale's `staleness`, keeps the step's value).
        if not isinstance(logs, dict):
            return logs
        results = self.get_metrics_result()
        return {name: results.get(name, value) for name, value in logs.items()}

    def clean_logs(self) -> dict:
        """The metric results without any computed on adversarial inputs (evaluate with eval_steps=0)."""
        names = {"adv_loss", "adv_accuracy"}
        if self.adversarial_metrics is not None:
            names.update(metric.name for metric in self.adversarial_metrics.metrics)
        return {name: value for name, value in self.get_metrics_result().items() if name not in names}

    # ----------------------------------------------------------------------------------------------
    # Evaluation: clean metrics plus an inference-mode PGD attack.

    def craft_eval(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """The evaluation attack: PGD with random start, model in inference mode."""
        start, batch = crafting.evaluation_start(x, threat=self.threat, seed=self.seed + 1,
                                                 samples_before=self.eval_counter)
        self.eval_counter.assign_add(batch)
        return self.perturb(x, y, start, steps=self.eval_steps, step_size=self.eval_step_size, training=False)

    def evaluation_loss(self, x, y, y_pred, sample_weight) -> tf.Tensor:
        """The compiled loss plus weight decay: the quantity fit logs as adv_loss, so that, as in Keras
        (whose loss and val_loss both include the regularization losses), the logged losses of training and
        evaluation are the same quantity."""
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        return loss + tf.cast(self.l2_penalty(), loss.dtype)

    def test_step(self, data):
        x, y, sample_weight = self.unpack(data)
        y_pred = self(x, training=False)
        loss = self.evaluation_loss(x, y, y_pred, sample_weight)
        self._loss_tracker.update_state(loss * num_replicas(), sample_weight=tf.shape(x)[0])
        self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        self.clean_accuracy.update_state(correct(y, y_pred))  # unweighted, like Keras' `metrics=`
        if self.eval_steps == 0:
            return self.clean_logs()
        x_adv = self.craft_eval(x, y)
        adv_pred = self(x_adv, training=False)
        adv_loss = self.evaluation_loss(x_adv, y, adv_pred, sample_weight)
        self.record_adversarial(x_adv, y, adv_pred, adv_loss, sample_weight)
        return self.get_metrics_result()

    def adversarial_settings(self) -> dict[str, Any]:
        """The constructor's adversarial keyword arguments (eps, steps, seed, ...) as this model holds them."""
        return {key: getattr(self, key) for key in self._adversarial_keys}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self.adversarial_settings())
        return config


def _span(x: Any) -> float | None:
    """max - min of fit's x when it is an array (what an open clip range leaves eps to be judged against)."""
    if isinstance(x, (np.ndarray, tf.Tensor)) and np.size(x):
        values = np.asarray(x)
        return float(values.max() - values.min())
    return None


def _batch_spec(iterator: Any) -> Any:
    """The TensorSpecs of the batches of Keras' epoch iterator (its dataset's element_spec), None if unknown."""
    dataset = getattr(iterator, "_distributed_dataset", None)
    return getattr(dataset, "element_spec", None)


def _positive(owner: str, name: str, value: Any) -> float:
    return validation.real(owner, name, value, positive=True)


def _count(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    return validation.integer(owner, name, value, minimum=minimum)
