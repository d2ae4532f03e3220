"""The report's sections: the measurements, the runs that did not train, the regime search, CPU time."""
from __future__ import annotations

import pandas as pd

from reproduce.batchsize.claims import CLASSES, FLAT_ACCURACY
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


def measurements(table: pd.DataFrame) -> str:
    """One row per point: the mean ± s.d. over seeds of every metric."""
    rows = []
    keys = ["dataset", "model", "setting", "batch_size"]
    for (dataset, model, setting, b), runs in table.groupby(keys, sort=True):
        rows.append((dataset, model, setting, b, f"{runs['learning_rate'].iloc[0]:.4g}", len(runs),
                     _mean_sd(runs["test_accuracy"], True), _mean_sd(runs["fgsm_accuracy"], True),
                     _mean_sd(runs["pgd_accuracy"], True), _mean_sd(runs["lambda1"], False),
                     f"{int(runs['lambda1_converged'].sum())} of {len(runs)}"))
    return ("Mean ± standard deviation over seeds (each seed: its own initial weights and data order, shared by "
            "every setting and batch size).\n\n"
            + markdown_table(["dataset", "model", "setting", "batch", "learning rate", "seeds", "test", "FGSM",
                              "PGD", "λ1", "λ1 converged"], rows))


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
            f"study are inconclusive), a diverged loss, or final weights more than {SPIKE_GAP:g} below the last "
            "epoch's running training accuracy (training ended on a loss spike).\n\n"
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
