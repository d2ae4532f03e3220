"""Robust accuracy for evaluations repeated on the same points (a curve measured after every epoch).

`tfadv.evaluation.robust_accuracy` attacks only the points still robust. The attack pads a batch shorter
than one it has compiled, but a batch longer than any so far is traced anew: along a training curve the
number of correctly classified points grows epoch after epoch, and each new maximum costs a trace (about
2 s of CPU for a PGD-10 on a small ResNet, where the attack itself takes 0.1 s). Here every point is
attacked, in batches of `batch_size` (the last one padded by the attack), so it is traced at most twice
per model and point count (full batches, and the padded last one), however many points are still correct.

The answer is the same: a point counts robust only if it is correct clean and no restart fools it, and
each point's random start is keyed on (seed, point index, restart). An L-inf attack, or one with
reduction="sum", treats each point independently of its batch, so attacking the points that are already
misclassified changes nothing but the cost.

robust_masks_by_steps reads PGD-k for several k (the seed's PGD-10, -20 and -50) off one run of the longest.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfadv import labels, model_outputs
from tfadv.attacks import Attack
from tfadv.evaluation.clean import predict_labels
from tfadv.evaluation.data import require_samples


def _attacked(model, attack: Attack, x, y, batch_size: int, restarts: int) -> tuple[np.ndarray, list]:
    """(correct clean per point, [(point ids, attack statistics)] for every batch of every restart)."""
    if attack.targeted or attack.training or model is not attack.model:
        raise ValueError("robust accuracy needs an untargeted attack on `model`, run in inference mode "
                         "(training=False)")
    if restarts < 1 or batch_size < 1:
        raise ValueError(f"restarts and batch_size must be >= 1, got {restarts} and {batch_size}")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    require_samples("robust accuracy", x)
    # Against the class count before any compute, as robust_accuracy: an out-of-range label is never correct,
    # so it would count as not robust without reaching the attack's own check.
    attack.check_model_output(x[: model_outputs.PROBE_SAMPLES])
    label_ids = labels.class_ids(y, attack.num_classes, name="robust accuracy")
    correct = predict_labels(model, x, batch_size, attack.output_index) == label_ids
    runs = []
    for restart in range(restarts):
        for start in range(0, len(x), batch_size):
            ids = np.arange(start, min(start + batch_size, len(x)))
            runs.append((ids, attack(x[ids], y[ids], sample_ids=ids, restart=restart, return_stats=True)[1]))
    return correct, runs


def robust_mask_same_shape(model, attack: Attack, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128,
                           restarts: int = 1) -> np.ndarray:
    """Per point: correct clean and not fooled by any of `restarts` runs of `attack`."""
    robust, runs = _attacked(model, attack, x, y, batch_size, restarts)
    for ids, stats in runs:
        robust[ids] &= ~stats["success"]
    return robust


def robust_masks_by_steps(model, attack: Attack, x: np.ndarray, y: np.ndarray, steps: Sequence[int], *,
                          batch_size: int = 128, restarts: int = 1) -> dict[int, np.ndarray]:
    """{k: per point, correct clean and not fooled by PGD-k} for each k in `steps`, from one run of `attack`.

    `attack` is a PGD with select="first_success" and at least max(steps) steps: PGD-k with the same seed and
    step size starts at the same point, takes the same first k steps and stops a sample at the same iterate,
    so it is fooled exactly when this run's first fooling iterate (stats["success_step"]) is at most k. The
    tests check this point by point against separate PGD-k runs.
    """
    if getattr(attack, "select", None) != "first_success":
        raise ValueError("robust_masks_by_steps reads PGD-k off one longer run: it needs a PGD with "
                         f"select='first_success', got {type(attack).__name__} with select="
                         f"{getattr(attack, 'select', None)!r}")
    bad = [k for k in steps if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= attack.steps]
    if bad or not steps:
        raise ValueError(f"steps must be integers from 0 to the attack's {attack.steps} steps, got {list(steps)!r}")
    correct, runs = _attacked(model, attack, x, y, batch_size, restarts)
    masks = {int(k): correct.copy() for k in steps}
    for ids, stats in runs:
        found_at = stats["success_step"]
        for k, mask in masks.items():
            mask[ids] &= ~((found_at >= 0) & (found_at <= k))
    return masks


def robust_accuracy_same_shape(model, attack: Attack, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128,
                               restarts: int = 1) -> float:
    """Fraction of points correct clean and not fooled by any of `restarts` runs of `attack`."""
    mask = robust_mask_same_shape(model, attack, x, y, batch_size=batch_size, restarts=restarts)
    return float(np.mean(mask))  # _attacked refuses an empty x
