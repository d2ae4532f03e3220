"""Verdicts with preconditions: reproduced, partly reproduced, not reproduced, or inconclusive with a reason.

A paper's claims are constants (`Claim`: what the paper says and its number), each judged by a small
function of the measured tables that returns a `Verdict`. Before a rule is applied its preconditions are
checked: a claim judged on models that did not train, on a measurement saturated at 0% or 100%, on too few
seeds, or on something this profile does not measure is *inconclusive*, and says why.

    LR_BS_FLAT = Claim("LR/BS keeps test accuracy roughly constant", "purple lines flat, Figs 1-10")
    FLAT_SPREAD = 0.05  # tfadv's reading of "roughly constant", next to the paper's (absent) number

    def lr_bs_flat(table) -> Verdict:
        acc = table["test_accuracy"]
        return judge(LR_BS_FLAT, measured=fmt(acc), holds=acc.max() - acc.min() <= FLAT_SPREAD,
                     rule=f"spread <= {FLAT_SPREAD}", unless=[untrained(acc, classes=10)])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
OUTCOMES = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE)

#: A model whose accuracy is within this many points of chance (1 / classes) did not train.
CHANCE_MARGIN = 0.05
#: A rate within this distance of 0 or 1 is saturated: a difference between such rates says nothing.
SATURATION_MARGIN = 0.005
#: ... and, when the number of samples n behind a rate is known, so is a rate within this many samples of 0
#: or n (a margin of SATURATION_COUNT / n): two counts k1 >= k2 that are both at most 4 = 2² can never differ
#: by 2 Poisson standard errors (k1 - k2 <= k1 <= 2 sqrt(k1) <= 2 sqrt(k1 + k2)), so rates that close to an
#: end cannot show a difference 2 standard errors wide, whatever the rule.
SATURATION_COUNT = 4


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: what it says and the number (or figure) it gives."""

    text: str
    paper: str


@dataclass(frozen=True)
class Verdict:
    """A claim judged on this run's numbers: the outcome, what was measured, and the rule or the reason."""

    claim: Claim
    outcome: str
    measured: str
    why: str = ""

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


def judge(claim: Claim, measured: str, *, holds: bool, partly: bool = False, rule: str = "",
          unless: Iterable[str | None] = ()) -> Verdict:
    """Apply a rule: reproduced if `holds`, else partly if `partly`, else not reproduced; but inconclusive
    if any precondition in `unless` failed (each is None when it passed, or the reason it did not)."""
    reasons = [r for r in unless if r]
    if reasons:
        return Verdict(claim, INCONCLUSIVE, measured, "; ".join(reasons))
    outcome = REPRODUCED if holds else PARTLY if partly else NOT_REPRODUCED
    return Verdict(claim, outcome, measured, rule)


def inconclusive(claim: Claim, reason: str, measured: str = "-") -> Verdict:
    return Verdict(claim, INCONCLUSIVE, measured, reason)


NOT_MEASURED = "not measured in this profile"


def not_measured(claim: Claim, what: str = "") -> Verdict:
    """The profile does not measure what the claim needs."""
    return Verdict(claim, INCONCLUSIVE, "-", NOT_MEASURED + (f": {what}" if what else ""))


def provisional(verdict: Verdict, partial: str) -> Verdict:
    """The verdict of a partial run (`partial` says how: unfinished cells, a selection, capped sizes) is
    inconclusive, since what it lacks could change it; it says what the rule gave on the cells at hand."""
    given = verdict.why.replace(NOT_MEASURED, "not measured by them")
    if verdict.outcome != INCONCLUSIVE:
        given = f"{verdict.outcome}" + (f" ({given})" if given else "")
    return Verdict(verdict.claim, INCONCLUSIVE, verdict.measured, f"{partial}; the cells at hand give: {given}")


def tally(holds: Sequence[bool]) -> tuple[bool, bool]:
    """(all hold, some hold) over the cases a rule was applied to."""
    holds = [bool(h) for h in holds]
    return bool(holds) and all(holds), any(holds)


# ------------------------------------------------------------------------------------ preconditions
def untrained(accuracies, classes: int, margin: float = CHANCE_MARGIN) -> str | None:
    """A reason if any model's accuracy is within `margin` of chance (1 / classes), else None."""
    values = _finite(accuracies)
    chance = 1.0 / classes
    near = values[values <= chance + margin]
    if len(near):
        return (f"model did not train: {len(near)} of {len(values)} accuracies within {margin:.0%} of chance "
                f"({100 * chance:g}%), e.g. {near[0]:.1%}")
    return None


def saturated(rates, margin: float = SATURATION_MARGIN, n=None) -> str | None:
    """A reason if every rate sits at 0% or at 100%: nothing can move, so a comparison between them says
    nothing about the claim. "At" an end: within `margin`, or, where `n` (the samples behind each rate: one
    number for all, or one per rate) is given, within SATURATION_COUNT samples of it."""
    values = _as_array(rates)
    counts = np.broadcast_to(_as_array([np.nan] if n is None else np.atleast_1d(n)), values.shape).astype(float)
    keep = np.isfinite(values)
    values, counts = values[keep], counts[keep]
    margins = np.where(np.isfinite(counts) & (counts > 0), np.maximum(margin, SATURATION_COUNT / np.where(
        counts > 0, counts, 1.0)), margin)
    low, high = values <= margins, values >= 1 - margins
    if len(values) and np.all(low | high):
        ends = sorted({"0%" if lo else "100%" for lo in low})
        if np.any(margins > margin):
            sizes = sorted({int(c) for c in counts[np.isfinite(counts)]})
            return (f"measurement saturated: every value is within {SATURATION_COUNT} samples (of "
                    f"{'/'.join(map(str, sizes))}) of {' or '.join(ends)}")
        return f"measurement saturated: every value is at {' or '.join(ends)}"
    return None


def too_few(count: int, needed: int, what: str = "seeds") -> str | None:
    """A reason if the rule needs more repeats than were run."""
    if count < needed:
        return f"too few {what}: {count} run, the rule needs {needed}"
    return None


def missing(values, what: str) -> str | None:
    """A reason if nothing was measured (an empty selection of the table)."""
    return f"not measured in this run: {what}" if len(_as_array(values)) == 0 else None


# -------------------------------------------------------------------------------- noise-aware tests
def binomial_se(rate: float, n: int) -> float:
    """Standard error of an accuracy or success rate measured on n samples."""
    if n <= 0:
        return math.nan
    rate = min(max(float(rate), 0.0), 1.0)
    # At 0% or 100% the plug-in estimate is 0; use the rule-of-three bound instead of pretending certainty.
    return max(math.sqrt(rate * (1 - rate) / n), 1.0 / n)


def clearly_greater(a: float, b: float, se_a: float, se_b: float, z: float = 2.0) -> bool:
    """a exceeds b by more than `z` combined standard errors (the noise could not flip the order)."""
    return a - b > z * math.hypot(se_a, se_b)


def within_noise(a: float, b: float, se_a: float, se_b: float, z: float = 2.0) -> bool:
    """|a - b| is within `z` combined standard errors."""
    return abs(a - b) <= z * math.hypot(se_a, se_b)


def mean_sd(values) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n) of repeated measurements; sd is nan for a single one."""
    values = _finite(values)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if n > 1 else math.nan, n


def largest_spread(groups) -> float | None:
    """The largest sample standard deviation among groups of repeated measurements (the seeds of each setting):
    the spread over seeds assumed for a setting run once. None when no group has two finite values."""
    spreads = [sd for _, sd, n in map(mean_sd, groups) if n > 1]
    return max(spreads) if spreads else None


def sign_test(successes: int, trials: int) -> float:
    """Two-sided p-value that `successes` of `trials` paired comparisons would go one way by chance."""
    if trials == 0:
        return 1.0
    k = max(successes, trials - successes)
    tail = sum(math.comb(trials, i) for i in range(k, trials + 1)) / 2.0**trials
    return min(1.0, 2.0 * tail)


def _as_array(values) -> np.ndarray:
    return np.asarray(list(values) if not hasattr(values, "__len__") else values, dtype=float).ravel()


def _finite(values) -> np.ndarray:
    array = _as_array(values)
    return array[np.isfinite(array)]
