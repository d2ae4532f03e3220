"""Training one cell: the network, its Free / Fast / PGD adversarial model, the cyclic schedule, and a
resumable `fit` that logs one curve point per epoch.

Epochs follow the seed's code, not Shafahi et al.: an epoch is one pass over the training set, and in a
Free-m epoch every minibatch is replayed m times (the seed's `lr_steps = epochs * len(loader) * m`), so a
Free-m run of E epochs makes m * E * N/B SGD steps, m times Fast's, and its train time grows with m.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from tfadv.datasets.pipeline import training_dataset
from tfadv.experiments import Run, atomic
from tfadv.models import cifar_resnets
from tfadv.precision import dtype_policy
from tfadv.training import (CyclicLearningRate, FastAdversarialModel, FreeAdversarialModel, PGDAdversarialModel,
                            TimedBackupAndRestore)

from reproduce.freefast.data import Data

CURVE_FILE = "epochs.csv"


def training_seed(cell: dict, run: Run) -> int:
    """Seed of one training run: the run's --seed and the cell's repeat (0, 1, 2 for three seeds)."""
    return 1000 * run.seed + int(cell["repeat"])


def network(run: Run, architecture: str, data: Data) -> keras.Model:
    """A plain network that outputs logits, in the current dtype policy, sized for the profile's data."""
    kwargs = {"input_shape": data.x_train.shape[1:], "width": run.profile.width}
    if run.profile.dataset != "cifar10":
        kwargs.update(mean=None, std=None)  # the CIFAR-10 statistics mean nothing for digits
    if architecture == "resnet50":
        kwargs["num_classes"] = 1000  # the seed's unmodified torchvision head
    return cifar_resnets.build(architecture, **kwargs)


def adversarial_model(cell: dict, run: Run, net: keras.Model, seed: int) -> keras.Model:
    """The cell's adversarial-training model wrapping `net` (it trains net's own weights).

    The training attack runs BatchNorm in training mode (the seed's code); `evaluate`'s own attack is off
    (eval_steps=0): the cell evaluates a float32 copy with tfadv.attacks.PGD.
    """
    profile, method = run.profile, cell["method"]
    eps = float(cell["eps"])
    common = {"eps": eps, "clip_min": 0.0, "clip_max": 1.0, "weight_decay": profile.weight_decay,
              "eval_steps": 0, "seed": seed, "name": f"{method}_{net.name}"}
    if method == "fast":
        return FastAdversarialModel(net, alpha=cell["alpha_ratio"] * eps, **common)
    if method == "free":
        return FreeAdversarialModel(net, replays=int(cell["replays"]), batch_size=int(cell["batch_size"]), **common)
    if method == "pgd":
        return PGDAdversarialModel(net, steps=profile.pgd_train_steps, step_size=profile.eval_step_ratio * eps,
                                   **common)
    raise ValueError(f"unknown method {method!r}: expected 'free', 'fast' or 'pgd'")


def optimizer_steps(cell: dict, epochs: int, steps_per_epoch: int) -> int:
    """SGD steps of the whole run: Free replays each minibatch m times, one step per replay."""
    replays = 1 if cell["replays"] is None or pd.isna(cell["replays"]) else int(cell["replays"])
    return epochs * steps_per_epoch * replays


def compile_model(model: keras.Model, cell: dict, run: Run, total_steps: int) -> None:
    """SGD(momentum 0.9) on the triangular cyclic rate 0 -> lr_max -> 0 over the whole run."""
    profile = run.profile
    schedule = CyclicLearningRate(max_learning_rate=profile.lr_max[cell["method"]], total_steps=total_steps)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=profile.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile="auto" if profile.xla else False, run_eagerly=profile.eager,
        auto_scale_loss=profile.loss_scaling == "dynamic",
    )


class EpochLog(keras.callbacks.Callback):
    """Per-epoch wall and CPU time, training metrics and a curve point (the paper's Figs 1-8), saved every
    epoch. Listed before the backup, so an epoch's time excludes the checkpoint and the curve
    evaluation. Rows are keyed by epoch and the file is rewritten whole: an epoch re-run after a kill
    replaces its row."""

    def __init__(self, path: Path, curve_point: Callable[[], dict]):
        super().__init__()
        self.path, self.curve_point = path, curve_point
        self.rows = {int(r["epoch"]): r for r in pd.read_csv(path).to_dict("records")} if path.is_file() else {}
        self._wall = self._cpu = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "epoch_seconds": time.perf_counter() - self._wall,
               "epoch_cpu_seconds": time.process_time() - self._cpu}
        row.update({f"train_{k}": float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        row.update(self.curve_point())
        self.rows[epoch + 1] = row
        atomic.write_csv(pd.DataFrame([self.rows[e] for e in sorted(self.rows)]), self.path)


def train(cell: dict, run: Run, data: Data, evaluation_net: keras.Model,
          curve_point: Callable[[], dict]) -> pd.DataFrame:
    """Train the cell (resuming from run.work_dir(cell) after a kill) and copy the trained weights into
    `evaluation_net` (float32). `curve_point()` measures `evaluation_net` after each epoch. Returns the
    per-epoch log."""
    profile, seed, work = run.profile, training_seed(cell, run), run.work_dir(cell)
    epochs = run.capped(int(cell["epochs"]))
    backup = TimedBackupAndRestore(str(work / "backup"))
    with dtype_policy(profile.dtype_policy):
        keras.utils.set_random_seed(seed)
        net = network(run, cell["architecture"], data)
        model = adversarial_model(cell, run, net, seed)
        # After the seed: the shuffle's order follows the global seed too, which was the previous cell's
        # (none in a fresh process). A resumed training goes on with the next epoch's order and crops.
        train_set = training_dataset(data.x_train, data.y_train, int(cell["batch_size"]), augment=profile.augment,
                                     seed=seed, epochs_done=backup.resume_epoch())
        compile_model(model, cell, run, optimizer_steps(cell, epochs, int(train_set.cardinality())))

    def copied_and_measured() -> dict:
        cifar_resnets.copy_weights(net, evaluation_net)
        return curve_point()

    callbacks = [EpochLog(work / CURVE_FILE, copied_and_measured), backup]
    model.fit(train_set, epochs=epochs, callbacks=callbacks, shuffle=False,  # train_set shuffles itself
              verbose=2 if run.show_progress else 0)
    cifar_resnets.copy_weights(net, evaluation_net)
    return read_curve(work / CURVE_FILE, epochs)


def read_curve(path: Path, epochs: int) -> pd.DataFrame:
    """The per-epoch log of a finished training, refusing one that misses epochs."""
    curve = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if len(curve) != epochs:
        raise RuntimeError(f"{path} holds {len(curve)} epochs, expected {epochs}; delete {path.parent} to retrain "
                           "this cell")
    return curve
