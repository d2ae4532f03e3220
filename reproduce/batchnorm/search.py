"""Where the demo looks for the phenomenon: the knobs the paper names, the range this run tried, what it found.

The paper's mechanisms point to three knobs: the input dimension (boundary tilting and the linear model's
vulnerability grow with d: Sections 3 and 5), the weight decay lambda (it "corrects the loss scaling as the
norm of the input increases with d", tuned per width: App. F, Table 7) and the learning rate (BN's benefit
is a larger one: Tables 2-3). Each table below is computed from this run's cells, one row per value tried.
"""
from __future__ import annotations

import pandas as pd

from reproduce.batchnorm import claims_cifar, rules
from reproduce.batchnorm.claims import TILT_MARGIN, linear_ratios, nearest_centroid_lead, part, ratio_text
from reproduce.batchnorm.stats import Difference, arm, difference
from tfadv.experiments import markdown_table
from tfadv.experiments.run import Run
from tfadv.experiments.tables import select

#: Tried while choosing the demo's regime and not run by it (no numbers from it appear in a report).
EXPLORED = ("Also tried while choosing this regime, and not run here: a weight decay that grows with d "
            "(λ x (d / d₀)) for the linear model, which over-regularised it at 4x the width.")


def effect_cell(t: pd.DataFrame, metric: str, a: dict, b: dict, direction: float, degrees: bool = False) -> str:
    """a - b over seeds, read by the effect rule: shown, absent, or within the noise (angles: TILT_MARGIN)."""
    return reading(difference(arm(t, metric, **a), arm(t, metric, **b)), direction, degrees)


def reading(diff: Difference, direction: float, degrees: bool = False) -> str:
    """A difference and its reading by the effect rule: shown, absent, or within the noise."""
    if diff.seeds == 0:
        return "–"
    smallest = TILT_MARGIN if degrees else rules.MIN_EFFECT
    word = ("within the noise" if rules.noise_reason(diff, direction, smallest) is not None
            else "shown" if diff.delta * direction > 0 else "absent")
    return f"{diff.text(1.0, '°') if degrees else diff.text()}: {word}"


def by_width(table: pd.DataFrame) -> str | None:
    tilt, dim = part(table, "tilting"), part(table, "dimension")
    rows = []
    for width in sorted(set(tilt["width"].astype(int))) if not tilt.empty else []:
        t = select(tilt, width=width)
        # As the claim reads it: the nearest-centroid classifier is fixed, so the lead has GD's seeds.
        rows.append([width, "Table 1, linear", reading(nearest_centroid_lead(t)[2], +1.0),
                     effect_cell(t, "tilt_deg", {"variant": "bngd_fixed"}, {"variant": "gd"}, +1.0, degrees=True)])
    for scale in sorted(set(dim["scale"].astype(int))) if not dim.empty else []:
        t = select(dim, scale=scale, model="mlp", weight_decay=0.0)
        width = int(select(dim, scale=scale)["image_width"].iloc[0])
        rows.append([width, "Table 6, MLP", effect_cell(t, "bim", {"batchnorm": True}, {"batchnorm": False}, -1.0),
                     effect_cell(t, "awgn", {"batchnorm": True}, {"batchnorm": False}, -1.0)])
    if not rows:
        return None
    return markdown_table(["image width", "model", "nearest centroid − GD, FGSM ε=1/4 / BN − no BN, BIM",
                           "θ_BNGD − θ_GD / BN − no BN, noise"], rows)


def by_decay(table: pd.DataFrame) -> str | None:
    dim = part(table, "dimension")
    if dim.empty:
        return None
    rows = [[f"{wd:g}", "linear", f"BIM ratio to the base width: {ratio_text(linear_ratios(table, wd))}"]
            for wd in sorted(set(select(dim, model="linear")["weight_decay"].astype(float)))]
    for wd in sorted(w for w in set(select(dim, model="mlp")["weight_decay"].astype(float)) if w > 0):
        for scale in sorted(set(dim["scale"].astype(int))):
            t = select(dim, model="mlp", batchnorm=False, scale=scale)
            rows.append([f"{wd:g}", f"MLP {scale}x", "λ − no λ, BIM: " + effect_cell(
                t, "bim", {"weight_decay": wd}, {"weight_decay": 0.0}, +1.0)])
    return markdown_table(["λ", "model", "measured"], rows)


def by_learning_rate(table: pd.DataFrame) -> str | None:
    t = select(part(table, "cifar"), test_set="test")
    if t.empty:
        return None
    rows, unfit = [], []
    for (model, schedule), block in t.groupby(["model", "schedule"], sort=True):
        others = sorted(set(block["normalization"]) - {"batchnorm"})
        if "batchnorm" not in set(block["normalization"]) or not others:
            continue  # a shard's folder may hold one side of the comparison only
        with_bn, without = {"normalization": "batchnorm"}, {"normalization": others[0]}
        cells = [effect_cell(block, m, with_bn, without, -1.0) for m in ("awgn", "pgd_linf")]
        reason, _ = claims_cifar.unfit_runs(table, model, schedule)
        if reason:  # as the claims read it: a comparison with a run that did not train is not judged
            cells = [f"{c.rsplit(': ', 1)[0]}: not judged" for c in cells]
            unfit.append(f"{model} {schedule} LR: {reason}")
        rows.append([model, schedule, *cells])
    if not rows:
        return None
    return markdown_table(["model", "LR schedule", "BN − no BN, noise", "BN − no BN, PGD-ℓ∞"], rows) + (
        "\n\nNot judged: " + "; ".join(unfit) + "." if unfit else "")


def sections(table: pd.DataFrame, run: Run) -> list[tuple[str, str]]:
    if run.profile_name == "paper":
        return []
    parts = [(f"Input dimension (widths tried: {_widths(table)})", by_width(table)),
             ("Weight decay λ", by_decay(table)), ("Learning rate", by_learning_rate(table))]
    text = "\n\n".join(f"**{heading}**\n\n{body}" for heading, body in parts if body)
    if not text:
        return []
    intro = (__doc__.split("\n\n", 1)[1].strip() + f" A difference is *shown* or *absent* by the effect rule "
             f"({rules.Z:g} s.e., at least {100 * rules.MIN_EFFECT:g} pts, or {TILT_MARGIN:g}° for angles).")
    return [("Where the demo looks for the phenomenon", f"{intro}\n\n{text}\n\n{EXPLORED}")]


def _widths(table: pd.DataFrame) -> str:
    widths = set()
    for name, column in (("tilting", "width"), ("dimension", "image_width")):
        t = part(table, name)
        widths |= set(t[column].dropna().astype(int)) if not t.empty else set()
    return ", ".join(str(w) for w in sorted(widths)) or "none"
