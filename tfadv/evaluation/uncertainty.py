"""How far a robust accuracy measured on n test points can sit from the one on the whole distribution.

A number measured on 1,000 points near 45% carries about ±3 points of sampling noise (95%), more than many
published gaps between defences; RobustBench's 10,000 points carry about ±1. This is the noise of the
sample of points, not of the attack (more steps or restarts are a different question: the masking checks).
"""
from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes / n (it stays inside [0, 1] and is not empty at
    0% or 100%, where the normal approximation p ± z·sqrt(p(1 - p)/n) collapses to a point)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"wilson_interval: level must lie in (0, 1), got {level!r}")
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue at 0% / 100%
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
