"""Free adversarial training (Shafahi et al. 2019): minibatch replay with one backward pass per replay."""
from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from tfadv import geometry, precision, validation
from tfadv.training import crafting
from tfadv.training.base import AdversarialModel


def per_replica_state(shape: tuple[int, ...], dtype: tf.DType, name: str, initial=0) -> tf.Variable:
    """Training state each replica keeps for its own slice of the batch (sync-on-read: never all-reduced).

    A plain tf.Variable, so Keras saving ignores it: a saved model holds the weights, not this scratch
    state. TimedBackupAndRestore saves it with its checkpoints (the model's `training_state`), so that a
    resumed run goes on from it; Keras' own BackupAndRestore does not, and a run it resumes starts it anew.
    """
    return tf.Variable(
        tf.fill(shape, tf.constant(initial, dtype)),
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def batch_rows(variable: tf.Variable, n: tf.Tensor) -> tf.Tensor:
    """The first n rows of a per-replica buffer sized for the largest batch, refusing larger batches."""
    capacity = variable.shape[0]
    check = tf.debugging.assert_less_equal(
        n, capacity, message=f"batch larger than the batch_size={capacity} this model was built for"
    )
    with tf.control_dependencies([check]):
        return variable[:n]


def replace_rows(variable: tf.Variable, rows: tf.Tensor) -> None:
    """Overwrite the first len(rows) rows; the rest keep their values (a short last batch touches a slice)."""
    n = tf.shape(rows)[0]
    variable.assign(tf.concat([rows, variable[n:]], axis=0))


@keras.saving.register_keras_serializable(package="tfadv")
class FreeAdversarialModel(AdversarialModel):
    """Free-m (Shafahi et al. Alg. 1): each minibatch is replayed m = `replays` times; one forward/backward
    on x + delta gives both the weight gradient and the input gradient:

        g_theta, g_delta = grad_{theta, delta} l(f(x + delta), y)
        delta <- clip(Proj_eps(delta + step_size * sign(g_delta)), valid range of x);  theta <- theta - lr g_theta

    delta (zeros at start) persists across replays *and* minibatches; it has `batch_size` rows and a short
    last batch uses (and updates) its first rows, as fast_adversarial/FreeAdversarialTraining slice it.
    step_size defaults to eps (Shafahi et al.). The pass is the training forward, so BatchNorm necessarily
    runs in training mode while crafting.

    Which reference's inputs (clip_inputs): by default (False) this is fast_adversarial's train_free.py (Wong
    et al.), which the Capaldi & Capozzi seed runs: delta is clipped to the valid range of the batch it was
    computed on, so the first replay of each new batch trains on x + delta with the previous batch's delta,
    which can leave [clip_min, clip_max] by up to eps (later replays stay inside). clip_inputs=True is
    Shafahi et al.'s TF code and FreeAdversarialTraining: every replay trains on clip(x + delta, clip_min,
    clip_max) (the input gradient is zero where the clip is active), and delta is kept in the eps ball only:
    delta <- Proj_eps(delta + step_size * sign(g_delta)).

    One `fit` step = one minibatch = m optimizer updates, so `optimizer.iterations` (and a schedule keyed
    on it) advances m per batch: size a cyclic schedule as epochs * steps_per_epoch * m. Epoch convention:
    Shafahi et al. run N_ep / m passes over the data (equal cost to N_ep clean epochs); fast_adversarial's
    `--epochs E` and the Capaldi & Capozzi seed run E passes of m replays each (the seed's "45 epochs" at
    m=8 are 360 replay-epochs). Pass `epochs=` to fit accordingly and say which one you reproduce.
    """

    _adversarial_keys = AdversarialModel._adversarial_keys + ("replays", "batch_size", "step_size", "clip_inputs")
    _per_row_state = True

    def __init__(
        self,
        *args: Any,
        eps: float,
        replays: int,
        batch_size: int,
        step_size: float | None = None,
        clip_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("attack_training_mode", True) is not True:
            raise ValueError(
                "FreeAdversarialModel crafts from the training forward pass itself, so BatchNorm runs in "
                "training mode while crafting: attack_training_mode must be True"
            )
        super().__init__(*args, eps=eps, **kwargs)
        owner = type(self).__name__
        self.replays = self.updates_per_step = validation.integer(owner, "replays", replays, minimum=1)
        self.batch_size = validation.integer(owner, "batch_size", batch_size, minimum=1)
        self.step_size = self.eps if step_size is None else validation.real(owner, "step_size", step_size, positive=True)
        self.clip_inputs = validation.flag(owner, "clip_inputs", clip_inputs)
        input_shape = tuple(self.inputs[0].shape[1:])
        if any(d is None for d in input_shape):
            raise ValueError(f"FreeAdversarialModel needs a fully known input shape, got {input_shape}")
        self.delta = per_replica_state((self.batch_size,) + input_shape, tf.float32, "free_delta")

    def training_state(self) -> list[tf.Variable]:
        return [self.delta]

    def train_step(self, data):
        x, y, sample_weight = self.unpack(data)
        self.check_rows(x)
        logs = {}
        for _ in range(self.replays):
            delta = batch_rows(self.delta, tf.shape(x)[0])
            weights = self.trainable_variables
            with tf.GradientTape() as tape:
                tape.watch(delta)
                x_adv = self.replayed_input(x, delta)
                y_pred, loss = self.descent_loss(x_adv, y, sample_weight)
                scaled = self.optimizer.scale_loss(loss)
            grad_delta, *grad_weights = tape.gradient(scaled, [delta] + weights)
            scale = precision.loss_scale(self.optimizer)
            if scale is not None:  # the weight gradients are unscaled by the optimizer, this one here
                grad_delta = grad_delta / scale
            replace_rows(self.delta, self.stepped_delta(x, delta, grad_delta))
            self.optimizer.apply(grad_weights, weights)
            self.train_counter.assign_add(1)
            logs = self.record_training(x_adv, y, y_pred, loss, sample_weight)
        return logs

    def replayed_input(self, x: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        """What a replay trains on: x + delta (Wong et al.), or clipped to the valid range (clip_inputs)."""
        x_adv = x + delta
        if self.clip_inputs:
            x_adv = geometry.clip_to_range(x_adv, self.clip_min, self.clip_max)
        return x_adv

    def stepped_delta(self, x: tf.Tensor, delta: tf.Tensor, grad_delta: tf.Tensor) -> tf.Tensor:
        """delta after one ascent step: projected onto the eps ball and, unless clip_inputs (whose replays
        clip x + delta themselves, as Shafahi et al. do), clipped to the valid range of this batch."""
        threat = dataclasses.replace(self.threat, clip_min=None, clip_max=None) if self.clip_inputs else self.threat
        stepped = crafting.ascent_step(x, x + delta, grad_delta, step_size=self.step_size, threat=threat,
                                       guard_nonfinite=self.guard_nonfinite)
        return stepped - x
