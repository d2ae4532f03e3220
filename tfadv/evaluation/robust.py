"""Robust accuracy: clean accuracy under an attack with restarts, counted the strict way.

A sample counts robust only if it is classified correctly clean and after every restart. Restart r runs
only on the samples still robust after the earlier ones (AutoAttack's practice), and its random start is
keyed on (seed, global sample index, r), so the answer does not depend on `batch_size`, with one exception,
warned about: an L2 gradient attack under the mean reduction with the clamped normalisation (FGM's and PGD's
defaults), whose steps shrink with the batch size (Redgrave & Crum).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfadv import labels, model_outputs, validation
from tfadv.attacks import APGD, FAB, Attack, Square
from tfadv.evaluation import checks, compaction
from tfadv.evaluation.clean import predict_labels
from tfadv.evaluation.data import evaluation_arrays


def _warn_if_randomised(model: keras.Model, attack: Attack, probe: np.ndarray) -> None:
    """An EvaluationWarning when identical inference passes disagree (auto_attack checks this too): one
    gradient of a randomised model is a single draw, so the number overstates robustness. Attacks that
    average draws (APGD's eot_iter > 1) expect it."""
    if getattr(attack, "eot_iter", 1) > 1 or not len(probe):
        return
    flag = checks.randomness_flag(checks.output_passes(model, probe, output_index=attack.output_index))
    if flag.raised:
        validation.warn_caller(f"robust_accuracy: {flag.measured}: {flag.meaning}. {flag.advice}",
                               validation.EvaluationWarning)


def robust_mask(
    model: keras.Model,
    attack: Attack,
    x: Any,
    y: Any = None,
    *,
    batch_size: int = 128,
    restarts: int = 1,
    verbose: bool = False,
    early_exit: bool = True,
) -> np.ndarray:
    """Per-sample bool: correct on the clean input and not fooled by any of `restarts` attack runs.

    `x`, `y`: arrays, or `x` a batched tf.data.Dataset of (x, y) and `y` left out (read once into memory);
    at least one sample, labels as tfadv.labels reads them (one-hot rows exactly one-hot), checked against
    the model's class count before any attack runs.

    Before any compute, the attack checks its model's output kind against its `from_logits` (see
    `check_output_kind` of tfadv.attacks.Attack) on the first samples of `x`.
    `early_exit`: attacks that run in segments (APGD, Square, FAB, PGD with select="first_success") stop
    paying for fooled samples (tfadv.evaluation.compaction); the answer is the same sample by sample.
    `verbose` (a progress bar per batch) runs the plain path.
    """
    if attack.targeted:
        raise ValueError("robust_accuracy: needs an untargeted attack")
    restarts = validation.integer("robust_accuracy", "restarts", restarts, minimum=1)
    if restarts > 1 and not attack.restarts_differ:
        validation.warn_caller(
            f"robust_accuracy: {type(attack).__name__} has no random start (FGM, or rand_init=False), so its "
            f"restarts={restarts} repeat its first run exactly: the number is that of one run, not the best of several",
            validation.EvaluationWarning)
    batch_size = validation.integer("robust_accuracy", "batch_size", batch_size, minimum=1)
    _warn_if_batch_dependent(attack, batch_size)
    if getattr(attack, "training", False):
        raise ValueError("robust_accuracy: evaluation attacks run the model in inference mode: build the attack with training=False")
    if model is not attack.model:
        raise ValueError(
            "robust_accuracy: the attack must be built on `model` (success is judged by the attack's model; "
            "for transfer attacks craft with one attack and evaluate the other model's predictions yourself)"
        )
    x, y = evaluation_arrays("robust_accuracy", x, y)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"robust_accuracy: x has {len(x)} samples and y {len(y)}")
    attack.check_model_output(x[: model_outputs.PROBE_SAMPLES])
    _warn_if_randomised(model, attack, x[: model_outputs.PROBE_SAMPLES])
    # Every label against the class count before any compute: a sample is attacked only if it is correct
    # clean, so an out-of-range label would never reach the attack's own check and count as not robust.
    label_ids = labels.class_ids(y, attack.num_classes, name="robust_accuracy")
    if early_exit and not verbose and compaction.supports_segments(attack):
        return compaction.robust_mask_compacted(model, attack, x, y, batch_size=batch_size, restarts=restarts)
    robust = predict_labels(model, x, batch_size, attack.output_index) == label_ids
    progress = keras.utils.Progbar(restarts * len(x), unit_name="sample") if verbose else None
    for restart in range(restarts):
        remaining = np.flatnonzero(robust)
        for start in range(0, len(remaining), batch_size):
            ids = remaining[start : start + batch_size]
            _, stats = attack(x[ids], y[ids], sample_ids=ids, restart=restart, return_stats=True)
            robust[ids] &= ~stats["success"]
            if progress is not None:
                progress.add(len(ids))
        if progress is not None:
            progress.add(len(x) - len(remaining))
    return robust


def _warn_if_batch_dependent(attack: Attack, batch_size: int) -> None:
    """The mean reduction divides each sample's gradient by its batch size before the L2 normalisation's 1e-12
    floor on the squared norm, so a confident sample's step shrinks as the batch grows: the answer then depends
    on `batch_size` (by 11 points between batch sizes 16 and 256 on a confident CNN, measured)."""
    if (getattr(attack, "norm", None) == "2" and getattr(attack, "reduction", None) == "sum_over_batch_size"
            and getattr(attack, "l2_normalization", None) == "clamped"):
        validation.warn_caller(
            f"robust_accuracy: {type(attack).__name__} with norm=2 under the mean reduction and the clamped L2 "
            f"normalisation divides each sample's gradient by its batch size (up to batch_size={batch_size}) before "
            "the 1e-12 floor, so confident samples take shorter steps and the robust accuracy depends on batch_size "
            "(Redgrave & Crum). For a number that does not, build the attack with reduction='sum' or "
            "l2_normalization='exact'", validation.EvaluationWarning)


def robust_accuracy(
    model: keras.Model,
    attack: Attack,
    x: Any,
    y: Any = None,
    *,
    batch_size: int = 128,
    restarts: int = 1,
    verbose: bool = False,
    early_exit: bool = True,
) -> float:
    """Fraction of samples that are correct clean and survive every restart of `attack`.

    Warns when samples counted robust have a dead (all-zero or non-finite) input gradient for the attack's
    loss: a gradient attack never moved them (tfadv.evaluation.checks.unmeasured_robustness)."""
    x, y = evaluation_arrays("robust_accuracy", x, y)
    mask = robust_mask(model, attack, x, y, batch_size=batch_size, restarts=restarts, verbose=verbose,
                       early_exit=early_exit)
    if not isinstance(attack, Square):  # a score-based attack needs no gradient
        problem = checks.unmeasured_robustness(
            model, np.asarray(x, np.float32), labels.class_ids(y, attack.num_classes, name="robust_accuracy"), mask,
            from_logits=attack.from_logits,
            loss_path="logit" if isinstance(attack, (APGD, FAB)) else "keras", batch_size=batch_size,
            output_index=attack.output_index,
        )
        if problem:
            validation.warn_caller(f"robust_accuracy: {problem}", validation.EvaluationWarning)
    return float(np.mean(mask))  # robust_mask refuses an empty x
