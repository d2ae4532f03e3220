"""The paper's claims, each judged by one small function of results.csv.

Success rates are averaged over runs and compared with binomial standard errors over the images (a
conservative noise for paired comparisons on the same images). A change is a *drop* when it exceeds
Z standard errors, *flat* when the noise rules out a drop of MIN_DROP, and *unresolved* otherwise; a pair
of rates both at 0% or both at 100% is *saturated* and says nothing. A claim resting only on unresolved or
saturated comparisons, or on models that did not train, is inconclusive with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reproduce.minibatch.profiles import NORM_NAMES
from tfadv.experiments import Claim, Run, Verdict, inconclusive, judge, not_measured
from tfadv.experiments.tables import pct, select
from tfadv.experiments.verdicts import (
    INCONCLUSIVE,
    binomial_se,
    saturated,
    tally,
    untrained,
)

INCEPTION_L2 = Claim("InceptionV3, PGD-L2, mean loss, float32: success falls as the batch grows",
                     "94.54% at batch 1 → 85.47% at batch 128 (§4.1)")
MEAN_DEGRADES = Claim("Mean loss (eq. 1), float32: larger batches give weaker attacks, for every model, norm "
                      "and attack", "universal degradation (§4.1, Figs 2-3)")
SUM_RESTORES = Claim("Sum loss (eq. 5) removes the degradation", "strength retained at every batch size (§4.1)")
L2_LARGER = Claim("The degradation is larger for L2 than for L∞ (which degrades too, less)",
                  "much more pronounced for L2 (§4.1), within a universal degradation")
ARCH_LARGER = Claim("The degradation is larger for InceptionV3/Xception than for ResNet50/DenseNet121",
                    "much more pronounced (§4.1)")
FP16_WEAKER = Claim("mixed_float16 lowers attack strength at any batch size (mean loss)", "§4.2")
FP16_SUM_BEATS = Claim("At the largest batch, sum loss in float16 beats mean loss in float32",
                       "\"often\", as the batch grows (§4.2)")

Z = 2.0  # standard errors a difference must exceed to count (the noise could not flip it)
MIN_DROP = 0.02  # tfadv: the smallest change in success worth resolving; the paper's largest is 9.07 points
MOST = 0.5  # "often" / "most": more than half of the comparisons
BIG, SMALL = ("inception_v3", "xception"), ("resnet50", "densenet121")


@dataclass(frozen=True)
class Change:
    """Success at the smallest batch (`before`) and at the largest (`after`) of one model x norm x attack."""

    label: str
    before: float
    after: float
    se: float  # standard error of before - after

    @property
    def drop(self) -> float:
        return self.before - self.after

    @property
    def state(self) -> str:
        if saturated([self.before, self.after]) and round(self.before) == round(self.after):
            return "saturated"
        if self.drop > Z * self.se:
            return "drop"
        if self.drop + Z * self.se < MIN_DROP:
            return "flat"
        return "unresolved"

    def text(self) -> str:
        return f"{self.label}: {pct(self.before)} → {pct(self.after)}"


def rate(table: pd.DataFrame, **where) -> tuple[float, float] | None:
    """Mean success over runs and its binomial standard error, or None if nothing matches."""
    rows = select(table, **where)
    if rows.empty:
        return None
    value = float(rows["success_rate"].mean())
    return value, binomial_se(value, int(rows["images"].min()))


def combos(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    keys = table[["model", "norm", "attack"]].drop_duplicates().sort_values(["model", "norm", "attack"])
    return [tuple(k) for k in keys.itertuples(index=False)]


def label(model: str, norm: str, attack: str) -> str:
    return f"{model} {attack}-{NORM_NAMES.get(norm, norm)}"


def changes(table: pd.DataFrame, loss: str, precision: str = "float32") -> list[Change]:
    """Smallest vs largest batch size, for every model x norm x attack measured with `loss` and `precision`."""
    rows = select(table, loss=loss, precision=precision)
    if rows.empty or rows["batch_size"].nunique() < 2:
        return []
    small, large = rows["batch_size"].min(), rows["batch_size"].max()
    found = []
    for model, norm, attack in combos(rows):
        a = rate(rows, model=model, norm=norm, attack=attack, batch_size=small)
        b = rate(rows, model=model, norm=norm, attack=attack, batch_size=large)
        if a and b:
            found.append(Change(label(model, norm, attack), a[0], b[0], math.hypot(a[1], b[1])))
    return found


def not_trained(table: pd.DataFrame) -> str | None:
    """The reason if any model's clean accuracy (float32, else any precision) is within the margin of chance."""
    reasons = []
    fp32 = select(table, precision="float32")
    for model, rows in (fp32 if len(fp32) else table).groupby("model"):
        reason = untrained(1.0 - rows["clean_error"], int(rows["classes"].iloc[0]))
        if reason:  # a pretrained model at chance was not trained here: its weights or inputs are wrong
            reasons.append(f"{model}: {reason} (for pretrained weights: check the weights file, the "
                           "preprocessing and the labels)")
    return "; ".join(reasons) or None


def judge_changes(claim: Claim, found: list[Change], table: pd.DataFrame, wanted: str = "drop") -> Verdict:
    """All `wanted`: reproduced; some: partly; none but some resolved: not reproduced; else inconclusive."""
    if not found:
        return not_measured(claim, "needs two batch sizes of this loss and precision")
    judged = [c for c in found if c.state != "saturated"]
    resolved = [c for c in judged if c.state != "unresolved"]
    hits = [c.state == wanted for c in judged]
    unless = [not_trained(table),
              "measurement saturated: every comparison is at 0% or at 100% at both batch sizes" if not judged
              else None,
              None if resolved or not judged else
              f"the noise could flip every comparison ({Z:g} s.e. on {int(table['images'].min())} images)"]
    holds, some = tally(hits)
    return judge(claim, "; ".join(c.text() for c in found), holds=holds, partly=some, unless=unless,
                 rule=f"{sum(hits)} of {len(judged)} comparisons show a {wanted} beyond {Z:g} s.e."
                      + (f" ({len(found) - len(judged)} saturated, left out)" if len(judged) < len(found) else ""))


# --------------------------------------------------------------------------------------- the claims
def inception_l2(table: pd.DataFrame) -> Verdict:
    rows = select(table, model="inception_v3", norm="l2", attack="PGD")
    if rows.empty:
        return not_measured(INCEPTION_L2, "InceptionV3 is not in this run")
    return judge_changes(INCEPTION_L2, changes(rows, "mean"), table)


def mean_degrades(table: pd.DataFrame) -> Verdict:
    return judge_changes(MEAN_DEGRADES, changes(table, "mean"), table)


def sum_restores(table: pd.DataFrame) -> Verdict:
    mean, total = changes(table, "mean"), {c.label: c for c in changes(table, "sum")}
    degraded = [c for c in mean if c.state == "drop" and c.label in total]
    if not mean or not total:
        return not_measured(SUM_RESTORES, "needs both losses at two batch sizes")
    if not degraded:
        return inconclusive(SUM_RESTORES, "no degradation under the mean loss to remove",
                            "; ".join(c.text() for c in mean))
    restored = [total[c.label].state != "drop" and c.drop - total[c.label].drop > Z * math.hypot(
        c.se, total[c.label].se) for c in degraded]
    holds, some = tally(restored)
    measured = "; ".join(f"{c.label}: mean −{100 * c.drop:.1f} pp, sum {0.0 - 100 * total[c.label].drop:+.1f} pp"
                         for c in degraded)
    return judge(SUM_RESTORES, measured, holds=holds, partly=some, unless=[not_trained(table)],
                 rule=f"removed in {sum(restored)} of {len(degraded)} degraded comparisons: the sum's drop is "
                      f"not beyond {Z:g} s.e. and is {Z:g} s.e. below the mean's")


def group_drop(found: list[Change]) -> tuple[float, float] | None:
    """Average drop of a group of comparisons and its standard error."""
    judged = [c for c in found if c.state != "saturated"]
    if not judged:
        return None
    return float(np.mean([c.drop for c in judged])), math.sqrt(sum(c.se**2 for c in judged)) / len(judged)


def larger(claim: Claim, table: pd.DataFrame, first: dict, second: dict, names: tuple[str, str]) -> Verdict:
    """Is the mean-loss degradation of group `first` clearly larger than that of group `second`, and does
    `second` degrade at all? The paper's degradation is universal (§4.1), only less pronounced in `second`:
    larger while `second` shows no drop beyond the noise is partly reproduced."""
    a, b = (group_drop(changes(select(table, **where), "mean")) for where in (first, second))
    if a is None or b is None:
        return not_measured(claim, f"needs {names[0]} and {names[1]} at two batch sizes (not saturated)")
    measured = f"mean drop {names[0]} {100 * a[0]:.1f} ± {100 * a[1]:.1f} pp vs {names[1]} " \
               f"{100 * b[0]:.1f} ± {100 * b[1]:.1f} pp"
    se = math.hypot(a[1], b[1])
    no_effect = a[0] <= Z * a[1] and b[0] <= Z * b[1]
    is_larger, second_drops = a[0] - b[0] > Z * se, b[0] > Z * b[1]
    unless = [not_trained(table), "no degradation in either group to compare" if no_effect else None,
              None if no_effect or abs(a[0] - b[0]) > Z * se else f"the difference is within {Z:g} s.e."]
    rule = f"reproduced when larger by more than {Z:g} s.e. and {names[1]} itself drops by more than {Z:g} s.e."
    if is_larger and not second_drops:
        rule += f"; here {names[1]} shows no drop beyond the noise"
    return judge(claim, measured, holds=is_larger and second_drops, partly=is_larger, unless=unless, rule=rule)


def l2_larger(table: pd.DataFrame) -> Verdict:
    return larger(L2_LARGER, table, {"norm": "l2"}, {"norm": "linf"}, ("L2", "L∞"))


def arch_larger(table: pd.DataFrame) -> Verdict:
    return larger(ARCH_LARGER, table, {"model": list(BIG)}, {"model": list(SMALL)},
                  ("InceptionV3/Xception", "ResNet50/DenseNet121"))


def precision_gaps(table: pd.DataFrame, loss: str, better: str, worse: str,
                   at_batch: int | None = None, loss_worse: str | None = None) -> list[tuple[str, float, float]]:
    """(label, success under `better` − under `worse`, s.e.) for every model x norm x attack x batch size."""
    found = []
    sizes = [at_batch] if at_batch is not None else sorted(table["batch_size"].unique())
    for model, norm, attack in combos(table):
        for size in sizes:
            where = dict(model=model, norm=norm, attack=attack, batch_size=size)
            a = rate(table, loss=loss, precision=better, **where)
            b = rate(table, loss=loss_worse or loss, precision=worse, **where)
            if a and b and not (saturated([a[0], b[0]]) and round(a[0]) == round(b[0])):
                found.append((f"{label(model, norm, attack)} b={size}", a[0] - b[0], math.hypot(a[1], b[1])))
    return found


def fp16_weaker(table: pd.DataFrame) -> Verdict:
    """fp32 − fp16 in every cell of the mean loss, each judged alone: the cells attack the same images with the
    same model, so they are not independent trials and no test pools them (a sign test over them would)."""
    gaps = precision_gaps(table, "mean", "float32", "mixed_float16")
    if not gaps:
        if select(table, loss="mean", precision=["float32", "mixed_float16"])["precision"].nunique() == 2:
            reasons = [not_trained(table), "measurement saturated: every cell is at 0% or 100% in both"]
            return inconclusive(FP16_WEAKER, "; ".join(r for r in reasons if r))
        return not_measured(FP16_WEAKER, "needs float32 and mixed_float16 with the mean loss")
    weaker = sum(g > Z * s for _, g, s in gaps)
    stronger = sum(g < -Z * s for _, g, s in gaps)
    no_drop = sum(g + Z * s < MIN_DROP for _, g, s in gaps)  # rules out a drop worth resolving
    average = float(np.mean([g for _, g, _ in gaps]))
    measured = (f"fp16 weaker by more than {Z:g} s.e. in {weaker}, stronger in {stronger}, within the noise in "
                f"{len(gaps) - weaker - stronger} of {len(gaps)} cells (same images and model in every cell); "
                f"fp32 − fp16 = {100 * average:+.1f} pp on average")
    unless = [not_trained(table), None if weaker or no_drop else
              f"the noise could flip every cell ({Z:g} s.e. on {int(table['images'].min())} images)"]
    return judge(FP16_WEAKER, measured, holds=weaker == len(gaps), partly=weaker > 0, unless=unless,
                 rule=f"fp16 weaker by more than {Z:g} s.e. in every cell (\"regardless of batch size\"): "
                      f"{weaker} of {len(gaps)}")


def fp16_sum_beats(table: pd.DataFrame) -> Verdict:
    """At the largest batch: sum loss in mixed_float16 against mean loss in float32, per model x norm x attack."""
    if table.empty:
        return not_measured(FP16_SUM_BEATS)
    largest = int(table["batch_size"].max())
    gaps = precision_gaps(table, "sum", "mixed_float16", "float32", at_batch=largest, loss_worse="mean")
    if not gaps:
        return not_measured(FP16_SUM_BEATS, "needs sum·mixed_float16 and mean·float32 (not saturated)")
    ahead = [g > Z * s for _, g, s in gaps]
    resolved = [g > Z * s or g + Z * s < MIN_DROP for _, g, s in gaps]
    measured = f"batch {largest}: " + "; ".join(f"{name.rsplit(' b=', 1)[0]} {100 * g:+.1f} pp" for name, g, _ in gaps)
    unless = [not_trained(table), None if any(resolved) else f"the noise could flip every comparison ({Z:g} s.e.)"]
    return judge(FP16_SUM_BEATS, measured, holds=sum(ahead) > MOST * len(gaps), partly=any(ahead), unless=unless,
                 rule=f"sum·fp16 ahead by more than {Z:g} s.e. in {sum(ahead)} of {len(gaps)} (\"often\": more "
                      f"than {MOST:.0%})")


def main_regime(table: pd.DataFrame) -> pd.DataFrame:
    """The cells the claims are judged on: the model as trained (logit scale 1), not the regime search."""
    return table[table["sharpness"] == 1.0] if "sharpness" in table else table


def judge_all(tables: dict[str, pd.DataFrame], run: Run) -> list[Verdict]:
    table = main_regime(tables["results"])
    verdicts = [inception_l2(table), mean_degrades(table), sum_restores(table), l2_larger(table),
                arch_larger(table), fp16_weaker(table), fp16_sum_beats(table)]
    reason = not_trained(table) if len(table) else None
    # A model that did not train is a fact of the run: said beside every reason, not only where a rule ran.
    return [v if reason is None or reason in v.why else
            Verdict(v.claim, INCONCLUSIVE, v.measured, f"{reason}; {v.why}") for v in verdicts]
