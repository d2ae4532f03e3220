"""The batchsize profiles: the paper's protocol (as its reference code ran it), a CPU demo, a smoke test.

A profile is a frozen dataclass, so every field is part of each result's identity. `settings(run)` lists
every setting with its source: the paper, its reference code (HessianFlow, Yao et al.'s code, whose
Benchmark and Hessian protocol Kamath et al. follow), or tfadv where both are silent or the profile is
scaled down.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tfadv.analysis.batch_size_settings import (
    BENCHMARK_HALVING_EPOCHS,
    FIXED_LEARNING_RATE,
    LEARNING_RATE_PER_SAMPLE,
    MOMENTUM_SWEEPS,
    PAPER_EPOCHS,
)
from tfadv.analysis.hessian import HESSIANFLOW, PowerIteration
from tfadv.experiments import Setting, seeds_option

REFERENCE = "reference code: HessianFlow"


@dataclasses.dataclass(frozen=True)
class Threat:
    """The evaluation attacks of one dataset: FGSM at eps, and PGD-L-inf with a random start."""

    eps: float
    pgd_steps: int
    pgd_step_size: float


@dataclasses.dataclass(frozen=True)
class Study:
    """One model trained on one dataset with each (schedule, momentum) setting at every batch size."""

    dataset: str
    model: str
    settings: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class Search:
    """Runs around a scaled-down profile's regime: one setting at other learning-rate scales and batch sizes,
    so that the report can say where the phenomenon shows and where it does not (computed in the run)."""

    dataset: str
    model: str
    schedule: str
    momentum: float
    lr_scales: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    epochs: int | None = None  # None: the profile's
    seeds: int = 1


@dataclasses.dataclass(frozen=True)
class Profile:
    studies: tuple[Study, ...]
    batch_sizes: tuple[int, ...]
    seeds: int  # training runs per point (initial weights and data order), the default of --seeds
    epochs: int
    lr_scale: float  # multiplies every learning rate of the three settings (1.0 = the paper's)
    threats: dict[str, Threat]  # dataset -> attacks
    hessian: PowerIteration
    micro_batch: int | None = None  # batches above it are accumulated from micro-batches (ghost BatchNorm)
    image_size: int | None = None  # digits only: upsampled side
    eval_samples: int | None = None  # first n test images attacked (None: the whole test set)
    search: tuple[Search, ...] = ()  # the regime search (outside the claims' grid)


BASE = (("LR", 0.0), ("LR/BS", 0.0), ("Benchmark", 0.9))
SWEEPS = tuple((schedule, m) for schedule, momenta in MOMENTUM_SWEEPS.items() for m in momenta if m)
MNIST_THREAT = Threat(eps=0.3, pgd_steps=40, pgd_step_size=0.01)  # Madry et al.'s MNIST PGD
CIFAR_THREAT = Threat(eps=0.02, pgd_steps=20, pgd_step_size=0.0025)  # 2.5 eps / steps, Madry et al.'s rule
#: Train/test splits of section 5 (the last 5,000 / 10,000 training images are the unused validation set).
TFDS_TRAIN_SPLITS = {"mnist": "train[:55000]", "fashion_mnist": "train[:55000]", "cifar10": "train[:40000]"}
AUGMENTED = ("cifar10",)  # section 5: "random cropping and random horizontal flips" (CIFAR-10)

PAPER = Profile(
    studies=(Study("mnist", "M1", BASE + SWEEPS), Study("mnist", "StdCNN", BASE + SWEEPS),
             Study("fashion_mnist", "M1", BASE), Study("fashion_mnist", "StdCNN", BASE),
             Study("cifar10", "C1", BASE + SWEEPS), Study("cifar10", "ResNet18", BASE + SWEEPS)),
    batch_sizes=(32, 64, 128, 256, 512, 1024, 2048), seeds=3, epochs=PAPER_EPOCHS, lr_scale=1.0,
    threats={"mnist": MNIST_THREAT, "fashion_mnist": MNIST_THREAT, "cifar10": CIFAR_THREAT},
    hessian=HESSIANFLOW, micro_batch=128)

DIGITS_THREAT = Threat(eps=0.1, pgd_steps=20, pgd_step_size=0.0125)
DEMO_BATCH_SIZES = (16, 32, 64, 128)
DEMO_SETTINGS = (("LR", 0.0), ("LR/BS", 0.0), ("LR", 0.9), ("LR/BS", 0.9))
DEMO = Profile(
    studies=(Study("digits", "M1", DEMO_SETTINGS), Study("digits", "StdCNN", DEMO_SETTINGS)),
    batch_sizes=DEMO_BATCH_SIZES, seeds=3, epochs=30, lr_scale=4.0, threats={"digits": DIGITS_THREAT},
    hessian=HESSIANFLOW, image_size=16,
    search=tuple(Search("digits", model, "LR/BS", 0.0, scales, batches, epochs)
                 for model, scales, batches, epochs in (
                     ("M1", (1.0, 16.0), (16, 128), None), ("StdCNN", (1.0, 16.0), (16, 128), None),
                     ("M1", (4.0,), (256, 512), None), ("StdCNN", (4.0,), (256, 512), None),
                     ("StdCNN", (4.0,), (16, 128), 60))))

SMOKE = Profile(
    studies=(Study("digits", "StdCNN", (("LR", 0.0), ("LR/BS", 0.0))),),
    batch_sizes=(128, 512), seeds=1, epochs=1, lr_scale=1.0,
    threats={"digits": Threat(eps=0.1, pgd_steps=3, pgd_step_size=0.05)},
    hessian=PowerIteration(max_iterations=3, tolerance=1e-2, num_samples=64), image_size=16, eval_samples=64)

PROFILES = {"paper": PAPER, "demo": DEMO, "smoke": SMOKE}


OPTIONS = (seeds_option("point"),)


def in_regime(table: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """The rows of the profile's own grid (its learning-rate scale, length and batch sizes): no search."""
    keep = (np.isclose(table["lr_scale"], profile.lr_scale) & table["batch_size"].isin(profile.batch_sizes)
            & (table["epochs"] == profile.epochs))
    return table[keep]


def settings(run) -> list[Setting]:
    """Every setting of the run's profile with its source."""
    p: Profile = run.profile
    rows = _schedules(p) + _training(p, run.options["seeds"]) + _measurement(p)
    return rows + (_paper_scale(p) if p is PAPER else _scaled_down(p, run.profile_name))


def _schedules(p: Profile) -> list[Setting]:
    used = {schedule for s in p.studies for schedule, _ in s.settings}
    lr = FIXED_LEARNING_RATE * p.lr_scale
    rows = [Setting("LR: fixed learning rate", f"{lr:g}", _scaled("paper: section 5", p)),
            Setting("LR/BS: learning rate / batch size", f"{LEARNING_RATE_PER_SAMPLE * p.lr_scale:g}",
                    _scaled("paper: section 5", p))]
    if "Benchmark" in used:
        rows += [Setting("Benchmark", f"learning rate {lr:g}, momentum 0.9, halved every {BENCHMARK_HALVING_EPOCHS}"
                                      " epochs", _scaled("paper: section 5, after Yao et al. (2018b)", p)),
                 Setting("weight decay (Benchmark)", "none", f"{REFERENCE} train.py (SGD without weight_decay)")]
    lines = "; ".join(f"{s.model} on {s.dataset}: " + ", ".join(f"{k} m={m:g}" for k, m in s.settings)
                      for s in p.studies)
    return rows + [
        Setting("studies and settings", lines, "paper: Figs 1-22" if p is PAPER else
                "tfadv: the paper's MNIST models and its LR and LR/BS lines with and without momentum; no "
                "Benchmark (Yao et al.'s schedule: its claims are not measured in this profile)"),
        Setting("weight decay, learning-rate decay (LR, LR/BS)", "none", "paper: section 5")]


def _training(p: Profile, seeds: int) -> list[Setting]:
    return [
        Setting("optimizer", "SGD, heavy-ball momentum, no Nesterov; Keras form v = m v - lr g (equal to "
                             "PyTorch's at a constant learning rate; at the Benchmark's halvings the old velocity "
                             "decays over ~10 steps instead of being rescaled at once)", "tfadv"),
        Setting("last partial batch", "dropped: every update sees a full batch",
                f"{REFERENCE} optimizer/baseline.py (skips batches under 128)"),
        Setting("batch sizes", ", ".join(map(str, p.batch_sizes)),
                "tfadv: the paper does not list them; the grid holds 64, where LR and LR/BS coincide"
                if p is PAPER else "tfadv: the largest keeps >= 10 updates per epoch (the paper profile's 2048 "
                                   "of 55,000 get 26); the smallest bounds the noise scale LR/B of fixed LR with "
                                   "momentum"),
        Setting("seeds per point", seeds, "tfadv: the noise-aware rules need a spread over >= 3 runs; the "
                                          "paper plots one run per point"
                + ("" if seeds == p.seeds else f" (--seeds {seeds}; the profile's: {p.seeds})")),
        Setting("initial weights, data order", "one seed per run, shared by every setting and batch size "
                                               "(paired comparisons); Keras default initialisers", "tfadv"),
    ]


def _measurement(p: Profile) -> list[Setting]:
    threats = "; ".join(f"{d}: eps {t.eps:g}" for d, t in p.threats.items())
    pgd = "; ".join(f"{d}: {t.pgd_steps} steps of {t.pgd_step_size:g}" for d, t in p.threats.items())
    h = p.hessian
    return [
        Setting("FGSM eps (L-inf, pixels in [0, 1])", threats, "paper: section 2" if p is PAPER else
                "tfadv: small enough that FGSM and PGD accuracy stay off 0%, where every line is flat"),
        Setting("PGD (L-inf, random start, last iterate)", pgd, "tfadv: the paper gives no PGD settings "
                                                               "(MNIST: Madry et al.'s 40 x 0.01)"),
        Setting("attack loss, clip", "mean cross-entropy on logits; adversarial pixels clipped to [0, 1]",
                "tfadv: HessianFlow's FGSM clamps to the clean batch's min and max, ~[0, 1]"),
        Setting("attacked test images", "all" if p.eval_samples is None else f"first {p.eval_samples}", "tfadv"),
        Setting("λ1: top Hessian eigenvalue", "power iteration on exact Hessian-vector products; mean "
                "cross-entropy, inference mode (BatchNorm statistics, no dropout), no weight-decay term; "
                "eigenvalue of largest magnitude", f"{REFERENCE} hessianflow/eigen.py"),
        Setting("λ1 stopping rule and data", f"<= {h.max_iterations} iterations, relative tolerance "
                f"{h.tolerance:g}; the first {h.num_samples} test images",
                f"{REFERENCE} hessian_eig_driver.py (maxIter 10, tol 1e-2, first test batch of 200)"
                if h == HESSIANFLOW else "tfadv: fewer iterations and images (smoke)"),
    ]


def _paper_scale(p: Profile) -> list[Setting]:
    return [
        Setting("datasets and splits", "MNIST and Fashion-MNIST 55,000 train / 10,000 test; CIFAR-10 40,000 / "
                                       "10,000 (the validation images are not used)", "paper: section 5"),
        Setting("epochs", p.epochs, "paper: section 5"),
        Setting("augmentation", "CIFAR-10: 4-pixel zero-padded random crop and horizontal flip; MNIST, "
                                "Fashion-MNIST: none", "paper: section 5 (CIFAR-10); tfadv for MNIST and "
                                                       "Fashion-MNIST ('appropriate augmentations')"),
        Setting("input scaling", "pixels in [0, 1], no normalisation", "tfadv: eps 0.3 reads as [0, 1] pixels; "
                "HessianFlow normalises MNIST by (0.1307, 0.3081)"),
        Setting("large batches", f"above {p.micro_batch}: the gradients of {p.micro_batch}-sample micro-batches "
                                 "averaged into one update (BatchNorm normalises per micro-batch)",
                f"{REFERENCE} optimizer/baseline.py (large_ratio)"),
        Setting("M1, StdCNN", "ReLU after every conv and hidden FC; 'valid' convs; M1 has no pooling",
                "paper: Table 1 (layers); tfadv: activation, padding"),
        Setting("C1", "Conv5x5(64)-ReLU-BN-MaxPool(3, stride 2) twice, FC 384, FC 192, FC 10; BatchNorm "
                      "momentum 0.1 (PyTorch convention), eps 1e-5",
                f"{REFERENCE} models/c1.py (Table 1 lists Conv-MP-BN); Keras' 'same' pooling pads right and "
                "bottom only, PyTorch's pads 1 on each side: tfadv"),
        Setting("ResNet18", "CIFAR stem (3x3 conv, no max-pool), BasicBlocks [2, 2, 2, 2], projection "
                            "shortcuts; BatchNorm as C1", "tfadv: the paper says 'as in He et al. (2016)'"),
    ]


def _scaled_down(p: Profile, name: str) -> list[Setting]:
    search = "; ".join(f"{s.model} {s.schedule} m={s.momentum:g}: scales " + ", ".join(f"x{v:g}" for v in s.lr_scales)
                       + f", batches {', '.join(map(str, s.batch_sizes))}, {s.epochs or p.epochs} epochs"
                       for s in p.search)
    rows = [
        Setting("data", f"scikit-learn digits, 1,347 train / 450 test, upsampled to {p.image_size}x"
                        f"{p.image_size}", f"tfadv: offline {name} data (the paper: MNIST, Fashion-MNIST, CIFAR-10)"),
        Setting("models at this size", "Table 1's layers; at 16x16 M1's FC(500) sees 8x8x20 and StdCNN's FC(50) "
                                       "2x2x20 features (at MNIST's 28x28: 20x20x20 and 4x4x20)",
                "tfadv: the digits' size; StdCNN is the more cramped of the two"),
        Setting("epochs", p.epochs, f"tfadv: {name} budget"),
        Setting("learning-rate scale", f"x{p.lr_scale:g} on every learning rate (LR and LR/BS still coincide at "
                                       "B = 64)", "tfadv: LR/BS must train in the budget (progress per epoch "
                                                  "LR x N/B); see the regime search"),
        Setting("large batches", "one batch per update, no micro-batches", "tfadv: no BatchNorm in the models"),
    ]
    return rows + ([Setting("regime search (one seed each)", search, "tfadv")] if search else [])


def _scaled(source: str, p: Profile) -> str:
    return source if p.lr_scale == 1.0 else f"tfadv: the paper's value x{p.lr_scale:g} (see the regime search)"
