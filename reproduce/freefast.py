"""Reproduce Capaldi & Capozzi 2020, "Free vs Fast adversarial training" (`make reproduce-freefast`).

    python -m reproduce.freefast --profile paper|demo|smoke --out DIR [--shard i/n] [--merge DIR ...]

The paper's tables: Free-m (m in 2, 4, 8, 10) and Fast (FGSM with a uniform random start, alpha = 10/255
or 16/255, batch 128 or 256) at eps = 8/255 on CIFAR-10, PreActResNet18 for 45 epochs, then Free m=8 vs
Fast alpha=10/255 for 90 epochs on PreActResNet18 and on the seed's ResNet50; cyclic learning rate, mixed
precision; evaluation with PGD-10/20/50 (step 2/255, one random restart), model in inference mode.

Epochs follow the seed's code, not Shafahi et al.: an epoch is one pass over the training set, and in a
Free-m epoch every minibatch is replayed m times (the seed's `lr_steps = epochs * len(loader) * m`). So a
Free-m run of E epochs makes m * E * N/B SGD steps, m times as many as Fast's E * N/B, and its train time
grows with m, as the paper's tables show.

Each cell (one trained model) is resumable twice over: finished cells are skipped (tfadv.experiments.runner), and a
cell killed mid-training resumes from its last finished epoch (keras.callbacks.BackupAndRestore), with its
per-epoch log and the trained weights kept under OUT/work/.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfadv.experiments import figures as plots, report, runner
from tfadv.attacks import PGD
from tfadv.evaluation import robust_accuracy
from tfadv.models import cifar_resnets
from tfadv.precision import dtype_policy
from tfadv.experiments.store import CellStore, atomic_write_csv, cell_file_name, merge

KEY = "freefast"
TITLE = "Free vs Fast adversarial training (Capaldi & Capozzi 2020)"
CIFAR_EPS = 8 / 255

#: alpha is stored as a multiple of eps so the grid means the same on every dataset: at eps = 8/255,
#: 1.25 eps = 10/255 (the working step) and 2 eps = 16/255 (the one that overfits catastrophically).
ALPHA_RATIOS = {1.25: "10/255", 2.0: "16/255"}

#: A model "collapses" (catastrophic overfitting) when its PGD accuracy falls to at most this.
COLLAPSE_ACCURACY = 0.05
#: ... or, along a training curve, when PGD accuracy drops by more than this below its best epoch
#: (Wong et al.'s early-stopping threshold).
COLLAPSE_DROP = 0.2
#: Tolerance bands for "reproduced" on the paper's CIFAR-10 numbers (the anchors' notes suggest
#: +-1 point clean, +-1.5 points robust; the seed reports one seed per cell).
NATURAL_TOLERANCE = 0.01
ROBUST_TOLERANCE = 0.015


@dataclasses.dataclass(frozen=True)
class Profile:
    """Everything a profile fixes; fields marked in `tfadv_choices` are tfadv's, not the paper's."""

    name: str
    dataset: str                      # "cifar10" (tfds) or "digits" (scikit-learn, offline)
    cells: tuple[dict, ...]
    eps: float
    eval_step_size: float
    width: int = 64                   # base width of both networks (64 = the paper's)
    digits_size: int = 8              # digits images for PreActResNet18 (ResNet50 needs >= 32)
    train_points: int | None = None   # None = the whole training split
    eval_points: int | None = None    # None = the whole test split
    eval_steps: tuple[int, ...] = (10, 20, 50)
    restarts: int = 1
    curve_points: int = 1000          # test points for the per-epoch curves
    curve_steps: int = 10             # PGD steps for the per-epoch curves
    lr_max: tuple[tuple[str, float], ...] = (("free", 0.04), ("fast", 0.2), ("pgd", 0.2))
    weight_decay: float = 5e-4
    pgd_train_steps: int = 7
    augment: bool = False             # random crop (pad 4) + horizontal flip, as the seed's CIFAR loader
    dtype_policy: str = "float32"
    xla: bool = False
    eval_batch_size: int = 256
    eager: bool = False               # smoke: run every tf.function eagerly (tracing costs more than it saves)
    tfadv_choices: tuple[tuple[str, str], ...] = ()

    def lr(self, method: str) -> float:
        return dict(self.lr_max)[method]


def _cell(method: str, architecture: str, batch_size: int, epochs: int, replays: int | None = None,
          alpha_ratio: float | None = None) -> dict:
    return {"method": method, "architecture": architecture, "batch_size": batch_size, "epochs": epochs,
            "replays": replays, "alpha_ratio": alpha_ratio}


def paper_cells() -> tuple[dict, ...]:
    preact = "preact_resnet18"
    cells = [_cell("free", preact, 128, 45, replays=m) for m in (2, 4, 8, 10)]
    cells += [_cell("fast", preact, bs, 45, alpha_ratio=a) for a in (1.25, 2.0) for bs in (128, 256)]
    for arch in (preact, "resnet50"):
        cells += [_cell("free", arch, 128, 90, replays=8), _cell("fast", arch, 128, 90, alpha_ratio=1.25)]
    return tuple(cells)


def demo_cells() -> tuple[dict, ...]:
    preact = "preact_resnet18"
    cells = [_cell("fast", preact, 128, 20, alpha_ratio=a) for a in (1.25, 2.0)]
    cells += [_cell("free", preact, 128, 20, replays=m) for m in (2, 4, 8)]
    cells += [_cell("pgd", preact, 128, 20)]
    return tuple(cells)


def smoke_cells() -> tuple[dict, ...]:
    return (
        _cell("fast", "preact_resnet18", 32, 2, alpha_ratio=1.25),
        _cell("fast", "preact_resnet18", 32, 2, alpha_ratio=2.0),
        _cell("free", "preact_resnet18", 32, 2, replays=2),
    )


PROFILES = {
    "paper": Profile(
        name="paper", dataset="cifar10", cells=paper_cells(), eps=CIFAR_EPS, eval_step_size=2 / 255,
        augment=True, dtype_policy="mixed_float16", xla=True,
        tfadv_choices=(
            ("per-epoch curves", "PGD-10 (1 restart, step 2/255) on the first 1,000 test images after every "
                                 "epoch; the seed logged its 90-epoch runs on the full test set"),
            ("mixed precision", "Keras mixed_float16 with dynamic loss scaling (Keras' default); the seed used "
                                "apex O2 with loss scale 1"),
            ("evaluation precision", "final and per-epoch PGD run on a float32 copy of the weights, as the seed "
                                     "casts the model to float32"),
        ),
    ),
    "demo": Profile(
        name="demo", dataset="digits", cells=demo_cells(), eps=0.3, eval_step_size=0.3 / 4, width=8,
        curve_points=150, curve_steps=10, lr_max=(("free", 0.04), ("fast", 0.2), ("pgd", 0.2)),
        tfadv_choices=(
            ("data", "scikit-learn digits, 8x8 grey, 1,347 train / 450 test (stratified, seed 0)"),
            ("eps", "0.3 on [0, 1] pixels, the MNIST budget of Madry et al. and Wong et al. (digits are "
                    "MNIST-like); not tuned to make catastrophic overfitting appear: whether Fast at α = 2ε "
                    "collapses at this scale is what the demo measures"),
            ("PGD step", "eps/4 for evaluation and PGD-7 training (the ratio of 2/255 to 8/255)"),
            ("network", "PreActResNet18 with base width 8 (the paper's is 64), no input normalisation"),
            ("grid", "Fast α=1.25ε and 2ε, Free m=2, 4, 8, PGD-7 (a baseline the paper quotes but does not run), "
                     "batch 128, 20 epochs each (the paper: 45 and 90 on CIFAR-10); sized for minutes on 2 CPUs"),
            ("precision", "float32 (mixed_float16 is several times slower on a CPU)"),
            ("per-epoch curves", "PGD-10 on the first 150 test points after every epoch (enough to see a "
                                 "collapse of 0.2; the final table uses all 450)"),
        ),
    ),
    "smoke": Profile(
        name="smoke", dataset="digits", cells=smoke_cells(), eps=0.3, eval_step_size=0.3 / 4, width=4,
        train_points=64, eval_points=16, curve_points=16, curve_steps=2, pgd_train_steps=2,
        eval_batch_size=16, eager=True,
        tfadv_choices=(("scale", "tiny: 64 digits, width-4 networks, 1-2 epochs; checks the plumbing only"),),
    ),
}


# ------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def load_data(dataset: str, image_size: int, channels: int, train_points: int | None,
              eval_points: int | None, data_dir: str | None) -> Data:
    """Images in [0, 1], NHWC float32, int labels."""
    if dataset == "cifar10":
        from tfadv.datasets.tfds_data import load_tfds

        x_train, y_train = load_tfds("cifar10", "train", data_dir=data_dir)
        x_test, y_test = load_tfds("cifar10", "test", data_dir=data_dir)
        x_train, x_test = x_train / 255.0, x_test / 255.0
    elif dataset == "digits":
        from tfadv.datasets.digits import load_digits

        x_train, y_train, x_test, y_test = load_digits(image_size=image_size, channels=channels)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    x_train, y_train = x_train[:train_points], y_train[:train_points]
    x_test, y_test = x_test[:eval_points], y_test[:eval_points]
    return Data(*(np.asarray(a, dtype) for a, dtype in
                  ((x_train, np.float32), (y_train, np.int64), (x_test, np.float32), (y_test, np.int64))))


def data_for(profile: Profile, architecture: str, data_dir: str | None) -> Data:
    if profile.dataset == "cifar10":
        return load_data("cifar10", 32, 3, profile.train_points, profile.eval_points, data_dir)
    size = 32 if architecture == "resnet50" else profile.digits_size
    return load_data("digits", size, 1, profile.train_points, profile.eval_points, None)


def training_dataset(data: Data, batch_size: int, augment: bool, seed: int) -> tf.data.Dataset:
    """Shuffled every epoch; with `augment`, torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip."""
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    ds = ds.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    if augment:
        height, width, channels = data.x_train.shape[1:]

        def crop_flip(x, y):
            x = tf.pad(x, [[4, 4], [4, 4], [0, 0]])  # zeros, as torchvision's default fill
            x = tf.image.random_crop(x, [height, width, channels])
            return tf.image.random_flip_left_right(x), y

        ds = ds.map(crop_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------ models
@contextlib.contextmanager
def functions_eagerly(eager: bool) -> Iterator[None]:
    """tf.config.run_functions_eagerly for one configuration, restored afterwards."""
    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(eager)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(previous)


def build_network(profile: Profile, architecture: str, data: Data) -> keras.Model:
    """A plain network (logits) in the current dtype policy, sized for the profile's data."""
    kwargs = {"input_shape": data.x_train.shape[1:], "width": profile.width}
    if profile.dataset != "cifar10":
        kwargs.update(mean=None, std=None)
    if architecture == "resnet50":
        kwargs["num_classes"] = 1000  # the seed's unmodified torchvision head
    return cifar_resnets.build(architecture, **kwargs)


def adversarial_model(cell: dict, profile: Profile, network: keras.Model, seed: int) -> keras.Model:
    """The cell's adversarial-training model around `network` (shares its layers and weights).

    The training attack runs BatchNorm in training mode (the seed's code); the model's own `evaluate`
    attack is switched off (eval_steps=0): this runner evaluates a float32 copy with tfadv.attacks.PGD.
    """
    from tfadv.training import FastAdversarialModel, FreeAdversarialModel, PGDAdversarialModel

    eps, method = profile.eps, cell["method"]
    common = {"eps": eps, "clip_min": 0.0, "clip_max": 1.0, "weight_decay": profile.weight_decay,
              "eval_steps": 0, "seed": seed, "name": f"{method}_{network.name}"}
    if method == "fast":
        return FastAdversarialModel(network.inputs, network.outputs, alpha=cell["alpha_ratio"] * eps, **common)
    if method == "free":
        return FreeAdversarialModel(network.inputs, network.outputs, replays=cell["replays"],
                                    batch_size=cell["batch_size"], **common)
    if method == "pgd":
        return PGDAdversarialModel(network.inputs, network.outputs, steps=profile.pgd_train_steps,
                                   step_size=profile.eval_step_size, **common)
    raise ValueError(f"unknown method {method!r}")


def optimizer_steps(cell: dict, steps_per_epoch: int) -> int:
    """SGD steps of the whole run: Free replays each minibatch m times, each replay one step."""
    return cell["epochs"] * steps_per_epoch * (cell["replays"] or 1)


def compile_model(model: keras.Model, cell: dict, profile: Profile, steps_per_epoch: int) -> None:
    from tfadv.training.schedules import CyclicLearningRate

    schedule = CyclicLearningRate(max_learning_rate=profile.lr(cell["method"]),
                                  total_steps=optimizer_steps(cell, steps_per_epoch))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile="auto" if profile.xla else False,
        run_eagerly=profile.eager,
    )


# ------------------------------------------------------------------------------------- evaluation
def pgd_attack(model: keras.Model, profile: Profile, steps: int, seed: int) -> PGD:
    """The seed's evaluation attack: L-inf PGD, random start, fixed step, inference mode; like its
    `attack_pgd`, a sample stops moving once it is misclassified."""
    return PGD(model, eps=profile.eps, norm="inf", steps=steps, step_size=profile.eval_step_size, rand_init=True,
               from_logits=True, clip_min=0.0, clip_max=1.0, seed=seed, select="first_success", training=False,
               jit_compile=profile.xla)


def natural_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    correct = [np.argmax(model(x[i:i + batch_size], training=False), -1) == y[i:i + batch_size]
               for i in range(0, len(x), batch_size)]
    return float(np.mean(np.concatenate(correct)))


def robust_evaluator(model: keras.Model, profile: Profile, seed: int, steps: Sequence[int] | None = None
                     ) -> Callable[..., dict[str, float]]:
    """evaluate(x, y, verbose=False) -> natural accuracy and PGD-k accuracy for each k (a sample is robust
    only if every restart fails). The attacks are built once, so repeated calls (one per epoch) reuse
    their compiled graphs."""
    attacks = {k: pgd_attack(model, profile, k, seed) for k in (steps or profile.eval_steps)}

    def evaluate(x: np.ndarray, y: np.ndarray, verbose: bool = False) -> dict[str, float]:
        result = {"natural_accuracy": natural_accuracy(model, x, y, profile.eval_batch_size)}
        for k, attack in attacks.items():
            result[f"pgd{k}_accuracy"] = robust_accuracy(model, attack, x, y, batch_size=profile.eval_batch_size,
                                                         restarts=profile.restarts, verbose=verbose)
        return result

    return evaluate


# --------------------------------------------------------------------------------------- training
class EpochLog(keras.callbacks.Callback):
    """Per-epoch training time, training metrics and the validation curves (Figs 1-8), saved every epoch.

    Listed before BackupAndRestore, so an epoch's time excludes the checkpoint and the curve evaluation.
    Rows are keyed by epoch and the file is rewritten whole: an epoch re-run after a kill replaces its row.
    """

    def __init__(self, path: Path, evaluate: Callable[[], dict[str, float]]):
        super().__init__()
        self.path = path
        self.evaluate = evaluate
        self.rows: dict[int, dict] = {}
        if path.is_file():
            self.rows = {int(r["epoch"]): r for r in pd.read_csv(path).to_dict("records")}
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        row = {"epoch": epoch + 1, "epoch_seconds": seconds}
        row.update({f"train_{k}": float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        row.update(self.evaluate())
        self.rows[epoch + 1] = row
        atomic_write_csv(pd.DataFrame([self.rows[e] for e in sorted(self.rows)]), self.path)


def train_and_evaluate(cell: dict, profile: Profile, args) -> tuple[dict, pd.DataFrame]:
    """Train one cell (resuming from OUT/work/<cell> if killed), then evaluate it; return (row, curve)."""
    key = runner.cell_key(cell)
    work = Path(args.out) / "work" / Path(cell_file_name(key)).stem
    work.mkdir(parents=True, exist_ok=True)
    (work / "cell.txt").write_text(key + "\n")
    trained_path = work / "trained.weights.h5"
    data = data_for(profile, cell["architecture"], args.data_dir)
    curve_x, curve_y = data.x_test[:profile.curve_points], data.y_test[:profile.curve_points]

    keras.utils.set_random_seed(args.seed)
    evaluation_net = build_network(profile, cell["architecture"], data)  # float32: the seed evaluates in fp32
    if not trained_path.is_file():
        train_set = training_dataset(data, cell["batch_size"], profile.augment, args.seed)
        steps_per_epoch = int(train_set.cardinality())
        with dtype_policy(profile.dtype_policy):
            keras.utils.set_random_seed(args.seed)
            model = adversarial_model(cell, profile, build_network(profile, cell["architecture"], data), args.seed)
            compile_model(model, cell, profile, steps_per_epoch)

        curve_evaluation = robust_evaluator(evaluation_net, profile, args.seed, steps=(profile.curve_steps,))

        def curve_point() -> dict[str, float]:
            cifar_resnets.copy_weights(model, evaluation_net)
            measured = curve_evaluation(curve_x, curve_y)
            return {"val_natural_accuracy": measured["natural_accuracy"],
                    "val_pgd_accuracy": measured[f"pgd{profile.curve_steps}_accuracy"]}

        callbacks = [EpochLog(work / "epochs.csv", curve_point),
                     keras.callbacks.BackupAndRestore(str(work / "backup"))]
        model.fit(train_set, epochs=cell["epochs"], callbacks=callbacks,
                  verbose=2 if args.progress and profile.name != "smoke" else 0)
        cifar_resnets.copy_weights(model, evaluation_net)
        evaluation_net.save_weights(trained_path)
    evaluation_net.load_weights(trained_path)

    curve = pd.read_csv(work / "epochs.csv")
    if len(curve) != cell["epochs"]:
        raise RuntimeError(f"{work / 'epochs.csv'} holds {len(curve)} epochs, expected {cell['epochs']}; "
                           f"delete {work} to retrain this cell")
    measured = robust_evaluator(evaluation_net, profile, args.seed)(
        data.x_test, data.y_test, verbose=args.progress and profile.name != "smoke")
    train_seconds = float(curve["epoch_seconds"].sum())
    row = {
        **measured,
        "train_minutes": train_seconds / 60.0,
        "avg_epoch_seconds": train_seconds / cell["epochs"],
        "sgd_steps": optimizer_steps(cell, int(np.ceil(len(data.x_train) / cell["batch_size"]))),
        "eps": profile.eps,
        "alpha": None if cell["alpha_ratio"] is None else cell["alpha_ratio"] * profile.eps,
        "eval_step_size": profile.eval_step_size,
        "restarts": profile.restarts,
        "eval_points": len(data.x_test),
        "dtype_policy": profile.dtype_policy,
        "dataset": profile.dataset,
        "profile": profile.name,
        "seed": args.seed,
    }
    return row, curve


def run(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = runner.build_parser(KEY, TITLE)
    parser.add_argument("--keep-work", action="store_true",
                        help="keep OUT/work/<cell>/ (per-epoch log, trained weights) after a cell is finished")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    curves_store = CellStore(Path(args.out) / "curves")

    def run_one(cell: dict) -> dict:
        with functions_eagerly(profile.eager):
            row, curve = train_and_evaluate(cell, profile, args)
        curves_store.write(runner.cell_key(cell), [{**cell, **r} for r in curve.to_dict("records")])
        return row

    started, load_before = time.perf_counter(), os.getloadavg()
    store = CellStore(args.out)
    trained_here = 0 if args.merge else sum(
        not store.done(runner.cell_key(c)) for c in runner.select_shard(profile.cells, args.shard))
    table = runner.run_grid(args, profile.cells, run_one, desc=f"{KEY} ({profile.name})")
    curves = merge(Path(args.out) / "curves", *[Path(d) / "curves" for d in args.merge_dirs])
    atomic_write_csv(curves, Path(args.out) / "curves.csv")
    if not args.keep_work:
        finished = set(table["cell"]) if "cell" in table else set()
        for cell in profile.cells:
            key = runner.cell_key(cell)
            if key in finished:
                shutil.rmtree(Path(args.out) / "work" / Path(cell_file_name(key)).stem, ignore_errors=True)
    machine = {"wall_seconds": time.perf_counter() - started, "load_before": load_before,
               "load_after": os.getloadavg(), "cpus": os.cpu_count(),
               "gpus": len(tf.config.list_physical_devices("GPU")),
               "cells_trained": trained_here}
    write_outputs(args.out, profile, table, curves, machine)
    return table


# ----------------------------------------------------------------------------------- figures/report
def config_label(row) -> str:
    if row["method"] == "free":
        label = f"Free m={int(row['replays'])}"
    elif row["method"] == "fast":
        label = f"Fast α={row['alpha_ratio']:g}ε"
    else:
        label = "PGD-7"
    return f"{label}, bs {int(row['batch_size'])}"


ARCH_LABEL = {"preact_resnet18": "PreActResNet18", "resnet50": "ResNet50"}


def _long_curves(curves: pd.DataFrame) -> pd.DataFrame:
    curves = curves.assign(config=curves.apply(config_label, axis=1),
                           network=curves["architecture"].map(ARCH_LABEL))
    value_columns = {"train_accuracy": "train (adversarial batches)", "val_natural_accuracy": "validation (natural)",
                     "val_pgd_accuracy": "validation (PGD)"}
    present = [c for c in value_columns if c in curves]
    long = curves.melt(id_vars=["config", "network", "method", "epochs", "epoch", "replays", "alpha_ratio"],
                       value_vars=present, var_name="measure", value_name="accuracy")
    return long.assign(measure=long["measure"].map(value_columns))


def make_figures(out: Path, curves: pd.DataFrame, table: pd.DataFrame, profile: Profile) -> list[Path]:
    """The paper's Figs 1-8 (accuracy curves per epoch) as far as the grid ran, plus a summary bar chart."""
    import seaborn as sns
    import matplotlib.pyplot as plt

    plots.set_style()
    paths: list[Path] = []
    if curves.empty or "epoch" not in curves:
        return paths
    long = _long_curves(curves)
    pgd_label = f"PGD-{profile.curve_steps}"

    def two_panels(data: pd.DataFrame, hue: str, title: str, name: str, first: Sequence[str]) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=False)
        for ax, measures, panel in ((axes[0], first, "(a) train / validation accuracy"),
                                    (axes[1], ["validation (PGD)"], f"(b) {pgd_label} validation accuracy")):
            part = data[data["measure"].isin(measures)]
            sns.lineplot(part, x="epoch", y="accuracy", hue=hue,
                         style="measure" if len(measures) > 1 else None, ax=ax)
            ax.set_title(panel)
            ax.set_ylim(-0.02, 1.02)
        fig.suptitle(f"{title} — {profile.name} profile, ε={_eps_text(profile)}")
        paths.append(plots.save_figure(fig, out / name))

    both = ["train (adversarial batches)", "validation (natural)"]
    # Figs 1-4: one method and network per figure, every configuration of the grid as a line.
    for (network, method, epochs), group in long.groupby(["network", "method", "epochs"]):
        two_panels(group, "config", f"{method.capitalize()} training, {network}, {epochs} epochs",
                   f"curves_{method}_{network.lower()}_{epochs}ep.png", both)
    # Figs 5-6: Free m=8 vs Fast alpha=1.25 eps on one network; Figs 7-8: the two networks per method.
    headline = long[(long["replays"] == 8) | (long["alpha_ratio"] == 1.25)]
    for network, group in headline.groupby("network"):
        epochs = group["epochs"].max()
        group = group[group["epochs"] == epochs]
        if group["method"].nunique() == 2:
            two_panels(group, "config", f"Free vs Fast, {network}, {epochs} epochs",
                       f"free_vs_fast_{network.lower()}.png", ["validation (natural)"])
    for method, group in headline.groupby("method"):
        if group["network"].nunique() == 2:
            epochs = group.groupby("network")["epochs"].max().min()
            two_panels(group[group["epochs"] == epochs], "network",
                       f"PreActResNet18 vs ResNet50, {method.capitalize()}, {epochs} epochs",
                       f"preact_vs_resnet50_{method}.png", ["validation (natural)"])
    # Summary: the final accuracies of every cell.
    accuracy_columns = ["natural_accuracy"] + [f"pgd{k}_accuracy" for k in profile.eval_steps]
    if not table.empty and set(accuracy_columns) <= set(table.columns):
        final = table.assign(config=table.apply(config_label, axis=1),
                             network=table["architecture"].map(ARCH_LABEL))
        final = final.assign(config=final["config"] + ", " + final["network"] + ", "
                             + final["epochs"].astype(int).astype(str) + " ep")
        final = final.melt(id_vars=["config"], value_vars=accuracy_columns, var_name="evaluation",
                           value_name="accuracy")
        final["evaluation"] = final["evaluation"].str.replace("_accuracy", "").str.replace("pgd", "PGD-")
        grid = sns.catplot(final, kind="bar", y="config", x="accuracy", hue="evaluation", height=0.5 * len(table) + 2,
                           aspect=2.2)
        grid.set(xlim=(0, 1), title=f"Final test accuracy — {profile.name} profile, ε={_eps_text(profile)}")
        paths.append(plots.save_figure(grid, out / "final_accuracy.png"))
    return paths


def _eps_text(profile: Profile) -> str:
    return "8/255" if abs(profile.eps - CIFAR_EPS) < 1e-12 else f"{profile.eps:g}"


#: The seed paper's tables (Capaldi & Capozzi 2020, Tables 1-6), in the grid's terms.
PAPER_ROWS = (
    # method, architecture, batch, epochs, replays, alpha_ratio, natural, pgd10, pgd20, pgd50, minutes, s/epoch
    ("free", "preact_resnet18", 128, 45, 2, None, 0.895, 0.324, 0.297, 0.290, 22, 29.4),
    ("free", "preact_resnet18", 128, 45, 4, None, 0.867, 0.471, 0.457, 0.451, 44, 58.2),
    ("free", "preact_resnet18", 128, 45, 8, None, 0.839, 0.498, 0.486, 0.483, 88, 117),
    ("free", "preact_resnet18", 128, 45, 10, None, 0.821, 0.490, 0.482, 0.479, 108, 143.4),
    ("fast", "preact_resnet18", 128, 45, None, 1.25, 0.847, 0.480, 0.463, 0.450, 21, 28.8),
    ("fast", "preact_resnet18", 256, 45, None, 1.25, 0.850, 0.454, 0.438, 0.434, 20, 25.8),
    ("fast", "preact_resnet18", 128, 45, None, 2.0, 0.856, 0.0, 0.0, 0.0, 21, 28.2),
    ("fast", "preact_resnet18", 256, 45, None, 2.0, 0.87, 0.0, 0.0, 0.0, 20, 26.4),
    ("free", "preact_resnet18", 128, 90, 8, None, 0.845, None, None, 0.485, 176, 117),
    ("fast", "preact_resnet18", 128, 90, None, 1.25, 0.836, None, None, 0.434, 43, 28),
    ("free", "resnet50", 128, 90, 8, None, 0.735, None, None, 0.404, 118, 78.6),
    ("fast", "resnet50", 128, 90, None, 1.25, 0.766, None, None, 0.391, 28.18, 18.78),
)
_PAPER_COLUMNS = ("method", "architecture", "batch_size", "epochs", "replays", "alpha_ratio", "natural_accuracy",
                  "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy", "train_minutes", "avg_epoch_seconds")


def paper_table() -> pd.DataFrame:
    return pd.DataFrame([dict(zip(_PAPER_COLUMNS, r)) for r in PAPER_ROWS])


def _find(table: pd.DataFrame, **where) -> pd.Series | None:
    """The row of `table` whose columns equal `where` (None matches a missing value), or None."""
    if table.empty:
        return None
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        if column not in table:
            return None
        mask &= table[column].isna() if value is None else (table[column] == value)
    rows = table[mask]
    return None if rows.empty else rows.iloc[0]


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _config_text(method, architecture, batch_size, epochs, replays, alpha_ratio) -> str:
    what = f"Free m={int(replays)}" if method == "free" else f"Fast α={ALPHA_RATIOS[alpha_ratio]}"
    return f"{ARCH_LABEL[architecture]} {what}, bs {batch_size}, {epochs} ep"


def number_claims(table: pd.DataFrame, profile: Profile) -> list[report.Claim]:
    """One claim per row of the paper's tables: natural and PGD accuracy within tolerance (CIFAR-10 only)."""
    claims = []
    for paper_row in paper_table().to_dict("records"):
        keys = {k: (None if pd.isna(paper_row[k]) else paper_row[k]) for k in _PAPER_COLUMNS[:6]}
        robust_column = "pgd20_accuracy" if not pd.isna(paper_row["pgd20_accuracy"]) else "pgd50_accuracy"
        robust_name = robust_column.split("_")[0].upper().replace("PGD", "PGD-")
        paper_text = f"{paper_row['natural_accuracy']:.3f} natural / {paper_row[robust_column]:.3f} {robust_name}"
        claim = f"{_config_text(**keys)}: natural / {robust_name} accuracy"
        measured = _find(table, **keys) if profile.dataset == "cifar10" else None
        if measured is None:
            why = ("needs CIFAR-10: run the paper profile" if profile.dataset != "cifar10"
                   else "this cell has not finished (other shards?)")
            claims.append(report.Claim(claim, paper_text, "–", "not measured", why))
            continue
        natural_ok = abs(measured["natural_accuracy"] - paper_row["natural_accuracy"]) <= NATURAL_TOLERANCE
        robust_ok = abs(measured[robust_column] - paper_row[robust_column]) <= ROBUST_TOLERANCE
        claims.append(report.Claim(
            claim, paper_text, f"{measured['natural_accuracy']:.3f} / {measured[robust_column]:.3f}",
            report.verdict(natural_ok and robust_ok, partly=natural_ok or robust_ok),
            f"tolerance ±{NATURAL_TOLERANCE:g} natural, ±{ROBUST_TOLERANCE:g} robust (tfadv's); one seed"))
    return claims


def _group(table: pd.DataFrame, **where) -> pd.DataFrame:
    if table.empty:
        return table
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        if column not in table:
            return table.iloc[0:0]
        mask &= table[column] == value
    return table[mask]


def _sweep(table: pd.DataFrame, **where) -> pd.DataFrame:
    """The PreActResNet18 cells matching `where` at the smallest batch size and shortest schedule run:
    the paper's sweeps (over m, over alpha) hold everything else fixed."""
    part = _group(table, architecture="preact_resnet18", **where)
    if part.empty:
        return part
    part = part[part["batch_size"] == part["batch_size"].min()]
    return part[part["epochs"] == part["epochs"].min()]


def phenomenon_claims(table: pd.DataFrame, curves: pd.DataFrame, profile: Profile) -> list[report.Claim]:
    """The paper's qualitative findings, checked on whatever data the profile ran."""
    claims = []
    robust = "pgd20_accuracy"
    # Missing columns (nothing finished yet) make every lookup below come back empty: "not measured".
    table = table.reindex(columns=list(dict.fromkeys([*table.columns, *_PAPER_COLUMNS])))
    curves = curves.reindex(columns=list(dict.fromkeys([*curves.columns, *_PAPER_COLUMNS[:6], "epoch",
                                                        "val_pgd_accuracy"])))

    # 1. Catastrophic overfitting with alpha = 2 eps; none with 1.25 eps.
    fast = _sweep(table, method="fast")
    large, small = fast[fast["alpha_ratio"] == 2.0], fast[fast["alpha_ratio"] == 1.25]
    if large.empty or small.empty:
        claims.append(report.Claim("Fast with α=16/255 (2ε) collapses to 0 PGD accuracy, α=10/255 (1.25ε) does not",
                                   "0.000 vs 0.463 PGD-20 (bs 128)", "–", "not measured", "needs both α"))
    else:
        collapsed = large[robust] <= COLLAPSE_ACCURACY
        healthy = small[robust] > COLLAPSE_ACCURACY
        measured = (f"α=2ε: {', '.join(_fmt(v) for v in large[robust])}; "
                    f"α=1.25ε: {', '.join(_fmt(v) for v in small[robust])} (PGD-20)")
        holds = bool(collapsed.all() and healthy.all())
        claims.append(report.Claim(
            "Fast with α=16/255 (2ε) collapses to 0 PGD accuracy, α=10/255 (1.25ε) does not",
            "0.000 vs 0.463 PGD-20 (bs 128); 0.000 vs 0.438 (bs 256)", measured,
            report.verdict(holds, partly=bool(collapsed.any())),
            f"collapse = PGD-20 accuracy ≤ {COLLAPSE_ACCURACY} (tfadv's threshold)"))

    # 2-3. Free: natural accuracy falls with m, robustness best at m = 8.
    free = _sweep(table, method="free").sort_values("replays")
    if free.empty or free["replays"].nunique() < 2:
        claims.append(report.Claim("Free: natural accuracy falls as m grows", "0.895, 0.867, 0.839, 0.821 (m=2,4,8,10)",
                                   "–", "not measured", "needs two values of m"))
        claims.append(report.Claim("Free: robustness rises with m up to m=8, the best m",
                                   "PGD-20 0.297, 0.457, 0.486, 0.482 (m=2,4,8,10)", "–", "not measured",
                                   "needs two values of m"))
    else:
        nat = free["natural_accuracy"].to_numpy()
        ms = free["replays"].astype(int).tolist()
        falls = bool(np.all(np.diff(nat) < 0))
        claims.append(report.Claim(
            "Free: natural accuracy falls as m grows", "0.895, 0.867, 0.839, 0.821 (m=2,4,8,10)",
            ", ".join(f"{v:.3f}" for v in nat) + f" (m={','.join(map(str, ms))})",
            report.verdict(falls, partly=nat[-1] < nat[0])))
        rob = free[robust].to_numpy()
        best_m = ms[int(np.argmax(rob))]
        holds = best_m == 8 if 8 in ms else bool(rob[-1] > rob[0])
        claims.append(report.Claim(
            "Free: robustness rises with m up to m=8, the best m", "PGD-20 0.297, 0.457, 0.486, 0.482 (m=2,4,8,10)",
            "PGD-20 " + ", ".join(f"{v:.3f}" for v in rob) + f" (m={','.join(map(str, ms))})",
            report.verdict(holds, partly=bool(rob.max() > rob[0])),
            "best measured m = " + str(best_m)))

    # 4. Free m=8 beats Fast alpha=10/255 on PGD-50; 5. Fast is ~4x faster per epoch.
    for architecture, paper_text in (("preact_resnet18", "0.485 vs 0.434 (PreActResNet18, 90 ep)"),
                                     ("resnet50", "0.404 vs 0.391 (ResNet50, 90 ep)")):
        free8 = _group(table, method="free", replays=8, architecture=architecture)
        fast10 = _group(table, method="fast", alpha_ratio=1.25, architecture=architecture)
        common = sorted(set(free8["epochs"]) & set(fast10["epochs"])) if not free8.empty and not fast10.empty else []
        claim = f"{ARCH_LABEL[architecture]}: Free m=8 is more robust (PGD-50) than Fast α=10/255"
        if not common:
            claims.append(report.Claim(claim, paper_text, "–", "not measured", "needs both cells"))
            continue
        epochs = common[-1]
        a = _group(free8, epochs=epochs).sort_values("batch_size").iloc[0]
        b = _group(fast10, epochs=epochs).sort_values("batch_size").iloc[0]
        claims.append(report.Claim(claim, paper_text,
                                   f"{a['pgd50_accuracy']:.3f} vs {b['pgd50_accuracy']:.3f} ({epochs} ep)",
                                   report.verdict(bool(a["pgd50_accuracy"] > b["pgd50_accuracy"]))))
    free8 = _group(table, method="free", replays=8)
    fast10 = _group(table, method="fast", alpha_ratio=1.25)
    claim = "Fast (α=10/255) trains about 4× faster per epoch than Free m=8"
    pairs = []
    for _, a in free8.iterrows():
        b = _find(fast10, architecture=a["architecture"], batch_size=a["batch_size"], epochs=a["epochs"])
        if b is not None:
            pairs.append((a, b))
    if not pairs:
        claims.append(report.Claim(claim, "117 s vs 28.8 s per epoch (4.1×)", "–", "not measured", "needs both cells"))
    else:
        ratios = [a["avg_epoch_seconds"] / b["avg_epoch_seconds"] for a, b in pairs]
        text = "; ".join(f"{a['avg_epoch_seconds']:.2f} s vs {b['avg_epoch_seconds']:.2f} s ({r:.1f}×, "
                         f"{ARCH_LABEL[a['architecture']]}, {int(a['epochs'])} ep)" for (a, b), r in zip(pairs, ratios))
        claims.append(report.Claim(claim, "117 s vs 28.8 s per epoch (4.1×)", text,
                                   report.verdict(all(r >= 3.0 for r in ratios), partly=all(r > 1 for r in ratios)),
                                   "reproduced when ≥ 3×: one Free-8 epoch is 8 forward/backward passes, one "
                                   "Fast epoch 2; timings on a shared machine are noisy"))

    # 6. PreActResNet18 beats ResNet50 with both methods.
    claim = "PreActResNet18 beats ResNet50 (natural and PGD-50) with both Free m=8 and Fast"
    paper_text = "Free 0.845/0.485 vs 0.735/0.404; Fast 0.836/0.434 vs 0.766/0.391 (90 ep)"
    comparisons = []
    for method, where in (("free", {"replays": 8}), ("fast", {"alpha_ratio": 1.25})):
        p = _group(table, method=method, architecture="preact_resnet18", **where)
        r = _group(table, method=method, architecture="resnet50", **where)
        common = sorted(set(p["epochs"]) & set(r["epochs"])) if not p.empty and not r.empty else []
        if common:
            a = _group(p, epochs=common[-1]).iloc[0]
            b = _group(r, epochs=common[-1]).iloc[0]
            comparisons.append((method, a, b))
    if not comparisons:
        claims.append(report.Claim(claim, paper_text, "–", "not measured", "needs both networks"))
    else:
        wins = [bool(a["natural_accuracy"] > b["natural_accuracy"] and a["pgd50_accuracy"] > b["pgd50_accuracy"])
                for _, a, b in comparisons]
        text = "; ".join(f"{m.capitalize()} {a['natural_accuracy']:.3f}/{a['pgd50_accuracy']:.3f} vs "
                         f"{b['natural_accuracy']:.3f}/{b['pgd50_accuracy']:.3f}" for m, a, b in comparisons)
        claims.append(report.Claim(claim, paper_text, text,
                                   report.verdict(all(wins) and len(wins) == 2, partly=any(wins))))

    # 7. Long Fast training overfits catastrophically late (the seed's 90-epoch log, epoch 85).
    claim = "Fast α=10/255 over 90 epochs overfits catastrophically near the end (PGD accuracy collapses)"
    paper_text = "seed's log: PGD-50 0.434 at epoch 84, 0.001 from epoch 86 (final table reports epoch 84)"
    fast_curves = _group(curves, method="fast", alpha_ratio=1.25) if "alpha_ratio" in curves else curves.iloc[0:0]
    if fast_curves.empty:
        claims.append(report.Claim(claim, paper_text, "–", "not measured", "needs the Fast α=1.25ε curves"))
    else:
        longest = fast_curves[fast_curves["epochs"] == fast_curves["epochs"].max()]
        longest = longest[longest["batch_size"] == longest["batch_size"].min()]
        networks = set(longest["architecture"])
        longest = longest[longest["architecture"] == ("preact_resnet18" if "preact_resnet18" in networks
                                                      else sorted(networks)[0])]
        by_epoch = longest.sort_values("epoch")
        best_epoch = int(by_epoch.loc[by_epoch["val_pgd_accuracy"].idxmax(), "epoch"])
        best, final = by_epoch["val_pgd_accuracy"].max(), by_epoch["val_pgd_accuracy"].iloc[-1]
        collapsed = best - final > COLLAPSE_DROP or final <= COLLAPSE_ACCURACY < best
        claims.append(report.Claim(
            claim, paper_text,
            f"best PGD-{profile.curve_steps} {best:.3f} at epoch {best_epoch}, final {final:.3f} "
            f"(epoch {int(by_epoch['epoch'].iloc[-1])} of {int(by_epoch['epochs'].iloc[0])})",
            report.verdict(bool(collapsed)),
            f"collapse = a drop of more than {COLLAPSE_DROP} below the best epoch (Wong et al.'s early-stop "
            f"threshold) or a fall to ≤ {COLLAPSE_ACCURACY}; curves on {profile.curve_points} test points"))
    return claims


def comparison_table(table: pd.DataFrame, profile: Profile) -> str:
    """Markdown: every measured cell beside the paper's row for the same configuration (CIFAR-10 only)."""
    paper = paper_table()
    rows = []
    for row in (table.to_dict("records") if not table.empty else []):
        keys = {k: (None if pd.isna(row.get(k)) else row.get(k)) for k in _PAPER_COLUMNS[:6]}
        label = config_label(row) + f", {ARCH_LABEL[row['architecture']]}, {int(row['epochs'])} ep"
        cells = [_fmt(row.get(c)) for c in ("natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy")]
        rows.append([f"{label} (measured)", *cells, int(row["epochs"]), f"{row['train_minutes']:.2f}",
                     f"{row['avg_epoch_seconds']:.2f}"])
        theirs = _find(paper, **keys) if profile.dataset == "cifar10" else None
        if theirs is not None:
            cells = [_fmt(None if pd.isna(theirs[c]) else theirs[c]) for c in _PAPER_COLUMNS[6:10]]
            rows.append([f"{label} (paper)", *cells, int(theirs["epochs"]), f"{theirs['train_minutes']:g}",
                         f"{theirs['avg_epoch_seconds']:g}"])
    columns = ["configuration", "natural", "PGD-10", "PGD-20", "PGD-50", "epochs", "train min", "s/epoch"]
    return report.markdown_table(columns, rows)


def write_outputs(out: str | os.PathLike, profile: Profile, table: pd.DataFrame, curves: pd.DataFrame,
                  machine: dict) -> Path:
    out = Path(out)
    figures = make_figures(out, curves, table, profile)
    claims = number_claims(table, profile) + phenomenon_claims(table, curves, profile)
    load = ", ".join(f"{v:.2f}" for v in machine["load_before"])
    sections = [
        ("Measured vs paper", comparison_table(table, profile)),
        ("Epochs and protocol",
         "An epoch is one pass over the training set. In a Free-m epoch each minibatch is replayed m times "
         "(the seed's convention: its cyclic schedule has epochs × batches × m steps), so Free-m costs about "
         "m/2 Fast epochs' worth of compute per epoch; Shafahi et al. instead count N_ep/m passes. "
         f"Evaluation: L∞ PGD-{'/'.join(map(str, profile.eval_steps))}, ε={_eps_text(profile)}, "
         f"step {profile.eval_step_size:.4g}, {profile.restarts} random restart(s) (a sample is robust only if "
         "every restart fails), a sample stops moving once misclassified (the seed's `attack_pgd`), model in "
         "inference mode and float32. Train time sums the epochs' wall time and excludes evaluation."),
        ("Machine",
         f"{machine['cpus']} CPU cores, {machine['gpus']} GPU(s); load average (1/5/15 min) {load} at the start "
         f"and {', '.join(f'{v:.2f}' for v in machine['load_after'])} at the end; this invocation took "
         f"{machine['wall_seconds'] / 60:.1f} min and trained {machine['cells_trained']} cell(s) (cells finished "
         "by earlier invocations keep the train times measured then). "
         "Timings on a shared machine are inflated by other processes."),
        ("Figures", "\n".join(f"- `{p.name}`" for p in figures) or "(none)"),
    ]
    return report.write_report(out / "report.md", title=TITLE, key=KEY, profile=profile.name, claims=claims,
                               sections=sections, settings=dict(profile.tfadv_choices))


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
