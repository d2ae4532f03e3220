"""check_gradient_masking: the flags of tfadv.evaluation.checks plus the attack-based ones, measured with
APGD and Square on the user's model and data (pass a few hundred samples; budgets are keywords)."""
from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import keras
import numpy as np

from tfadv import losses, validation
from tfadv.attacks import APGD, Square
from tfadv.evaluation import checks
from tfadv.evaluation.checks import Flag, MaskingReport
from tfadv.evaluation.clean import predict_labels
from tfadv.evaluation.data import evaluation_arrays
from tfadv.evaluation.robust import robust_mask

#: Robust accuracy left at the large eps above this means the attack cannot reach the whole input space.
LARGE_EPS_MAX_ACCURACY = 0.02
#: Square must break this share of the samples the gradient attacks left robust (the reference's 0.2%, which its
#: cascade measures on their survivors) and at least one sample.
SQUARE_MARGIN = 0.002
#: A change in robust accuracy smaller than this (and than 1.5 samples) is noise, not a trend.
TREND_TOLERANCE = 0.005


def check_gradient_masking(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    eps: float,
    norm: str | int | float,
    from_logits: bool = False,
    clip_min: float | None = None,
    clip_max: float | None = None,
    seed: int | None = 0,
    steps: int = 50,
    queries: int = 1000,
    restarts: int = 3,
    eps_factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    large_eps: float | None = None,
    batch_size: int = 256,
    output_index: Any = None,
    verbose: bool = False,
) -> MaskingReport:
    """Run every check and return the report (flags in the order measured). APGD-CE with `steps` iterations
    is the reference attack; the convergence checks rerun it with 4x the steps and with `restarts` restarts.
    `x`, `y`: arrays, or `x` a batched tf.data.Dataset of (x, y) and `y` left out (read once into memory).
    `verbose`: a line per check as it is measured (about ten attack runs in all: minutes on a large model)."""
    common = dict(from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, seed=seed, output_index=output_index)
    base = APGD(model, eps, norm, steps, **common)
    arrays = evaluation_arrays("check_gradient_masking", x, y)
    try:
        x_tf, y_onehot = base._validated(*arrays)
    except losses.NoInputGradientError as error:  # the most masked a model can be: the report says so
        return MaskingReport([_no_gradient_flag(error)], {"eps": float(eps), "norm": base.norm,
                                                          "samples": len(arrays[0]), "seed": seed})
    x, labels = x_tf.numpy(), np.argmax(y_onehot.numpy(), axis=-1)
    if restarts < 2:
        raise ValueError(f"check_gradient_masking: restarts must be >= 2 to compare with one restart, got {restarts}")
    factors = sorted(set(float(f) for f in eps_factors) | {1.0})
    if factors[0] <= 0:
        raise ValueError(f"check_gradient_masking: eps_factors must be > 0, got {eps_factors}")
    large = large_eps if large_eps is not None else _default_large_eps(base, x)
    classes = int(y_onehot.shape[-1])
    n = len(x)
    tolerance = max(TREND_TOLERANCE, 1.5 / max(n, 1))
    if n < checks.MIN_SAMPLES:
        validation.warn_caller(f"check_gradient_masking: {checks.few_samples(n)}", validation.EvaluationWarning)

    before = checks._variables(model)
    outputs = checks.output_passes(model, x[:batch_size], output_index=output_index)
    flags: list[Flag] = []
    started = time.perf_counter()

    def add(*measured: Flag) -> None:
        for flag in measured:
            flags.append(flag)
            if verbose:
                print(f"check_gradient_masking: {flag.name}: {'RAISED' if flag.raised else 'ok'} ({flag.measured}) "
                      f"[{time.perf_counter() - started:.0f} s]", flush=True)

    add(checks.randomness_flag(outputs), checks.dynamic_flag(before, checks._variables(model)),
        checks.probability_flag(outputs[0], from_logits), checks.classes_flag(classes))
    correct = predict_labels(model, x, batch_size, output_index) == labels
    add(*checks.gradient_flags(model, x[correct], labels[correct], from_logits, batch_size, output_index))

    def accuracy(attack, restarts=1) -> np.ndarray:
        with warnings.catch_warnings():  # eps's scale was judged once, above; the sweep's eps are ours
            warnings.simplefilter("ignore", validation.EpsScaleWarning)
            return robust_mask(model, attack, x, labels, batch_size=batch_size, restarts=restarts)

    masks = {f: accuracy(base if f == 1.0 else APGD(model, eps * f, norm, steps, **common)) for f in factors}
    sweep = {f: float(np.mean(mask)) for f, mask in masks.items()}
    add(_monotonic_flag(eps, sweep, tolerance))
    add(_large_eps_flag(large, float(np.mean(accuracy(APGD(model, large, norm, steps, **common)))), n))
    white = masks[1.0].copy()  # APGD-CE at eps, run once for the sweep
    if classes >= 3:
        white &= accuracy(APGD(model, eps, norm, steps, loss="dlr", **common))
    add(_square_flag(white, accuracy(Square(model, eps, norm, queries, **common)), queries))
    base_accuracy = sweep[1.0]
    longer = float(np.mean(accuracy(APGD(model, eps, norm, 4 * steps, **common))))
    restarted = float(np.mean(accuracy(base, restarts=restarts)))
    add(*_convergence_flags(base_accuracy, steps, longer, restarts, restarted, tolerance))
    config = {"eps": float(eps), "norm": base.norm, "samples": n, "steps": steps, "queries": queries,
              "restarts": restarts, "large_eps": float(large), "eps_factors": factors, "seed": seed}
    return MaskingReport(flags, config)


def _default_large_eps(attack: APGD, x: np.ndarray) -> float:
    """The whole input range (L-inf) or its diameter (L2) when the range is known, else 10 eps."""
    if attack.clip_min is None:
        return 10.0 * attack.eps
    span = attack.clip_max - attack.clip_min
    return span if attack.norm == "inf" else span * float(np.sqrt(np.prod(x.shape[1:])))


def _no_gradient_flag(error: Exception) -> Flag:
    return Flag("no_input_gradient", True, f"tf.GradientTape returned no gradient of the output for x ({error})",
                "no gradient attack can search this model, so none of the other checks can run: any gradient "
                "attack's robust accuracy of it is assumed, not measured",
                "evaluate it with tfadv.attacks.Square, or attack through a differentiable stand-in for the "
                "non-differentiable step (BPDA: x + tf.stop_gradient(step(x) - x))")


def _monotonic_flag(eps: float, sweep: dict[float, float], tolerance: float) -> Flag:
    values = [sweep[f] for f in sorted(sweep)]
    rises = [(a, b) for a, b in zip(values, values[1:]) if b > a + tolerance]
    measured = ", ".join(f"eps {eps * f:.4g}: {sweep[f]:.1%}" for f in sorted(sweep))
    return Flag(
        "accuracy_not_decreasing_with_eps", bool(rises), f"APGD-CE robust accuracy {measured}",
        "a larger ball contains the smaller one, so accuracy can only fall as eps grows; a rise means the "
        "attack fails at larger eps (steps too large for the loss surface, or masked gradients)",
        "inspect the loss along the attack path; try more steps, restarts, a different loss (DLR) and Square",
        {f"eps={eps * f:.6g}": sweep[f] for f in sorted(sweep)},
    )


def _large_eps_flag(large: float, accuracy: float, n: int) -> Flag:
    return Flag(
        "large_eps_not_zero", accuracy > max(LARGE_EPS_MAX_ACCURACY, 1.5 / max(n, 1)),
        f"APGD-CE robust accuracy {accuracy:.1%} at eps {large:.4g}",
        "at an eps covering the whole input range any input can be turned into any other, so accuracy must "
        "reach ~0%; accuracy left there is the attack failing, not robustness",
        "find why gradients do not lead across the boundary (zero or noisy gradients, saturation); use "
        "Square and an adaptive attack",
        {"eps": large, "robust_accuracy": accuracy},
    )


def _square_flag(white: np.ndarray, square: np.ndarray, queries: int) -> Flag:
    n = max(len(white), 1)
    # Per sample, as in the cascade, where Square runs on the gradient attacks' survivors: a weaker stand-alone
    # Square can lose on the mean and still break samples no gradient attack could.
    only_square = int(np.sum(white & ~square))
    return Flag(
        "square_beats_gradient_attacks", only_square / n > SQUARE_MARGIN and only_square >= 1,
        f"robust accuracy: APGD-CE and APGD-DLR {np.mean(white):.1%}, Square ({queries} queries) "
        f"{np.mean(square):.1%}; samples broken by Square only: {only_square}",
        "a black-box random search succeeding where gradient attacks fail means the gradients mislead them "
        "(gradient masking)",
        "do not trust gradient-only evaluations of this model: report the full AutoAttack cascade, and build an "
        "adaptive attack (BPDA/EOT) for the masking component",
        {"gradient_robust_accuracy": float(np.mean(white)), "square_robust_accuracy": float(np.mean(square)),
         "broken_by_square_only": only_square},
    )


def _convergence_flags(base: float, steps: int, longer: float, restarts: int, restarted: float,
                       tolerance: float) -> list[Flag]:
    advice = "increase steps and restarts until robust accuracy stops falling; report the converged value"
    return [
        Flag("more_steps_lower", longer < base - tolerance,
             f"APGD-CE robust accuracy {base:.1%} with {steps} steps, {longer:.1%} with {4 * steps}",
             "the attack had not converged: the reported accuracy overstates robustness", advice,
             {"robust_accuracy": base, "robust_accuracy_4x_steps": longer}),
        Flag("more_restarts_lower", restarted < base - tolerance,
             f"APGD-CE robust accuracy {base:.1%} with 1 restart, {restarted:.1%} with {restarts}",
             "the result depends on the random start: the loss surface has many local maxima and one start "
             "misses some of them", advice, {"robust_accuracy": base, f"robust_accuracy_{restarts}_restarts": restarted}),
    ]
