"""Training and evaluation shared by every batchnorm cell.

Training is SGD on the mean cross-entropy of the logits plus the model's weight-decay terms, reshuffled every
epoch (tfadv.datasets.pipeline). A run that keeps the best validation epoch (Table 2: "we evaluate models
achieving the highest validation accuracy") checkpoints every epoch in the cell's work folder, so a killed
cell resumes where it stopped. Evaluation is clean accuracy, accuracy under additive white Gaussian noise
(AWGN) and accuracy under an attack, all in inference mode (BN's moving statistics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfadv.analysis import corruptions
from tfadv.attacks import PGD
from tfadv.datasets.pipeline import training_dataset, training_stream
from tfadv.evaluation import accuracy, robust_accuracy, robust_mask
from tfadv.experiments import atomic
from tfadv.experiments.run import Run
from tfadv.training import TimedBackupAndRestore

EVAL_BATCH = 256
#: Variables the authors' code trains at LR / 10 (PyTorch names holding "bias" or "scale": biases, BN's beta,
#: Fixup's scalar biases and multipliers), as Keras names them.
SLOW_VARIABLES = ("bias", "beta", "scalarbias", "scalarscale")


@dataclass(frozen=True)
class Schedule:
    """How one model is trained: SGD with momentum, LR divided by 10 at each boundary epoch."""

    lr: float
    epochs: int
    momentum: float = 0.0
    batch_size: int = 128
    boundaries: tuple[int, ...] = ()
    weight_decay: float = 0.0
    #: "best_val": keep the epoch with the best held-out accuracy; "last": the final weights.
    select: str = "last"
    #: LR factor of SLOW_VARIABLES (the authors' cifar_train.py: 1/10); 1 = one LR for all.
    slow_lr_factor: float = 1.0
    augment: bool = False


class SlowBiasSGD(keras.optimizers.SGD):
    """SGD whose step on SLOW_VARIABLES is `factor` times the others' (PyTorch parameter groups with LR / 10).

    Scaling the gradient is the same as scaling the LR for SGD with momentum, and here it also scales the
    variable's weight-decay term, as PyTorch's per-group LR does.
    """

    def __init__(self, *args, factor: float = 1.0, name: str = "sgd_slow_bias", **kwargs):
        super().__init__(*args, name=name, **kwargs)
        self.factor = factor

    def apply(self, grads, trainable_variables=None):
        variables = self._trainable_variables if trainable_variables is None else list(trainable_variables)
        grads = [g if g is None or v.name not in SLOW_VARIABLES else g * self.factor for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)


def optimizer(schedule: Schedule, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = schedule.lr
    if schedule.boundaries:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [b * steps_per_epoch for b in schedule.boundaries],
            [schedule.lr / 10 ** i for i in range(len(schedule.boundaries) + 1)])
    if schedule.slow_lr_factor != 1.0:
        return SlowBiasSGD(lr, momentum=schedule.momentum, factor=schedule.slow_lr_factor)
    return keras.optimizers.SGD(lr, momentum=schedule.momentum)


class _KeepBest(keras.callbacks.Callback):
    """Save the weights of the best validation epoch in `folder` (atomically, with its score, so a resumed
    training still knows the best epoch of before the interruption)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.weights, self.record = folder / "best.weights.h5", folder / "best.json"
        self.best = json.loads(self.record.read_text())["val_accuracy"] if self.record.is_file() else -1.0

    def on_epoch_end(self, epoch, logs=None):
        score = float(logs["val_accuracy"])
        if score > self.best:
            self.best = score
            atomic.save_weights(self.model, self.weights)
            atomic.write_text(self.record, json.dumps({"epoch": epoch, "val_accuracy": score}))


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, schedule: Schedule, *, run: Run, cell: dict,
        seed: int, validation: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Train `model` in place; with schedule.select == "best_val", end with the best validation epoch's weights.

    --limit caps the epochs and the steps per epoch. Full-batch gradient descent (the toy's 1,000 epochs of
    one step) runs as one Keras epoch: per-epoch bookkeeping would otherwise dominate.
    """
    steps = -(-len(x) // schedule.batch_size)
    epochs = run.capped(schedule.epochs)
    limit = run.capped(steps)
    model.compile(optimizer=optimizer(schedule, limit), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pipeline = {"augment": schedule.augment, "seed": seed}
    verbose = 2 if run.show_progress and epochs > 1 and steps > 1 else 0
    if steps == 1 and validation is None:
        model.fit(training_dataset(x, y, schedule.batch_size, **pipeline).repeat(epochs), epochs=1, shuffle=False,
                  verbose=0)
        return
    work = run.work_dir(cell)
    callbacks = [TimedBackupAndRestore(str(work / "backup"))]
    if schedule.select == "best_val":
        if validation is None:
            raise ValueError("schedule.select='best_val' needs validation data")
        callbacks.append(_KeepBest(work))
    # A resumed training goes on with the batches the uninterrupted one trained on next.
    done = callbacks[0].resume_epoch()
    if limit < steps:  # --limit: epochs end inside passes
        data = training_stream(x, y, schedule.batch_size, batches_done=done * limit, **pipeline)
    else:
        data = training_dataset(x, y, schedule.batch_size, epochs_done=done, **pipeline)
    model.fit(data, epochs=epochs, steps_per_epoch=limit if limit < steps else None,
              validation_data=validation, callbacks=callbacks, shuffle=False, verbose=verbose)
    if schedule.select == "best_val":
        model.load_weights(work / "best.weights.h5")


# ------------------------------------------------------------------------------------------ evaluation
def clean_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return accuracy(model, x, y, EVAL_BATCH)


def noisy_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, std: float, *, seed: int,
                   clip: tuple[float, float] | None = None, resize_to: int | None = None) -> float:
    """Accuracy on x + N(0, std^2) (clipped to `clip` if given). With `resize_to`, the noise is drawn at x's
    resolution and the noisy image resized, as the paper does for its upscaled MNIST (Section 5, footnote)."""
    low, high = clip if clip is not None else (None, None)
    noisy = corruptions.awgn(x, std, clip_min=low, clip_max=high, seed=seed)
    if resize_to is not None and resize_to != x.shape[1]:
        noisy = tf.image.resize(noisy, (resize_to, resize_to), method="bilinear").numpy()
    return clean_accuracy(model, noisy, y)


def pgd(model: keras.Model, *, eps: float, steps: int, step_size: float, norm: str = "inf",
        clip: tuple[float, float] | None = None) -> PGD:
    """PGD without random start on the summed cross-entropy of logits: BIM (Kurakin et al.) for L-inf, and the
    authors' advertorch L(inf|2)PGDAttack(rand_init=False, reduction="sum")."""
    low, high = clip if clip is not None else (None, None)
    return PGD(model, eps=eps, norm=norm, steps=steps, step_size=step_size, rand_init=False, reduction="sum",
               from_logits=True, clip_min=low, clip_max=high)


def attacked_accuracy(model: keras.Model, attack: PGD, x: np.ndarray, y: np.ndarray) -> float:
    return robust_accuracy(model, attack, x, y, batch_size=EVAL_BATCH)


def attacked_mask(model: keras.Model, attack: PGD, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: classified correctly clean and after the attack."""
    return robust_mask(model, attack, x, y, batch_size=EVAL_BATCH)


def rows(metrics: dict[str, float], **common) -> list[dict]:
    """Tidy rows: one per metric, with the cell's common columns."""
    return [{**common, "metric": name, "value": float(value)} for name, value in metrics.items()]
