"""Repeated measurements and their differences, the way every batchnorm claim reads them.

An `Arm` is one configuration measured over seeds (one accuracy per seed, each on `n_test` samples). A
`Difference` between two arms carries a standard error: from the spread over seeds when both arms have at
least two, never below the binomial standard error of the accuracies themselves (a spread estimated from
two or three seeds can be small by luck).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import binomial_se, mean_sd


@dataclass(frozen=True)
class Arm:
    values: tuple[float, ...]   # one measurement per seed (a fraction, or degrees)
    se_each: tuple[float, ...]  # binomial standard error of each (0 for exact quantities)
    n_each: tuple[float, ...] = ()  # samples behind each accuracy (empty when unknown or not an accuracy)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean_sd(self.values)[0]

    @property
    def sd(self) -> float:
        return mean_sd(self.values)[1]

    def se(self) -> float:
        """Standard error of the mean: seed spread, floored by the measurements' own binomial error."""
        if not self.values:
            return math.nan
        floor = math.sqrt(np.mean(np.square(self.se_each))) / math.sqrt(self.n)
        spread = self.sd / math.sqrt(self.n) if self.n > 1 else 0.0
        return max(spread, floor)


def arm(table: pd.DataFrame, metric: str, **where) -> Arm:
    """The `metric` rows matching `where`, one per seed (accuracies: binomial errors from `n_test`)."""
    rows = select(table, metric=metric, **where)
    values = rows["value"].astype(float).to_numpy()
    if "n_test" in rows and metric != "tilt_deg":
        counts = rows["n_test"].astype(float).to_numpy()
        se = [0.0 if math.isnan(n) else binomial_se(v, int(n)) for v, n in zip(values, counts)]
        return Arm(tuple(values), tuple(se), tuple(counts))
    return Arm(tuple(values), (0.0,) * len(values))


@dataclass(frozen=True)
class Difference:
    """a - b with its standard error and the smaller number of seeds of the two arms."""

    delta: float
    se: float
    seeds: int

    def text(self, scale: float = 100.0, unit: str = " pts") -> str:
        if not math.isfinite(self.delta):
            return "n/a"
        return f"{scale * self.delta:+.1f} ± {scale * self.se:.1f}{unit} (n={self.seeds})"


def difference(a: Arm, b: Arm, b_is_fixed: bool = False) -> Difference:
    """a - b; `b_is_fixed`: b does not depend on the seed (the untrained nearest-centroid classifier)."""
    if a.n == 0 or b.n == 0:
        return Difference(math.nan, math.nan, 0)
    return Difference(a.mean - b.mean, math.hypot(a.se(), b.se()), a.n if b_is_fixed else min(a.n, b.n))


def describe(a: Arm, scale: float = 100.0, digits: int = 1) -> str:
    """"mean ± sd (n)" of an arm, or "n/a"."""
    if a.n == 0:
        return "n/a"
    spread = f" ± {scale * a.sd:.{digits}f}" if a.n > 1 else ""
    return f"{scale * a.mean:.{digits}f}{spread} (n={a.n})"


def summary(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sample s.d. and count of `value` per group (the report's tables)."""
    out = table.groupby(by, dropna=False)["value"].agg(mean="mean", sd="std", n="count").reset_index()
    return out
