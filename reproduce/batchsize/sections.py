"""The report's sections: the measurements, the runs that did not train, the regime search, CPU time."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchsize.claims import CAPPED_RULE, CLASSES, FLAT_ACCURACY, capped_runs
from reproduce.batchsize.profiles import Profile, in_regime
from tfadv.experiments import markdown_table
from tfadv.experiments.tables import pct, select
from tfadv.experiments.verdicts import CHANCE_MARGIN

#: Final weights this far below the last epoch's running training accuracy: training ended on a loss spike.
SPIKE_GAP = 0.1
SEARCH = """Jastrzebski et al.'s rule holds the SGD noise scale LR/B and the progress per epoch (LR x N/B) constant.
It can keep the accuracy flat only where every batch size gets enough updates and the largest learning
rate is stable (Hoffer et al.: a large batch that gets too few updates generalises worse until it trains
longer). The paper profile's largest batch (tfadv's grid: the paper lists none), 2048 of 55,000 images,
gets 26 updates per epoch for 100 epochs. A 1,347-image demo has to stop its batch sizes far lower and
scale the ratio up to train in 30 epochs. The search runs the LR/BS line beyond the demo's batch sizes,
at other learning-rate scales and for longer (one seed each), so the report shows where the phenomenon
can show and where it cannot.
"""


def _mean_sd(values: pd.Series, percent: bool) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if percent:
        return pct(values.mean()) + ("" if len(values) < 2 else f" ± {100 * values.std(ddof=1):.1f}")
    return f"{values.mean():.3g}" + ("" if len(values) < 2 else f" ± {values.std(ddof=1):.2g}")


def _geometric(values: pd.Series) -> str:
    """λ1 as its claims compare it: the geometric mean ×/÷ the geometric standard deviation over seeds (the
    arithmetic mean, so labelled, where some λ1 ≤ 0 has no logarithm)."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    if (values <= 0).any():
        return f"{values.mean():.3g} (arithmetic: λ1 ≤ 0 in {int((values <= 0).sum())} runs)"
    logs = np.log(values)
    return f"{np.exp(logs.mean()):.3g}" + ("" if len(values) < 2 else f" ×/÷ {np.exp(logs.std(ddof=1)):.2g}")


def measurements(table: pd.DataFrame) -> str:
    """One row per point: the mean ± s.d. over seeds of every accuracy, the geometric mean of λ1."""
    rows = []
    keys = ["dataset", "model", "setting", "batch_size"]
    for (dataset, model, setting, b), runs in table.groupby(keys, sort=True):
        rows.append((dataset, model, setting, b, f"{runs['learning_rate'].iloc[0]:.4g}", len(runs),
                     _mean_sd(runs["test_accuracy"], True), _mean_sd(runs["fgsm_accuracy"], True),
                     _mean_sd(runs["pgd_accuracy"], True), _geometric(runs["lambda1"]),
                     f"{int(runs['lambda1_converged'].sum())} of {len(runs)}"))
    return ("Accuracies: mean ± standard deviation over seeds; λ1: geometric mean ×/÷ geometric standard deviation "
            "(the claims compare λ1 by its ratios). Each seed: its own initial weights and data order, shared by "
            f"every setting and batch size. {_capped_summary(table)}\n\n"
            + markdown_table(["dataset", "model", "setting", "batch", "learning rate", "seeds", "test", "FGSM",
                              "PGD", "λ1 (geometric)", "λ1 converged"], rows))


def _capped_summary(table: pd.DataFrame) -> str:
    """How many λ1 power iterations stopped at their cap, and what the claims make of them."""
    measured = table["lambda1"].notna()
    capped = int(capped_runs(table[measured]).sum())
    if not capped:
        return f"Every λ1 power iteration ({int(measured.sum())}) converged."
    return (f"{capped} of {int(measured.sum())} λ1 power iterations stopped at the iteration cap; in the claims, "
            f"{CAPPED_RULE}.")


def unstable(table: pd.DataFrame) -> str | None:
    """Runs that did not train, diverged, or ended on a loss spike, or None if there are none."""
    chance = 1.0 / CLASSES + CHANCE_MARGIN
    spike = table["final_train_accuracy"] < table["train_accuracy"] - SPIKE_GAP
    bad = table[(table["test_accuracy"] <= chance) | spike | table["diverged"].astype(bool)]
    if bad.empty:
        return None
    rows = bad[["dataset", "model", "setting", "batch_size", "seed", "learning_rate", "train_loss",
                "train_accuracy", "final_train_accuracy", "test_accuracy"]]
    return (f"{len(bad)} of {len(table)} runs: test accuracy ≤ {chance:.0%} (did not train: the claims on their "
            f"line are inconclusive, the momentum claims leave them out), a diverged loss, or final weights more "
            f"than {SPIKE_GAP:g} below the last epoch's running training accuracy (training ended on a loss spike)."
            "\n\n"
            + markdown_table(rows.columns, rows.itertuples(index=False)))


def cpu_time(table: pd.DataFrame) -> str:
    by_batch = table.groupby("batch_size")["cpu_seconds"].sum()
    return (f"{table['cpu_seconds'].sum():.0f} CPU-seconds over {len(table)} cells (training and measurement, "
            "summed over processes; a loaded machine inflates them). By batch size: "
            + ", ".join(f"{b}: {s:.0f} s" for b, s in by_batch.items()) + ".")


def sections(tables: dict[str, pd.DataFrame], run) -> list[tuple[str, str]]:
    everything = tables["results"]
    if everything.empty:
        return []
    table = in_regime(everything, run.profile)
    found = [("Measurements", measurements(table))]
    if run.limit is not None:
        capped = (f"--limit {run.limit} capped the training images' updates per epoch, the epochs and the "
                  "evaluated images: this run checks that the code path works end to end; its numbers are not "
                  "the profile's.")
        found.insert(0, ("Capped run", capped))
    bad = unstable(table)
    if bad:
        found.append(("Runs that did not train or ended on a loss spike", bad))
    regime = search_section(everything, run.profile)
    if regime:
        found.append(("Regime search", regime))
    found.append(("CPU time", cpu_time(everything)))
    return found


# ------------------------------------------------------------------------------------------------ search
def searched(table: pd.DataFrame, profile: Profile) -> list[tuple[str, pd.DataFrame]]:
    """("model, setting", all its rows: the profile's own and the search's) per searched line."""
    found = {}
    for s in profile.search:
        name = f"{s.model} on {s.dataset}, {s.schedule} m={s.momentum:g}"
        found[name] = select(table, dataset=s.dataset, model=s.model, schedule=s.schedule, momentum=s.momentum)
    return [(name, rows) for name, rows in found.items() if not rows.empty]


def _row(regime: str, runs: pd.DataFrame, batches: list[int], own_batches: tuple[int, ...]) -> tuple:
    means = runs.groupby("batch_size")["test_accuracy"].mean()
    chance = 1.0 / CLASSES + CHANCE_MARGIN
    failed = [int(b) for b, acc in means.items() if acc <= chance]
    own = means[means.index.isin(own_batches)]
    parts = [f"at chance (≤ {chance:.0%}) at B = " + ", ".join(map(str, failed))] if failed else []
    if len(own) >= 2:
        spread = own.max() - own.min()
        flat = spread <= FLAT_ACCURACY
        parts.append(f"{'flat' if flat else 'not flat'} over B ≤ {max(own_batches)}: spread {spread:.3f} "
                     f"({'≤' if flat else '>'} {FLAT_ACCURACY:g}) around {own.mean():.0%}")
    verdict = "; ".join(parts) or "-"
    cells = [f"{means[b]:.2f}" if b in means else "" for b in batches]
    return regime, *cells, verdict


def search_section(table: pd.DataFrame, profile: Profile) -> str | None:
    """Test accuracy of each searched line per learning-rate scale and batch size, and what it shows."""
    lines = searched(table, profile)
    if not lines:
        return None
    text = [SEARCH.strip(), ""]
    for name, rows in lines:
        batches = sorted(rows["batch_size"].unique())
        updates = rows.groupby("batch_size")["updates_per_epoch"].first()
        table_rows = [_row(f"x{scale:g}, {epochs} epochs", runs, batches, profile.batch_sizes)
                      for (scale, epochs), runs in rows.groupby(["lr_scale", "epochs"])]
        seeds = rows.groupby(["lr_scale", "epochs", "batch_size"])["seed"].nunique()
        text += [f"**{name}**: test accuracy (mean over {seeds.min()}-{seeds.max()} seeds) by learning-rate scale "
                 f"(x the paper's ratio; the profile's: x{profile.lr_scale:g}, {profile.epochs} epochs), training "
                 "length and batch size; updates per epoch: " + ", ".join(f"B={b}: {updates[b]:g}" for b in batches),
                 "", markdown_table(["lr scale, epochs", *[f"B={b}" for b in batches], "what it shows"], table_rows),
                 ""]
    return "\n".join(text)
