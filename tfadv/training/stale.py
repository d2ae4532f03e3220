"""Adversarial training on stale adversarial batches (Bhat, Tsipras & Madry 2018, Sec. 5)."""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfadv import labels, validation
from tfadv.training.free import per_replica_state
from tfadv.training.pgd import PGDAdversarialModel


@keras.saving.register_keras_serializable(package="tfadv")
class StaleAdversarialModel(PGDAdversarialModel):
    """PGD training through a FIFO of `staleness` = s adversarial batches (Bhat et al.'s simulated staleness).

    Each step crafts a PGD batch from the incoming data with the current weights and enqueues it; the weight
    update uses the batch dequeued from s steps earlier, so the batch trained on at optimizer step t was
    crafted with the weights of step t - s: every update sees exactly staleness s. While the queue fills
    (the first s steps) the model trains on the fresh batch (staleness 0) instead of idling, which is the
    only difference from the paper's "fill the queue, then train" (a weight update cannot be skipped
    inside a distributed train_step). `staleness` in the logs is the measured age, in optimizer steps, of
    the batch just trained on.

    The FIFO is a ring of per-replica variables holding adversarial examples (not old weights): s * batch
    examples (MNIST: 0.4 MB per slot at batch 128). It is not saved with the model; TimedBackupAndRestore
    saves it with its checkpoints, so that a resumed run trains on the batches the uninterrupted one would
    have (with Keras' own BackupAndRestore, a resumed run refills it). Labels are stored one-hot; sample
    weights and class weights are not supported.
    """

    _adversarial_keys = PGDAdversarialModel._adversarial_keys + ("staleness", "batch_size")
    _per_row_state = True

    def __init__(self, *args: Any, staleness: int, batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = type(self).__name__
        self.staleness = validation.integer(owner, "staleness", staleness, minimum=1)
        self.batch_size = validation.integer(owner, "batch_size", batch_size, minimum=1)
        input_shape = tuple(self.inputs[0].shape[1:])
        num_classes = self.outputs[0].shape[-1]
        if any(d is None for d in input_shape) or num_classes is None:
            raise ValueError(f"StaleAdversarialModel needs known input and output shapes, got {input_shape}")
        slots = (self.staleness, self.batch_size)
        self.queue_x = per_replica_state(slots + input_shape, tf.float32, "stale_queue_x")
        self.queue_y = per_replica_state(slots + (num_classes,), tf.float32, "stale_queue_y")
        self.queue_size = per_replica_state((self.staleness,), tf.int32, "stale_queue_batch_size")
        self.queue_crafted_at = per_replica_state((self.staleness,), tf.int64, "stale_queue_crafted_at", -1)
        self.queue_pushes = per_replica_state((), tf.int64, "stale_queue_pushes")

    def training_state(self) -> list[tf.Variable]:
        return [self.queue_x, self.queue_y, self.queue_size, self.queue_crafted_at, self.queue_pushes]

    def check_weights(self, given: str | None) -> None:
        """The queue keeps no weights: refuse sample and class weights (fit and train_on_batch call this
        before anything is traced; train_step too, for data whose batches cannot be looked at before)."""
        if given is not None:
            raise ValueError(
                f"StaleAdversarialModel does not support sample weights or class weights, but was given {given} "
                "(Keras turns class_weight into sample weights): train without sample_weight and class_weight "
                "(and without a third, weight element in the batches), or train with PGDAdversarialModel, which "
                "supports both"
            )

    def train_step(self, data):
        x, y, sample_weight = self.unpack(data)
        self.check_rows(x)
        self.check_weights(None if sample_weight is None else "a third (weight) element in the batches")
        num_classes = self.queue_y.shape[-1]
        # The queue holds one-hot rows; the batch trained on gets its labels back in their own form below.
        y_onehot = labels.one_hot_tensor(y, num_classes)
        n = tf.shape(x)[0]
        now = tf.cast(self.optimizer.iterations, tf.int64)
        fresh_x = self.craft(x, y)

        pushes = self.queue_pushes.read_value()
        slot = tf.cast(pushes % self.staleness, tf.int32)
        stale_n = self.queue_size[slot]
        stale_x = self.queue_x[slot][:stale_n]
        stale_y = self.queue_y[slot][:stale_n]
        stale_at = self.queue_crafted_at[slot]
        filling = pushes < self.staleness

        fits = tf.debugging.assert_less_equal(
            n, self.batch_size, message=f"batch larger than the batch_size={self.batch_size} this model was built for"
        )
        with tf.control_dependencies([stale_x, stale_y, stale_n, stale_at, fits]):
            padding = [[0, self.batch_size - n]] + [[0, 0]] * (x.shape.rank - 1)
            _put(self.queue_x, slot, tf.pad(fresh_x, padding))
            _put(self.queue_y, slot, tf.pad(y_onehot, [[0, self.batch_size - n], [0, 0]]))
            _put(self.queue_size, slot, n)
            _put(self.queue_crafted_at, slot, now)
            self.queue_pushes.assign_add(1)

        train_x, train_y, crafted_at = tf.cond(
            filling, lambda: (fresh_x, y_onehot, now), lambda: (stale_x, stale_y, stale_at)
        )
        if not labels.is_one_hot(y.shape):
            train_y = tf.cast(tf.argmax(train_y, axis=-1), y.dtype)
            if y.shape.rank == 2:
                train_y = train_y[:, None]
        logs = self.fit_on_batch(train_x, train_y)
        logs["staleness"] = now - crafted_at
        return logs


def _put(variable: tf.Variable, index: tf.Tensor, value: tf.Tensor) -> None:
    """Overwrite one slot in place, without copying the queue. Sync-on-read variables have no
    scatter_nd_update; `.handle` is the local replica's variable inside a replica context."""
    tf.raw_ops.ResourceScatterNdUpdate(
        ref=variable.handle, indices=tf.reshape(tf.cast(index, tf.int32), [1, 1]), updates=value[None]
    )
