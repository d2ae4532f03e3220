"""The merged tables read into the tidy frames that claims, figures and report sections share."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reproduce.efficient.cells import ASYNC, BASELINE, STALENESS, STRENGTH, TRANSFER
from reproduce.efficient.training import NATURAL, PANEL, REFERENCE
from tfadv.experiments import verdicts
from tfadv.experiments.tables import pct, select

EMPTY = pd.DataFrame()


def results(tables: dict) -> pd.DataFrame:
    return tables.get("results", EMPTY)


def finals(tables: dict, experiment: str, by: str, steps: int | None = None) -> pd.DataFrame:
    """One row per trained model (by, seed): final test accuracy, natural and under the strongest of the attacks
    run on it (the PGD-kappa panel and mnist_challenge's PGD-40: at the paper's alpha = 2.5 eps / kappa a long
    panel attack can beat PGD-40 of 0.01, which crosses only 1.33 eps)."""
    rows = select(results(tables), experiment=experiment, split="test", metric="accuracy")
    if steps is not None:
        rows = select(rows, steps=steps)
    if rows.empty:
        return pd.DataFrame(columns=[by, "seed", "natural", "adversarial", "n"])
    natural = select(rows, attack=NATURAL).set_index([by, "seed"])["value"]
    adversarial = select(rows, attack=[PANEL, REFERENCE]).groupby([by, "seed"])["value"].min()
    n = select(rows, attack=NATURAL).set_index([by, "seed"])["n"]
    wide = pd.DataFrame({"natural": natural, "adversarial": adversarial, "n": n}).reset_index()
    return wide.astype({by: int, "seed": int, "n": int}).sort_values([by, "seed"]).reset_index(drop=True)


def estimate(values, n: int) -> tuple[float, float]:
    """(mean over seeds, its standard error): test-set noise (binomial, the same images for every seed)
    combined with the spread over seeds (unknown, so left out, with a single seed)."""
    mean, sd, k = verdicts.mean_sd(values)
    seed_se = sd / math.sqrt(k) if k > 1 else 0.0
    return mean, math.hypot(verdicts.binomial_se(mean, n), seed_se)


def summarise(wide: pd.DataFrame, by: str, column: str = "adversarial") -> pd.DataFrame:
    """Per `by`: mean, sd, se and seed count of `column` (and the natural mean)."""
    rows = []
    for key, group in wide.groupby(by):
        mean, se = estimate(group[column], int(group["n"].min()))
        _, sd, k = verdicts.mean_sd(group[column])
        rows.append({by: int(key), "mean": mean, "sd": sd, "se": se, "seeds": k,
                     "natural": float(group["natural"].mean())})
    return pd.DataFrame(rows, columns=[by, "mean", "sd", "se", "seeds", "natural"])


def spread(mean: float, sd: float, seeds: int) -> str:
    """45.1% ± 1.2 (3 seeds), or 45.1% (1 seed)."""
    if seeds > 1 and np.isfinite(sd):
        return f"{pct(mean)} ± {100 * sd:.1f} ({seeds} seeds)"
    return f"{pct(mean)} (1 seed)"


def transfer(tables: dict, steps: int) -> pd.DataFrame:
    """Table 1 rows (seed, target, source, white_box, accuracy, n) of the transfer cells at `steps`."""
    rows = select(results(tables), experiment=TRANSFER, metric="transfer_accuracy", steps=steps)
    if rows.empty:
        return pd.DataFrame(columns=["seed", "target_kappa", "source_kappa", "white_box", "accuracy", "n"])
    rows = rows.assign(white_box=rows["white_box"].astype(str).str.lower() == "true", accuracy=rows["value"])
    keep = ["seed", "target_kappa", "source_kappa", "white_box", "accuracy", "n"]
    if "source_steps" in rows:  # the search's sources are the main run's nets, trained for fewer steps
        rows = rows.assign(source_steps=rows["source_steps"].fillna(steps))
        keep.append("source_steps")
    return rows[keep].astype({"seed": int, "target_kappa": int, "source_kappa": int, "n": int})


def shattering(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per target kappa: white-box accuracy and the worst same-strength transfer of the seed-mean matrix (the
    source whose mean over seeds is lowest: the table's row minimum, not a minimum per seed, which would mix
    sources and pick noise), each a mean over seeds, and the gap white-box minus that source's transfer with
    its standard error (test noise and the spread of the per-seed gaps)."""
    rows = []
    for target, group in matrix.groupby("target_kappa"):
        white = group[group["white_box"]].set_index("seed")["accuracy"]
        transfers = group[~group["white_box"]]
        worst = int(transfers.groupby("source_kappa")["accuracy"].mean().idxmin())
        paired = pd.DataFrame({"white": white,
                               "transfer": transfers[transfers["source_kappa"] == worst].set_index("seed")["accuracy"]})
        paired = paired.dropna()
        n = int(group["n"].min())
        gap_mean, gap_sd, k = verdicts.mean_sd(paired["white"] - paired["transfer"])
        white_mean, transfer_mean = float(paired["white"].mean()), float(paired["transfer"].mean())
        test_se = math.hypot(verdicts.binomial_se(white_mean, n), verdicts.binomial_se(transfer_mean, n))
        se = math.hypot(test_se, gap_sd / math.sqrt(k) if k > 1 else 0.0)
        rows.append({"target_kappa": int(target), "white_box": white_mean, "transfer": transfer_mean,
                     "source_kappa": worst, "gap": gap_mean, "gap_se": se, "seeds": k})
    return pd.DataFrame(rows)


def curves(tables: dict, experiment: str) -> pd.DataFrame:
    """The logged points of the training curves of one experiment."""
    return select(tables.get("curves", EMPTY), experiment=experiment)


def fresh_and_stale(tables: dict, last_points: int) -> pd.DataFrame:
    """Per (s, seed): train accuracy on the stale batches trained on vs on fresh PGD examples of the current
    weights, each averaged over the last `last_points` logged points."""
    logged = curves(tables, STALENESS)
    if logged.empty:
        return pd.DataFrame(columns=["staleness", "seed", "stale", "fresh", "n"])
    logged = select(logged, split="train", metric="accuracy")
    rows = []
    for (s, seed), group in logged.groupby(["staleness", "seed"]):
        steps = sorted(group["step"].unique())[-last_points:]
        recent = group[group["step"].isin(steps)]
        rows.append({"staleness": int(s), "seed": int(seed),
                     "stale": float(select(recent, attack="stale")["value"].mean()),
                     "fresh": float(select(recent, attack=PANEL)["value"].mean()),
                     "n": int(select(recent, attack=PANEL)["n"].min())})
    return pd.DataFrame(rows)


def async_runs(tables: dict) -> pd.DataFrame:
    """One row per asynchronous run (and the baseline): its summary metrics and final test accuracies."""
    rows = pd.concat([select(results(tables), experiment=ASYNC), select(results(tables), experiment=BASELINE)])
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(workers=rows["workers"].fillna(0).astype(int))  # the baseline crafts its own batches
    summary = rows[rows["split"] == "train"].pivot_table(index=["experiment", "workers"], columns="metric",
                                                         values="value", aggfunc="first")
    test = select(rows, split="test", metric="accuracy")
    test = test.assign(kind=np.where(test["attack"] == NATURAL, "natural", "adversarial"))
    finals_ = test.pivot_table(index=["experiment", "workers"], columns="kind", values="value", aggfunc="first")
    n = test.groupby(["experiment", "workers"])["n"].min().rename("n")
    wide = summary.join(finals_).join(n).reset_index()
    wide.columns.name = None
    sync = wide[(wide["experiment"] == ASYNC) & (wide["workers"] == 0)]
    if not sync.empty:
        wide["speedup"] = wide["steps_per_second"] / float(sync["steps_per_second"].iloc[0])
    return wide


def strength_kappas(tables: dict, steps: int) -> list[int]:
    return sorted(select(results(tables), experiment=STRENGTH, steps=steps)["kappa"].dropna().astype(int).unique())
