"""Robust-accuracy evaluation against its floor: compiled input-gradient passes over the whole batch.

Cases, on the digits CNN (tfadv.models.digits_cnn, 32 x 32 RGB in [0, 255]) and 448 test digits, one batch:
- PGD-50 robust accuracy with 2 restarts and early exit (tfadv.evaluation.robust_accuracy: fooled samples
  leave the batch), on a standard CNN at eps = 0.15 * 255, where PGD breaks nearly every sample (non-robust),
  and on the same CNN fine-tuned with PGD adversarial training (eps 0.1 * 255), evaluated at eps 0.05 * 255,
  where most samples survive (robust: early exit cannot help, so the row shows what it costs). Floor:
  restarts x 50 gradient passes over the whole batch, the cost without early exit. The row also gives the
  ratio to 50 passes, and to the plain evaluation (early_exit=False).
  Targets (ISSUE 13): <= 0.35 on the non-robust CNN, <= 1.05 on the robust one.
- APGD-100 compiled whole (one call on the batch): floor 101 passes (the start and 100 steps). Target <= 1.05.
- Square-300 compiled whole on the robust CNN (most samples survive, so every query runs): floor 301 forward
  passes (the initial query and 300). No target in the issue: it shows what a query costs beyond its forward pass.
- FAB-T (3 targets x 10 steps) compiled whole on the robust CNN: floor 30 gradient and 30 forward passes. No target.
Timed in interleaved rounds in one process (medians), as tfadv.benchmarks.attacks; CPU time is the steadier
clock on a shared machine.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfadv import tracing
from tfadv.attacks import APGD, FAB, PGD, Square
from tfadv.benchmarks.attacks import _floor, _median_seconds
from tfadv.evaluation import robust_accuracy

#: Digits in [0, 255]. Under PGD-50 (measured once, 448 samples): the standard CNN keeps ~0.2% at
#: 0.15 * 255 (10% at 0.1 * 255); the fine-tuned CNN keeps ~84% at 0.05 * 255 (58% at 0.1 * 255).
TRAIN_EPS = 0.1 * 255
EPS = {"non-robust": 0.15 * 255, "robust": 0.05 * 255, "apgd": 0.1 * 255}
CLIP = (0.0, 255.0)
TARGETS = {"non-robust": 0.35, "robust": 1.05, "apgd": 1.05}


def digits_models(quick: bool) -> tuple[np.ndarray, np.ndarray, keras.Model, keras.Model]:
    """(x, y, standard CNN, adversarially fine-tuned CNN) on 448 test digits (a multiple of 64)."""
    from tfadv.datasets.digits import load_digits
    from tfadv.models.digits_cnn import build_digits_cnn, train_digits_cnn
    from tfadv.training import PGDAdversarialModel

    x_train, y_train, x_test, y_test = load_digits(image_size=32, channels=3, value_range=CLIP)
    n = 192 if quick else 448
    standard, _ = train_digits_cnn(x_train, y_train, epochs=10)
    keras.utils.set_random_seed(0)
    base = build_digits_cnn(32, 10)
    base.set_weights(standard.get_weights())  # fine-tune from the standard weights: from scratch it collapses
    robust = PGDAdversarialModel(base.inputs, base.outputs, eps=TRAIN_EPS, steps=5, step_size=TRAIN_EPS / 2, clip_min=CLIP[0],
                                 clip_max=CLIP[1], seed=0, attack_training_mode=False)
    robust.compile(keras.optimizers.Adam(5e-4), keras.losses.SparseCategoricalCrossentropy())
    robust.fit(x_train, y_train, batch_size=32, epochs=3 if quick else 10, verbose=0)
    return x_test[:n], y_test[:n], standard, robust


def _row(case: str, seconds: dict[str, tuple[float, float]], floor_passes: int, **facts: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case, **facts, "floor_passes": floor_passes}
    row.update({f"{k}_wall_s": round(v[0], 3) for k, v in seconds.items()})
    for clock, i in (("wall", 0), ("cpu", 1)):
        row[f"tfadv/floor ({clock})"] = round(seconds["tfadv"][i] / seconds["floor"][i], 3)
    return row


def robust_accuracy_case(case: str, model: keras.Model, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int,
                         restarts: int, target: float, rounds: int) -> dict[str, Any]:
    """PGD-`steps` robust accuracy with `restarts` and early exit, against restarts x steps passes."""
    attack = PGD(model, eps, "inf", steps=steps, step_size=2.5 * eps / steps, clip_min=CLIP[0], clip_max=CLIP[1],
                 seed=0, select="first_success")
    evaluate = lambda early: robust_accuracy(model, attack, x, y, batch_size=len(x), restarts=restarts,  # noqa: E731
                                             early_exit=early)
    fns: dict[str, Callable[[], object]] = {
        "tfadv": lambda: evaluate(True),
        "no_early_exit": lambda: evaluate(False),
        "floor": _floor(model, tf.constant(x), tf.constant(y), restarts * steps, from_logits=False),
    }
    accuracy = evaluate(True)
    seconds = _median_seconds(fns, rounds)
    row = _row(case, seconds, restarts * steps, batch=len(x), eps=round(eps, 2), steps=steps, restarts=restarts,
               robust_accuracy=round(accuracy, 4), target=target)
    row[f"tfadv / {steps} passes (cpu)"] = round(seconds["tfadv"][1] / seconds["floor"][1] * restarts, 3)
    row["tfadv/no_early_exit (cpu)"] = round(seconds["tfadv"][1] / seconds["no_early_exit"][1], 3)
    return row


def _whole_batch_case(case: str, attack, model: keras.Model, x: np.ndarray, y: np.ndarray, *, eps: float, steps: int,
                      floor: Callable[[tf.Tensor, tf.Tensor], Callable[[], object]], floor_passes: int,
                      target: float | None, rounds: int) -> dict[str, Any]:
    """One call of a compiled attack on the whole batch against `floor(x, y)`, and the robust accuracy it gives."""
    x_tf, y_tf = tf.constant(x), tf.constant(y)
    seconds = _median_seconds({"tfadv": lambda: attack(x_tf, y_tf).numpy(), "floor": floor(x_tf, y_tf)}, rounds)
    return _row(case, seconds, floor_passes, batch=len(x), eps=round(eps, 2), steps=steps, restarts=1,
                robust_accuracy=round(robust_accuracy(model, attack, x, y, batch_size=len(x)), 4), target=target)


def apgd_case(model: keras.Model, x: np.ndarray, y: np.ndarray, *, steps: int, rounds: int) -> dict[str, Any]:
    """APGD-`steps` compiled whole, one call on the batch, against steps + 1 passes."""
    eps = EPS["apgd"]
    attack = APGD(model, eps, "inf", steps, clip_min=CLIP[0], clip_max=CLIP[1], seed=0)
    floor = lambda x, y: _floor(model, x, y, steps + 1, from_logits=False)  # noqa: E731
    return _whole_batch_case(f"APGD-{steps}, compiled whole", attack, model, x, y, eps=eps, steps=steps, floor=floor,
                             floor_passes=steps + 1, target=TARGETS["apgd"], rounds=rounds)


def _forward_floor(model: keras.Model, x: tf.Tensor, passes: int) -> Callable[[], object]:
    """`passes` calls of one compiled forward pass: the cost no score-based attack can go below."""
    forward = tracing.compile_once(lambda x: model(x, training=False))

    def run():
        for _ in range(passes):
            out = forward(x)
        return out.numpy()

    return run


def square_case(model: keras.Model, x: np.ndarray, y: np.ndarray, *, queries: int, rounds: int) -> dict[str, Any]:
    """Square-`queries` compiled whole, one call on the batch, against queries + 1 forward passes."""
    eps = EPS["robust"]
    attack = Square(model, eps, "inf", queries=queries, clip_min=CLIP[0], clip_max=CLIP[1], seed=0)
    floor = lambda x, y: _forward_floor(model, x, queries + 1)  # noqa: E731
    return _whole_batch_case(f"Square-{queries}, compiled whole, robust CNN (floor: forward passes)", attack, model,
                             x, y, eps=eps, steps=queries, floor=floor, floor_passes=queries + 1, target=None,
                             rounds=rounds)


def fab_case(model: keras.Model, x: np.ndarray, y: np.ndarray, *, steps: int, targets: int,
             rounds: int) -> dict[str, Any]:
    """FAB-T (`targets` runs of `steps`) compiled whole, against as many gradient and forward passes: each
    step takes one of each, and projects two points per sample onto the box-bounded hyperplane."""
    eps = EPS["robust"]
    attack = FAB(model, eps, "inf", steps, targeted=True, n_target_classes=targets, clip_min=CLIP[0],
                 clip_max=CLIP[1], seed=0)
    passes = steps * targets

    def floor(x, y):
        gradients, forwards = _floor(model, x, y, passes, from_logits=False), _forward_floor(model, x, passes)
        return lambda: (gradients(), forwards())

    return _whole_batch_case(f"FAB-T, {targets} targets x {steps} steps, compiled whole, robust CNN (floor: gradient "
                             "+ forward passes)", attack, model, x, y, eps=eps, steps=steps, floor=floor,
                             floor_passes=passes, target=None, rounds=rounds)


def run(rounds: int = 7, quick: bool = False) -> list[dict[str, Any]]:
    keras.utils.set_random_seed(0)
    x, y, standard, robust = digits_models(quick)
    steps = 20 if quick else 50
    rounds = min(rounds, 3) if quick else rounds
    return [
        robust_accuracy_case(f"PGD-{steps} x2 restarts, early exit, non-robust CNN", standard, x, y,
                             eps=EPS["non-robust"], steps=steps, restarts=2, target=TARGETS["non-robust"], rounds=rounds),
        robust_accuracy_case(f"PGD-{steps} x2 restarts, early exit, robust CNN", robust, x, y, eps=EPS["robust"],
                             steps=steps, restarts=2, target=TARGETS["robust"], rounds=rounds),
        apgd_case(standard, x, y, steps=40 if quick else 100, rounds=rounds),
        square_case(robust, x, y, queries=60 if quick else 300, rounds=rounds),
        fab_case(robust, x, y, steps=10, targets=2 if quick else 3, rounds=3 if quick else min(rounds, 5)),
    ]
