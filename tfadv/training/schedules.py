"""The triangular "one-cycle" learning rate of fast_adversarial (Wong et al.) and the freefast seed."""
from __future__ import annotations

import keras
import tensorflow as tf

from tfadv import validation


@keras.saving.register_keras_serializable(package="tfadv")
class CyclicLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from `initial_learning_rate` to `max_learning_rate` over the first `peak_at` fraction of
    `total_steps`, then linear to `final_learning_rate`, then constant:

        lr(t) = interp(t, [0, peak_at * T, T], [initial, max, final])

    evaluated at the optimizer step t before the update, so the first update uses lr(0) = initial. With the
    defaults this is PyTorch's CyclicLR(base_lr=0, max_lr, step_size_up = step_size_down = T/2) stepped once
    per optimizer step (fast_adversarial CIFAR-10: max 0.2 for FGSM/PGD, 0.04 for Free); peak_at=0.4 gives
    its MNIST schedule. T counts optimizer updates: epochs * steps_per_epoch, times m for Free-m.
    """

    def __init__(
        self,
        max_learning_rate: float,
        total_steps: int,
        peak_at: float = 0.5,
        initial_learning_rate: float = 0.0,
        final_learning_rate: float = 0.0,
        name: str = "CyclicLearningRate",
    ) -> None:
        super().__init__()
        if not max_learning_rate > 0:
            raise ValueError(f"max_learning_rate must be > 0, got {max_learning_rate}")
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
        if not 0.0 < peak_at <= 1.0:
            raise ValueError(f"peak_at must be in (0, 1], got {peak_at}")
        if initial_learning_rate < 0 or final_learning_rate < 0:
            raise ValueError("initial_learning_rate and final_learning_rate must be >= 0")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.peak_at = float(peak_at)
        self.initial_learning_rate = float(initial_learning_rate)
        self.final_learning_rate = float(final_learning_rate)
        self.name = name

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_at * self.total_steps, tf.float32)
        total = tf.constant(float(self.total_steps), tf.float32)
        rising = self.initial_learning_rate + (self.max_learning_rate - self.initial_learning_rate) * t / peak
        falling_span = tf.maximum(total - peak, 1.0)
        falling = self.max_learning_rate + (self.final_learning_rate - self.max_learning_rate) * (t - peak) / falling_span
        lr = tf.where(t <= peak, rising, tf.where(t < total, falling, self.final_learning_rate))
        return tf.cast(lr, tf.float32)

    def get_config(self) -> dict:
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "peak_at": self.peak_at,
            "initial_learning_rate": self.initial_learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "name": self.name,
        }


#: A fit may run this fraction of its updates past a schedule's end unremarked: total_steps counted with
#: floor(samples / batch_size) leaves one update per epoch there, which changes little.
IDLE_UPDATES_TOLERANCE = 0.01


def warn_if_schedule_ends_early(owner: str, optimizer: keras.optimizers.Optimizer, planned_updates: int | None) -> None:
    """A TfadvWarning at the caller's line when more than IDLE_UPDATES_TOLERANCE of a fit's `planned_updates`
    optimizer updates run past the end of a CyclicLearningRate whose final rate is 0: they learn nothing. (The
    usual cause: total_steps counted batches, not Free-m's m updates per batch.)"""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a mixed-precision LossScaleOptimizer's own
    schedule = getattr(inner, "_learning_rate", None)
    if planned_updates is None or not isinstance(schedule, CyclicLearningRate) or schedule.final_learning_rate:
        return
    done = int(inner.iterations.numpy())
    idle = min(done + planned_updates - schedule.total_steps, planned_updates)
    if idle > IDLE_UPDATES_TOLERANCE * planned_updates:
        validation.warn_caller(
            f"{owner}: the learning rate (CyclicLearningRate, total_steps={schedule.total_steps}) reaches its final "
            f"value 0 after update {schedule.total_steps}, but this fit makes {planned_updates} optimizer updates "
            f"from update {done}, so its last {idle} learn nothing. total_steps counts optimizer "
            "updates: epochs * steps_per_epoch, times m for Free-m", validation.TfadvWarning)
