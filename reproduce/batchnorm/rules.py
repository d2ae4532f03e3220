"""The verdict rules every batchnorm claim uses, with their thresholds named once.

Most claims say "BN changes accuracy by about X points". `effect` judges the measured difference (with BN
minus without) against the paper's direction:

* shown: in the paper's direction by more than Z standard errors and by at least MIN_EFFECT; then
  *reproduced* with at least MIN_SEEDS seeds per arm (and, on the paper profile, within a factor
  MAGNITUDE of the paper's number), else *partly reproduced* (the seed-to-seed spread is not trusted, or the
  size is off); with fewer than MIN_SEEDS_TO_JUDGE seeds, *inconclusive* (one run per arm says nothing of
  the spread, and a difference between single runs can be noise);
* excluded: even Z standard errors in the paper's favour stay below MIN_EFFECT: *not reproduced*;
* otherwise the noise could flip the verdict: *inconclusive*, and so is any comparison on a model that did
  not train (clean accuracy within CHANCE_MARGIN of chance) or on accuracies saturated at 0% or 100%.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from reproduce.batchnorm.stats import Difference
from tfadv.experiments.verdicts import (INCONCLUSIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, Claim, Verdict, judge,
                                       too_few)

Z = 2.0             # standard errors that the noise could not plausibly produce
MIN_EFFECT = 0.02   # tfadv: the smallest change in accuracy (2 points) called an effect
MIN_SEEDS = 3       # seeds per arm before a spread over seeds is trusted (the paper: 3 to 5 seeds)
MIN_SEEDS_TO_JUDGE = 2  # seeds per arm before a comparison of runs is judged at all
MAGNITUDE = 2.0     # paper profile: "reproduced" within a factor of 2 of the paper's difference
CAPPED = "at most partly: "


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
    shown = signed > Z * diff.se and signed >= MIN_EFFECT
    reasons = []
    if diff.seeds < MIN_SEEDS:
        reasons.append(f"{diff.seeds} seed(s): spread over seeds not trusted below {MIN_SEEDS}")
    if paper_scale and paper_delta is not None and not 1 / MAGNITUDE <= diff.delta / paper_delta <= MAGNITUDE:
        reasons.append(f"size off the paper's by more than x{MAGNITUDE:g}")
    if cap:
        reasons.append(cap)
    rule = (f"{'lower' if direction < 0 else 'higher'} by > {Z:g} s.e. and >= {100 * MIN_EFFECT:g} pts"
            + (f"; {note}" if note else "") + (f"; {CAPPED}{', '.join(reasons)}" if shown and reasons else ""))
    unless = [r for r in [*unless, seeds_check(diff.seeds)] if r]  # a failed precondition says more than the noise
    return judge(claim, diff.text(), holds=shown and not reasons, partly=shown, rule=rule,
                 unless=unless or [noise_reason(diff, direction)])


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
