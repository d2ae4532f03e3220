"""Kamath et al. 2019, "On Adversarial Robustness of Small vs Large Batch Training".

For each dataset x model x training setting x batch size: train with SGD, then measure test accuracy,
FGSM and PGD accuracy (L-inf) and the top eigenvalue of the loss Hessian (tfadv.analysis.hessian, both presets).
Figures in the paper's form (metric vs batch size, a line per setting or momentum) and report.md with the
paper's qualitative claims beside the measurements. Each trained model is one cell: finished cells are
skipped on a re-run, trained weights are kept under OUT/checkpoints/, and an interrupted training resumes
from its last epoch (keras BackupAndRestore).

    python -m reproduce.batchsize --profile demo --out results/batchsize
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfadv.experiments import figures as plots
from tfadv.attacks import FGM, PGD
from tfadv.analysis.batch_size_settings import (
    FIXED_LEARNING_RATE,
    LEARNING_RATE_PER_SAMPLE,
    PAPER_EPOCHS,
    TrainingSetting,
    paper_settings,
    steps_per_epoch,
)
from tfadv.datasets.digits import load_digits
from tfadv.datasets.tfds_data import load_tfds
from tfadv.evaluation import predict_labels, robust_accuracy
from tfadv.analysis.hessian import CONVERGED, HESSIANFLOW, PowerIteration, top_hessian_eigenvalue
from tfadv.models.kamath import MODELS
from tfadv.experiments.report import Claim, markdown_table, write_report
from tfadv.experiments.store import atomic_write_text, cell_file_name
from tfadv.training.distributed import mirrored_strategy
from tfadv.experiments.runner import build_parser, cell_key, run_grid

KEY = "batchsize"
TITLE = "On Adversarial Robustness of Small vs Large Batch Training (Kamath et al. 2019)"


@dataclasses.dataclass(frozen=True)
class Threat:
    """The evaluation attacks of one dataset: FGSM at eps, and PGD (settings tfadv's: the paper gives none)."""

    eps: float
    pgd_steps: int
    pgd_step_size: float


@dataclasses.dataclass(frozen=True)
class Profile:
    grid: tuple[tuple[str, str, tuple[TrainingSetting, ...]], ...]  # (dataset, model, settings)
    batch_sizes: tuple[int, ...]
    epochs: int
    image_size: int | None  # digits only: upsampled side
    eval_samples: int | None  # first n test images for the attacks (None: the whole test set)
    hessian: dict[str, PowerIteration]
    note: str
    threats: dict | None = None  # dataset -> Threat, overriding THREATS
    lr_scale: float = 1.0  # multiplies every learning rate of the three settings (TrainingSetting.lr_scale)


MNIST_THREAT = Threat(eps=0.3, pgd_steps=40, pgd_step_size=0.01)  # Madry et al.'s MNIST PGD
CIFAR_THREAT = Threat(eps=0.02, pgd_steps=20, pgd_step_size=0.0025)  # 2.5 eps / steps
DIGITS_THREAT = Threat(eps=0.1, pgd_steps=20, pgd_step_size=0.0125)
THREATS = {"mnist": MNIST_THREAT, "fashion_mnist": MNIST_THREAT, "cifar10": CIFAR_THREAT, "digits": DIGITS_THREAT}
#: Train/test splits of section 5 (the last 5,000 / 10,000 training images are the unused validation set).
TFDS_TRAIN_SPLITS = {"mnist": "train[:55000]", "fashion_mnist": "train[:55000]", "cifar10": "train[:40000]"}

_PAPER_SETTINGS = tuple(paper_settings())
_BASE_SETTINGS = tuple(paper_settings(momentum_sweeps=None))
DEMO_LR_SCALE = 4.0
PROFILES = {
    "paper": Profile(
        grid=(("mnist", "M1", _PAPER_SETTINGS), ("mnist", "StdCNN", _PAPER_SETTINGS),
              ("fashion_mnist", "M1", _BASE_SETTINGS), ("fashion_mnist", "StdCNN", _BASE_SETTINGS),
              ("cifar10", "C1", _PAPER_SETTINGS), ("cifar10", "ResNet18", _PAPER_SETTINGS)),
        batch_sizes=(32, 64, 128, 256, 512, 1024, 2048), epochs=PAPER_EPOCHS, image_size=None,
        eval_samples=None, hessian={"hessianflow": HESSIANFLOW, "converged": CONVERGED},
        note="the paper's datasets, models, settings and 100 epochs"),
    "demo": Profile(
        grid=tuple((("digits", m, tuple(paper_settings({"LR": (0.9,), "LR/BS": (0.9,)}, DEMO_LR_SCALE))))
                   for m in ("M1", "StdCNN")),
        lr_scale=DEMO_LR_SCALE,
        batch_sizes=(8, 32, 128, 512), epochs=30, image_size=16, eval_samples=None,
        hessian={"hessianflow": HESSIANFLOW, "converged": CONVERGED},
        note=f"scikit-learn digits (1,347 train / 450 test, upsampled to 16x16); batch sizes 8-512 (0.6-38 % "
             "of the training set; the paper's 32-2048 are 0.06-3.7 % of 55,000); every learning rate "
             f"x{DEMO_LR_SCALE:g} (fixed LR {FIXED_LEARNING_RATE * DEMO_LR_SCALE:g}, LR/BS ratio "
             f"{LEARNING_RATE_PER_SAMPLE * DEMO_LR_SCALE:g}, Benchmark from {FIXED_LEARNING_RATE * DEMO_LR_SCALE:g}) "
             "so that 30 epochs of 1,347 images train the models; momentum 0 and 0.9 only"),
    "smoke": Profile(
        grid=(("digits", "StdCNN", (TrainingSetting("LR"), TrainingSetting("LR/BS"))),),
        batch_sizes=(128, 512), epochs=1, image_size=16, eval_samples=64,
        hessian={"hessianflow": PowerIteration(max_iterations=3, tolerance=1e-2, num_samples=64)},
        threats={"digits": Threat(eps=0.1, pgd_steps=3, pgd_step_size=0.05)},
        note="seconds: one model, two settings, one epoch, 64 test images, PGD-3, 3 power iterations"),
}


# ------------------------------------------------------------------------------------------------ data
@functools.lru_cache(maxsize=None)
def load_data(dataset: str, image_size: int | None, data_dir: str):
    """(x_train, y_train, x_test, y_test) with pixels in [0, 1]."""
    if dataset == "digits":
        return load_digits(image_size=image_size or 16)
    if dataset not in TFDS_TRAIN_SPLITS:
        raise ValueError(f"unknown dataset {dataset!r}")
    x_train, y_train = load_tfds(dataset, TFDS_TRAIN_SPLITS[dataset], data_dir=data_dir)
    x_test, y_test = load_tfds(dataset, "test", data_dir=data_dir)
    return x_train / 255.0, y_train, x_test / 255.0, y_test


def _crop_and_flip(x, y):
    """CIFAR-10 augmentation of section 5 (one image): random crop of the 4-pixel zero-padded image, random flip."""
    height, width = x.shape[0], x.shape[1]
    x = tf.image.resize_with_crop_or_pad(x, height + 8, width + 8)
    x = tf.image.random_crop(x, [height, width, x.shape[2]])
    return tf.image.random_flip_left_right(x), y


def training_data(x, y, batch_size: int, augment: bool, seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        ds = ds.map(_crop_and_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------ cells
def setting_of(cell: dict, profile: Profile) -> TrainingSetting:
    return TrainingSetting(cell["schedule"], float(cell["momentum"]), profile.lr_scale)


def grid(profile_name: str) -> list[dict]:
    profile = PROFILES[profile_name]
    return [
        {"profile": profile_name, "dataset": dataset, "model": model, "schedule": s.schedule,
         "momentum": s.momentum, "batch_size": b}
        for dataset, model, settings in profile.grid for s in settings for b in profile.batch_sizes
    ]


def train(cell: dict, profile: Profile, data, out: Path, seed: int, verbose: int,
          strategy: tf.distribute.Strategy):
    """The trained model of a cell: loaded from OUT/checkpoints if finished before, else trained (resuming
    an interrupted run from its last finished epoch). Under a multi-replica `strategy` the batch size is
    the global batch, split across replicas (BatchNorm then normalises per replica)."""
    x_train, y_train, x_test, _ = data
    keras.utils.set_random_seed(seed)  # the same initial weights for every setting and batch size
    with strategy.scope():
        model = MODELS[cell["model"]](x_test.shape[1:], num_classes=10)
    name = Path(cell_file_name(cell["key"])).stem
    weights = out / "checkpoints" / f"{name}.weights.h5"
    summary = weights.with_name(f"{name}.training.json")
    if weights.exists() and summary.exists():  # trained before, evaluation did not finish
        model.load_weights(weights)
        return model, json.loads(summary.read_text())
    batch_size = int(cell["batch_size"])
    steps = steps_per_epoch(len(x_train), batch_size)
    with strategy.scope():
        model.compile(optimizer=setting_of(cell, profile).optimizer(batch_size, steps),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    backup = keras.callbacks.BackupAndRestore(str(out / "checkpoints" / f"{name}.backup"))
    ds = training_data(x_train, y_train, batch_size, augment=cell["dataset"] == "cifar10", seed=seed)
    start = time.monotonic()
    history = model.fit(ds, epochs=profile.epochs, callbacks=[backup], verbose=verbose, shuffle=False)
    seconds = time.monotonic() - start
    weights.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(weights)
    last = {k: v[-1] for k, v in history.history.items()} if history.history else {}
    training = {"train_seconds": seconds, "train_loss": float(last.get("loss", np.nan)),
                "train_accuracy": float(last.get("accuracy", np.nan))}
    training["diverged"] = not np.isfinite(training["train_loss"])
    atomic_write_text(summary, json.dumps(training))  # after the weights: both exist only once training ended
    return model, training


def evaluate(model: keras.Model, cell: dict, profile: Profile, data, seed: int) -> dict:
    x_train, y_train, x_test, y_test = data
    threat = {**THREATS, **(profile.threats or {})}[cell["dataset"]]
    n = len(x_test) if profile.eval_samples is None else profile.eval_samples
    x, y = x_test[:n], y_test[:n]
    common = {"from_logits": True, "clip_min": 0.0, "clip_max": 1.0}
    fgsm = FGM(model, threat.eps, "inf", **common)
    pgd = PGD(model, threat.eps, "inf", steps=threat.pgd_steps, step_size=threat.pgd_step_size,
              rand_init=True, seed=seed, **common)
    row = {
        "test_accuracy": float(np.mean(predict_labels(model, x_test, batch_size=500) == y_test)),
        # The final weights on the training set, inference mode: far below the last epoch's running accuracy
        # means training ended on a loss spike (unstable SGD), which the single end point then reflects.
        "final_train_accuracy": float(np.mean(predict_labels(model, x_train, batch_size=500) == y_train)),
        "fgsm_accuracy": robust_accuracy(model, fgsm, x, y, batch_size=500),
        "pgd_accuracy": robust_accuracy(model, pgd, x, y, batch_size=500),
        "eps": threat.eps, "pgd_steps": threat.pgd_steps, "pgd_step_size": threat.pgd_step_size,
        "eval_samples": n,
    }
    for preset, settings in profile.hessian.items():
        # The first images of the test set, as HessianFlow's first test batch.
        result = top_hessian_eigenvalue(model, x_test, y_test, settings=settings, from_logits=True, seed=seed)
        row.update({f"lambda1_{preset}": result.eigenvalue, f"lambda1_{preset}_iterations": result.iterations,
                    f"lambda1_{preset}_converged": result.converged})
    return row


def make_run_one(args, profile: Profile):
    verbose = 2 if args.progress and args.profile == "paper" else 0
    strategy = tf.distribute.get_strategy()
    if args.strategy == "mirrored":  # every GPU; on a CPU-only host every logical CPU (as the tests configure)
        strategy = mirrored_strategy()

    def run_one(cell: dict) -> dict:
        cell = dict(cell, key=cell_key(cell))
        data = load_data(cell["dataset"], profile.image_size, args.data_dir)
        model, training = train(cell, profile, data, Path(args.out), args.seed, verbose, strategy)
        start = time.monotonic()
        row = evaluate(model, cell, profile, data, args.seed)
        setting = setting_of(cell, profile)
        b = int(cell["batch_size"])
        return {"setting": setting.label, "learning_rate": setting.initial_learning_rate(b),
                "epochs": profile.epochs, "steps_per_epoch": steps_per_epoch(len(data[0]), b),
                "train_samples": len(data[0]), **training, **row, "eval_seconds": time.monotonic() - start}

    return run_one


# ------------------------------------------------------------------------------------------------ figures
METRICS = {"test_accuracy": "test accuracy", "fgsm_accuracy": "FGSM accuracy", "pgd_accuracy": "PGD accuracy",
           "lambda1_hessianflow": "λ1 (HessianFlow preset)", "lambda1_converged": "λ1 (converged preset)"}


def _panel_figure(df: pd.DataFrame, hue: str, title: str):
    import seaborn as sns

    metrics = [m for m in METRICS if m in df and df[m].notna().any()]
    long = df.melt(id_vars=["batch_size", hue], value_vars=metrics, var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRICS)
    g = sns.relplot(data=long, x="batch_size", y="value", hue=hue, col="metric", kind="line", marker="o",
                    facet_kws={"sharey": False}, col_wrap=min(len(metrics), 3), height=2.6, aspect=1.2)
    g.set_titles("{col_name}")
    batch_sizes = sorted(df["batch_size"].unique())
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
        ax.minorticks_off()
        if "accuracy" in ax.get_title():  # a common scale, so that "flat" looks flat
            ax.set_ylim(-0.02, 1.02)
    g.set_axis_labels("batch size", "")
    g.figure.suptitle(title, y=1.03)
    return g


def write_figures(table: pd.DataFrame, out: Path, profile_name: str) -> list[str]:
    """Per dataset and model: the settings figure (Figs 1-10) and the two momentum figures (Figs 11-22)."""
    plots.set_style()
    names = []
    for (dataset, model), df in table.groupby(["dataset", "model"]):
        base = df[(df["momentum"] == 0) | (df["schedule"] == "Benchmark")]
        views = [("settings", base, "setting", "LR and LR/BS without momentum, and the Benchmark")]
        for schedule in ("LR", "LR/BS"):
            sweep = df[df["schedule"] == schedule]
            if sweep["momentum"].nunique() > 1:
                views.append((f"momentum_{schedule.replace('/', '')}", sweep, "momentum", f"{schedule}: momentum"))
        for view, data, hue, title in views:
            name = f"{dataset}_{model}_{view}.png".lower()
            plots.save_figure(_panel_figure(data, hue, f"{model} on {dataset} ({profile_name}): {title}"), out / name)
            names.append(name)
    return names


# ------------------------------------------------------------------------------------------------ claims
FLAT_ACCURACY = 0.05  # "roughly constant": accuracy spread across batch sizes at most 5 points (tfadv's)
FLAT_CURVATURE = 2.0  # ... and largest / smallest λ1 across batch sizes at most 2 (tfadv's)
DROP = 0.02  # "degrades": at least 2 points lower at the largest batch than at the smallest (tfadv's)
#: A model at most twice chance accuracy (10 classes) did not train (e.g. diverged): its λ1 says nothing about
#: the minimum SGD found, so the curvature claims leave it out (the accuracy claims keep it).
UNTRAINED_ACCURACY = 0.2
SPIKE_GAP = 0.1  # final-weights training accuracy this far below the last epoch's running accuracy
ORDER = "values from the smallest to the largest batch size"


def _fmt(values) -> str:
    return "→".join(f"{v:.2f}" for v in values)


def _line(table: pd.DataFrame, dataset: str, model: str, schedule: str, momentum: float) -> pd.DataFrame:
    df = table[(table["dataset"] == dataset) & (table["model"] == model) & (table["schedule"] == schedule)]
    return df[np.isclose(df["momentum"], momentum)].sort_values("batch_size")


def _each_line(table: pd.DataFrame, schedule: str, momentum: float, check) -> tuple[list[bool], str]:
    """check(line) -> (holds, text) on the batch-size line of every (dataset, model) that has one."""
    holds, texts = [], []
    for dataset, model in sorted(set(zip(table["dataset"], table["model"]))):
        line = _line(table, dataset, model, schedule, momentum)
        if line["batch_size"].nunique() >= 2:
            ok, text = check(line)
            holds.append(bool(ok))
            texts.append(f"{dataset}/{model}: {text}")
    return holds, "<br>".join(texts) or "-"


def _with_momentum(table: pd.DataFrame, schedule: str, column: str) -> tuple[list[tuple[float, float]], str]:
    """Per (dataset, model, batch size): `column` without momentum and with the largest momentum swept."""
    swept = table[(table["schedule"] == schedule) & (table["momentum"] > 0)]
    pairs, texts = [], []
    for (dataset, model), df in swept.groupby(["dataset", "model"]):
        momentum = df["momentum"].max()
        both = _line(table, dataset, model, schedule, 0.0).merge(
            _line(table, dataset, model, schedule, momentum), on="batch_size", suffixes=("_m0", "_m"))
        if not both.empty:
            pairs += list(zip(both[f"{column}_m0"], both[f"{column}_m"]))
            without, with_m = _fmt(both[f"{column}_m0"]), _fmt(both[f"{column}_m"])
            texts.append(f"{dataset}/{model} m=0: {without}; m={momentum:g}: {with_m}")
    return pairs, "<br>".join(texts) or "-"


def _all(holds: list[bool]) -> str:
    if not holds:
        return "not measured"
    return "reproduced" if all(holds) else "partly reproduced" if any(holds) else "not reproduced"


def _most(holds: list[bool]) -> str:
    return "not measured" if not holds else "reproduced" if np.mean(holds) > 0.5 else "not reproduced"


def _spread_ok(line, metrics) -> tuple[bool, str]:
    spread = max(line[m].max() - line[m].min() for m in metrics)
    return spread <= FLAT_ACCURACY, "; ".join(f"{m.split('_')[0]} {_fmt(line[m])}" for m in metrics)


def claims(table: pd.DataFrame, lam: str = "lambda1_hessianflow") -> list[Claim]:
    """The paper's qualitative claims, checked on the measured table; λ1 read from column `lam`."""
    out = []
    trained = table[table["test_accuracy"] > UNTRAINED_ACCURACY]
    left_out = f"; models at test accuracy ≤ {UNTRAINED_ACCURACY:g} left out ({len(table) - len(trained)} here)"
    purple = "purple (LR/BS) lines nearly flat, Figs 1-10, 17-22; no numbers given"
    holds, text = _each_line(table, "LR/BS", 0.0, lambda line: _spread_ok(line, ["test_accuracy"]))
    out.append(Claim("LR/BS keeps test accuracy roughly constant across batch sizes", purple, text, _all(holds),
                     f"flat = spread ≤ {FLAT_ACCURACY:.2f} (tfadv's threshold); {ORDER}"))
    holds, text = _each_line(table, "LR/BS", 0.0, lambda line: _spread_ok(line, ["fgsm_accuracy", "pgd_accuracy"]))
    out.append(Claim("LR/BS keeps FGSM and PGD accuracy roughly constant across batch sizes", purple, text,
                     _all(holds), f"flat = spread ≤ {FLAT_ACCURACY:.2f} for both (tfadv's threshold); {ORDER}"))

    def flat_curvature(line):
        values = line[lam].to_numpy()
        return bool(np.all(values > 0) and values.max() / values.min() <= FLAT_CURVATURE), f"λ1 {_fmt(values)}"

    holds, text = _each_line(trained, "LR/BS", 0.0, flat_curvature)
    out.append(Claim("LR/BS keeps the top Hessian eigenvalue λ1 roughly constant", "Figs 3, 5, 8, 10 (purple)",
                     text, _all(holds),
                     f"flat = max/min ≤ {FLAT_CURVATURE:g} (tfadv's threshold); λ1 = `{lam}`{left_out}"))

    def degrades(line):
        first, last = line.iloc[0], line.iloc[-1]
        ok = all(last[m] < first[m] - DROP for m in ("test_accuracy", "fgsm_accuracy"))
        return ok, f"test {_fmt(line['test_accuracy'])}; FGSM {_fmt(line['fgsm_accuracy'])}"

    holds, text = _each_line(table, "LR", 0.0, degrades)
    out.append(Claim("Fixed LR: test and FGSM accuracy drop as the batch size grows",
                     "Figs 1, 6: both decrease with batch size", text, _all(holds),
                     f"drop = at the largest batch ≥ {DROP:.2f} below the smallest (tfadv's threshold)"))

    def sharper(line):
        return line[lam].iloc[-1] > line[lam].iloc[0], f"λ1 {_fmt(line[lam])}"

    lr_holds, lr_text = _each_line(trained, "LR", 0.0, sharper)
    bench_holds, bench_text = _each_line(trained, "Benchmark", 0.9, sharper)
    out.append(Claim("λ1 increases with batch size (fixed LR and Benchmark)",
                     "Figs 3, 8 \"confirm that with increase in batch size the curvature increases\"",
                     f"LR: {lr_text}<br>Benchmark: {bench_text}", _all(lr_holds + bench_holds),
                     f"increase = λ1 at the largest batch above λ1 at the smallest{left_out}"))

    for schedule, figs in (("LR", "Figs 13, 16"), ("LR/BS", "Figs 19, 22")):
        pairs, text = _with_momentum(trained, schedule, lam)
        lower = [with_m < without for without, with_m in pairs]
        out.append(Claim(f"{schedule}: momentum lowers λ1 in most cases", f"{figs}: lower curvature with momentum",
                         text, _most(lower), f"lower at {sum(lower)} of {len(lower)} (model, batch size) points"
                         f"{left_out}" if lower else ""))
    pairs, text = _with_momentum(table, "LR", "fgsm_accuracy")
    better = [with_m > without for without, with_m in pairs]
    out.append(Claim("LR: larger momentum gives better FGSM accuracy in most cases", "Figs 11, 14", text,
                     _most(better), f"better at {sum(better)} of {len(better)} points" if better else ""))

    def counter_example(line):
        first, last = line.iloc[0], line.iloc[-1]
        ok = all(last[m] > first[m] for m in ("fgsm_accuracy", "pgd_accuracy", lam))
        return ok, f"FGSM {_fmt(line['fgsm_accuracy'])}; PGD {_fmt(line['pgd_accuracy'])}; λ1 {_fmt(line[lam])}"

    fashion = table[(table["dataset"] == "fashion_mnist") & (table["model"] == "StdCNN")]
    holds, text = _each_line(fashion[fashion["test_accuracy"] > UNTRAINED_ACCURACY], "LR", 0.0, counter_example)
    out.append(Claim("Counter-example: StdCNN on Fashion-MNIST with fixed LR has higher λ1 and higher FGSM and PGD "
                     "accuracy at large batch", "Figs 9, 10", text, _all(holds),
                     "this profile trains no StdCNN on Fashion-MNIST" if not holds else "largest vs smallest batch"))
    out.append(Claim("Benchmark: test accuracy and λ1 similar to Yao et al. (2018b)", "Yao et al.'s values", "-",
                     "not measured", "Yao et al.'s numbers could not be read; tfadv compares nothing"))
    return out


def write_report_md(table: pd.DataFrame, out: Path, profile_name: str, figures: list[str], wall: float) -> None:
    profile = PROFILES[profile_name]
    found = claims(table, "lambda1_hessianflow")
    if "lambda1_converged" in table:
        again = {c.claim: c.verdict for c in claims(table, "lambda1_converged")}
        found = [dataclasses.replace(c, note=(c.note + f"; with the converged preset: {again[c.claim]}").lstrip("; "))
                 if "λ1" in c.claim and c.verdict != "not measured" else c for c in found]
    columns = ["dataset", "model", "setting", "batch_size", "learning_rate", "train_loss", "test_accuracy",
               "fgsm_accuracy", "pgd_accuracy", "lambda1_hessianflow", "lambda1_hessianflow_iterations",
               "lambda1_converged", "lambda1_converged_iterations", "train_seconds"]
    shown = table[[c for c in columns if c in table]].sort_values(["dataset", "model", "setting", "batch_size"])
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    sections = [
        ("Measurements", _markdown_table(shown)),
        ("Figures", "\n".join(f"![{f}]({f})" for f in figures)),
        ("Run", f"Profile `{profile_name}`: {profile.note}. {len(table)} trained models in results.csv. This "
                f"invocation took {wall:.0f} s on {platform.node()} ({os.cpu_count()} CPUs, load average "
                f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end; other jobs may share the machine); "
                f"training took {table['train_seconds'].sum():.0f} s and evaluation "
                f"{table['eval_seconds'].sum():.0f} s "
                "summed over the models (a model trained by an earlier invocation counts its own time). "
                "λ1 is the Hessian of the mean cross-entropy on the first test images, model in inference "
                "mode (BatchNorm moving statistics, Dropout off), no weight-decay term; power iteration returns "
                "the eigenvalue of largest magnitude, reported with its sign."),
    ]
    spike = table["final_train_accuracy"] < table["train_accuracy"] - SPIKE_GAP if "final_train_accuracy" in table \
        else False
    unstable = table[(table["test_accuracy"] <= UNTRAINED_ACCURACY) | spike]
    if not unstable.empty:
        sections.insert(1, ("Models that did not train or ended on a loss spike", (
            f"Test accuracy ≤ {UNTRAINED_ACCURACY:g} (did not train; left out of the λ1 claims), or final weights "
            f"more than {SPIKE_GAP:g} below the last epoch's running training accuracy (the last steps jumped "
            "out of the minimum, so this end point is one noisy sample of an oscillating run):\n\n"
            + _markdown_table(unstable[["dataset", "model", "setting", "batch_size", "learning_rate", "train_loss",
                                        "train_accuracy", "final_train_accuracy", "test_accuracy"]]))))
    threats = {**THREATS, **(profile.threats or {})}
    threat_rows = {d: threats[d] for d in sorted(set(table["dataset"]))}
    settings = {
        "batch sizes": ", ".join(map(str, profile.batch_sizes)) + " (the paper does not list its grid)",
        "PGD (L-inf, random start, 1 restart, last iterate)": "; ".join(
            f"{d}: eps {t.eps:g}, {t.pgd_steps} steps of {t.pgd_step_size:g}" for d, t in threat_rows.items()),
        "activations / padding": "ReLU everywhere; 'valid' convs in M1 and StdCNN; C1 'same' convs, 3x3/2 pooling, "
                                 "Table 1 order Conv-ReLU-MP-BN",
        "ResNet18": "CIFAR variant: 3x3 stem, no max-pool, BasicBlock [2,2,2,2], projection shortcuts",
        "Benchmark weight decay": "none (Yao et al.'s value is not in the text we could read; HessianFlow's "
                                  "driver defaults to 0)",
        "MNIST / Fashion-MNIST augmentation": "none (the paper says only 'appropriate augmentations')",
        "Hessian data": "the first test images (HessianFlow: its first test batch of 200); presets " + ", ".join(
            f"{k} ({v.num_samples} images, ≤{v.max_iterations} iterations, relative tol {v.tolerance:g})"
            for k, v in profile.hessian.items()),
        "initial weights / data order": "one seed per model, shared by every setting and batch size",
        "FGSM/PGD loss": "mean cross-entropy on logits, pixels clipped to [0, 1]",
    }
    if profile_name != "paper":
        settings["demo / smoke scale"] = profile.note
    write_report(out / "report.md", TITLE, KEY, profile_name, found, sections, settings)


def _markdown_table(df: pd.DataFrame) -> str:
    return markdown_table(df.columns, df.itertuples(index=False))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = build_parser(KEY, TITLE)
    parser.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                        help="tf.distribute strategy for training: mirrored = synchronous data parallelism over "
                             "all visible GPUs (the batch size stays the global batch)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    out = Path(args.out)
    start = time.monotonic()
    table = run_grid(args, grid(args.profile), make_run_one(args, profile), desc=f"{KEY} models")
    table = table[table["profile"] == args.profile] if "profile" in table else table
    if table.empty:
        print("no finished cells yet: nothing to plot or report", file=sys.stderr)
        return table
    figures = write_figures(table, out, args.profile)
    write_report_md(table, out, args.profile, figures, time.monotonic() - start)
    print(f"wrote {out / 'results.csv'}, {len(figures)} figures and {out / 'report.md'}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
