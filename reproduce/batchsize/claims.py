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
tfadv's reading of its words, named here. A λ1 whose power iteration stopped at its iteration cap is a lower
bound, used only where a higher true λ1 could not reverse the outcome (CAPPED_RULE). A point's λ1 is the
geometric mean over seeds (its claims compare ratios); its accuracies are arithmetic means.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

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
#: A power iteration stopped by its cap (tfadv.analysis.hessian; HessianFlow's driver caps at 10 and returns the
#: last value all the same) ends on a Rayleigh quotient <Hv, v> of a unit v, which never exceeds the top
#: eigenvalue: a lower bound on λ1, not its value (tfadv: a property of the algorithm; how far below is unknown).
#: A comparison may rest on a bound only where a higher true λ1 would strengthen its outcome; where a higher
#: true λ1 could reverse it, the comparison is undecided (a momentum case: left out of the count).
CAPPED = "undecided (capped λ1)"
CAPPED_RULE = ("a λ1 capped by the iteration limit is a lower bound, which decides nothing a higher true λ1 "
               "could reverse")

PURPLE = "purple (LR/BS) lines nearly flat; figures only"
LRBS_ACCURACY = Claim("LR/BS keeps test accuracy roughly constant across batch sizes", f"Figs 1, 4, 6, 9: {PURPLE}")
LRBS_ROBUST = Claim("LR/BS keeps FGSM and PGD accuracy roughly constant across batch sizes",
                    f"Figs 1, 2, 4, 6, 7, 9: {PURPLE}")
LRBS_CURVATURE = Claim("LR/BS keeps the top Hessian eigenvalue λ1 roughly constant", f"Figs 3, 5, 8, 10: {PURPLE}")
LR_DROP = Claim("Fixed LR: test and FGSM accuracy drop as the batch size grows", "Figs 1, 6 (light blue)")
BENCHMARK_DROP = Claim("Benchmark: test and FGSM accuracy drop as the batch size grows, as in Yao et al.",
                       "section 2, Figs 1, 6 (red)")
CURVATURE_RISES = "Figs 3, 8: \"with increase in batch size the curvature increases\""
LR_SHARPER = Claim("Fixed LR: λ1 grows with the batch size", f"{CURVATURE_RISES} (light blue)")
BENCHMARK_SHARPER = Claim("Benchmark: λ1 grows with the batch size", f"{CURVATURE_RISES} (red)")
LR_MOMENTUM_CURVATURE = Claim("LR: momentum lowers λ1 in most cases", "Figs 13, 16")
LRBS_MOMENTUM_CURVATURE = Claim("LR/BS: momentum lowers λ1 in most cases", "Figs 19, 22")
LR_MOMENTUM_FGSM = Claim("LR: larger momentum gives better FGSM accuracy in most cases",
                         "section 4.1, Figs 11, 14: \"better FGSM adversarial robustness\"")
LR_MOMENTUM_PGD = Claim("LR: larger momentum gives better PGD accuracy in most cases",
                        "Our Results: \"Larger momentum values in most cases lead to a better robust model\"; "
                        "PGD: section 4.1, Figs 12, 15")
LR_MOMENTUM_TEST = Claim("LR: larger momentum gives better test accuracy in most cases",
                         "section 4.1, Figs 11, 14: \"with larger momentum there is better generalization\"")
LRBS_MOMENTUM_NO_ROLE = Claim("LR/BS: momentum plays no significant role in test, FGSM or PGD accuracy (unlike "
                              "with fixed LR)", "section 4.2, Figs 17, 18, 20, 21: \"no significant role of "
                                                "momentum with constant learning rate and batch size ratio\"")
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
    """The line's points from the smallest to the largest batch: λ1 as geometric means, accuracies as means."""
    if metric == "lambda1":
        return "λ1 (geometric mean) " + " → ".join(f"{v:.3g}" for v in np.exp(pts["mean"]))
    return f"{SHORT[metric]} " + " → ".join(f"{v:.2f}" for v in pts["mean"])


def capped_runs(rows: pd.DataFrame) -> pd.Series:
    """Which rows' λ1 is a lower bound: its power iteration stopped at the iteration cap (CAPPED_RULE)."""
    if "lambda1_converged" not in rows:
        return pd.Series(False, index=rows.index)
    converged = rows["lambda1_converged"].astype("boolean").fillna(False).astype(bool)
    return ~converged & np.isfinite(rows["lambda1"].astype(float))


def bounded(outcome: str, line: pd.DataFrame, metric: str, against: dict[str, list], text: str) -> tuple[str, str]:
    """(outcome, text), or CAPPED if a capped λ1 sits at a batch size where a higher true λ1 could reverse the
    outcome: `against` maps HOLDS / FAILS to those batch sizes (CAPPED_RULE)."""
    if metric != "lambda1" or outcome not in against:
        return outcome, text
    rows = line[line["batch_size"].isin(against[outcome])]
    capped = rows[capped_runs(rows)]
    if capped.empty:
        return outcome, text
    where = ", ".join(f"B={b}" for b in sorted(capped["batch_size"].unique()))
    return CAPPED, f"{text}; {len(capped)} capped λ1 (a lower bound) at {where} could reverse it"


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
            if outcome == CAPPED and not failed:
                reasons.append(f"{name} {SHORT[metric]}: {CAPPED_RULE}")
        capped = int(capped_runs(line).sum()) if "lambda1" in metrics else 0
        if capped:
            parts.append(f"{capped} of {len(line)} λ1 runs stopped at the iteration cap (lower bounds)")
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
            # flat: a higher true λ1 anywhere could widen the spread; not flat: at the lowest point, narrow it
            against = {HOLDS: list(pts["batch_size"]), FAILS: [low]}
            return bounded(flip(exceeds(spread, se, math.log(limit))), line, metric, against,
                           f"{show(pts, metric)}, {text}")
        return flip(exceeds(spread, se, limit)), f"{show(pts, metric)}, spread {spread:.3f} {pm(se)}"
    return decide


def change(threshold: float, sign: int) -> Decide:
    """Largest vs smallest batch: sign=+1 the value rises by more than `threshold`, -1 it falls by more."""
    def decide(line: pd.DataFrame, metric: str) -> tuple[str, str]:
        pts = points(line, metric)
        low, high = pts["batch_size"].min(), pts["batch_size"].max()
        delta, se = paired(line, metric, low, high)
        shown = f"×{math.exp(delta):.2f}" + (f" (×/÷ {math.exp(Z * se):.2f})" if np.isfinite(se) else "") \
            if metric == "lambda1" else f"{delta:+.3f} {pm(se)}"
        # The batch where a higher true λ1 would shrink the claimed change, and where it would enlarge it.
        shrinks, enlarges = (low, high) if sign > 0 else (high, low)
        return bounded(exceeds(sign * delta, se, threshold), line, metric, {HOLDS: [shrinks], FAILS: [enlarges]},
                       f"{show(pts, metric)} ({shown})")
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
                       _flat_rule(f"a factor {FLAT_CURVATURE:g}") + f" (on log λ1); {CAPPED_RULE}",
                       "LR/BS without momentum")


def _drop_rule() -> str:
    return (f"largest vs smallest batch: drops if the fall − {Z:g} s.e. > {DROP:g} for both, does not if "
            f"the fall + {Z:g} s.e. < {DROP:g}")


def lr_drop(table: pd.DataFrame) -> Verdict:
    return judge_lines(LR_DROP, lines(table, "LR", 0.0), ["test_accuracy", "fgsm_accuracy"], change(DROP, -1),
                       _drop_rule(), "fixed LR without momentum")


def benchmark_drop(table: pd.DataFrame) -> Verdict:
    return judge_lines(BENCHMARK_DROP, lines(table, "Benchmark", 0.9), ["test_accuracy", "fgsm_accuracy"],
                       change(DROP, -1), _drop_rule(), "the Benchmark schedule")


def _sharper_rule() -> str:
    return f"largest vs smallest batch: log λ1 higher by more than {Z:g} s.e.; {CAPPED_RULE}"


def lr_sharper(table: pd.DataFrame) -> Verdict:
    return judge_lines(LR_SHARPER, lines(table, "LR", 0.0), ["lambda1"], change(0.0, +1), _sharper_rule(),
                       "fixed LR without momentum")


def benchmark_sharper(table: pd.DataFrame) -> Verdict:
    return judge_lines(BENCHMARK_SHARPER, lines(table, "Benchmark", 0.9), ["lambda1"], change(0.0, +1),
                       _sharper_rule(), "the Benchmark schedule")


def counter_example(table: pd.DataFrame) -> Verdict:
    found = lines(table, "LR", 0.0, dataset="fashion_mnist", model="StdCNN")
    return judge_lines(COUNTER_EXAMPLE, found, ["fgsm_accuracy", "pgd_accuracy", "lambda1"], change(0.0, +1),
                       f"largest vs smallest batch: each higher by more than {Z:g} s.e.; {CAPPED_RULE}",
                       "no StdCNN on Fashion-MNIST with fixed LR")


# ------------------------------------------------------------------------------------------------ momentum
class Cases(NamedTuple):
    """The momentum cases of one schedule and metric (`momentum_cases`)."""

    better: int  # cases where the larger momentum gives the better value
    total: int  # decided cases
    untrained: int  # runs left out: they did not train (or have no usable value)
    masked: int  # runs left out: their robustness was assumed, not measured (`masked`)
    capped: int = 0  # cases left out: a capped λ1 where a higher true λ1 could reverse them (CAPPED_RULE)


def momentum_cases(table: pd.DataFrame, schedule: str, metric: str) -> Cases:
    """The cases where the larger momentum gives the better `metric`, out of all decided cases.

    A case is a pair of adjacent momenta at one study and batch size, compared by their means over the
    seeds that trained (and, for an attack accuracy, whose robustness was measured: see `masked`); λ1 by its
    geometric mean. Better = lower λ1, higher accuracy. A λ1 case is left out where a capped run could reverse
    it: a better case on a capped run at the larger momentum, a worse case on one at the smaller."""
    rows = select(table, schedule=schedule)
    trained = rows[rows["test_accuracy"] > 1.0 / CLASSES + CHANCE_MARGIN]
    trained = trained[np.isfinite(trained[metric]) & ((trained[metric] > 0) | (metric != "lambda1"))]
    measured = trained
    if metric in UNMEASURED and UNMEASURED[metric] in trained:
        measured = trained[~(trained[UNMEASURED[metric]] > UNMEASURED_MAX)]
    curvature = metric == "lambda1"
    measured = measured.assign(value=np.log(measured[metric]) if curvature else measured[metric],
                               capped=capped_runs(measured) if curvature else False)
    better = total = capped = 0
    for _, point in measured.groupby(["dataset", "model", "batch_size"]):
        by_momentum = point.groupby("momentum").agg(value=("value", "mean"), capped=("capped", "any")).sort_index()
        for (_, low), (_, high) in itertools.pairwise(by_momentum.iterrows()):
            if high["value"] == low["value"]:
                continue
            improves = bool(high["value"] < low["value"]) if curvature else bool(high["value"] > low["value"])
            if high["capped"] if improves else low["capped"]:
                capped += 1
                continue
            total += 1
            better += improves
    return Cases(better, total, len(rows) - len(trained), len(trained) - len(measured), capped)


def _cases_text(cases: Cases) -> str:
    """"better with the larger momentum in k of n cases (sign test p)", and what was left out."""
    parts = [f"better with the larger momentum in {cases.better} of {cases.total} cases (sign test p = "
             f"{sign_test(cases.better, cases.total):.2g})"]
    if cases.untrained:
        parts.append(f"{cases.untrained} run{'s' * (cases.untrained != 1)} that did not train left out")
    if cases.masked:
        parts.append(f"{cases.masked} run{'s' * (cases.masked != 1)} with masked gradients left out (more than "
                     f"{UNMEASURED_MAX:.0%} of the samples counted robust with a dead input gradient)")
    if cases.capped:
        parts.append(f"{cases.capped} case{'s' * (cases.capped != 1)} left out: a capped λ1 (a lower bound) where "
                     "a higher true λ1 could reverse it")
    return "; ".join(parts)


def most_cases(claim: Claim, table: pd.DataFrame, schedule: str, metric: str) -> Verdict:
    cases = momentum_cases(table, schedule, metric)
    if cases.total + cases.capped == 0:
        return not_measured(claim, f"{schedule} at two or more momenta")
    better, total = cases.better, cases.total
    if total == 0:
        return inconclusive(claim, f"every case left out: {CAPPED_RULE}", _cases_text(cases))
    p = sign_test(better, total)
    if p >= ALPHA:
        return inconclusive(claim, f"{better} of {total} could be chance: sign test p = {p:.2g} ≥ {ALPHA:g}"
                            + (" (so few cases can never reach it)" if sign_test(total, total) >= ALPHA else ""),
                            _cases_text(cases))
    return judge(claim, _cases_text(cases), holds=better > total / 2, rule=_most_cases_rule(metric))


def _most_cases_rule(metric: str) -> str:
    means = "geometric means" if metric == "lambda1" else "means"
    return (f"cases: adjacent momenta at each study and batch size ({means} over seeds); sign test p < {ALPHA:g} "
            "and a majority" + (f"; {CAPPED_RULE}" if metric == "lambda1" else ""))


def no_role(claim: Claim, table: pd.DataFrame, schedule: str, metrics: list[str]) -> Verdict:
    """Momentum plays no significant role in any of `metrics`: refuted where the sign test over the momentum
    cases is significant either way. A sign test can find a role but never show there is none, so without
    one the claim is inconclusive (the paper gives no effect size below which a role does not count)."""
    texts, roles = [], []
    for metric in metrics:
        cases = momentum_cases(table, schedule, metric)
        if cases.total == 0:
            continue
        texts.append(f"{SHORT[metric]}: {_cases_text(cases)}")
        if sign_test(cases.better, cases.total) < ALPHA:
            roles.append(SHORT[metric])
    if not texts:
        return not_measured(claim, f"{schedule} at two or more momenta")
    measured = "<br>".join(texts)
    if not roles:
        return inconclusive(claim, f"no sign test significant (p < {ALPHA:g}) either way, but a sign test cannot "
                                   "show that momentum plays no role, only find one", measured)
    return judge(claim, measured, holds=False,
                 rule=f"per metric, the momentum cases as above: a sign test with p < {ALPHA:g} either way is a "
                      f"significant role (here: {', '.join(roles)})")


def judge_all(tables: dict[str, pd.DataFrame], run=None) -> list[Verdict]:
    """Every claim, judged on the profile's own grid (the regime search's runs are reported apart)."""
    table = tables["results"]
    if table.empty:
        return []
    if run is not None:
        table = in_regime(table, run.profile)
    return [
        lrbs_accuracy(table), lrbs_robust(table), lrbs_curvature(table), lr_drop(table), benchmark_drop(table),
        lr_sharper(table), benchmark_sharper(table),
        most_cases(LR_MOMENTUM_CURVATURE, table, "LR", "lambda1"),
        most_cases(LRBS_MOMENTUM_CURVATURE, table, "LR/BS", "lambda1"),
        most_cases(LR_MOMENTUM_TEST, table, "LR", "test_accuracy"),
        most_cases(LR_MOMENTUM_FGSM, table, "LR", "fgsm_accuracy"),
        most_cases(LR_MOMENTUM_PGD, table, "LR", "pgd_accuracy"),
        no_role(LRBS_MOMENTUM_NO_ROLE, table, "LR/BS", ["test_accuracy", "fgsm_accuracy", "pgd_accuracy"]),
        counter_example(table),
        inconclusive(YAO_VALUES, "Yao et al.'s values could not be read from any stored copy of their paper; "
                                 "tfadv compares nothing"),
    ]
