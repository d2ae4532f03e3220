"""How far a robust accuracy measured on n test points can sit from the one on the whole distribution.

A number measured on 1,000 points near 45% carries about ±3 points of sampling noise (95%), more than many
published gaps between defences; RobustBench's 10,000 points carry about ±1. This is the noise of the
sample of points, not of the attack (more steps or restarts are a different question: the masking checks).
"""
from __future__ import annotations

import math
import numbers
from statistics import NormalDist
from typing import Any


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes / n (it stays inside [0, 1] and is not empty at
    0% or 100%, where the normal approximation p ± z·sqrt(p(1 - p)/n) collapses to a point).

    `successes` is a count (robust_mask(...).sum()), not a fraction: robust_accuracy's 0.45 of 100 points
    is 45, round(0.45 * 100). Integer-valued floats (45.0) pass."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"wilson_interval: level must lie in (0, 1), got {level!r}")
    n = _count("n", n)
    if n < 1:
        raise ValueError(f"wilson_interval: n must be a number of samples >= 1, got {n}")
    successes = _count("successes", successes, n)
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes must lie in [0, n] = [0, {n}], got {successes}: pass the "
                         "number of successes among the n samples")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue at 0% / 100%
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _count(name: str, value: Any, n: int | None = None) -> int:
    """`value` as an int: an integer, or a float with an integer value. A fraction such as an accuracy is
    refused: read as a count of successes it would give the interval of almost none (0.45 of 100: [0.0, 0.05])."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"wilson_interval: {name} must be a count (an integer), got {type(value).__name__} {value!r}")
    if math.isfinite(value) and value == int(value):
        return int(value)
    fix = ""
    if n is not None:
        fix = ": pass the number of successes among the n samples, not a fraction"
        if 0.0 < value < 1.0:
            fix += f" (for an accuracy of {value} on n = {n}: round({value} * {n}) = {round(value * n)})"
    raise ValueError(f"wilson_interval: {name} must be a count (an integer), got {value!r}{fix}")
