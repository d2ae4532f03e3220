"""The paper's CIFAR-10 and ImageNet claims (Tables 2-5), and, outside the paper's tally, the authors' released
ResNet-110 numbers (their code's README) and the AutoAttack check (beyond the paper).

Every claim compares a model with BN to the same model without it (VGG: no normalisation; residual nets:
Fixup initialisation), seed by seed, with rules.effect; the paper's numbers are the BN effects it states.
A comparison in which a run did not train (clean accuracy near chance, or training accuracy less than
rules.FIT_SHARE of the way from chance to the best compared run's) is inconclusive; its reason also gives
the difference over the runs that trained.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchnorm import rules
from reproduce.batchnorm.stats import Arm, Difference, arm, difference
from tfadv.analysis.corruptions import CIFAR10C_NOISE_CORRUPTIONS
from tfadv.experiments.run import Run
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import INCONCLUSIVE, Claim, Verdict, not_measured, untrained

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


def pair(table: pd.DataFrame, model: str, schedule: str, test_set: str, metric: str,
         drop: frozenset = frozenset()) -> tuple[Arm, Arm]:
    """(with BN, without BN) over seeds, leaving out the runs in `drop` ((is BN, seed) pairs)."""
    t = select(table, experiment="cifar", model=model, schedule=schedule, test_set=test_set)
    if not t.empty and drop:
        t = t[[(n == "batchnorm", int(s)) not in drop for n, s in zip(t["normalization"], t["seed"])]]
    if t.empty:
        return Arm((), ()), Arm((), ())
    return arm(t, metric, normalization="batchnorm"), arm(t[t["normalization"] != "batchnorm"], metric)


def unfit_runs(table: pd.DataFrame, model: str, schedule: str) -> tuple[str | None, frozenset]:
    """rules.unfit over both arms' training accuracies: (the reason or None, the (is BN, seed) runs that did not
    fit their training set)."""
    t = select(table, experiment="cifar", model=model, schedule=schedule, test_set="train", metric="train")
    if t.empty:
        return None, frozenset()
    label = {(n == "batchnorm", int(s)): f"{'BN' if n == 'batchnorm' else 'no-BN'} seed {int(s)}"
             for n, s in zip(t["normalization"], t["seed"])}
    runs = {label[n == "batchnorm", int(s)]: float(v) for n, s, v in zip(t["normalization"], t["seed"], t["value"])}
    low = set(rules.unfit_runs(runs, 10))
    return rules.unfit(runs, 10), frozenset(run for run, name in label.items() if name in low)


def preconditions(table: pd.DataFrame, model: str, schedule: str, test_set: str, metric: str) -> list[str | None]:
    clean = pair(table, model, schedule, "test", "clean")
    measured = pair(table, model, schedule, test_set, metric)
    return [untrained([*clean[0].values, *clean[1].values], 10), unfit_runs(table, model, schedule)[0],
            rules.saturated_arms(*measured)]


def without_unfit(verdict: Verdict, table: pd.DataFrame, model: str, schedule: str, measure) -> Verdict:
    """An inconclusive verdict because a run did not fit: its reason also gives `measure(drop)` (a Difference)
    over the runs that trained."""
    reason, drop = unfit_runs(table, model, schedule)
    if verdict.outcome != INCONCLUSIVE or reason is None or reason not in verdict.why:
        return verdict
    rest = measure(drop)
    return Verdict(verdict.claim, verdict.outcome, verdict.measured,
                   f"{verdict.why}; over the runs that trained: {rest.text()}")


def effects(claim: Claim, table: pd.DataFrame, run: Run, model: str, schedule: str, test_set: str,
            paper: dict[str, float | None]) -> list[tuple[str, Verdict]]:
    """One rules.effect verdict per metric: BN minus no BN on `test_set`."""
    scale = run.profile_name == "paper" and run.limit is None
    out = []
    for metric, delta in paper.items():
        with_bn, without = pair(table, model, schedule, test_set, metric)
        if with_bn.n == 0 or without.n == 0:
            continue
        verdict = rules.effect(claim, difference(with_bn, without), delta, direction=None if delta else -1.0,
                               paper_scale=scale, unless=preconditions(table, model, schedule, test_set, metric))
        verdict = without_unfit(verdict, table, model, schedule,
                                lambda drop, m=metric: difference(*pair(table, model, schedule, test_set, m, drop)))
        out.append((f"{model} {METRIC_NAMES.get(metric, metric)}", verdict))
    return out


def judged(claim: Claim, parts: list[tuple[str, Verdict]], rule: str, what: str) -> Verdict:
    return rules.combine(claim, parts, rule) if parts else not_measured(claim, what)


def gaps(table: pd.DataFrame, drop: frozenset = frozenset()) -> dict[str, Arm]:
    """VGG8's (small LR) train − test accuracy per seed, with BN and without, leaving out the runs in `drop`."""
    t = select(table, experiment="cifar", model="vgg8", schedule="small")
    if not t.empty and drop:
        t = t[[(n == "batchnorm", int(s)) not in drop for n, s in zip(t["normalization"], t["seed"])]]
    out = {}
    for norm in ("batchnorm", "none"):
        train, test = arm(t, "train", normalization=norm), arm(t, "clean", normalization=norm, test_set="test")
        out[norm] = Arm(tuple(np.subtract(train.values, test.values)), test.se_each) if train.n == test.n else Arm((), ())
    return out


def generalisation_gap(table: pd.DataFrame, run: Run) -> Verdict:
    found = gaps(table)
    if found["batchnorm"].n == 0 or found["none"].n == 0:
        return not_measured(VGG_GAP, "VGG8 trained with the small learning rate")
    verdict = rules.effect(VGG_GAP, difference(found["batchnorm"], found["none"]), PAPER_VGG_GAP,
                           paper_scale=run.profile_name == "paper" and run.limit is None,
                           unless=preconditions(table, "vgg8", "small", "test", "clean"))

    def trained_only(drop: frozenset) -> Difference:
        rest = gaps(table, drop)
        return difference(rest["batchnorm"], rest["none"])

    return without_unfit(verdict, table, "vgg8", "small", trained_only)


def imagenet(table: pd.DataFrame, claim: Claim, k: int) -> Verdict:
    t = select(table, experiment="imagenet")
    if t.empty:
        return not_measured(claim, "pretrained ImageNet models (paper profile)")
    metric = f"pgd_linf_top{k}"
    with_bn, without = arm(t, metric, has_batchnorm=True), arm(t, metric, has_batchnorm=False)
    clean = arm(t, "clean_top1")
    return rules.effect(claim, difference(with_bn, without), None, direction=-1.0, cap=CONFOUNDED,
                        note="models, not seeds, are the repeats",
                        unless=[untrained(clean.values, 1000), rules.saturated_arms(with_bn, without)])


def on_data(verdict: Verdict, run: Run) -> Verdict:
    """On a stand-in for CIFAR-10 (the digits profiles), the measured text says what the numbers were measured on."""
    if run.profile.data != "digits" or verdict.measured == "-":
        return verdict
    from reproduce.batchnorm.claims import data_used

    return Verdict(verdict.claim, verdict.outcome, f"{verdict.measured} [on {data_used(run, 'cifar')}]", verdict.why)


def judge_all(tables: dict[str, pd.DataFrame], run: Run) -> list[Verdict]:
    """The paper's own claims (Tables 2-5), in its order; outside_paper() judges the others."""
    table = tables["results"]
    per_metric = "BN minus no BN per metric, each by the effect rule"
    vgg_depths = [part for m in runs(table, lambda m: m.startswith("vgg"), "large")
                  for part in effects(VGG_DEPTHS, table, run, m, "large", "test", {"pgd_linf": None})]
    corrupted = [part for sched in ("small", "large", "reference")
                 for m in runs(table, lambda m: True, sched)
                 for part in effects(CORRUPTIONS, table, run, m, sched, "cifar10_c",
                                     {c: None for c in CIFAR10C_NOISE_CORRUPTIONS})]
    found = [
        judged(VGG_C10, effects(VGG_C10, table, run, "vgg8", "small", "test", PAPER_VGG_C10), per_metric,
               "VGG8 trained with the small learning rate"),
        generalisation_gap(table, run),
        judged(VGG_C101, effects(VGG_C101, table, run, "vgg8", "small", "cifar10_1_v6", PAPER_VGG_C101), per_metric,
               "CIFAR-10.1 v6 (paper profile)"),
        judged(WRN_FIXUP, effects(WRN_FIXUP, table, run, "wrn", "small", "test",
                                  {"awgn": None, "pgd_linf": None, "pgd_l2": None}), per_metric, "the WideResNet"),
        judged(VGG_DEPTHS, vgg_depths, "BN minus no BN per VGG depth", "VGGs trained with the large learning rate"),
        judged(CORRUPTIONS, corrupted, "BN minus no BN per model and corruption", "CIFAR-10-C (paper profile)"),
    ]
    return [on_data(v, run) for v in found] + [imagenet(table, IMAGENET_TOP5, 5), imagenet(table, IMAGENET_TOP1, 1)]


#: Where each claim outside the paper comes from (the report's "source" column).
OUTSIDE_SOURCES = {RESNET: "the authors' released code (AngusG/bn-advex-zhang-fixup README), not the paper",
                   AUTOATTACK: "beyond the paper: tfadv's check of the paper's PGD"}


def outside_paper(tables: dict[str, pd.DataFrame], run: Run) -> list[Verdict]:
    """Claims judged like the paper's but kept out of its tally: the authors' README numbers and tfadv's AutoAttack
    check."""
    table = tables["results"]
    per_metric = "BN minus no BN per metric, each by the effect rule"
    return [on_data(v, run) for v in (
        judged(RESNET, effects(RESNET, table, run, "resnet", "reference", "test", PAPER_RESNET), per_metric,
               "the authors' ResNet protocol (paper profile)"),
        judged(AUTOATTACK, effects(AUTOATTACK, table, run, "vgg8", "small", "test", {"autoattack_linf": None}),
               per_metric, "the AutoAttack-style cascade"))]
