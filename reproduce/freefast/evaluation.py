"""The seed's evaluation protocol: natural accuracy and L-inf PGD-k accuracy, model in inference mode and
float32, a random start in the eps ball, a fixed step, and (like the seed's `attack_pgd`) a sample stops
moving once it is misclassified. A sample is robust only if it is correct clean and every restart fails.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from tfadv.attacks import PGD
from tfadv.evaluation.clean import accuracy
from tfadv.evaluation.same_shape import robust_masks_by_steps
from tfadv.experiments import Run, machine


#: How the report states the shortcut (setting, value, source).
READ_OFF = ("PGD-k for several k", "read off one run of the largest k: each point's first fooling iterate "
            "decides every k (the same random start, step and stops as separate PGD-k runs; tested point by "
            "point; tfadv.evaluation.same_shape.robust_masks_by_steps)", "tfadv")


def pgd_attack(model: keras.Model, run: Run, eps: float, steps: int, seed: int) -> PGD:
    """PGD-`steps` as the seed evaluates (tfadv's networks output logits, hence from_logits=True). --limit caps
    the steps too (a wiring check: its numbers are not the profile's, and the report says so)."""
    profile = run.profile
    return PGD(model, eps=eps, norm="inf", steps=run.capped(steps), step_size=profile.eval_step_ratio * eps, rand_init=True,
               from_logits=True, clip_min=0.0, clip_max=1.0, seed=seed, select="first_success", training=False,
               jit_compile=profile.xla and bool(machine.gpus()))


def evaluator(model: keras.Model, run: Run, eps: float, steps: Sequence[int], seed: int):
    """measure(x, y) -> {"natural_accuracy", "pgd<k>_accuracy" for each k}; with masks=True also
    "pgd<k>_robust", the per-point mask (for comparisons on the same points). One PGD of the most steps
    runs, and each PGD-k is read off its first k iterations (READ_OFF); the attack is built once and always
    sees batches of one shape, so repeated calls (one per epoch) reuse its compiled graph. --limit caps
    every k (a wiring check)."""
    capped = {k: run.capped(k) for k in steps}
    attack = pgd_attack(model, run, eps, max(capped.values()), seed)
    batch_size, restarts = run.profile.eval_batch_size, run.profile.restarts

    def measure(x: np.ndarray, y: np.ndarray, masks: bool = False) -> dict:
        result = {"natural_accuracy": accuracy(model, x, y, batch_size)}
        found = robust_masks_by_steps(model, attack, x, y, sorted(set(capped.values())), batch_size=batch_size,
                                      restarts=restarts)
        for k in steps:
            robust = found[capped[k]]
            result[f"pgd{k}_accuracy"] = float(np.mean(robust)) if len(robust) else float("nan")
            if masks:
                result[f"pgd{k}_robust"] = robust
        return result

    return measure
