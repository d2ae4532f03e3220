"""Early stopping on catastrophic overfitting (Wong et al. 2020, Sec. 5.2)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, precision, tracing
from tfadv.training import crafting
from tfadv.training.base import correct


class CatastrophicOverfittingCallback(keras.callbacks.Callback):
    """Watches PGD accuracy on a held-out batch; on a collapse restores the best weights.

    FGSM training can lose all robustness within an epoch ("catastrophic overfitting"): PGD accuracy falls
    to ~0 while clean accuracy keeps rising. Wong et al. run PGD-5 (step 2/255, one random start) on a
    training minibatch after every epoch and stop when it drops by more than 0.2. Here the check runs every
    epoch (or every `every_steps` batches), compares with the *best* accuracy seen, and on a drop larger
    than `threshold` restores the best weights and, if `stop_training`, stops `fit`. The attack runs with
    the model in inference mode (Wong's runs in training mode; inference mode does not disturb BatchNorm's
    moving statistics) and uses the model's compiled loss.

    Attributes after fit: `history` (list of (epoch, step, pgd_accuracy)), `best_accuracy`, `collapsed_at`
    ((epoch, step) of the detected collapse or None). Adds `adv_check_accuracy` (adversarial inputs, hence
    the `adv_` prefix of tfadv.training's metric names) to the epoch logs.

    Restoring the best weights leaves the random-start counters of tfadv's models where they are, so the
    training attack goes on with fresh starts. A fit resumed by TimedBackupAndRestore goes on with this
    callback's history, best accuracy and best weights when the backup was made with
    `stateful_callbacks=[this callback]` (list it before the backup in fit's callbacks); otherwise the resumed
    fit starts a new history and judges a collapse against the best accuracy seen since the resume.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        eps: float,
        step_size: float | None = None,
        steps: int = 5,
        norm: str = "inf",
        clip_min: float | None = 0.0,
        clip_max: float | None = 1.0,
        threshold: float = 0.2,
        every_steps: int | None = None,
        restore_best_weights: bool = True,
        stop_training: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.x = tf.convert_to_tensor(x, tf.float32)
        self.y = tf.convert_to_tensor(y)
        if self.x.shape[0] != self.y.shape[0] or self.x.shape[0] == 0:
            raise ValueError(f"x and y must hold the same non-zero number of samples, got {self.x.shape[0]} and {self.y.shape[0]}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps must be a positive integer or None, got {every_steps}")
        self.eps = float(eps)
        self.step_size = self.eps / 4 if step_size is None else float(step_size)
        self.steps = int(steps)
        self.threat = crafting.Threat(self.eps, geometry.canonical_norm(norm), clip_min, clip_max)
        self.threshold = float(threshold)
        self.every_steps = every_steps
        self.restore_best_weights = restore_best_weights
        self.stop_training = stop_training
        self.seed = int(seed)
        self._accuracy_fn = None
        self.in_fit = False  # between on_train_begin and on_train_end: TimedBackupAndRestore checks the order

    def on_train_begin(self, logs=None):
        self.history: list[tuple[int, int, float]] = []
        self.best_accuracy = -1.0
        self.best_weights = None
        self.collapsed_at = None
        self._epoch = 0
        self._batches = 0
        self._accuracy_fn = tracing.compile_once(self._pgd_accuracy)
        self.in_fit = True

    def on_train_end(self, logs=None):
        self.in_fit = False

    def get_state(self) -> dict[str, np.ndarray]:
        """What a resumed fit needs to judge a collapse as the uninterrupted one would (for
        TimedBackupAndRestore's stateful_callbacks): the checks so far, the best accuracy and its weights."""
        state = {
            "history": np.asarray(self.history, np.float64).reshape(-1, 3),
            "best_accuracy": np.float64(self.best_accuracy),
            "collapsed_at": np.asarray(self.collapsed_at or (-1, -1), np.int64),
            "batches": np.int64(self._batches),
        }
        state.update({f"best_weight_{k}": w for k, w in enumerate(self.best_weights or [])})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Go on from a state of get_state(), refusing one written for another model."""
        shapes = [tuple(v.shape) for v in _restorable(self.model)]
        count = sum(key.startswith("best_weight_") for key in state)
        weights = [np.asarray(state[f"best_weight_{k}"]) for k in range(count)]
        if weights and [w.shape for w in weights] != shapes:
            raise ValueError(f"CatastrophicOverfittingCallback: the saved best weights have shapes "
                             f"{[w.shape for w in weights]}, this model's {shapes} (another model saved them)")
        self.history = [(int(e), int(b), float(a)) for e, b, a in np.asarray(state["history"])]
        self.best_accuracy = float(state["best_accuracy"])
        self.best_weights = weights or None
        epoch, batches = (int(v) for v in state["collapsed_at"])
        self.collapsed_at = None if epoch < 0 else (epoch, batches)
        self._batches = int(state["batches"])

    def _pgd_accuracy(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        model = self.model

        def loss_fn(x_adv):
            return model.compute_loss(x=x_adv, y=y, y_pred=model(x_adv, training=False), training=False)

        start = crafting.random_start(x, threat=self.threat, seed=self.seed, counter=tf.constant(0, tf.int64))
        x_adv = crafting.pgd(
            loss_fn, x, start, steps=self.steps, step_size=self.step_size, threat=self.threat,
            scale=precision.loss_scale(model.optimizer), guard_nonfinite=precision.may_overflow(model),
        )
        return tf.reduce_mean(correct(y, model(x_adv, training=False)))

    def check(self) -> float:
        """Measure, compare with the best, restore on collapse. Returns the measured PGD accuracy."""
        accuracy = float(self._accuracy_fn(self.x, self.y))
        self.history.append((self._epoch, self._batches, accuracy))
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            self.best_weights = [v.numpy() for v in _restorable(self.model)]
        elif self.best_accuracy - accuracy > self.threshold and self.collapsed_at is None:
            self.collapsed_at = (self._epoch, self._batches)
            if self.restore_best_weights and self.best_weights is not None:
                for variable, value in zip(_restorable(self.model), self.best_weights, strict=True):
                    variable.assign(value)
            if self.stop_training:
                self.model.stop_training = True
        return accuracy

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.every_steps is not None and self._batches % self.every_steps == 0:
            self.check()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_steps is None:
            self.check()
        if logs is not None and self.history:
            logs["adv_check_accuracy"] = self.history[-1][2]


def _restorable(model: keras.Model) -> list:
    """The model's weights without the random-start counters of tfadv's models: rewinding those with the
    best weights would make the training attack draw again the starts it drew since then."""
    counters = {id(getattr(model, name, None)) for name in ("train_counter", "eval_counter")}
    return [v for v in model.weights if id(v) not in counters]
