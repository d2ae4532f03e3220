"""Beyond the paper (issue 13): AutoAttack-style robust accuracy beside the seed's PGD, and the
gradient-masking checks, on the trained models.

The paper measures robustness with PGD only. AutoAttack (Croce & Hein 2020) runs a cascade of stronger,
parameter-free attacks; where its robust accuracy is clearly below PGD's on the same points, PGD overstated
the model's robustness. The masking checks (tfadv.evaluation.check_gradient_masking) say whether a model's
gradients can be trusted at all. Both run on the profile's `aa_cells` / `masking_cells`, on their first `aa_points` / `masking_points` test images.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd

from tfadv.evaluation import auto_attack, check_gradient_masking
from tfadv.evaluation.autoattack import build_attack
from tfadv.experiments import Run

from reproduce.freefast import measures

#: "Clearly" means beyond this many standard errors of the paired gap (the claims' rule).
GAP_Z = 2.0
THREAT = {"norm": "inf", "from_logits": True, "clip_min": 0.0, "clip_max": 1.0}


def cascade(run: Run, net: keras.Model, eps: float) -> list:
    """The profile's AutoAttack components for `net` at `eps`, built once per process (cells share their
    compiled graphs: the graphs read the network's variables, which each cell overwrites)."""
    p = run.profile

    def build():
        return [build_attack(name, net, eps=eps, seed=1000 * run.seed + 2, steps=run.capped(p.aa_steps),
                             queries=run.capped(p.aa_queries), n_target_classes=p.aa_targets, **THREAT)
                for name in p.aa_attacks]

    return run.cached(("autoattack", id(net), eps), build)


def autoattack_row(run: Run, net: keras.Model, eps: float, x: np.ndarray, y: np.ndarray,
                   pgd_robust: np.ndarray, state_path: str) -> dict:
    """AutoAttack's robust accuracy on (x, y), PGD's on the same points (`pgd_robust`: the final evaluation's
    per-point result there), and their paired difference: points only PGD leaves robust, points only
    AutoAttack does. `state_path` keeps the cascade's progress, so a killed run resumes it."""
    result = auto_attack(net, x, y, eps=eps, version="custom", attacks=cascade(run, net, eps),
                         seed=1000 * run.seed + 2, batch_size=run.profile.eval_batch_size, state_path=state_path,
                         verbose=run.show_progress, **THREAT)
    row = {"aa_points": len(x), "aa_clean_accuracy": result.clean_accuracy, "aa_robust_accuracy": result.robust_accuracy,
           "aa_pgd_accuracy": float(np.mean(pgd_robust)),
           "aa_only_pgd_robust": int(np.sum(pgd_robust & ~result.robust)),
           "aa_only_aa_robust": int(np.sum(~pgd_robust & result.robust)), "aa_warnings": "; ".join(result.warnings)}
    row.update({f"aa_broken_by_{stage['attack']}": stage["broken"] for stage in result.summary})
    return row


def paired_gap(row) -> tuple[float, float]:
    """(PGD minus AutoAttack robust accuracy, its standard error) from the discordant points of one model:
    gap = (b - c) / n, se = sqrt(b + c - (b - c)^2 / n) / n (paired proportions). Without discordant points
    the estimate is 0; the floor of one point keeps a single disagreement from reading as "clearly"."""
    b, c, n = row["aa_only_pgd_robust"], row["aa_only_aa_robust"], row["aa_points"]
    return (b - c) / n, math.sqrt(max(b + c - (b - c) ** 2 / n, 1.0)) / n


def gap_reading(row) -> str:
    """What the paired gap of one configuration (its seeds' counts pooled) says, in words: whether PGD
    overstated robustness, and the reason when the comparison cannot say."""
    gap, se = paired_gap(row)
    clean = pd.DataFrame([{"natural_accuracy": row["aa_clean_accuracy"], "eval_points": row["aa_points"]}])
    if reason := measures.untrained(clean):
        return f"cannot say: {reason}"
    if row["aa_pgd_accuracy"] <= 0:
        return "cannot say: PGD already finds no robust point"
    if gap - GAP_Z * se > 0:
        return "yes: PGD overstated robustness"
    if gap + GAP_Z * se < 0:
        return "no: AutoAttack at this budget is weaker than PGD"
    return f"no: within {GAP_Z:g} s.e."


def masking_rows(run: Run, net: keras.Model, eps: float, x: np.ndarray, y: np.ndarray) -> list[dict]:
    """One row per gradient-masking check: raised or not, what was measured, what it means, what to do."""
    p = run.profile
    report = check_gradient_masking(net, x, y, eps=eps, seed=1000 * run.seed + 3, steps=run.capped(p.masking_steps),
                                    queries=run.capped(p.masking_queries), restarts=p.masking_restarts,
                                    eps_factors=p.masking_eps_factors, batch_size=p.eval_batch_size,
                                    verbose=run.show_progress, **THREAT)
    return [{"check": f.name, "raised": bool(f.raised), "measured": f.measured, "meaning": f.meaning,
             "advice": f.advice, "masking_points": len(x)} for f in report.flags]
