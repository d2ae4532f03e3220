"""Beyond the paper: an AutoAttack-style robust accuracy next to the paper's PGD, and the gradient-masking
checks, on the trained CIFAR models.

The paper's PGD (the authors' advertorch settings: 20 steps, no random start) can overstate robustness; the
AutoAttack cascade (Croce & Hein 2020) runs on the first `points` test images, in the same normalised units
and box, and the PGD accuracy on those same images is kept beside it, so their gap is measured on one set.
The masking checks (tfadv.evaluation.check_gradient_masking) run on the first seed's models.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from reproduce.batchnorm import data, rules
from reproduce.batchnorm.stats import Arm, Difference, arm, describe
from reproduce.batchnorm.training import rows
from tfadv.evaluation import auto_attack, check_gradient_masking
from tfadv.evaluation.autoattack import ATTACK_NAMES, VERSIONS
from tfadv.experiments import markdown_table
from tfadv.experiments.run import Run
from tfadv.experiments.tables import select
from tfadv.experiments.verdicts import untrained


OVERSTATED = "PGD overstated robustness"
CLASSES = 10


@dataclass(frozen=True)
class Robustness:
    """The AutoAttack and masking-check budgets of a profile (None points: not run)."""

    points: int | None = None            # test images the cascade attacks
    version: str = "standard"            # auto_attack's version; "custom" runs `attacks`
    attacks: tuple[str, ...] = ()
    steps: int = 100                     # APGD iterations (the reference's 100)
    queries: int = 5000                  # Square queries (the reference's 5,000)
    targets: int = 9                     # target classes of APGD-T / FAB-T (the reference's 9)
    masking_points: int | None = None
    masking_steps: int = 50
    masking_queries: int = 1000
    masking_restarts: int = 3
    masking_eps_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def unused_budget(field: str, q: Robustness) -> bool:
    """A budget field the cascade never reads (Square's queries without Square, targets without a targeted
    attack; every cascade field when the cascade does not run; masking fields when the checks do not run)."""
    cascade = set(q.attacks if q.version == "custom" else VERSIONS.get(q.version, ATTACK_NAMES))
    if field.startswith("masking_"):
        return field != "masking_points" and q.masking_points is None
    return field != "points" and (q.points is None or (field == "queries" and "square" not in cascade)
                                  or (field == "targets" and not cascade & {"apgd-t", "fab-t"})
                                  or (field == "attacks" and q.version != "custom"))


def measured_on(cell: dict, run: Run) -> bool:
    """Whether this cell's model gets the AutoAttack cascade and (first seed only) the masking checks. Under
    --limit only the first run's model with batch norm: the same code for every net, and each attack object
    traces the full-size net's gradient graph again (two minutes of CPU per VGG8 for a wiring check)."""
    return run.limit is None or (cell["model"] == run.profile.cifar.runs[0][0] and cell["normalization"] == "batchnorm")


def autoattack_rows(model: keras.Model, run: Run, x: np.ndarray, y: np.ndarray, pgd_robust: np.ndarray,
                    seed: int, state_path: str) -> list[dict]:
    """AutoAttack-style L-inf accuracy on the first points of (x, y), and the paper's PGD on the same points;
    `state_path` keeps the cascade's progress, so a killed run resumes it."""
    p, q = run.profile.cifar, run.profile.cifar.robustness
    n = min(run.capped(q.points), len(x))
    result = auto_attack(model, x[:n], y[:n], eps=p.linf_eps, norm="inf", version=q.version,
                         attacks=q.attacks or None, steps=run.capped(q.steps), queries=run.capped(q.queries),
                         n_target_classes=run.capped(q.targets), from_logits=True, clip_min=data.CIFAR_BOX[0],
                         clip_max=data.CIFAR_BOX[1], seed=seed, state_path=state_path, verbose=run.show_progress)
    return rows({"autoattack_linf": result.robust_accuracy, "pgd_linf_on_aa_points": float(np.mean(pgd_robust[:n]))},
                test_set="test", n_test=n)


def masking_rows(model: keras.Model, run: Run, x: np.ndarray, y: np.ndarray, seed: int) -> list[dict]:
    """One row per gradient-masking check: raised or not, and what it measured."""
    p, q = run.profile.cifar, run.profile.cifar.robustness
    n = min(run.capped(q.masking_points), len(x))
    report = check_gradient_masking(model, x[:n], y[:n], eps=p.linf_eps, norm="inf", from_logits=True,
                                    clip_min=data.CIFAR_BOX[0], clip_max=data.CIFAR_BOX[1], seed=seed,
                                    steps=run.capped(q.masking_steps), queries=run.capped(q.masking_queries),
                                    restarts=q.masking_restarts if run.limit is None else 2,
                                    eps_factors=q.masking_eps_factors if run.limit is None else q.masking_eps_factors[-1:],
                                    verbose=run.show_progress)
    return [{"check": f.name, "raised": bool(f.raised), "measured": f.measured, "points": n} for f in report.flags]


# ----------------------------------------------------------------------------------------------- report
def _gap_row(block: pd.DataFrame, clean: list[float]) -> tuple[str, str, str, str]:
    """PGD on the AutoAttack points, AutoAttack, their per-seed gap, and its reading by the effect rule's
    thresholds (rules.Z standard errors and rules.MIN_EFFECT)."""
    pgd, aa = arm(block, "pgd_linf_on_aa_points"), arm(block, "autoattack_linf")
    gaps = Arm(tuple(np.subtract(pgd.values, aa.values)), aa.se_each)
    gap = Difference(gaps.mean, gaps.se(), gaps.n)
    chance = untrained(clean, CLASSES)
    if chance:  # an attack has nothing to break on a model at chance: its gap says nothing
        reading = f"inconclusive: {chance}"
    elif gap.delta > rules.Z * gap.se and gap.delta >= rules.MIN_EFFECT:  # shown as the effect rule shows one
        reading = OVERSTATED
    elif rules.noise_reason(gap, +1.0):
        reading = "within the noise"
    else:  # even Z s.e. in PGD's favour stay below MIN_EFFECT
        reading = f"no gap of {100 * rules.MIN_EFFECT:g} pts or more"
    return describe(pgd), describe(aa), gap.text(), reading


def autoattack_section(table: pd.DataFrame) -> str | None:
    t = select(table, experiment="cifar", test_set="test",
               metric=["autoattack_linf", "pgd_linf_on_aa_points", "clean"])
    if "autoattack_linf" not in set(t.get("metric", ())):
        return None
    out = [[model, schedule, norm, *_gap_row(block, list(select(block, metric="clean")["value"]))]
           for (model, schedule, norm), block in t.groupby(["model", "schedule", "normalization"], sort=True)]
    over = [f"{m} {s} LR {n}" for m, s, n, *_, reading in out if reading == OVERSTATED]
    noisy = [f"{m} {s} LR {n}" for m, s, n, *_, reading in out if reading == "within the noise"]
    chance = [f"{m} {s} LR {n}" for m, s, n, *_, reading in out if reading.startswith("inconclusive")]
    summary = (f"The paper's PGD overstated ℓ∞ robustness at this scale for: {', '.join(over)}." if over else
               "The paper's PGD did not clearly overstate ℓ∞ robustness for any model here.")
    if noisy:
        summary += f" Within the noise (neither shown nor excluded) for: {', '.join(noisy)}."
    if chance:
        summary += f" Not judged, the model did not train: {', '.join(chance)}."
    return (markdown_table(["model", "LR", "normalization", "PGD-ℓ∞ (%)", "AutoAttack-ℓ∞ (%)", "PGD − AutoAttack",
                            "reading"], out)
            + f"\n\nBoth on the same first test images, mean ± s.d. over seeds; the gap's error is its seeds' spread, "
              f"never below the binomial error; a gap is shown beyond {rules.Z:g} s.e. and "
              f"{100 * rules.MIN_EFFECT:g} pts. {summary}")


def masking_section(tables: dict[str, pd.DataFrame]) -> str | None:
    t = tables.get("masking")
    if t is None or t.empty:
        return None
    t = t.assign(model=t["model"] + " " + t["schedule"] + " LR " + t["normalization"])
    status = t.pivot_table(index="check", columns="model", values="raised", aggfunc="max", sort=False)
    rows = [[check, *["**raised**" if bool(v) else "ok" for v in status.loc[check]]] for check in status.index]
    raised = [f"- {r['model']}, {r['check']}: {r['measured']}" for _, r in t[t["raised"] == True].iterrows()]  # noqa: E712
    clean = select(tables.get("results", pd.DataFrame()), experiment="cifar", test_set="test", metric="clean")
    clean = clean[clean["seed"] == t["seed"].iloc[0]] if not clean.empty else clean
    at_chance = [f"{r['model']} {r['schedule']} LR {r['normalization']}" for _, r in clean.iterrows()
                 if untrained([r["value"]], CLASSES)]
    caveat = (f" These models did not train (clean accuracy near chance), so their flags say little: "
              f"{', '.join(at_chance)}." if at_chance else "")
    return (markdown_table(["check", *status.columns], rows) + f"\n\nOn the first seed's models, "
            f"{int(t['points'].iloc[0])} test images.{caveat}" + ("\n\n" + "\n".join(raised) if raised else ""))
