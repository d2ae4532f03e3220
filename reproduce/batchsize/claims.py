"""The paper's claims, each judged on the measured table with the noise in view.

A point of a figure (dataset, model, setting, batch size) is the mean over seeds. Two points of a line
are compared through their differences paired by seed (a seed fixes the initial weights and the data
order at every batch size): the spread of those differences is the training noise, and an accuracy adds
the sampling error of comparing models on the same test images; λ1 is compared on a log scale (its ratios
matter). A comparison holds when it clears its threshold by Z standard errors, fails when it misses it by
Z, and is undecided in between: a claim with an undecided case is inconclusive, never a verdict the noise could
flip. "In most cases" is a sign test over the cases. Claims on models that did not train (accuracy
within 5 points of chance), on measurements saturated at 0% or 100%, or with fewer than MIN_SEEDS runs per
point are inconclusive and say why. The paper gives no numbers (its figures only), so every threshold is
tfadv's reading of its words, named here.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from reproduce.batchsize.profiles import in_regime
from tfadv.experiments import Claim, Verdict, inconclusive, judge, not_measured
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import (
    CHANCE_MARGIN,
    mean_sd,
    saturated,
    sign_test,
    too_few,
    untrained,
)

#: Standard errors a comparison must clear (both ways) to be decided.
Z = 2.0
#: Runs per point before a spread over seeds can stand for the training noise.
MIN_SEEDS = 3
#: "Roughly constant" / "very little variation" (section 3): accuracies within 5 points across batch sizes.
FLAT_ACCURACY = 0.05
#: ... and λ1 within a factor of 2 (largest / smallest mean over seeds).
FLAT_CURVATURE = 2.0
#: "Drops" (Figs 1, 6): at the largest batch at least 2 points below the smallest.
DROP = 0.02
#: Significance of the sign test behind "in most cases".
ALPHA = 0.05
CLASSES = 10
#: A run whose FGSM or PGD accuracy counts more than this fraction of its samples robust with an all-zero or
#: non-finite input gradient (a saturated softmax: no gradient attack can move them) has its robustness
#: assumed, not measured: it is left out of the attack-accuracy claims, as a run that did not train is.
UNMEASURED_MAX = 0.02
UNMEASURED = {"fgsm_accuracy": "fgsm_unmeasured", "pgd_accuracy": "pgd_unmeasured"}
HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"

PURPLE = "purple (LR/BS) lines nearly flat; figures only"
LRBS_ACCURACY = Claim("LR/BS keeps test accuracy roughly constant across batch sizes", f"Figs 1, 4, 6, 9: {PURPLE}")
LRBS_ROBUST = Claim("LR/BS keeps FGSM and PGD accuracy roughly constant across batch sizes",
                    f"Figs 1, 2, 4, 6, 7, 9: {PURPLE}")
LRBS_CURVATURE = Claim("LR/BS keeps the top Hessian eigenvalue λ1 roughly constant", f"Figs 3, 5, 8, 10: {PURPLE}")
LR_DROP = Claim("Fixed LR: test and FGSM accuracy drop as the batch size grows", "Figs 1, 6 (light blue)")
BENCHMARK_DROP = Claim("Benchmark: test and FGSM accuracy drop as the batch size grows, as in Yao et al.",
                       "section 2, Figs 1, 6 (red)")
SHARPER = Claim("λ1 grows with the batch size (fixed LR and Benchmark)",
                "Figs 3, 8: \"with increase in batch size the curvature increases\"")
LR_MOMENTUM_CURVATURE = Claim("LR: momentum lowers λ1 in most cases", "Figs 13, 16")
LRBS_MOMENTUM_CURVATURE = Claim("LR/BS: momentum lowers λ1 in most cases", "Figs 19, 22")
LR_MOMENTUM_FGSM = Claim("LR: larger momentum gives better FGSM accuracy in most cases", "Figs 11, 14")
COUNTER_EXAMPLE = Claim("Counter-example: StdCNN on Fashion-MNIST with fixed LR has higher λ1 and higher FGSM "
                        "and PGD accuracy at the largest batch than at the smallest", "Figs 9, 10")
YAO_VALUES = Claim("Benchmark: test accuracy and λ1 similar to Yao et al. (2018b)", "section 2")
SAMPLES = {"test_accuracy": "test_samples", "fgsm_accuracy": "eval_samples", "pgd_accuracy": "eval_samples"}
#: A rule on one line's rows and metric: (HOLDS / FAILS / UNDECIDED, what was measured).
Decide = Callable[[pd.DataFrame, str], tuple[str, str]]
SHORT = {"test_accuracy": "test", "fgsm_accuracy": "FGSM", "pgd_accuracy": "PGD", "lambda1": "λ1"}


# ------------------------------------------------------------------------------------------------ points
def points(line: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per batch size: the mean over seeds of `metric` (λ1: of log λ1) and the number of seeds."""
    rows = []
    for b, runs in line.groupby("batch_size"):
        values = runs[metric].to_numpy(float)
        mean, _, n = mean_sd(np.log(values[values > 0]) if metric == "lambda1" else values)
        rows.append({"batch_size": b, "mean": mean, "n": n})
    return pd.DataFrame(rows, columns=["batch_size", "mean", "n"])


def paired(line: pd.DataFrame, metric: str, low: int, high: int) -> tuple[float, float]:
    """`metric` at batch size `high` minus at `low` (λ1: the log of their ratio), averaged over the seeds run
    at both, and its standard error.

    A seed fixes the initial weights and the data order at every batch size, so the differences are paired
    by seed: their spread is the training noise of the difference. An accuracy adds the sampling error of a
    difference between models scored on the same n test images (McNemar: at least |d|(1 - |d|) / n, and at
    least one image)."""
    wide = line.pivot_table(index="seed", columns="batch_size", values=metric, aggfunc="mean")
    both = wide[[low, high]].dropna()
    if metric == "lambda1":
        both = np.log(both[(both > 0).all(axis=1)])
    mean, sd, n = mean_sd(both[high] - both[low])
    se = sd / math.sqrt(n) if n > 1 else math.nan
    if metric in SAMPLES and np.isfinite(mean):
        images = int(line[SAMPLES[metric]].min())
        se = math.hypot(se, max(math.sqrt(abs(mean) * (1 - abs(mean)) / images), 1.0 / images))
    return mean, se


def exceeds(estimate: float, se: float, threshold: float) -> str:
    """HOLDS if estimate > threshold by Z standard errors, FAILS if below it by Z, else UNDECIDED."""
    if not np.isfinite(estimate) or not np.isfinite(se):
        return UNDECIDED
    if estimate - Z * se > threshold:
        return HOLDS
    if estimate + Z * se < threshold:
        return FAILS
    return UNDECIDED


def flip(outcome: str) -> str:
    return {HOLDS: FAILS, FAILS: HOLDS}.get(outcome, UNDECIDED)


def pm(se: float) -> str:
    """"± Z s.e.", or why there is none."""
    return f"± {Z * se:.3f}" if np.isfinite(se) else "(one run: no spread)"


def show(pts: pd.DataFrame, metric: str) -> str:
    values = np.exp(pts["mean"]) if metric == "lambda1" else pts["mean"]
    return f"{SHORT[metric]} " + " → ".join(f"{v:.3g}" if metric == "lambda1" else f"{v:.2f}" for v in values)


# ------------------------------------------------------------------------------------------------ lines
def lines(table: pd.DataFrame, schedule: str, momentum: float, **where) -> list[tuple[str, pd.DataFrame]]:
    """("dataset/model", its rows) for every study with this setting at two or more batch sizes."""
    rows = select(table, schedule=schedule, momentum=momentum, **where)
    found = []
    for (dataset, model), line in rows.groupby(["dataset", "model"], sort=True):
        if line["batch_size"].nunique() >= 2:
            found.append((f"{dataset}/{model}", line))
    return found


def preconditions(name: str, line: pd.DataFrame, metrics: list[str]) -> list[str | None]:
    """Why a line cannot be judged: too few seeds, untrained models, saturated or masked attack accuracies."""
    seeds = int(line.groupby("batch_size")["seed"].nunique().min())
    reasons = [too_few(seeds, MIN_SEEDS, "seeds per point"), untrained(line["test_accuracy"], CLASSES)]
    reasons += [saturated(line[m]) for m in metrics if m in UNMEASURED]
    reasons += [masked(line, m) for m in metrics if m in UNMEASURED]
    if "lambda1" in metrics and not (line["lambda1"] > 0).all():
        reasons.append("λ1 ≤ 0 or not measured (diverged, or not at a minimum)")
    return [f"{name}: {r}" for r in reasons if r]


def masked(rows: pd.DataFrame, metric: str) -> str | None:
    """Why an attack accuracy of these runs is not a measurement: some count more than UNMEASURED_MAX of
    their samples robust with a dead input gradient (cells.evaluate), else None."""
    unmeasured = rows.get(UNMEASURED[metric], pd.Series(0.0, index=rows.index)).fillna(0.0)
    bad = unmeasured[unmeasured > UNMEASURED_MAX]
    if bad.empty:
        return None
    runs = f"{len(bad)} run counts" if len(bad) == 1 else f"{len(bad)} runs count"
    return (f"masked gradients: {runs} up to {bad.max():.0%} of the samples "
            f"{SHORT[metric]}-robust with a dead input gradient (more than {UNMEASURED_MAX:.0%}: robustness assumed, "
            "not measured)")


def unusable(line: pd.DataFrame, metric: str) -> str:
    """Why a metric has no mean at some batch size: not measured, or (λ1) no positive value to take a log of."""
    if metric == "lambda1" and line[metric].notna().any():
        return f"{SHORT[metric]} ≤ 0 at some batch size (min {line[metric].min():.3g}): no ratio"
    return f"{SHORT[metric]} not measured"


def judge_lines(claim: Claim, found: list[tuple[str, pd.DataFrame]], metrics: list[str], decide: Decide,
                rule: str, what: str) -> Verdict:
    """decide(points) -> (outcome, text) per line and metric; all hold: reproduced; some: partly; an
    undecided case or a failed precondition: inconclusive."""
    if not found:
        return not_measured(claim, what)
    outcomes, texts, reasons = [], [], []
    for name, line in found:
        failed = preconditions(name, line, metrics)
        reasons += failed
        parts = []
        for metric in metrics:
            measured = points(line, metric)["mean"].notna().all()
            outcome, text = decide(line, metric) if measured else (UNDECIDED, unusable(line, metric))
            outcomes.append(outcome)
            parts.append(f"{text}: {outcome}")
            if outcome == UNDECIDED and not failed:
                reasons.append(f"{name} {SHORT[metric]}: within noise of the threshold ({text})")
        if "lambda1" in metrics and "lambda1_converged" in line and not line["lambda1_converged"].all():
            parts.append(f"{int((~line['lambda1_converged'].astype(bool)).sum())} of {len(line)} λ1 runs stopped "
                         "at the iteration cap")
        texts.append(f"{name}: " + "; ".join(parts))
    holds = [o == HOLDS for o in outcomes]
    return judge(claim, "<br>".join(texts), holds=all(holds), partly=any(holds), rule=rule, unless=reasons)


def spread_within(limit: float) -> Decide:
    """The line is flat: the spread between its highest and lowest mean over batch sizes (λ1: their ratio)
    stays within `limit`."""
    def decide(line: pd.DataFrame, metric: str) -> tuple[str, str]:
        pts = points(line, metric)
        low, high = pts.loc[pts["mean"].idxmin(), "batch_size"], pts.loc[pts["mean"].idxmax(), "batch_size"]
        if low == high:  # every mean equal: compare the ends
            low, high = pts["batch_size"].min(), pts["batch_size"].max()
        spread, se = paired(line, metric, low, high)
        if metric == "lambda1":
            text = f"max/min {math.exp(spread):.2f}" + (f" (×/÷ {math.exp(Z * se):.2f})" if np.isfinite(se) else "")
            return flip(exceeds(spread, se, math.log(limit))), f"{show(pts, metric)}, {text}"
        return flip(exceeds(spread, se, limit)), f"{show(pts, metric)}, spread {spread:.3f} {pm(se)}"
    return decide


def change(threshold: float, sign: int) -> Decide:
    """Largest vs smallest batch: sign=+1 the value rises by more than `threshold`, -1 it falls by more."""
    def decide(line: pd.DataFrame, metric: str) -> tuple[str, str]:
        pts = points(line, metric)
        delta, se = paired(line, metric, pts["batch_size"].min(), pts["batch_size"].max())
        shown = f"×{math.exp(delta):.2f}" + (f" (×/÷ {math.exp(Z * se):.2f})" if np.isfinite(se) else "") \
            if metric == "lambda1" else f"{delta:+.3f} {pm(se)}"
        return exceeds(sign * delta, se, threshold), f"{show(pts, metric)} ({shown})"
    return decide


# ------------------------------------------------------------------------------------------------ claims
def _flat_rule(limit: str) -> str:
    return (f"per study, the spread of the means over batch sizes: flat if spread + {Z:g} s.e. ≤ {limit}, not "
            f"flat if spread − {Z:g} s.e. > {limit}; values from the smallest to the largest batch")


def lrbs_accuracy(table: pd.DataFrame) -> Verdict:
    return judge_lines(LRBS_ACCURACY, lines(table, "LR/BS", 0.0), ["test_accuracy"],
                       spread_within(FLAT_ACCURACY), _flat_rule(f"{FLAT_ACCURACY:g}"), "LR/BS without momentum")


def lrbs_robust(table: pd.DataFrame) -> Verdict:
    return judge_lines(LRBS_ROBUST, lines(table, "LR/BS", 0.0), ["fgsm_accuracy", "pgd_accuracy"],
                       spread_within(FLAT_ACCURACY), _flat_rule(f"{FLAT_ACCURACY:g}"), "LR/BS without momentum")


def lrbs_curvature(table: pd.DataFrame) -> Verdict:
    return judge_lines(LRBS_CURVATURE, lines(table, "LR/BS", 0.0), ["lambda1"], spread_within(FLAT_CURVATURE),
                       _flat_rule(f"a factor {FLAT_CURVATURE:g}") + " (on log λ1)", "LR/BS without momentum")


def _drop_rule() -> str:
    return (f"largest vs smallest batch: drops if the fall − {Z:g} s.e. > {DROP:g} for both, does not if "
            f"the fall + {Z:g} s.e. < {DROP:g}")


def lr_drop(table: pd.DataFrame) -> Verdict:
    return judge_lines(LR_DROP, lines(table, "LR", 0.0), ["test_accuracy", "fgsm_accuracy"], change(DROP, -1),
                       _drop_rule(), "fixed LR without momentum")


def benchmark_drop(table: pd.DataFrame) -> Verdict:
    return judge_lines(BENCHMARK_DROP, lines(table, "Benchmark", 0.9), ["test_accuracy", "fgsm_accuracy"],
                       change(DROP, -1), _drop_rule(), "the Benchmark schedule")


def sharper(table: pd.DataFrame) -> Verdict:
    found = [(f"{name} {kind}", line) for kind, m in (("LR", 0.0), ("Benchmark", 0.9))
             for name, line in lines(table, kind, m)]
    return judge_lines(SHARPER, found, ["lambda1"], change(0.0, +1),
                       f"largest vs smallest batch: log λ1 higher by more than {Z:g} s.e.",
                       "fixed LR or the Benchmark")


def counter_example(table: pd.DataFrame) -> Verdict:
    found = lines(table, "LR", 0.0, dataset="fashion_mnist", model="StdCNN")
    return judge_lines(COUNTER_EXAMPLE, found, ["fgsm_accuracy", "pgd_accuracy", "lambda1"], change(0.0, +1),
                       f"largest vs smallest batch: each higher by more than {Z:g} s.e.",
                       "no StdCNN on Fashion-MNIST with fixed LR")


def momentum_cases(table: pd.DataFrame, schedule: str, metric: str) -> tuple[int, int, int, int]:
    """(cases where the larger momentum gives the better `metric`, decided cases, runs left out as untrained,
    runs left out as masked).

    A case is a pair of adjacent momenta at one study and batch size, compared by their means over the
    seeds that trained (and, for an attack accuracy, whose robustness was measured: see `masked`); better =
    lower λ1, higher accuracy."""
    rows = select(table, schedule=schedule)
    trained = rows[rows["test_accuracy"] > 1.0 / CLASSES + CHANCE_MARGIN]
    trained = trained[np.isfinite(trained[metric]) & ((trained[metric] > 0) | (metric != "lambda1"))]
    measured = trained
    if metric in UNMEASURED and UNMEASURED[metric] in trained:
        measured = trained[~(trained[UNMEASURED[metric]] > UNMEASURED_MAX)]
    better = total = 0
    for _, point in measured.groupby(["dataset", "model", "batch_size"]):
        means = point.groupby("momentum")[metric].mean().sort_index().to_numpy()
        for low, high in itertools.pairwise(means):
            if high != low:
                total += 1
                better += bool(high < low) if metric == "lambda1" else bool(high > low)
    return better, total, len(rows) - len(trained), len(trained) - len(measured)


def most_cases(claim: Claim, table: pd.DataFrame, schedule: str, metric: str) -> Verdict:
    better, total, untrained_runs, masked_runs = momentum_cases(table, schedule, metric)
    if total == 0:
        return not_measured(claim, f"{schedule} at two or more momenta")
    p = sign_test(better, total)
    left_out = []
    if untrained_runs:
        left_out.append(f"{untrained_runs} run{'s' * (untrained_runs != 1)} that did not train left out")
    if masked_runs:
        left_out.append(f"{masked_runs} run{'s' * (masked_runs != 1)} with masked gradients left out (more than "
                        f"{UNMEASURED_MAX:.0%} of the samples counted robust with a dead input gradient)")
    measured = "; ".join([f"better with the larger momentum in {better} of {total} cases (sign test p = {p:.2g})",
                          *left_out])
    if p >= ALPHA:
        return inconclusive(claim, f"{better} of {total} could be chance: sign test p = {p:.2g} ≥ {ALPHA:g}"
                            + (" (so few cases can never reach it)" if sign_test(total, total) >= ALPHA else ""),
                            measured)
    return judge(claim, measured, holds=better > total / 2,
                 rule=f"cases: adjacent momenta at each study and batch size (means over seeds); sign test "
                      f"p < {ALPHA:g} and a majority")


def judge_all(tables: dict[str, pd.DataFrame], run=None) -> list[Verdict]:
    """Every claim, judged on the profile's own grid (the regime search's runs are reported apart)."""
    table = tables["results"]
    if table.empty:
        return []
    if run is not None:
        table = in_regime(table, run.profile)
    return [
        lrbs_accuracy(table), lrbs_robust(table), lrbs_curvature(table), lr_drop(table), benchmark_drop(table),
        sharper(table),
        most_cases(LR_MOMENTUM_CURVATURE, table, "LR", "lambda1"),
        most_cases(LRBS_MOMENTUM_CURVATURE, table, "LR/BS", "lambda1"),
        most_cases(LR_MOMENTUM_FGSM, table, "LR", "fgsm_accuracy"),
        counter_example(table),
        inconclusive(YAO_VALUES, "Yao et al.'s values could not be read from any stored copy of their paper; "
                                 "tfadv compares nothing"),
    ]
