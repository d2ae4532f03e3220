"""The report's own sections: success and mechanism tables, loss scaling, the batching check, the model.

Every sentence that compares numbers is computed from them here (and unit-tested on hand-made tables).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reproduce.minibatch import data
from reproduce.minibatch.claims import MIN_DROP, Change, Z, main_regime, rate
from reproduce.minibatch.figures import labelled
from reproduce.minibatch.profiles import NORM_NAMES, batching
from tfadv.experiments import Run, markdown_table
from tfadv.experiments.tables import pct

KEYS = ["model", "norm", "attack", "loss", "batch_size"]


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    everything = tables["results"]
    table = main_regime(everything)
    found = [("Attack success (%) by batch size", success_table(table)),
             ("Mechanism", MECHANISM + mechanism_table(table)),
             ("Beyond the paper: per-sample loss scaling under mixed_float16", loss_scaling(table)),
             ("Batching", batching_text(table, batching(run)))]
    if "sharpness" in everything and everything["sharpness"].nunique() > 1:
        found.append(("Where the phenomenon shows at demo scale: the regime search", regime_search(everything)))
    facts = data.digits_facts(run)
    if facts:
        found.append(("The digits CNN", markdown_table(["fact", "value"], facts.items())))
    return found


def success_table(table: pd.DataFrame) -> str:
    t = labelled(table)
    wide = t.groupby(["model", "norm", "attack", "setting", "batch_size"])["success %"].mean().unstack()
    columns = ["model", "norm", "attack", "setting"] + [f"b={b}" for b in wide.columns]
    rows = [(m, NORM_NAMES.get(n, n), a, s, *row) for (m, n, a, s), row in wide.iterrows()]
    return markdown_table(columns, rows, float_format="{:.1f}")


MECHANISM = (
    "With the mean loss each sample's input gradient is divided by the batch size N. The reference code's L2 "
    "step g / sqrt(max(1e-12, ||g||²)) is then shorter than asked for every sample with ||g|| < 1e-6 "
    "(\"floor-clamped\"); L∞'s sign(g) is scale-free and only loses entries that are exactly zero (float16 "
    "underflow, or Keras' 1e-7 clipping of probabilities, which a float16 model output always goes through: "
    "loss_path in results.csv). Both are measured per image at the first step.\n\n")


def mechanism_table(table: pd.DataFrame) -> str:
    t = labelled(table)
    cols = ["floor_clamp_frac", "zero_grad_frac", "median_grad_l2_first", "median_pert_l2", "median_pert_linf"]
    agg = t.groupby(["model", "norm", "attack", "setting", "batch_size"])[cols].mean().reset_index()
    columns = ["model", "norm", "attack", "setting", "batch", "floor-clamped", "zero grad",
               "median ‖∇‖₂ (1st step)", "median ‖δ‖₂", "median ‖δ‖∞"]
    rows = [(r.model, NORM_NAMES.get(r.norm, r.norm), r.attack, r.setting, r.batch_size, pct(r.floor_clamp_frac),
             pct(r.zero_grad_frac), f"{r.median_grad_l2_first:.2e}", f"{r.median_pert_l2:.1f}",
             f"{r.median_pert_linf:.1f}") for r in agg.itertuples()]
    return markdown_table(columns, rows)


def average_gap(table: pd.DataFrame, better: str, worse: str) -> tuple[float, float, int] | None:
    """Average success under `better` − under `worse` precision over matching cells, its s.e., the count."""
    gaps, ses = [], []
    for key, _ in table.groupby(KEYS):
        where = dict(zip(KEYS, key))
        a, b = rate(table, precision=better, **where), rate(table, precision=worse, **where)
        if a and b:
            gaps.append(a[0] - b[0])
            ses.append(math.hypot(a[1], b[1]))
    if not gaps:
        return None
    return float(np.mean(gaps)), math.sqrt(sum(s**2 for s in ses)) / len(gaps), len(gaps)


def scaling_statement(plain: tuple[float, float], scaled: tuple[float, float]) -> str:
    """What per-sample loss scaling does to the fp32 − fp16 gap, in words computed from the two gaps."""
    def negligible(gap: tuple[float, float]) -> bool:
        return abs(gap[0]) <= Z * gap[1] or abs(gap[0]) < MIN_DROP

    numbers = (f"fp32 − fp16 = {100 * plain[0] + 0.0:+.1f} ± {100 * plain[1]:.1f} pp without scaling, "
               f"{100 * scaled[0] + 0.0:+.1f} ± {100 * scaled[1]:.1f} pp with per-sample scaling. ")
    if negligible(plain):
        return numbers + "fp16 is within noise of fp32 here: there is no gap to close."
    if negligible(scaled):
        return numbers + "Scaling closes the gap, so fp16's loss of strength here is float16 underflow."
    if abs(scaled[0]) < 0.5 * abs(plain[0]):
        return numbers + "Scaling closes most of the gap, so fp16's loss of strength here is mostly underflow."
    return numbers + "Scaling does not close most of the gap, so underflow alone does not explain it here."


def loss_scaling(table: pd.DataFrame) -> str:
    """Beyond the paper: does per-sample loss scaling give fp16 back fp32's strength (was it underflow)?"""
    plain = average_gap(table, "float32", "mixed_float16")
    scaled = average_gap(table, "float32", "mixed_float16+scaling")
    if plain is None or scaled is None:
        return "Not measured in this run (needs float32, mixed_float16 and mixed_float16+scaling)."
    intro = ("Under mixed_float16 the engine can scale each sample's loss so that its logit gradient is O(1) "
             "before the float16 backward pass, and divide the factor out in float32 (`loss_scale=\"per_sample\"`). "
             "A positive per-sample factor changes neither sign(g) nor g/||g||, so any strength it restores was "
             f"lost to float16 underflow. Averaged over {plain[2]} cells: ")
    return intro + scaling_statement(plain[:2], scaled[:2])


#: Largest difference between emulated and real adversarial examples, relative to eps, that is float
#: rounding on any count (a float16 ulp is ~1e-3). Beyond it, the sum loss is the yardstick: for it the
#: "emulation" is no emulation at all, only the same computation in a larger real batch, so its difference
#: is the rounding that already separates real batches of different sizes (amplified over PGD's steps).
ROUNDING = 1e-3
#: Relative difference of the first step's gradient norm that is float rounding (float16: ~1e-3 per op).
GRADIENT_ROUNDING = 1e-2


def beyond_rounding(checked: pd.DataFrame) -> pd.DataFrame:
    """Checked cells whose x_adv differs from real batches by more than float rounding: more than ROUNDING
    and more than the sum loss's difference in the same precision, norm and attack."""
    setting = ["precision", "norm", "attack"]
    yardstick = checked[checked["loss"] == "sum"].groupby(setting)["check_max_rel_diff"].max().rename("sum_diff")
    rows = checked.join(yardstick, on=setting)
    # Twice the sum's difference: the same order of rounding, not a bit-exact bound.
    return rows[rows["check_max_rel_diff"] > np.maximum(ROUNDING, 2.0 * rows["sum_diff"].fillna(0.0))]


def batching_text(table: pd.DataFrame, mode: str) -> str:
    """Which batching produced the numbers, and the largest difference measured against real batches."""
    real = int((table["batching"] == "real").sum())
    if mode == "real":
        return "Every cell was crafted in real batches of its batch size (the reference code's protocol)."
    checked = table[table["check_images"] > 0]
    text = (f"Emulated batching: {len(table) - real} of {len(table)} cells were crafted in batches of the "
            f"profile's craft size with per-sample reduction weights 1/B; {real} in real batches (their batch "
            "size is the craft size, or their random start is shared by a real batch). ")
    shared = int(table["craft_shared"].fillna(False).astype(bool).sum()) if "craft_shared" in table else 0
    if shared:
        text += (f"Under the sum loss every sample's weight is 1 at every B, so a setting's emulated crafts at all "
                 f"batch sizes are one computation: {shared} "
                 "cells reused it from another batch size of the same process (craft_shared in results.csv) and "
                 "were checked against their own real batches like the others. ")
    if checked.empty:
        return text + "No cell was checked against real batches."
    mismatches, images = int(checked["check_success_mismatches"].sum()), int(checked["check_images"].sum())
    worst = {loss: rows["check_max_rel_diff"].max() for loss, rows in checked.groupby("loss")}
    grad = float(checked["check_grad_rel_diff"].max())
    measured = (f"Each emulated cell also crafted its first images in real batches of B ({images} images in all): "
                f"success differs on {mismatches} of them; the largest |x_adv(emulated) − x_adv(real)| is "
                + ", ".join(f"{v:.2g} eps with the {loss} loss" for loss, v in worst.items())
                + f"; the first step's gradient norm differs by at most {100 * grad:.2g}%. ")
    if mismatches or grad > GRADIENT_ROUNDING:
        return text + measured + ("The emulation does NOT reproduce real batches here: read these numbers as "
                                  "emulated, or rerun with --batching real.")
    apart = beyond_rounding(checked)
    if apart.empty:
        return text + measured + (f"No larger than float rounding (≤ {ROUNDING:g} eps, or the order of what the sum "
                                  "loss shows in the same setting, where emulated and real batches compute the same thing at "
                                  "two batch sizes): these numbers are those of real batches.")
    where = "; ".join(sorted({f"{r.attack}-{NORM_NAMES.get(r.norm, r.norm)} {r.precision} {r.loss} b={r.batch_size}"
                              for r in apart.itertuples()}))
    return text + measured + (f"Success and the first step agree on every checked image, but the final adversarial "
                              f"examples of {len(apart)} cell(s) ({where}) differ by more than float rounding: "
                              "PGD's steps amplified a small difference (e.g. a float16 gradient entry at the "
                              "underflow edge changes sign(g)). The success rates are those of real batches on every checked image; "
                              "the examples themselves are not bit-identical.")


SEARCH = ("The paper's mechanism acts on the size of the input gradients, which the model's confidence sets: "
          "multiplying the calibrated digits CNN's logits by k keeps every prediction and makes the softmax "
          "k times sharper (exponentially smaller gradients, like a confident 1000-class model). Searched: "
          "k = {ks}, PGD, mean loss, float32, batch {small} against batch {large}; the claims above are judged "
          "at k = 1.\n\n")


def regime_search(table: pd.DataFrame) -> str:
    """The search table (success at both batch sizes per logit scale and norm) and one computed sentence per norm."""
    rows = table[(table["precision"] == "float32") & (table["loss"] == "mean") & (table["attack"] == "PGD")]
    small, large = int(rows["batch_size"].min()), int(rows["batch_size"].max())
    lines, shown = [], {}
    for (k, norm), group in rows.groupby(["sharpness", "norm"]):
        a, b = rate(group, batch_size=small), rate(group, batch_size=large)
        if not (a and b):
            continue
        change = Change(f"k={k:g}", a[0], b[0], math.hypot(a[1], b[1]))
        at_large = group[group["batch_size"] == large]
        lines.append((f"{k:g}", NORM_NAMES.get(norm, norm), pct(a[0]), pct(b[0]),
                      f"{100 * change.drop:+.1f} ± {100 * Z * change.se:.1f}", change.state,
                      pct(at_large["floor_clamp_frac"].mean()), pct(at_large["zero_grad_frac"].mean())))
        shown.setdefault(norm, []).append(change)
    text = SEARCH.format(ks=", ".join(f"{k:g}" for k in sorted(rows["sharpness"].unique())), small=small, large=large)
    text += markdown_table(["k", "norm", f"success b={small}", f"success b={large}", f"drop (pp, ± {Z:g} s.e.)",
                            "state", f"floor-clamped b={large}", f"zero grad b={large}"], lines)
    return text + "\n\n" + " ".join(search_sentence(NORM_NAMES.get(n, n), c) for n, c in shown.items())


def search_sentence(norm: str, found: list[Change]) -> str:
    """Where the mean loss's drop appeared, computed from the comparisons."""
    dropped = [c.label for c in found if c.state == "drop"]
    tried = ", ".join(c.label for c in found)
    if not dropped:
        return f"{norm}: no drop beyond the noise at any logit scale tried ({tried})."
    return f"{norm}: a drop beyond the noise at {', '.join(dropped)} (tried {tried})."
