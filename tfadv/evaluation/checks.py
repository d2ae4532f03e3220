"""Is a robustness evaluation trustworthy? Symptoms of gradient masking, measured on the user's model and data.

`check_gradient_masking` covers what AutoAttack's checks.py looks for (randomised outputs, probability
outputs, zero gradients, Square beating the gradient attacks, too few classes, a model that changes between
calls) and the checklist of Carlini et al. (2019, "On evaluating adversarial robustness", sec. 5): accuracy
must fall as eps grows and reach ~0% at a large eps, and more iterations or restarts must not keep lowering
it. Each flag says what was measured, what it means and what to do. `quick_checks` is the cheap subset that
auto_attack runs before its cascade; `unmeasured_robustness` the one robust_accuracy and auto_attack run after.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfadv import model_outputs
from tfadv.attacks import scores

#: With fewer samples a check's "ok" rules little out: a symptom on 1 sample in 30 goes unseen among 100
#: samples with probability (29/30)^100 = 3%, among 20 with 51%.
MIN_SAMPLES = 100
#: Output changes between identical passes above this (relative L2) mean a randomised model (reference: 1e-4).
RANDOM_OUTPUT_TOLERANCE = 1e-4
#: Rows within this of summing to 1 and of lying in [0, 1] look like probabilities (reference: 1e-5).
PROBABILITY_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Flag:
    """One check: whether it fired, what was measured (in words, and as numbers in `values`), what that
    means and what to do about it."""

    name: str
    raised: bool
    measured: str
    meaning: str
    advice: str
    values: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MaskingReport:
    """The flags of check_gradient_masking, in the order they were measured."""

    flags: list[Flag]
    config: dict[str, Any]

    @property
    def raised(self) -> list[Flag]:
        return [f for f in self.flags if f.raised]

    def __getitem__(self, name: str) -> Flag:
        for flag in self.flags:
            if flag.name == name:
                return flag
        raise KeyError(f"no flag named {name!r}; flags: {[f.name for f in self.flags]}")

    def to_markdown(self) -> str:
        from tfadv.experiments.report import markdown_table

        rows = [(f.name, "**raised**" if f.raised else "ok", f.measured, f.meaning if f.raised else "",
                 f.advice if f.raised else "") for f in self.flags]
        head = (f"Gradient-masking checks ({self.config['norm']}, eps = {self.config['eps']:g}, "
                f"{self.config['samples']} samples): {len(self.raised)} of {len(self.flags)} raised")
        if self.config["samples"] < MIN_SAMPLES:
            head += f". {few_samples(self.config['samples'])}"
        return head + "\n\n" + markdown_table(["check", "status", "measured", "meaning", "advice"], rows)


def few_samples(n: int) -> str:
    return (f"Only {n} samples: an \"ok\" here rules little out (a symptom on 1 sample in 30 goes unseen with "
            f"probability {(29 / 30) ** n:.0%}); pass at least {MIN_SAMPLES}")


# ------------------------------------------------------------------------------- cheap output checks
def output_passes(model: keras.Model, x: np.ndarray, passes: int = 3, output_index: Any = None) -> list[np.ndarray]:
    """The class scores of `passes` identical inference-mode passes over x."""
    return [np.asarray(model_outputs.select_output("check", model(x, training=False), output_index), np.float32)
            for _ in range(passes)]


def randomness_flag(outputs: Sequence[np.ndarray]) -> Flag:
    """Identical inputs, several passes: a deterministic model gives identical outputs."""
    first = outputs[0]
    scale = np.linalg.norm(first.reshape(len(first), -1), axis=1) + 1e-10
    change = max(float(np.max(np.linalg.norm((o - first).reshape(len(first), -1), axis=1) / scale)) for o in outputs)
    flips = max(int(np.sum(np.argmax(o, -1) != np.argmax(first, -1))) for o in outputs)
    return Flag(
        "randomised_outputs", change > RANDOM_OUTPUT_TOLERANCE or flips > 0,
        f"largest relative output change between {len(outputs)} passes {change:.2g}; predictions changed for {flips}",
        "the model is randomised in inference mode: one gradient is a single draw, and gradient attacks "
        "underestimate what an attacker averaging draws achieves",
        "evaluate with Expectation over Transformation: auto_attack(..., version='rand') or APGD(eot_iter=20)",
    )


def probability_flag(outputs: np.ndarray, from_logits: bool) -> Flag:
    """Probability outputs are fine for tfadv's APGD/Square (they use log p), but saturated ones lose the
    information the losses need, and Keras' clipped cross-entropy (used by FGM/PGD) has zero gradient there."""
    rows_sum_one = bool(np.all(np.abs(outputs.sum(-1) - 1.0) < PROBABILITY_TOLERANCE * outputs.shape[-1]))
    looks_probability = rows_sum_one and outputs.min() > -PROBABILITY_TOLERANCE and outputs.max() < 1 + PROBABILITY_TOLERANCE
    saturated = int(np.sum((outputs.max(-1) >= 1.0 - 1e-7) | (outputs.min(-1) <= 0.0))) if looks_probability else 0
    raised = looks_probability and (from_logits or saturated > 0)
    return Flag(
        "probability_outputs", raised,
        f"outputs look like probabilities: {'yes' if looks_probability else 'no'}; from_logits={from_logits}; "
        f"saturated rows (a probability of exactly 0 or 1 - 1e-7 and above): {saturated} of {len(outputs)}",
        "with from_logits=True the losses read probabilities as logits; saturated probabilities have lost "
        "the logit differences, so margin, DLR and cross-entropy are flat there (masked gradients)",
        "give the attacks logits: build the model with classifier_activation=None (or drop the softmax) and "
        "pass from_logits=True",
    )


def classes_flag(classes: int) -> Flag:
    return Flag(
        "too_few_classes", classes < scores.TARGETED_DLR_MIN_CLASSES,
        f"{classes} classes",
        "DLR needs 3 classes and targeted DLR 4: APGD-DLR / APGD-T cannot run, so the cascade is weaker",
        "use a custom cascade without apgd-dlr / apgd-t (e.g. apgd-ce, fab, square) and more restarts",
    )


def _variables(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in model.weights]


def dynamic_flag(before: list[np.ndarray], after: list[np.ndarray]) -> Flag:
    changed = sum(int(not np.array_equal(a, b)) for a, b in zip(before, after))
    return Flag(
        "model_changes_between_calls", changed > 0,
        f"{changed} of {len(before)} weight tensors changed during forward passes in inference mode",
        "the model updates itself when called (a dynamic defence, or a layer left in training mode): the "
        "model attacked is not the model evaluated",
        "freeze the model for evaluation (layers in inference mode, no state updates), then re-run",
    )


def quick_checks(model: keras.Model, x: np.ndarray, *, from_logits: bool, output_index: Any = None,
                 randomised_expected: bool) -> list[str]:
    """The checks auto_attack runs on one batch before its cascade; returns warnings (empty if fine)."""
    if len(x) == 0:
        return []
    before = _variables(model)
    outputs = output_passes(model, x, output_index=output_index)
    flags = [dynamic_flag(before, _variables(model)), probability_flag(outputs[0], from_logits)]
    if not randomised_expected:
        flags.append(randomness_flag(outputs))
    return [f"{f.name}: {f.measured}. {f.advice}" for f in flags if f.raised]


# ------------------------------------------------------------------------------------ gradients
LOSS_PATHS = ("keras", "logit")


def _gradient_masks(model: keras.Model, x: np.ndarray, labels: np.ndarray, *, from_logits: bool,
                    loss_paths: Sequence[str], batch_size: int, output_index: Any = None) -> dict[str, tuple]:
    """{loss path: (all-zero, non-finite)}: per-sample masks of the input gradient at x, from one forward
    pass per batch. "keras": Keras' cross-entropy, as FGM and PGD use it; "logit": the cross-entropy on
    logits, as APGD and FAB."""
    bad = [path for path in loss_paths if path not in LOSS_PATHS]
    if bad:
        raise ValueError(f"loss_path must be 'keras' or 'logit', got {bad[0]!r}")
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction="sum")
    masks = {path: (np.zeros(len(x), bool), np.zeros(len(x), bool)) for path in loss_paths}
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start : start + batch_size])
        yb = tf.constant(labels[start : start + batch_size])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xb)
            out = model_outputs.select_output("check", model(xb, training=False), output_index)
            losses = {}
            if "keras" in loss_paths:
                losses["keras"] = keras_loss(yb, out)
            if "logit" in loss_paths:
                z = scores.output_logits(out, from_logits)
                losses["logit"] = tf.reduce_sum(scores.cross_entropy(z, tf.one_hot(yb, tf.shape(z)[-1])))
        for path, loss in losses.items():
            g = tape.gradient(loss, xb, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy().reshape(len(xb), -1)
            zero, nonfinite = masks[path]
            zero[start : start + len(xb)] = np.all(g == 0, axis=1)
            nonfinite[start : start + len(xb)] = ~np.all(np.isfinite(g), axis=1)
        del tape
    return masks


def gradient_flags(model: keras.Model, x: np.ndarray, labels: np.ndarray, from_logits: bool,
                   batch_size: int, output_index: Any = None) -> list[Flag]:
    """Input gradients at the clean points of the correctly classified samples: exactly zero (per sample)
    or non-finite, for Keras' cross-entropy (what FGM/PGD see) and for the logit-space cross-entropy."""
    masks = _gradient_masks(model, x, labels, from_logits=from_logits, loss_paths=LOSS_PATHS,
                            batch_size=batch_size, output_index=output_index)
    counts = {"keras": int(masks["keras"][0].sum()), "logit": int(masks["logit"][0].sum()),
              "nonfinite": int(masks["logit"][1].sum())}
    n = max(len(x), 1)
    zero = Flag(
        "zero_gradients", counts["keras"] + counts["logit"] > 0,
        f"samples with an all-zero input gradient: {counts['keras']}/{n} (Keras cross-entropy, as FGM/PGD), "
        f"{counts['logit']}/{n} (cross-entropy on logits, as APGD)",
        "gradient attacks cannot move these samples: their robustness is not measured, only assumed",
        "find the non-differentiable or saturating part (quantisation, clipping, saturated softmax) and attack "
        "through a differentiable approximation (BPDA); rely on Square and larger budgets meanwhile",
        {"samples": n, "zero_keras_cross_entropy": counts["keras"], "zero_logit_cross_entropy": counts["logit"]},
    )
    nonfinite = Flag(
        "nonfinite_gradients", counts["nonfinite"] > 0,
        f"samples with NaN/Inf in the input gradient: {counts['nonfinite']}/{n}",
        "the attack steps of these samples are undefined (tfadv zeroes non-finite entries, i.e. no step)",
        "look for overflow (float16, exp of large logits) or a division by zero in the model",
        {"samples": n, "nonfinite": counts["nonfinite"]},
    )
    return [zero, nonfinite]


#: How many of the samples counted robust robust_accuracy and auto_attack check for a dead input gradient.
ROBUST_GRADIENT_CHECK_SAMPLES = 256


def dead_gradients(model: keras.Model, x: np.ndarray, labels: np.ndarray, *, from_logits: bool, loss_path: str,
                   batch_size: int, output_index: Any = None) -> np.ndarray:
    """Per sample: is the input gradient at x all zero or non-finite, for `loss_path` "keras" (Keras'
    cross-entropy, as FGM and PGD use it) or "logit" (the cross-entropy on logits, as APGD and FAB)?
    A gradient attack cannot move such a sample (a saturated softmax, a quantised input, an overflow)."""
    zero, nonfinite = _gradient_masks(model, x, labels, from_logits=from_logits, loss_paths=(loss_path,),
                                      batch_size=batch_size, output_index=output_index)[loss_path]
    return zero | nonfinite


def unmeasured_robustness(model: keras.Model, x: np.ndarray, labels: np.ndarray, robust: np.ndarray, *,
                          from_logits: bool, loss_path: str, batch_size: int, output_index: Any = None) -> str | None:
    """Why some of the samples counted robust were never really attacked (dead_gradients, on up to
    ROBUST_GRADIENT_CHECK_SAMPLES of them), or None."""
    ids = np.flatnonzero(robust)[:ROBUST_GRADIENT_CHECK_SAMPLES]
    if not len(ids):
        return None
    dead = int(np.sum(dead_gradients(model, x[ids], labels[ids], from_logits=from_logits, loss_path=loss_path,
                                     batch_size=batch_size, output_index=output_index)))
    if not dead:
        return None
    total = int(np.sum(robust))
    scope = f"the {total} sample{'s' * (total != 1)}"
    if len(ids) < total:
        scope = f"{len(ids)} checked of the {total} samples"
    return (f"of {scope} counted robust, {dead} {'has' if dead == 1 else 'have'} an all-zero or non-finite input "
            "gradient at the clean point: a gradient attack cannot move them, so their robustness is assumed, not "
            "measured. Find the saturating or non-differentiable part (saturated softmax, quantisation, clipping, "
            "overflow) and attack through a differentiable approximation (BPDA) or a margin loss (APGD's DLR); "
            "tfadv.evaluation.check_gradient_masking measures more")
