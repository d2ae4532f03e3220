"""The verdict rules every batchnorm claim uses, with their thresholds named once.

Most claims say "BN changes accuracy by about X points". `effect` judges the measured difference (with BN
minus without) against the paper's direction:

* shown: in the paper's direction by more than Z standard errors and by at least the smallest effect
  (MIN_EFFECT, or the paper's own effect divided by MAGNITUDE when that is smaller: a rule must be able to
  call the paper's own number an effect, and MAGNITUDE is how far from it a size still counts as it); then
  *reproduced* with at least MIN_SEEDS seeds per arm (and, on the paper profile, within a factor
  MAGNITUDE of the paper's number), else *partly reproduced* (the seed-to-seed spread is not trusted, or the
  size is off); with fewer than MIN_SEEDS_TO_JUDGE seeds, *inconclusive* (one run per arm says nothing of
  the spread, and a difference between single runs can be noise);
* excluded: even Z standard errors in the paper's favour stay below the smallest effect: *not reproduced*;
* otherwise the noise could flip the verdict: *inconclusive*, and so is any comparison on a model that did
  not train (clean accuracy within CHANCE_MARGIN of chance, or a run that did not fit its training set:
  `unfit`) or on accuracies saturated at 0% or 100% (verdicts.saturated, in samples where n is known).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from reproduce.batchnorm.stats import Arm, Difference
from tfadv.experiments.verdicts import (INCONCLUSIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, Claim, Verdict, judge,
                                       saturated, too_few)

Z = 2.0             # standard errors that the noise could not plausibly produce
MIN_EFFECT = 0.02   # tfadv: the smallest change in accuracy (2 points) called an effect
MIN_SEEDS = 3       # seeds per arm before a spread over seeds is trusted (the paper: 3 to 5 seeds)
MIN_SEEDS_TO_JUDGE = 2  # seeds per arm before a comparison of runs is judged at all
MAGNITUDE = 2.0     # paper profile: "reproduced" within a factor of 2 of the paper's difference
CAPPED = "at most partly: "
#: A run did not fit its training set (it did not train, whatever its test accuracy) when its training accuracy
#: closes less than this share of the distance from chance to the best training accuracy among the runs
#: compared: half-way, the midpoint between "learned nothing" and "learned what this setup can".
FIT_SHARE = 0.5


def smallest_effect(paper_delta: float | None) -> float:
    """The smallest difference called an effect: MIN_EFFECT, or the paper's own effect divided by MAGNITUDE
    when that is smaller (a rule must be able to call the paper's own number an effect)."""
    if paper_delta is None or not math.isfinite(paper_delta) or paper_delta == 0:
        return MIN_EFFECT
    return min(MIN_EFFECT, abs(paper_delta) / MAGNITUDE)


def unfit_runs(train: dict, classes: int) -> list:
    """The runs (keys of `train`: run -> training accuracy) whose training accuracy closes less than FIT_SHARE
    of the distance from chance (1 / classes) to the best of them."""
    found = {k: v for k, v in train.items() if math.isfinite(v)}
    chance = 1.0 / classes
    if len(found) < 2 or max(found.values()) <= chance:
        return []
    floor = chance + FIT_SHARE * (max(found.values()) - chance)
    return [k for k, v in found.items() if v < floor]


def unfit(train: dict, classes: int) -> str | None:
    """A reason if a run did not fit its training set (unfit_runs; `train`: run label -> accuracy), else None."""
    low = unfit_runs(train, classes)
    if not low:
        return None
    best = max(v for v in train.values() if math.isfinite(v))
    return (f"run did not train: training accuracy of {', '.join(f'{k} {100 * train[k]:.1f}%' for k in low)}, "
            f"less than {FIT_SHARE:.0%} of the way from chance ({100 / classes:.0f}%) to the best compared run's "
            f"{100 * best:.1f}%")


def saturated_arms(*arms: Arm) -> str | None:
    """verdicts.saturated over every value of `arms`, in samples where their sizes are known."""
    values = [v for a in arms for v in a.values]
    counts = [n for a in arms for n in (a.n_each if len(a.n_each) == a.n else [math.nan] * a.n)]
    return saturated(values, n=counts)


def seeds_check(seeds: int) -> str | None:
    """Why a comparison of `seeds` runs per arm cannot be judged, or None."""
    return too_few(seeds, MIN_SEEDS_TO_JUDGE, "seeds (a difference between single runs can be noise)")


def noise_reason(diff: Difference, direction: float, smallest: float = MIN_EFFECT) -> str | None:
    """Why the noise could flip this difference's verdict, or None when it is clearly shown or excluded."""
    signed = diff.delta * direction
    if not math.isfinite(signed):
        return "not measured in this run"
    if (signed > Z * diff.se and signed >= smallest) or signed + Z * diff.se < smallest:
        return None
    return f"within the noise: {diff.text()} is neither {Z:g} s.e. beyond 0 nor excluded beyond {100 * smallest:g} pts"


def effect(claim: Claim, diff: Difference, paper_delta: float | None, *, direction: float | None = None,
           paper_scale: bool = False, unless: Iterable[str | None] = (), note: str = "",
           cap: str | None = None) -> Verdict:
    """Judge `diff` (a fraction) against the paper's difference `paper_delta` (a fraction; None when only its
    sign, `direction`, is known). `cap`: a reason why this comparison can at best be partly reproduced."""
    direction = direction if direction is not None else math.copysign(1.0, paper_delta)
    signed = diff.delta * direction
    smallest = smallest_effect(paper_delta)
    shown = signed > Z * diff.se and signed >= smallest
    reasons = []
    if diff.seeds < MIN_SEEDS:
        reasons.append(f"{diff.seeds} seed(s): spread over seeds not trusted below {MIN_SEEDS}")
    if paper_scale and paper_delta is not None and not 1 / MAGNITUDE <= diff.delta / paper_delta <= MAGNITUDE:
        reasons.append(f"size off the paper's by more than x{MAGNITUDE:g}")
    if cap:
        reasons.append(cap)
    least = (f"{100 * smallest:g} pts (the paper's {100 * abs(paper_delta):.3g} ÷ {MAGNITUDE:g}, below "
             f"{100 * MIN_EFFECT:g})" if smallest < MIN_EFFECT else f"{100 * smallest:g} pts")
    rule = (f"{'lower' if direction < 0 else 'higher'} by > {Z:g} s.e. and >= {least}"
            + (f"; {note}" if note else "") + (f"; {CAPPED}{', '.join(reasons)}" if shown and reasons else ""))
    unless = [r for r in [*unless, seeds_check(diff.seeds)] if r]  # a failed precondition says more than the noise
    return judge(claim, diff.text(), holds=shown and not reasons, partly=shown, rule=rule,
                 unless=unless or [noise_reason(diff, direction, smallest)])


def combine(claim: Claim, parts: Sequence[tuple[str, Verdict]], rule: str) -> Verdict:
    """One verdict from per-case verdicts ("at every width"): reproduced if every case is, partly if some case
    is at least partly, not reproduced if every case is not, else inconclusive with the cases' reasons."""
    if not parts:
        return judge(claim, "-", holds=False, unless=["not measured in this run"])
    outcomes = [v.outcome for _, v in parts]
    measured = "; ".join(f"{label}: {v.measured}" for label, v in parts)
    if all(o == REPRODUCED for o in outcomes):
        return Verdict(claim, REPRODUCED, measured, rule)
    if any(o in (REPRODUCED, PARTLY) for o in outcomes):
        shown = sum(o in (REPRODUCED, PARTLY) for o in outcomes)
        caps = dict.fromkeys(v.why.partition(CAPPED)[2] for _, v in parts if CAPPED in v.why)
        return Verdict(claim, PARTLY, measured, f"{rule}; shown in {shown} of {len(parts)} cases"
                       + (f"; {CAPPED}{'; '.join(caps)}" if caps else ""))
    if all(o == NOT_REPRODUCED for o in outcomes):
        return Verdict(claim, NOT_REPRODUCED, measured, rule)
    reasons: dict[str, list[str]] = {}
    for label, v in parts:
        if v.outcome == INCONCLUSIVE:
            reasons.setdefault(v.why, []).append(label)
    return Verdict(claim, INCONCLUSIVE, measured, "; ".join(f"{', '.join(labels)}: {why}"
                                                            for why, labels in reasons.items()))
