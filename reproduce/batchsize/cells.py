"""What one cell computes: one model trained with one setting at one batch size and seed, then measured.

A cell trains with SGD (tfadv.analysis.batch_size_settings), then measures test accuracy, FGSM and PGD
accuracy (L-inf) and the top eigenvalue λ1 of the loss Hessian (tfadv.analysis.hessian). Training resumes
from its last checkpoint when killed (tfadv.training.TimedBackupAndRestore in the cell's work folder); the
trained weights are kept there until the cell is stored, so a run killed during the evaluation does not
train again.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable

import keras
import numpy as np

from reproduce.batchsize.profiles import AUGMENTED, TFDS_TRAIN_SPLITS, Profile
from tfadv.analysis.batch_size_settings import TrainingSetting, accumulation_steps
from tfadv.analysis.hessian import HessianEigenvalue, PowerIteration, hessian_eigenvalue_fn
from tfadv.attacks import FGM, PGD
from tfadv.evaluation import accuracy, checks, robust_mask
from tfadv.experiments import atomic
from tfadv.experiments.plan import Cost
from tfadv.models.kamath import MODELS
from tfadv.training import TimedBackupAndRestore

NUM_CLASSES = 10
EVAL_BATCH = 500


# ------------------------------------------------------------------------------------------------ grid
def grid(run) -> list[dict]:
    """Every (study, setting, batch size, seed) of the profile, then the regime search's runs."""
    p: Profile = run.profile
    cells = [_cell(s.dataset, s.model, schedule, momentum, p.lr_scale, p.epochs, b, k)
             for s in p.studies for schedule, momentum in s.settings for b in p.batch_sizes
             for k in range(run.options["seeds"])]
    cells += [c for s in p.search for scale in s.lr_scales for b in s.batch_sizes for k in range(s.seeds)
              if (c := _cell(s.dataset, s.model, s.schedule, s.momentum, scale, s.epochs or p.epochs, b, k))
              not in cells]
    return cells


def _cell(dataset: str, model: str, schedule: str, momentum: float, lr_scale: float, epochs: int,
          batch_size: int, seed: int) -> dict:
    return {"dataset": dataset, "model": model, "schedule": schedule, "momentum": float(momentum),
            "lr_scale": float(lr_scale), "epochs": int(epochs), "batch_size": int(batch_size), "seed": int(seed)}


# ------------------------------------------------------------------------------------------------ data
def load_data(dataset: str, run) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), pixels in [0, 1]; the digits stand in for the demo and smoke."""
    if dataset == "digits":
        from tfadv.datasets.digits import load_digits

        return load_digits(image_size=run.profile.image_size or 16)
    if dataset not in TFDS_TRAIN_SPLITS:
        raise ValueError(f"unknown dataset {dataset!r}; expected digits or one of {sorted(TFDS_TRAIN_SPLITS)}")
    from tfadv.datasets.tfds_data import load_tfds

    x_train, y_train = load_tfds(dataset, TFDS_TRAIN_SPLITS[dataset], data_dir=run.data_dir)
    x_test, y_test = load_tfds(dataset, "test", data_dir=run.data_dir)
    return x_train / 255.0, y_train, x_test / 255.0, y_test


def cell_seed(cell: dict, run) -> int:
    """The seed of one training run: initial weights, data order, dropout and PGD starts."""
    return int(np.random.SeedSequence([run.seed, int(cell["seed"])]).generate_state(1)[0] % 2**31)


# ------------------------------------------------------------------------------------------------ cell
def run_cell(cell: dict, run) -> dict:
    data = run.cached(("data", cell["dataset"]), lambda: load_data(cell["dataset"], run))
    setting = TrainingSetting(cell["schedule"], cell["momentum"], cell["lr_scale"])
    model, training = train(cell, run, setting, data)
    started = time.process_time()
    measured = evaluate(model, cell, run, data, diverged=training["diverged"])
    seconds = time.process_time() - started
    return {"setting": setting.label, "learning_rate": setting.initial_learning_rate(cell["batch_size"]),
            **training, **measured, "eval_cpu_seconds": seconds, "cpu_seconds": training["train_cpu_seconds"] + seconds}


def train(cell: dict, run, setting: TrainingSetting, data) -> tuple[keras.Model, dict]:
    """The cell's trained model and a summary of its training (loaded if it finished before)."""
    from tfadv.datasets.pipeline import training_stream

    x_train, y_train, _, _ = data
    seed = cell_seed(cell, run)
    keras.utils.set_random_seed(seed)  # the same initial weights for every setting and batch size
    model = MODELS[cell["model"]](x_train.shape[1:], num_classes=NUM_CLASSES)
    work = run.work_dir(cell)
    weights, summary = work / "trained.weights.h5", work / "training.json"
    if summary.exists():  # trained before; the evaluation did not finish
        model.load_weights(weights)
        return model, json.loads(summary.read_text())
    batch_size = int(cell["batch_size"])
    accumulation = accumulation_steps(batch_size, run.profile.micro_batch)
    chunk = batch_size // accumulation
    chunks = len(x_train) // chunk
    if run.limit is not None:  # --limit caps the updates per epoch
        chunks = min(chunks, run.capped(max(chunks // accumulation, 1)) * accumulation)
    if chunks < accumulation:
        raise ValueError(f"{len(x_train)} training images give no full batch of {batch_size}")
    updates = chunks / accumulation
    model.compile(optimizer=setting.optimizer(batch_size, updates, accumulation),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    epochs = run.capped(cell["epochs"])
    backup = TimedBackupAndRestore(str(work / "backup"))
    # A resumed training goes on with the chunk the uninterrupted one trained on next.
    ds = training_stream(x_train, y_train, chunk, augment=cell["dataset"] in AUGMENTED, seed=seed,
                         drop_remainder=True, batches_done=backup.resume_epoch() * chunks)
    started = time.process_time()  # CPU time of this process (a resumed training counts its last part)
    history = model.fit(ds, epochs=epochs, steps_per_epoch=chunks, callbacks=[backup], shuffle=False,
                        verbose=2 if run.show_progress and run.profile_name == "paper" else 0)
    last = {k: float(v[-1]) for k, v in history.history.items()}
    training = {"epochs_trained": epochs, "updates_per_epoch": updates, "accumulation": accumulation,
                "train_samples": len(x_train), "train_loss": last.get("loss", np.nan),
                "train_accuracy": last.get("accuracy", np.nan), "train_cpu_seconds": time.process_time() - started}
    training["diverged"] = not np.isfinite(training["train_loss"])
    atomic.save_weights(model, weights)
    atomic.write_text(summary, json.dumps(training))  # after the weights: both exist once training ended
    return model, training


def evaluate(model: keras.Model, cell: dict, run, data, diverged: bool) -> dict:
    """Clean accuracies, FGSM and PGD accuracy and λ1 of a trained model (NaN where it diverged)."""
    x_train, y_train, x_test, y_test = data
    p: Profile = run.profile
    threat = p.threats[cell["dataset"]]
    n_test, n_train = run.capped(len(x_test)), run.capped(len(x_train))
    n_eval = run.capped(p.eval_samples or len(x_test))
    hessian = dataclasses.replace(p.hessian, num_samples=run.capped(p.hessian.num_samples or len(x_test)))
    row = {"test_samples": n_test, "eval_samples": n_eval, "hessian_samples": hessian.num_samples,
           "eps": threat.eps, "pgd_steps": threat.pgd_steps, "pgd_step_size": threat.pgd_step_size,
           "test_accuracy": accuracy(model, x_test[:n_test], y_test[:n_test], batch_size=EVAL_BATCH),
           # The final weights on the training set in inference mode: far below the last epoch's running
           # accuracy means training ended on a loss spike.
           "final_train_accuracy": accuracy(model, x_train[:n_train], y_train[:n_train], batch_size=EVAL_BATCH)}
    if diverged:  # NaN weights: nothing to attack, no curvature
        return {**row, "fgsm_accuracy": np.nan, "pgd_accuracy": np.nan, "fgsm_unmeasured": np.nan,
                "pgd_unmeasured": np.nan, "lambda1": np.nan, "lambda1_iterations": 0, "lambda1_converged": False}
    x, y = x_test[:n_eval], y_test[:n_eval]
    net, fgsm, pgd, top_eigenvalue = measured_copy(model, cell, run, (min(n_eval, EVAL_BATCH), *x.shape[1:]), hessian)
    lam = top_eigenvalue(x_test, y_test, seed=cell_seed(cell, run))
    fgsm_robust = robust_mask(net, fgsm, x, y, batch_size=EVAL_BATCH)
    pgd_robust = robust_mask(net, pgd, x, y, batch_size=EVAL_BATCH)
    # Samples counted robust that no gradient attack could move (a saturated softmax): claims leave out a run
    # whose attack accuracy rests on them (claims.UNMEASURED_MAX).
    dead = checks.dead_gradients(net, x, y, from_logits=True, loss_path="keras", batch_size=EVAL_BATCH)
    return {**row, "fgsm_accuracy": float(np.mean(fgsm_robust)), "pgd_accuracy": float(np.mean(pgd_robust)),
            "fgsm_unmeasured": float(np.mean(fgsm_robust & dead)),
            "pgd_unmeasured": float(np.mean(pgd_robust & dead)),
            "lambda1": lam.eigenvalue, "lambda1_iterations": lam.iterations, "lambda1_converged": lam.converged}


def measured_copy(model: keras.Model, cell: dict, run, batch_shape: tuple,
                  hessian: PowerIteration) -> tuple[keras.Model, FGM, PGD, Callable[..., HessianEigenvalue]]:
    """A copy of `model` (same architecture, its weights copied in) with the cell's FGSM, PGD and top Hessian
    eigenvalue (`hessian_eigenvalue_fn`) on it.

    Made once per process for each architecture and seed, so the attacks and the power iteration are traced
    once rather than once per cell: on the demo's digits nets the attack traces cost about as much as a small
    cell's training, the eigenvalue's about 0.35 s a cell (measured). The copy computes what `model` computes
    (same layers, same weights, inference mode): test_batchsize checks it. robust_mask attacks only the
    clean-correct samples, a count that differs from cell to cell; the attacks are first run on a
    `batch_shape` batch (the evaluation's largest), so that a smaller count is padded to it (exact in
    inference mode) instead of tracing its own batch size.
    """
    threat, seed = run.profile.threats[cell["dataset"]], cell_seed(cell, run)

    def make():
        net = MODELS[cell["model"]](batch_shape[1:], num_classes=NUM_CLASSES)
        common = {"from_logits": True, "clip_min": 0.0, "clip_max": 1.0}  # tfadv's models output logits
        attacks = (FGM(net, threat.eps, "inf", **common),
                   PGD(net, threat.eps, "inf", steps=threat.pgd_steps, step_size=threat.pgd_step_size,
                       rand_init=True, seed=seed, **common))
        for attack in attacks:  # the call robust_mask makes on a batch of batch_shape
            attack(np.zeros(batch_shape, np.float32), np.zeros(batch_shape[0], np.int64), return_stats=True)
        return (net, *attacks, hessian_eigenvalue_fn(net, settings=hessian, from_logits=True))

    key = ("measured copy", cell["dataset"], cell["model"], tuple(batch_shape), seed, hessian)
    net, fgsm, pgd, top_eigenvalue = run.cached(key, make)
    net.set_weights(model.get_weights())
    return net, fgsm, pgd, top_eigenvalue


# ------------------------------------------------------------------------------------------------ cost
#: (image shape, training images, test images) of each dataset, for --plan without loading any data.
SIZES = {"mnist": ((28, 28, 1), 55_000, 10_000), "fashion_mnist": ((28, 28, 1), 55_000, 10_000),
         "cifar10": ((32, 32, 3), 40_000, 10_000), "digits": (None, 1_347, 450)}


def cost(cell: dict, run) -> Cost:
    """What one cell asks of a GPU: its training, attacks and power iteration, counted in passes."""
    p: Profile = run.profile
    shape, n_train, n_test = SIZES[cell["dataset"]]
    shape = shape or (p.image_size, p.image_size, 1)
    accumulation = accumulation_steps(cell["batch_size"], p.micro_batch)
    chunk = cell["batch_size"] // accumulation
    epochs, chunks = run.capped(cell["epochs"]), n_train // chunk
    n_eval, pgd = run.capped(p.eval_samples or n_test), p.threats[cell["dataset"]].pgd_steps
    hessian = run.capped(p.hessian.num_samples or n_test) * p.hessian.max_iterations
    attack_steps = -(-n_eval // EVAL_BATCH) * (1 + pgd)
    return Cost(model=f"{cell['model']} {'x'.join(map(str, shape))}",
                build=lambda: MODELS[cell["model"]](shape, num_classes=NUM_CLASSES),
                passes=epochs * chunks * chunk + n_eval * (1 + pgd) + 2 * hessian,  # an HVP: about two passes
                forwards=run.capped(n_test) + run.capped(n_train) + 2 * n_eval,
                steps=epochs * chunks + attack_steps + p.hessian.max_iterations)
