"""The report's own sections: a warning when the images are not the paper's, success and mechanism tables, loss
scaling, the batching check, the model.

Every sentence that compares numbers is computed from them here (and unit-tested on hand-made tables).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from reproduce.minibatch import data
from reproduce.minibatch.claims import MIN_DROP, Change, Z, main_regime, rate
from reproduce.minibatch.figures import labelled
from reproduce.minibatch.profiles import DIGITS_MODEL, NORM_NAMES, batching, imagenet_images
from tfadv.experiments import Run, markdown_table
from tfadv.experiments.tables import pct
from tfadv.validation import TfadvWarning

KEYS = ["model", "norm", "attack", "loss", "batch_size"]


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    everything = tables["results"]
    table = main_regime(everything)
    found = [("Images", text) for text in [images_warning(run)] if text]
    found += [("Attack success (%) by batch size", success_table(table)),
              ("Mechanism", MECHANISM + mechanism_table(table)),
              ("Beyond the paper: per-sample loss scaling under mixed_float16", loss_scaling(table)),
              ("Batching", batching_text(table, batching(run)))]
    if "sharpness" in everything and everything["sharpness"].nunique() > 1:
        found.append(("Where the phenomenon shows at demo scale: the regime search", regime_search(everything)))
    facts = data.digits_facts(run)
    if facts:
        found.append(("The digits CNN", markdown_table(["fact", "value"], facts.items())))
    return found


def images_warning(run: Run) -> str | None:
    """A warning (in the report and as a TfadvWarning) when the ImageNet models attacked other images than the
    paper's ImageNetV2 (profiles.imagenet_images); None for the digits or the whole set."""
    if run.profile.images is not None or not set(run.profile.models) - {DIGITS_MODEL}:
        return None
    warning = imagenet_images(run)[1]
    if warning is None:
        return None
    warnings.warn(warning, TfadvWarning, stacklevel=2)
    return f"> **Warning.** {warning}."


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
#: is the rounding that already separates real batches of different shapes (amplified over PGD's steps).
ROUNDING = 1e-3
#: Relative difference of the first step's gradient norm that is float rounding (float16: ~1e-3 per op).
GRADIENT_ROUNDING = 1e-2
#: When emulated cells stand for real batches (batching_text): the rule, in words.
TRUST_RULE = (f"success agrees on every checked image, the first step's gradient norm (which carries the mean's "
              f"1/B) within {GRADIENT_ROUNDING:.0%}, and every example within {ROUNDING:g} eps of its real batch's "
              "or within twice the largest difference the sum loss shows at the same precision, norm and attack")
SETTING = ["precision", "norm", "attack"]


def beyond_rounding(checked: pd.DataFrame) -> pd.DataFrame:
    """Checked cells whose x_adv differs from real batches by more than float rounding: more than ROUNDING
    and more than twice the sum loss's largest difference at the same precision, norm and attack."""
    yardstick = checked[checked["loss"] == "sum"].groupby(SETTING)["check_max_rel_diff"].max().rename("sum_diff")
    rows = checked.join(yardstick, on=SETTING)
    # Twice the sum's difference: the same order of rounding, not a bit-exact bound.
    return rows[rows["check_max_rel_diff"] > np.maximum(ROUNDING, 2.0 * rows["sum_diff"].fillna(0.0))]


def batching_text(table: pd.DataFrame, mode: str) -> str:
    """Which batching produced the numbers, what the check against real batches found, and whether the
    emulation is trusted (TRUST_RULE)."""
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
                 "batch sizes, and its real batches of the craft size, are one computation (tested bit for bit): "
                 f"{shared} cells reused it from another batch size, crafted by this or another process of the "
                 "run on the same kernels and thread count (craft_shared in results.csv); the emulated ones were "
                 "checked against their own real batches like the others. ")
    if checked.empty:
        return text + "No cell was checked against real batches: read these numbers as emulated."
    return text.rstrip() + "\n\n" + check_text(checked)


def check_text(checked: pd.DataFrame) -> str:
    """The check of the emulated cells against real batches, each finding in its own sentence, and the verdict."""
    mismatches, images = int(checked["check_success_mismatches"].sum()), int(checked["check_images"].sum())
    grad = float(checked["check_grad_rel_diff"].max())
    lines = [f"Each emulated cell also crafted its first images in real batches of B ({images} images in all).",
             "Success agrees on every checked image." if not mismatches else
             f"Success differs on {mismatches} of the {images} checked images.",
             f"The first step's gradient norm differs by at most {100 * grad:.2g}%.", examples_text(checked)]
    apart = beyond_rounding(checked)
    if mismatches or grad > GRADIENT_ROUNDING or len(apart):
        where = "; ".join(sorted({f"{r.attack}-{NORM_NAMES.get(r.norm, r.norm)} {r.precision} {r.loss} b={r.batch_size}"
                                  for r in apart.itertuples()}))
        lines.append("The emulation is NOT trusted (it does not reproduce real batches here"
                     + (f"; examples beyond the rule in {where}" if where else "") + f"; rule: {TRUST_RULE}): read "
                     "these numbers as emulated, or rerun with --batching real.")
    else:
        lines.append(f"The emulation is trusted: {TRUST_RULE}.")
    return " ".join(line for line in lines if line)


def examples_text(checked: pd.DataFrame) -> str:
    """How far the emulated examples are from the real batches' where more than ROUNDING, per setting, and why
    that is expected when the sum loss (no emulation, only another batch shape) differs as much."""
    beyond = checked[checked["check_max_rel_diff"] > ROUNDING]
    if beyond.empty:
        return f"The examples agree to float rounding (at most {ROUNDING:g} eps apart)."
    parts = []
    for (attack, norm, precision), rows in beyond.groupby(["attack", "norm", "precision"]):
        sizes = ", ".join(f"b={b}" for b in sorted(rows["batch_size"].unique()))
        losses = " and ".join(sorted(rows["loss"].unique()))
        parts.append(f"{attack}-{NORM_NAMES.get(norm, norm)} {precision} ({sizes}; {losses} loss) "
                     f"{rows['check_max_rel_diff'].max():.2g} eps")
    text = (f"The examples themselves agree to float rounding ({ROUNDING:g} eps) in every setting but these, where "
            "the largest difference on a pixel is: " + "; ".join(parts) + ".")
    linf16 = (beyond["norm"] == "linf") & beyond["precision"].str.startswith("mixed_float16")
    if beyond_rounding(checked).empty:
        text += (" PGD's steps amplify rounding that differs with the batch shape"
                 + (": in float16 a gradient entry at the underflow edge can be zero, or of the other sign, in one "
                    "shape and not the other, and L∞'s sign(g) then moves that pixel by a whole step"
                    if linf16.any() else "")
                 + ". The sum loss, for which emulated and real batches are the same computation in batches of "
                 "different shapes, differs by as much in each of these settings (the mean loss's differences are "
                 "within twice the sum's): they come from the batch shape, not from the emulation's 1/B weights.")
    return text


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
