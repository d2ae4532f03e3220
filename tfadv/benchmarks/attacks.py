"""tfadv PGD against cleverhans 4.0 and against the floor of `steps` compiled input-gradient passes.

The three are timed in interleaved rounds inside one process, on the same model, inputs and steps, and
reported as ratios of medians: the machine's load moves all three alike. Both wall-clock and process CPU
time are reported; on a shared machine the CPU-time ratio is the steadier of the two.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfadv import tracing
from tfadv.attacks import PGD


def _median_seconds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) seconds per function over interleaved rounds."""
    for fn in fns.values():  # warm-up: trace and compile outside the clock
        fn()
        fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def _floor(model: keras.Model, x: tf.Tensor, y: tf.Tensor, steps: int, from_logits: bool) -> Callable[[], object]:
    """`steps` calls of one compiled input-gradient pass: the cost no PGD can go below."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction="sum")

    def input_gradient(x_adv):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            value = loss(y, model(x_adv, training=False))
        return tape.gradient(value, x_adv)

    gradient = tracing.compile_once(input_gradient)

    def run():
        for _ in range(steps):
            g = gradient(x)
        return g.numpy()

    return run


def _cleverhans(model, x, eps, step_size, steps, clip_min, clip_max) -> Callable[[], object] | None:
    try:
        from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    except ImportError:
        return None
    labels = tf.argmax(model(x, training=False), axis=-1)

    def run():
        return projected_gradient_descent(
            model, x, eps, step_size, steps, np.inf, clip_min=clip_min, clip_max=clip_max, y=labels,
            rand_init=True, sanity_checks=False,
        ).numpy()

    return run


def benchmark_case(
    name: str, model: keras.Model, x: np.ndarray, steps: int, eps: float, clip: tuple[float, float], rounds: int
) -> dict[str, object]:
    """Ratios for one model: tfadv / floor and tfadv / cleverhans (both models output logits)."""
    x = tf.constant(x)
    y = tf.argmax(model(x, training=False), axis=-1)
    step_size = 2.5 * eps / steps
    attack = PGD(model, eps, "inf", steps=steps, step_size=step_size, reduction="sum", from_logits=True,
                 clip_min=clip[0], clip_max=clip[1], seed=0)
    fns = {"tfadv": lambda: attack(x, y).numpy(), "floor": _floor(model, x, y, steps, from_logits=True)}
    cleverhans = _cleverhans(model, x, eps, step_size, steps, *clip)
    if cleverhans is not None:
        fns["cleverhans"] = cleverhans
    seconds = _median_seconds(fns, rounds)
    row: dict[str, object] = {"case": name, "batch": int(x.shape[0]), "steps": steps}
    row.update({f"{k}_wall_s": round(v[0], 3) for k, v in seconds.items()})
    for clock, i in (("wall", 0), ("cpu", 1)):
        row[f"tfadv/floor ({clock})"] = round(seconds["tfadv"][i] / seconds["floor"][i], 3)
        if cleverhans is not None:
            row[f"tfadv/cleverhans ({clock})"] = round(seconds["tfadv"][i] / seconds["cleverhans"][i], 3)
    return row


def run(rounds: int = 7, quick: bool = False) -> list[dict[str, object]]:
    from tfadv.models.mnist import madry_cnn

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    rows = [benchmark_case("Madry MNIST CNN, PGD-40", madry_cnn(), rng.random((128, 28, 28, 1), np.float32), 40, 0.3, (0.0, 1.0), rounds)]
    if not quick:
        resnet = keras.applications.ResNet50(weights=None, classifier_activation=None)
        x = rng.uniform(0, 255, (8, 224, 224, 3)).astype(np.float32)
        rows.append(benchmark_case("ResNet50 224, PGD-4", resnet, x, 4, 8.0, (0.0, 255.0), max(3, rounds // 2)))
    return rows
