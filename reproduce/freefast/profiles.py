"""The three profiles (paper, demo, smoke), the runner's own options, and the settings table with sources.

Every field of a `Profile` is part of the results' identity (tfadv.experiments.identity) and appears in
the report's settings table with its source: the paper, the reference code it ran (the seed's fork of
locuslab/fast_adversarial: not-a-genius/neuralNetworkExam CIFAR10/{fast,free,utils}.py), or tfadv.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from tfadv.evaluation import compaction
from tfadv.experiments import Run, Setting, seeds_option

from reproduce.freefast.evaluation import READ_OFF
from reproduce.freefast.paper import CIFAR_EPS, label

SEED_CODE = "reference code: neuralNetworkExam CIFAR10/{fast,free,utils}.py (the seed's fork of fast_adversarial)"
WONG_CODE = "reference code: fast_adversarial CIFAR10/train_{fgsm,free}.py, utils.py"


@dataclass(frozen=True)
class Profile:
    """Everything a profile fixes (each field's source: SOURCES)."""

    dataset: str                  # "cifar10" (tensorflow-datasets) or "digits" (scikit-learn, offline)
    image_size: int               # PreActResNet18's input side; ResNet50 always gets 32x32
    channels: int
    train_points: int | None      # None = the whole training split
    eval_points: int | None       # None = the whole test split
    width: int                    # base width of both networks (64 = the paper's)
    eps: float                    # the budget the claims are judged at (search cells may use others)
    cells: tuple[dict, ...]       # the grid: one trained model per cell
    lr_max: dict                  # peak of the triangular cyclic rate, per method
    momentum: float
    weight_decay: float           # coupled L2 on every trainable variable (PyTorch SGD's weight_decay)
    augment: bool                 # RandomCrop(32, padding=4) + horizontal flip
    dtype_policy: str
    loss_scaling: str             # "none" (apex O2 with loss_scale 1.0) or "dynamic" (Keras' default)
    xla: bool                     # XLA where Keras compiles with it ("auto": GPUs only)
    pgd_train_steps: int          # PGD-k training (a baseline cell; step = eval_step_ratio * eps)
    eval_steps: tuple[int, ...]   # PGD-k evaluations of the final model
    eval_step_ratio: float        # PGD step as a fraction of eps (evaluation and PGD training)
    restarts: int
    eval_batch_size: int
    curve_points: int | None      # test points of the per-epoch curves (None = all)
    curve_steps: int              # PGD steps of the per-epoch curves
    aa_cells: tuple[dict, ...]    # beyond the paper: the models AutoAttack runs on (at the claims' eps)
    aa_points: int | None         # ... on their first test points
    aa_attacks: tuple[str, ...]   # the cascade (tfadv.evaluation.autoattack names)
    aa_steps: int                 # iterations of APGD / FAB
    aa_queries: int               # Square's queries
    aa_targets: int               # target classes of APGD-T / FAB-T
    masking_cells: tuple[dict, ...]  # the models the gradient-masking checks run on
    masking_points: int | None
    masking_steps: int            # APGD-CE steps of the checks (the convergence check runs 4x)
    masking_queries: int
    masking_restarts: int
    masking_eps_factors: tuple[float, ...]
    eager: bool                   # run every tf.function eagerly (smoke: tracing costs more than it saves)


def cell(method: str, epochs: int, eps: float, *, batch_size: int = 128, architecture: str = "preact_resnet18",
         replays: int | None = None, alpha_ratio: float | None = None, repeat: int = 0) -> dict:
    """One trained model: Free's m (`replays`) or Fast's alpha as a multiple of eps; `repeat` numbers seeds."""
    return {"method": method, "architecture": architecture, "batch_size": batch_size, "epochs": epochs, "eps": eps,
            "replays": replays, "alpha_ratio": alpha_ratio, "repeat": repeat}


def paper_cells() -> tuple[dict, ...]:
    """The paper's Tables 1-6: Free m sweep and Fast alpha x batch at 45 epochs, then Free-8 vs Fast-10/255
    for 90 epochs on both networks. One seed each, as the paper."""
    eps = CIFAR_EPS
    cells = [cell("free", 45, eps, replays=m) for m in (2, 4, 8, 10)]
    cells += [cell("fast", 45, eps, batch_size=b, alpha_ratio=a) for a in (1.25, 2.0) for b in (128, 256)]
    for architecture in ("preact_resnet18", "resnet50"):
        cells += [cell("free", 90, eps, architecture=architecture, replays=8),
                  cell("fast", 90, eps, architecture=architecture, alpha_ratio=1.25)]
    return tuple(cells)


PAPER = Profile(
    dataset="cifar10", image_size=32, channels=3, train_points=None, eval_points=None, width=64, eps=CIFAR_EPS,
    cells=paper_cells(), lr_max={"free": 0.04, "fast": 0.2, "pgd": 0.2}, momentum=0.9, weight_decay=5e-4,
    augment=True, dtype_policy="mixed_float16", loss_scaling="none", xla=True, pgd_train_steps=7,
    eval_steps=(10, 20, 50), eval_step_ratio=0.25, restarts=1, eval_batch_size=256, curve_points=1000,
    curve_steps=50, aa_cells=paper_cells(), aa_points=1000, aa_attacks=("apgd-ce", "apgd-t", "fab-t", "square"), aa_steps=100,
    aa_queries=5000, aa_targets=9, masking_cells=paper_cells(), masking_points=1000, masking_steps=50,
    masking_queries=1000, masking_restarts=3, masking_eps_factors=(0.25, 0.5, 1.0, 2.0, 4.0), eager=False)

_PAPER_SOURCES = {
    "dataset": "paper", "image_size": "paper", "channels": "paper", "train_points": "paper",
    "eval_points": SEED_CODE + " (evaluate_pgd runs the whole test set)",
    "width": "reference code: fast_adversarial preact_resnet.py, torchvision resnet50()",
    "eps": "paper", "cells": "paper: Tables 1-6, one seed per model as the paper",
    "lr_max": SEED_CODE + " (--lr-max defaults 0.2 Fast, 0.04 Free; configs.ini's 0.1 was added later, unused)",
    "momentum": SEED_CODE, "weight_decay": SEED_CODE + " (PyTorch SGD: coupled, on every parameter)",
    "augment": SEED_CODE + " (get_loaders)",
    "dtype_policy": "paper: apex O2 (tfadv: Keras' mixed_float16 keeps float32 variables where apex O2 "
                    "without --master-weights keeps float16 ones)",
    "loss_scaling": "paper: \"O2 without loss scaling\"; " + SEED_CODE[len("reference code: "):] + " --loss-scale 1.0",
    "xla": "tfadv: XLA on GPUs (Keras' jit_compile='auto'), off on CPUs",
    "pgd_train_steps": "reference code: fast_adversarial train_pgd.py (no PGD cell in this profile's grid)",
    "eval_steps": "paper", "eval_step_ratio": SEED_CODE + " (attack_pgd: alpha 2/255 at eps 8/255)",
    "restarts": "paper", "eval_batch_size": "tfadv: does not change the numbers (per-sample random starts)",
    "curve_points": "tfadv: the seed runs PGD-50 on all 10,000 test images after every epoch of its 90-epoch "
                    "runs; 1,000 cost a tenth and still resolve a collapse of 0.4 (binomial s.e. <= 1.6 points)",
    "curve_steps": SEED_CODE + " (PGD-50, 1 restart, after every epoch)",
    "aa_cells": "tfadv: beyond the paper, which runs PGD only; every model",
    "aa_points": "tfadv: the first 1,000 test images, s.e. <= 1.6 points",
    "aa_attacks": "tfadv: AutoAttack's standard cascade (Croce & Hein 2020; reference code fra31/auto-attack)",
    "aa_steps": "tfadv: the AutoAttack reference's 100", "aa_queries": "tfadv: the AutoAttack reference's 5,000",
    "aa_targets": "tfadv: the AutoAttack reference's 9",
    "masking_cells": "tfadv: every model", "masking_points": "tfadv: the AutoAttack points",
    "masking_steps": "tfadv: check_gradient_masking's defaults", "masking_queries": "tfadv: its default",
    "masking_restarts": "tfadv: its default", "masking_eps_factors": "tfadv: its default",
    "eager": "tfadv: compiled graphs",
}


#: The demo's budget (the claims') and the larger ones its search for catastrophic overfitting tries.
DEMO_EPS = 0.3
SEARCH_EPS = (0.35, 0.4)
#: The search's longer runs (later in training; the seed's Fast collapsed at epoch 85 of 90).
LONG_EPOCHS = 40
#: Free at equal cost (Shafahi et al.'s convention: N_ep / m passes of m replays), N_ep replay-epochs.
EQUAL_COST_REPLAY_EPOCHS = 40


def demo_cells() -> tuple[dict, ...]:
    """The paper's sweeps at 20 epochs: Fast at both alphas over three seeds (catastrophic overfitting is
    decided run by run), Free m = 2, 4, 8 (the seed's epochs); then the search: Fast at larger budgets (with
    PGD-7 training at the largest, to tell an overfitted FGSM from a budget no training can defend), Fast for
    twice the epochs (alpha = 1.25 eps over three seeds: a late collapse is the claim of the seed's long run),
    and Free m = 4, 8 at the cost of Free-2 (Shafahi's N_ep / m passes)."""
    cells = [cell("fast", 20, DEMO_EPS, alpha_ratio=a, repeat=r) for a in (1.25, 2.0) for r in range(3)]
    cells += [cell("free", 20, DEMO_EPS, replays=m) for m in (2, 4, 8)]
    cells += [cell("fast", 20, eps, alpha_ratio=a) for eps in SEARCH_EPS for a in (1.25, 2.0)]
    cells += [cell("pgd", 20, max(SEARCH_EPS))]
    cells += [cell("fast", LONG_EPOCHS, DEMO_EPS, alpha_ratio=1.25, repeat=r) for r in range(3)]
    cells += [cell("fast", LONG_EPOCHS, DEMO_EPS, alpha_ratio=2.0)]
    return tuple(cells + [cell("free", EQUAL_COST_REPLAY_EPOCHS // m, DEMO_EPS, replays=m) for m in (4, 8)])


DEMO = Profile(
    dataset="digits", image_size=8, channels=1, train_points=None, eval_points=None, width=8, eps=DEMO_EPS,
    cells=demo_cells(), lr_max=PAPER.lr_max, momentum=0.9, weight_decay=5e-4, augment=False,
    dtype_policy="float32", loss_scaling="none", xla=False, pgd_train_steps=7, eval_steps=(10, 20, 50),
    eval_step_ratio=0.25, restarts=1, eval_batch_size=256, curve_points=150, curve_steps=10,
    aa_cells=tuple(c for c in demo_cells() if c["epochs"] == 20 and c["eps"] == DEMO_EPS), aa_points=150,
    aa_attacks=("apgd-ce", "apgd-t", "square"), aa_steps=50, aa_queries=500, aa_targets=3,
    masking_cells=tuple(cell(m, 20, DEMO_EPS, **w) for m, w in (("fast", {"alpha_ratio": 1.25}),
                                                                ("fast", {"alpha_ratio": 2.0}), ("free", {"replays": 8}))),
    masking_points=100, masking_steps=20, masking_queries=300, masking_restarts=2, masking_eps_factors=(0.5, 1.0, 2.0),
    eager=False)

_DEMO_SOURCES = {
    "dataset": "tfadv: scikit-learn's digits (8x8 grey, 1,347 train / 450 test, stratified): offline, minutes on "
               "a CPU",
    "image_size": "tfadv: the digits' own size", "channels": "tfadv: the digits' one grey channel",
    "train_points": "tfadv: the whole digits training split", "eval_points": "tfadv: the whole digits test split",
    "width": "tfadv: PreActResNet18 at base width 8 (the paper's 64) for CPU minutes",
    "eps": "tfadv: 0.3 on [0, 1] pixels, the MNIST budget of Madry et al. and Wong et al. (digits are MNIST-like)",
    "cells": "tfadv: the paper's Fast alpha and Free m sweeps at 20 epochs (the paper: 45), Fast over 3 seeds; "
             "the searches: Fast at eps 0.35 and 0.4 with a PGD-7 reference, Fast for 40 epochs (alpha 1.25 eps "
             "over 3 seeds), Free at equal cost",
    "lr_max": _PAPER_SOURCES["lr_max"], "momentum": SEED_CODE, "weight_decay": SEED_CODE,
    "augment": "tfadv: no crop-and-flip on 8x8 digits (a 4-pixel shift would remove half a digit)",
    "dtype_policy": "tfadv: float32 (mixed_float16 is several times slower on a CPU)",
    "loss_scaling": "tfadv: none needed in float32",
    "xla": "tfadv: off on a CPU",
    "pgd_train_steps": "reference code: fast_adversarial train_pgd.py (PGD-7, the search's reference cell)",
    "eval_steps": "paper", "eval_step_ratio": _PAPER_SOURCES["eval_step_ratio"],
    "restarts": "paper", "eval_batch_size": _PAPER_SOURCES["eval_batch_size"],
    "curve_points": "tfadv: 150 test points after every epoch (s.e. <= 4 points: a collapse of 0.2 shows)",
    "curve_steps": "tfadv: PGD-10 (the seed: PGD-50) to keep the per-epoch curves cheap",
    "aa_cells": "tfadv: beyond the paper; the paper's sweeps (Fast at both alphas, 3 seeds; Free m = 2, 4, 8), "
                "not the search's longer runs, for CPU minutes",
    "aa_points": "tfadv: the curve points, for CPU minutes",
    "aa_attacks": "tfadv: AutoAttack's standard cascade without FAB-T (its slowest member) for CPU minutes",
    "aa_steps": "tfadv: half the reference's 100", "aa_queries": "tfadv: a tenth of the reference's 5,000",
    "aa_targets": "tfadv: a third of the reference's 9",
    "masking_cells": "tfadv: one seed each of the models the claims compare (Fast at both alphas, Free-8)",
    "masking_points": "tfadv: 100 test points", "masking_steps": "tfadv: 20 (the default 50) for CPU minutes",
    "masking_queries": "tfadv: 300 (the default 1,000)", "masking_restarts": "tfadv: 2 (the default 3)",
    "masking_eps_factors": "tfadv: three budgets (the default five)",
    "eager": "tfadv: compiled graphs",
}

SMOKE_CELLS = (cell("fast", 2, 0.3, batch_size=32, alpha_ratio=1.25), cell("fast", 2, 0.3, batch_size=32, alpha_ratio=2.0),
               cell("free", 2, 0.3, batch_size=32, replays=2))
SMOKE = Profile(
    dataset="digits", image_size=8, channels=1, train_points=64, eval_points=16, width=4, eps=0.3, cells=SMOKE_CELLS,
    lr_max=PAPER.lr_max, momentum=0.9, weight_decay=5e-4, augment=False, dtype_policy="float32", loss_scaling="none",
    xla=False, pgd_train_steps=2, eval_steps=(10, 20, 50), eval_step_ratio=0.25, restarts=1, eval_batch_size=16,
    curve_points=16, curve_steps=2, aa_cells=SMOKE_CELLS, aa_points=16, aa_attacks=("apgd-ce", "square"), aa_steps=5, aa_queries=20,
    aa_targets=3, masking_cells=SMOKE_CELLS[:1], masking_points=16,
    masking_steps=3, masking_queries=20, masking_restarts=2, masking_eps_factors=(0.5, 1.0, 2.0), eager=True)

_SMOKE_SOURCES = {name: _DEMO_SOURCES[name] if getattr(SMOKE, name) == getattr(DEMO, name) else
                  "tfadv: a tiny run that checks the plumbing in seconds" for name in _DEMO_SOURCES}

PROFILES = {"paper": PAPER, "demo": DEMO, "smoke": SMOKE}
SOURCES = {"paper": _PAPER_SOURCES, "demo": _DEMO_SOURCES, "smoke": _SMOKE_SOURCES}
#: The paper trains one seed per setting; its claims that compare single runs need a spread over seeds.
OPTIONS = (seeds_option("setting (at least; the profile's repeated settings keep their repeats)", profile_field=None),)

#: Protocol facts fixed in the code (not profile fields), each with its source.
FIXED = (
    ("optimizer", "SGD, momentum as above; Keras' form v = μv − lr·g (PyTorch: b = μb + g, w −= lr·b: the same "
                  "for a constant rate, slightly different under the cyclic one)", "tfadv: Keras' SGD"),
    ("learning-rate schedule", "triangular 0 → lr_max → 0 over every optimizer step (peak at half)", SEED_CODE),
    ("Free step and δ", "step ε; δ persists across replays and minibatches, a short last batch uses its first rows",
     WONG_CODE),
    ("Fast start", "δ0 ~ U(−ε, ε) clipped to the valid range, one step α, projection on the ε-ball", SEED_CODE),
    ("BatchNorm while crafting", "training mode (batch statistics), as every training forward", SEED_CODE),
    ("early stopping", "none (the seed parses --early-stop but never uses it)", SEED_CODE),
    ("evaluation model", "float32 copy of the weights, inference mode", SEED_CODE + " (model_test.float().eval())"),
    ("evaluation attack", "PGD with random start; a sample stops once misclassified", SEED_CODE + " (attack_pgd)"),
    READ_OFF,
    ("epoch of Free-m", "one pass with m replays per minibatch (not Shafahi's N_ep/m passes)", SEED_CODE),
    (*compaction.REPORT_SETTING, "tfadv"),
)


def describe_cells(cells: tuple[dict, ...]) -> str:
    """The grid in words: "Fast α=1.25ε bs 128 × 20 ep (3 seeds); ..."."""
    groups: dict[str, int] = {}
    for c in cells:
        name = f"{label(**c)}, {c['architecture']}, bs {c['batch_size']}, {c['epochs']} ep, ε {c['eps']:.3g}"
        groups[name] = groups.get(name, 0) + 1
    return "; ".join(f"{name}{f' ({n} seeds)' if n > 1 else ''}" for name, n in groups.items())


def _value(name: str, value) -> str:
    if name in ("cells", "aa_cells", "masking_cells"):
        return describe_cells(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:g}" for k, v in value.items())
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, float) and abs(value * 255 - round(value * 255)) < 1e-9 and value < 0.2:
        return f"{round(value * 255)}/255"
    return "all" if value is None else str(value)


def settings(run: Run) -> list[Setting]:
    """Every profile field and every fixed protocol fact, with its source."""
    sources = SOURCES[run.profile_name]
    found = [Setting(f.name, _value(f.name, getattr(run.profile, f.name)), sources[f.name])
             for f in fields(run.profile)]
    if run.options.get("seeds"):
        found.append(Setting("--seeds", run.options["seeds"], "tfadv: every setting of cells trained with seeds "
                                                              f"0..{run.options['seeds'] - 1} at least"))
    return found + [Setting(name, value, source) for name, value, source in FIXED]
