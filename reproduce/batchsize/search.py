"""The regime search of a scaled-down profile: where LR/BS can keep accuracy flat at all, measured in the run.

Jastrzebski et al.'s rule holds the SGD noise scale LR/B and the progress per epoch (LR x N/B) constant.
It can keep the accuracy flat only where every batch size gets enough updates and the largest learning
rate is stable (Hoffer et al.: a large batch that gets too few updates generalises worse until it trains
longer). The paper profile's largest batch (tfadv's grid: the paper lists none), 2048 of 55,000 images,
gets 26 updates per epoch for 100 epochs. A 1,347-image demo has to stop its batch sizes far lower and
scale the ratio up to train in 30 epochs. The search runs the LR/BS line beyond the demo's batch sizes,
at other learning-rate scales and for longer (one seed each), so the report shows where the phenomenon
can show and where it cannot.
"""
from __future__ import annotations

import pandas as pd

from reproduce.batchsize.profiles import Profile
from tfadv.experiments import markdown_table
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import CHANCE_MARGIN

CLASSES = 10
#: The same reading of "roughly constant" as the claims (reproduce.batchsize.claims.FLAT_ACCURACY).
FLAT = 0.05


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
        parts.append(f"{'flat' if spread <= FLAT else 'not flat'} over B ≤ {max(own_batches)}: spread {spread:.3f} "
                     f"({'≤' if spread <= FLAT else '>'} {FLAT:g}) around {own.mean():.0%}")
    verdict = "; ".join(parts) or "-"
    cells = [f"{means[b]:.2f}" if b in means else "" for b in batches]
    return regime, *cells, verdict


def section(table: pd.DataFrame, profile: Profile) -> str | None:
    """Test accuracy of each searched line per learning-rate scale and batch size, and what it shows."""
    lines = searched(table, profile)
    if not lines:
        return None
    text = [__doc__.split("\n\n", 1)[1].strip(), ""]
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
