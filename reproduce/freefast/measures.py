"""What the claims read off the merged tables: an accuracy with its uncertainty over seeds and test points,
whether a training run overfitted catastrophically, and the rows of the paper's sweeps.

Thresholds are named here beside the paper's numbers they stand for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfadv.experiments import verdicts
from tfadv.experiments.tables import select

#: Catastrophic overfitting = PGD accuracy falls to (near) zero: the paper's Fast alpha = 16/255 rows read
#: 0.000; tfadv counts a model as collapsed at or below 5%.
COLLAPSE_ACCURACY = 0.05
#: ... or, along a training curve, PGD accuracy falls more than this below its best epoch (Wong et al.'s
#: early-stopping threshold; the seed's 90-epoch Fast log falls 0.434 -> 0.103 in one epoch).
COLLAPSE_DROP = 0.2
#: Two measurements differ "clearly" when they are more than this many combined standard errors apart.
Z = 2.0
CLASSES = 10


@dataclass(frozen=True)
class Estimate:
    """An accuracy over one or more seeds: mean, standard error (seeds' spread and test-set noise), n seeds."""

    mean: float
    se: float
    seeds: int
    sd: float = math.nan

    def text(self) -> str:
        spread = f" ± {self.sd:.3f} (s.d., {self.seeds} seeds)" if self.seeds > 1 else ""
        return f"{self.mean:.3f}{spread}"


def estimate(rows: pd.DataFrame, column: str, points_column: str = "eval_points",
             single_run_sd: float | None = None) -> Estimate:
    """Mean of `column` over the rows (seeds) with se = hypot(s.d./sqrt(n), binomial s.e. on the test points);
    a single run's s.d. is `single_run_sd` (single_run_spread), else left out."""
    mean, sd, n = verdicts.mean_sd(rows[column])
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    points = int(rows[points_column].min())
    seeds_se = sd / math.sqrt(n) if n > 1 else (single_run_sd or 0.0)
    return Estimate(mean, math.hypot(seeds_se, verdicts.binomial_se(mean, points)), n, sd)


#: The columns of a training setting: cells that differ only in `repeat` are seeds of one setting.
SETTING_COLUMNS = ("method", "architecture", "batch_size", "epochs", "eps", "replays", "alpha_ratio")


def single_run_spread(results: pd.DataFrame, column: str) -> float | None:
    """The spread over seeds assumed for a setting run once: the largest standard deviation of `column` over
    the seeds of this run's repeated settings whose every run ended above COLLAPSE_ACCURACY under PGD-20 (a
    collapse in some seeds is the phenomenon, not training noise). None when no such setting was repeated."""
    by = [c for c in SETTING_COLUMNS if c in results]
    if not by or results.empty:
        return None
    return verdicts.largest_spread(group[column] for _, group in results.groupby(by, dropna=False)
                                   if (group["pgd20_accuracy"] > COLLAPSE_ACCURACY).all())


def unknown_spread(estimates, spread: float | None) -> str | None:
    """A reason when a single run is compared but no spread over seeds was measured to assume for it."""
    if spread is None and any(e.seeds == 1 for e in estimates):
        return ("a single run is compared and no setting of this run was repeated to measure the spread over seeds: "
                "a difference between single runs can be noise")
    return None


def spread_note(estimates, spread: float | None, what: str = "") -> str:
    """The rule's words on the standard error of the single runs among `estimates` (of the accuracy `what`)."""
    if spread is None or all(e.seeds > 1 for e in estimates):
        return ""
    return (f"; a single run's {what + ' ' if what else ''}s.e. includes a spread over seeds of {spread:.3f}, the "
            "largest measured among this run's repeated settings")


def clearly_above(a: Estimate, b: Estimate) -> bool:
    return verdicts.clearly_greater(a.mean, b.mean, a.se, b.se, Z)


def curve_drop(curve: pd.DataFrame) -> tuple[float, int, float]:
    """(best PGD accuracy on the curve, its epoch, final PGD accuracy) of one run's per-epoch curve."""
    ordered = curve.sort_values("epoch")
    best = int(ordered["val_pgd_accuracy"].to_numpy().argmax())
    return (float(ordered["val_pgd_accuracy"].iloc[best]), int(ordered["epoch"].iloc[best]),
            float(ordered["val_pgd_accuracy"].iloc[-1]))


def curve_collapse(curve: pd.DataFrame, points: int) -> str:
    """"collapsed", "healthy" or "unclear" along one run's curve: did PGD accuracy fall more than
    COLLAPSE_DROP below its best epoch, beyond the noise (2 combined s.e. on the curve's test points)?"""
    best, _, last = curve_drop(curve)
    drop = best - last
    se = math.hypot(verdicts.binomial_se(best, points), verdicts.binomial_se(last, points))
    if drop - Z * se > COLLAPSE_DROP:
        return "collapsed"
    return "healthy" if drop + Z * se <= COLLAPSE_DROP else "unclear"


def above_collapse_level(accuracy: float, points: int) -> str:
    """"yes" if a PGD accuracy is clearly (2 s.e.) above COLLAPSE_ACCURACY, "no" if at or below it, else
    "unclear"."""
    if accuracy <= COLLAPSE_ACCURACY:
        return "no"
    return "yes" if accuracy - Z * verdicts.binomial_se(accuracy, points) > COLLAPSE_ACCURACY else "unclear"


def was_robust(curve: pd.DataFrame | None, points: int) -> str:
    """Had the run robustness to lose? "yes" if its best epoch's PGD accuracy is clearly above
    COLLAPSE_ACCURACY, "no" if no epoch rose above it, "unclear" otherwise or without a curve."""
    if curve is None or not len(curve):
        return "unclear"
    return above_collapse_level(curve_drop(curve)[0], points)


def collapse_status(final_pgd: float, points: int, curve: pd.DataFrame | None = None,
                    curve_points: int | None = None) -> str:
    """"collapsed", "healthy" or "unclear" (the noise could put it on either side of a threshold).

    Collapsed: the run was robust first (was_robust: catastrophic overfitting is a fall, Wong et al. 2020),
    then its final PGD accuracy is <= COLLAPSE_ACCURACY, or it fell along the curve (curve_collapse).
    Healthy: the final accuracy is clearly (2 s.e.) above the threshold and the curve clearly does not fall.
    A run whose curve never rose above the threshold is neither: run_status counts it as not trained.
    """
    final = {"no": "collapsed", "yes": "healthy", "unclear": "unclear"}[above_collapse_level(final_pgd, points)]
    along = curve_collapse(curve, curve_points or points) if curve is not None and len(curve) else "healthy"
    if "collapsed" in (final, along):
        # Without a curve clearly above the threshold, a final value near 0 may be a run that never learned.
        return "collapsed" if was_robust(curve, curve_points or points) == "yes" else "unclear"
    return "unclear" if "unclear" in (final, along) else "healthy"


def untrained_run(row: pd.Series) -> bool:
    """One run's natural accuracy is not clearly above chance (`untrained`): it has nothing to collapse from."""
    return untrained(pd.DataFrame([row])) is not None


def never_robust(row: pd.Series, curves: pd.DataFrame) -> bool:
    """The run trained, but its PGD accuracy rose above COLLAPSE_ACCURACY at no epoch of its curve: a budget it
    did not learn (the demo's eps = 0.4, where PGD-7 training itself reaches 0.07), not a collapse."""
    return was_robust(run_curve(curves, row), int(row["curve_points"])) == "no"


def run_status(row: pd.Series, curves: pd.DataFrame) -> str:
    """"untrained" (untrained_run, or never_robust: nothing to collapse from), else collapse_status of one run
    of the results table: the one definition the claims and the report's search section both count with, so
    that they cannot disagree."""
    if untrained_run(row) or never_robust(row, curves):
        return "untrained"
    return collapse_status(row["pgd20_accuracy"], int(row["eval_points"]), run_curve(curves, row),
                           int(row["curve_points"]))


def collapse_count(status: list[str]) -> str:
    """"collapsed in 1 of 3 run(s); 1 did not train": a count of run_status (or curve) outcomes, worded once."""
    untrained_runs = status.count("untrained")
    return (f"collapsed in {status.count('collapsed')} of {len(status)} run(s)"
            + (f"; {untrained_runs} did not train" if untrained_runs else ""))


def run_curve(curves: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """The per-epoch curve of the cell that produced `row` of the results table."""
    return curves[curves["cell"] == row["cell"]] if "cell" in curves else curves.iloc[0:0]


def sweep(results: pd.DataFrame, method: str, vary: str, batch_size: int | None = 128) -> pd.DataFrame:
    """The rows of one of the paper's sweeps (over Free's m or Fast's alpha): PreActResNet18, batch 128 (or
    every batch size with None), at the epochs where the grid varies `vary` the most (the paper: 45)."""
    where = {} if batch_size is None else {"batch_size": batch_size}
    rows = select(results, method=method, architecture="preact_resnet18", **where)
    if rows.empty:
        return rows
    counts = rows.groupby("epochs")[vary].nunique()
    return rows[rows["epochs"] == counts.idxmax()]


def common_epochs(rows: pd.DataFrame, key: str, values: tuple) -> tuple[pd.DataFrame, ...]:
    """The rows of each of `values` of `key` at the longest epochs they all ran (empty frames if none)."""
    groups = [rows[rows[key] == v] for v in values]
    common = set.intersection(*(set(g["epochs"]) for g in groups)) if all(len(g) for g in groups) else set()
    if not common:
        return tuple(rows.iloc[0:0] for _ in values)
    return tuple(g[g["epochs"] == max(common)] for g in groups)


def pairs(results: pd.DataFrame, first: tuple[str, dict], second: tuple[str, dict]):
    """Per network: (architecture, rows of `first`, rows of `second`) at batch 128 and the longest epochs both
    ran; each of first/second is (method, {column: value})."""
    for architecture in sorted(set(results["architecture"].dropna())):
        a, b = (select(results, method=method, architecture=architecture, batch_size=128, **where)
                for method, where in (first, second))
        a, b = common_epochs(pd.concat([a.assign(_side=0), b.assign(_side=1)]), "_side", (0, 1))
        if len(a) and len(b):
            yield architecture, a.drop(columns="_side"), b.drop(columns="_side")


def timing_column(rows: pd.DataFrame) -> str:
    """Per-epoch wall time on a GPU; CPU time of the process on a CPU, where wall time on a shared machine
    measures the neighbours as much as the run."""
    return "epoch_cpu_seconds" if "device" in rows and set(rows["device"]) == {"cpu"} else "epoch_seconds"


def epoch_times(curves: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Per-epoch times of the cells in `rows` (timing_column), without each run's first epoch (which compiles)."""
    column = timing_column(rows)
    if not {"cell", "epoch", column} <= set(curves):
        return np.zeros(0)
    part = curves[curves["cell"].isin(rows["cell"])]
    return part.loc[part["epoch"] > 1, column].to_numpy(float)


def median(values) -> float:
    return float(np.median(values))


def untrained(rows: pd.DataFrame) -> str | None:
    """A reason if a model's natural accuracy is not clearly (2 s.e.) above chance plus the layer's margin."""
    if not len(rows):
        return None
    lower = [r["natural_accuracy"] - Z * verdicts.binomial_se(r["natural_accuracy"], int(r["eval_points"]))
             for _, r in rows.iterrows()]
    reason = verdicts.untrained(lower, classes=CLASSES)
    return None if reason is None else reason.replace("accuracies", "accuracies (less 2 s.e.)")


def by_value(rows: pd.DataFrame, key: str, column: str, single_run_sd: float | None = None) -> dict[float, Estimate]:
    """{value of `key` (m or alpha): Estimate of `column` over its seeds}, sorted by key."""
    return {value: estimate(group, column, single_run_sd=single_run_sd)
            for value, group in sorted(rows.groupby(key), key=lambda kv: kv[0])}


def arrow_text(estimates: dict, name: str) -> str:
    """"0.40 (m=2) → 0.45 (m=4)": measured values along a sweep."""
    return " → ".join(f"{e.text()} ({name}={k:g})" for k, e in estimates.items())


def spread_ratio(slow: np.ndarray, fast: np.ndarray) -> tuple[float, float, float]:
    """(median ratio, lowest plausible, highest plausible) of two sets of per-epoch times: the ratio of
    medians, and the ratios of Free's 10th to Fast's 90th percentile and the reverse."""
    slow, fast = np.asarray(slow, float), np.asarray(fast, float)
    return (float(np.median(slow) / np.median(fast)), float(np.percentile(slow, 10) / np.percentile(fast, 90)),
            float(np.percentile(slow, 90) / np.percentile(fast, 10)))
