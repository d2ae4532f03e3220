"""The paper's CIFAR-10 and ImageNet claims (Tables 2-5) and the authors' released ResNet-110 numbers.

Every claim compares a model with BN to the same model without it (VGG: no normalisation; residual nets:
Fixup initialisation), seed by seed, with rules.effect; the paper's numbers are the BN effects it states.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchnorm import rules
from reproduce.batchnorm.stats import Arm, arm, difference
from tfadv.analysis.corruptions import CIFAR10C_NOISE_CORRUPTIONS
from tfadv.experiments.run import Run
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import Claim, Verdict, not_measured, saturated, untrained

VGG_C10 = Claim("Table 2 (small LR): BN lowers VGG8's CIFAR-10 accuracy under noise, PGD-ℓ∞ and PGD-ℓ2",
                "−6 ± 1 / −17.3 ± 0.7 / −5.9 ± 0.4 pts")
PAPER_VGG_C10 = {"awgn": -0.06, "pgd_linf": -0.173, "pgd_l2": -0.059}
VGG_GAP = Claim("Table 2 (small LR): BN narrows VGG8's clean generalisation gap (train − test accuracy)",
                "−1.1 ± 0.2 pts")
PAPER_VGG_GAP = -0.011
VGG_C101 = Claim("Table 2 on CIFAR-10.1 v6: BN raises VGG8's clean accuracy but lowers it under noise, PGD-ℓ∞ "
                 "and PGD-ℓ2", "+2.0 ± 0.3 / −6 ± 1 / −15 ± 1 / −3.4 ± 0.6 pts")
PAPER_VGG_C101 = {"clean": 0.020, "awgn": -0.06, "pgd_linf": -0.15, "pgd_l2": -0.034}
WRN_FIXUP = Claim("Table 2 (small LR): a WideResNet with BN is less robust than its Fixup twin (noise, PGD-ℓ∞, "
                  "PGD-ℓ2)", "lower with BN (WRN values not available)")
VGG_DEPTHS = Claim("Table 3 (large LR, 0.1 ÷ 10 at 150 and 250): BN lowers PGD-ℓ∞ accuracy of VGGs of every depth",
                   "lower with BN (values not available)")
RESNET = Claim("Authors' released code: BN ResNet-110 vs Fixup ResNet-110 (no BN), noise / PGD-ℓ∞ / PGD-ℓ2",
               "−17.2 ± 0.8 / −29.6 ± 0.8 / −17.1 ± 0.4 pts (clean −0.5 ± 0.2), 5 seeds")
PAPER_RESNET = {"awgn": -0.172, "pgd_linf": -0.296, "pgd_l2": -0.171}
CORRUPTIONS = Claim("Table 4: BN lowers accuracy on CIFAR-10-C's noise corruptions (mean of 5 severities)",
                    "lower with BN for VGG and WRN (F) (values not available)")
AUTOATTACK = Claim("Beyond the paper: under an AutoAttack-style cascade, BN still lowers VGG8's ℓ∞ robust accuracy "
                   "(small LR, ε as the authors' PGD)", "not in the paper (its PGD-ℓ∞: −17.3 ± 0.7 pts)")
IMAGENET_TOP5 = Claim("Table 5: BN lowers ImageNet top-5 accuracy under PGD", "−8.54 to −11.00 pts (VGG vs VGG_bn)")
IMAGENET_TOP1 = Claim("Table 5: BN lowers ImageNet top-1 accuracy under PGD", "−2.38 to −4.17 pts (VGG vs VGG_bn)")
#: keras.applications has no VGG with BN: the BN side is other architectures, so a shown effect is at most partly.
CONFOUNDED = "BN nets (ResNet50, DenseNet121) differ from the BN-free VGG16/19 in architecture too"
METRIC_NAMES = {"clean": "clean", "awgn": "noise", "pgd_linf": "PGD-ℓ∞", "pgd_l2": "PGD-ℓ2",
                "autoattack_linf": "AutoAttack-ℓ∞"}


def runs(table: pd.DataFrame, models, schedule: str) -> list[str]:
    """The CIFAR models of `models` (names or a prefix test) trained under `schedule`, in table order."""
    t = select(table, experiment="cifar", schedule=schedule)
    names = list(dict.fromkeys(t["model"])) if not t.empty else []
    return [m for m in names if (models(m) if callable(models) else m in models)]


def pair(table: pd.DataFrame, model: str, schedule: str, test_set: str, metric: str) -> tuple[Arm, Arm]:
    """(with BN, without BN) over seeds."""
    t = select(table, experiment="cifar", model=model, schedule=schedule, test_set=test_set)
    if t.empty:
        return Arm((), ()), Arm((), ())
    return arm(t, metric, normalization="batchnorm"), arm(t[t["normalization"] != "batchnorm"], metric)


def preconditions(table: pd.DataFrame, model: str, schedule: str, test_set: str, metric: str) -> list[str | None]:
    clean = pair(table, model, schedule, "test", "clean")
    measured = pair(table, model, schedule, test_set, metric)
    return [untrained([*clean[0].values, *clean[1].values], 10),
            saturated([*measured[0].values, *measured[1].values])]


def effects(claim: Claim, table: pd.DataFrame, run: Run, model: str, schedule: str, test_set: str,
            paper: dict[str, float | None]) -> list[tuple[str, Verdict]]:
    """One rules.effect verdict per metric: BN minus no BN on `test_set`."""
    scale = run.profile_name == "paper" and run.limit is None
    out = []
    for metric, delta in paper.items():
        with_bn, without = pair(table, model, schedule, test_set, metric)
        if with_bn.n == 0 or without.n == 0:
            continue
        out.append((f"{model} {METRIC_NAMES.get(metric, metric)}",
                    rules.effect(claim, difference(with_bn, without), delta, direction=None if delta else -1.0,
                                 paper_scale=scale, unless=preconditions(table, model, schedule, test_set, metric))))
    return out


def judged(claim: Claim, parts: list[tuple[str, Verdict]], rule: str, what: str) -> Verdict:
    return rules.combine(claim, parts, rule) if parts else not_measured(claim, what)


def generalisation_gap(table: pd.DataFrame, run: Run) -> Verdict:
    t = select(table, experiment="cifar", model="vgg8", schedule="small")
    gaps = {}
    for norm in ("batchnorm", "none"):
        train, test = arm(t, "train", normalization=norm), arm(t, "clean", normalization=norm, test_set="test")
        gaps[norm] = Arm(tuple(np.subtract(train.values, test.values)), test.se_each) if train.n == test.n else Arm((), ())
    if gaps["batchnorm"].n == 0 or gaps["none"].n == 0:
        return not_measured(VGG_GAP, "VGG8 trained with the small learning rate")
    return rules.effect(VGG_GAP, difference(gaps["batchnorm"], gaps["none"]), PAPER_VGG_GAP,
                        paper_scale=run.profile_name == "paper" and run.limit is None,
                        unless=preconditions(table, "vgg8", "small", "test", "clean"))


def imagenet(table: pd.DataFrame, claim: Claim, k: int) -> Verdict:
    t = select(table, experiment="imagenet")
    if t.empty:
        return not_measured(claim, "pretrained ImageNet models (paper profile)")
    metric = f"pgd_linf_top{k}"
    with_bn, without = arm(t, metric, has_batchnorm=True), arm(t, metric, has_batchnorm=False)
    clean = arm(t, "clean_top1")
    return rules.effect(claim, difference(with_bn, without), None, direction=-1.0, cap=CONFOUNDED,
                        note="models, not seeds, are the repeats",
                        unless=[untrained(clean.values, 1000), saturated([*with_bn.values, *without.values])])


def judge_all(tables: dict[str, pd.DataFrame], run: Run) -> list[Verdict]:
    table = tables["results"]
    per_metric = "BN minus no BN per metric, each by the effect rule"
    vgg_depths = [part for m in runs(table, lambda m: m.startswith("vgg"), "large")
                  for part in effects(VGG_DEPTHS, table, run, m, "large", "test", {"pgd_linf": None})]
    corrupted = [part for sched in ("small", "large", "reference")
                 for m in runs(table, lambda m: True, sched)
                 for part in effects(CORRUPTIONS, table, run, m, sched, "cifar10_c",
                                     {c: None for c in CIFAR10C_NOISE_CORRUPTIONS})]
    return [
        judged(VGG_C10, effects(VGG_C10, table, run, "vgg8", "small", "test", PAPER_VGG_C10), per_metric,
               "VGG8 trained with the small learning rate"),
        generalisation_gap(table, run),
        judged(VGG_C101, effects(VGG_C101, table, run, "vgg8", "small", "cifar10_1_v6", PAPER_VGG_C101), per_metric,
               "CIFAR-10.1 v6 (paper profile)"),
        judged(WRN_FIXUP, effects(WRN_FIXUP, table, run, "wrn", "small", "test",
                                  {"awgn": None, "pgd_linf": None, "pgd_l2": None}), per_metric, "the WideResNet"),
        judged(VGG_DEPTHS, vgg_depths, "BN minus no BN per VGG depth", "VGGs trained with the large learning rate"),
        judged(RESNET, effects(RESNET, table, run, "resnet", "reference", "test", PAPER_RESNET), per_metric,
               "the authors' ResNet protocol (paper profile)"),
        judged(CORRUPTIONS, corrupted, "BN minus no BN per model and corruption", "CIFAR-10-C (paper profile)"),
        judged(AUTOATTACK, effects(AUTOATTACK, table, run, "vgg8", "small", "test", {"autoattack_linf": None}),
               per_metric, "the AutoAttack-style cascade"),
        imagenet(table, IMAGENET_TOP5, 5), imagenet(table, IMAGENET_TOP1, 1),
    ]
