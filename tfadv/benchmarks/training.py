"""Benchmark: per-epoch cost of adversarial training against a clean `fit` epoch of the same model.

Targets (issue 4): Fast <= 2.05x a clean epoch, one Free replay <= 1.05x a clean step, PGD-K <= 1.03 (K + 1).
All methods are timed in one process, interleaved round by round (a noisy machine slows them alike), and
each ratio is the median over rounds of (method epoch) / (clean epoch of the same round). Two clocks: the
process CPU time (all TensorFlow threads; robust when other jobs share the cores, the primary ratio) and
wall time (what a user waits; meaningful only on an otherwise idle machine).

    python -m tfadv.benchmarks.training [--rounds 9] [--samples 512]
"""
from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np

from tfadv.training import FastAdversarialModel, FreeAdversarialModel, PGDAdversarialModel

EPS = 8 / 255
FREE_REPLAYS = 4
PGD_STEPS = 3


def _network(input_shape=(32, 32, 3), classes=10):
    """A small CIFAR-shaped CNN with BatchNorm (the layer types of PreActResNet18, far fewer of them)."""
    inputs = keras.Input(input_shape)
    h = inputs
    for filters in (32, 64, 128):
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(classes)(h)
    return inputs, outputs


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _models(batch_size: int) -> dict[str, tuple[keras.Model, int]]:
    """name -> (compiled model, optimizer updates per batch)."""
    keras.utils.set_random_seed(0)
    return {
        "clean": (_compile(keras.Model(*_network())), 1),
        "fast": (_compile(FastAdversarialModel(*_network(), eps=EPS, alpha=1.25 * EPS, seed=0)), 1),
        "free": (_compile(FreeAdversarialModel(*_network(), eps=EPS, replays=FREE_REPLAYS,
                                               batch_size=batch_size, seed=0)), FREE_REPLAYS),
        f"pgd{PGD_STEPS}": (_compile(PGDAdversarialModel(*_network(), eps=EPS, steps=PGD_STEPS,
                                                         step_size=2 / 255, seed=0)), 1),
    }


def run(rounds: int = 9, quick: bool = False, samples: int = 512, batch_size: int = 64) -> list[dict]:
    """Time one epoch per method per round; return one row per adversarial method (`quick`: 4-step epochs)."""
    if quick:
        samples = 4 * batch_size
    rng = np.random.default_rng(0)
    x = rng.random((samples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, samples)
    models = _models(batch_size)
    for model, _ in models.values():  # trace and warm up outside the timed epochs
        model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    cpu: dict[str, list[float]] = {name: [] for name in models}
    wall: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, (model, _) in models.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    targets = {"fast": 2.05, "free": 1.05, f"pgd{PGD_STEPS}": 1.03 * (PGD_STEPS + 1)}
    meaning = {
        "fast": "Fast epoch / clean epoch",
        "free": f"Free epoch / ({FREE_REPLAYS} replays x clean epoch)",
        f"pgd{PGD_STEPS}": f"PGD-{PGD_STEPS} epoch / clean epoch",
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for name, target in targets.items():
        updates = models[name][1]
        ratios = np.array(cpu[name]) / (np.array(cpu["clean"]) * updates)
        wall_ratios = np.array(wall[name]) / (np.array(wall["clean"]) * updates)
        ratio = float(np.median(ratios))
        rows.append({
            "benchmark": "training",
            "method": name,
            "measure": meaning[name],
            "ratio": round(ratio, 3),
            "ratio_min": round(float(ratios.min()), 3),
            "ratio_max": round(float(ratios.max()), 3),
            "target": round(target, 3),
            "meets_target": ratio <= target,
            "wall_ratio": round(float(np.median(wall_ratios)), 3),
            "clean_epoch_cpu_s": round(float(np.median(cpu["clean"])), 3),
            "method_epoch_cpu_s": round(float(np.median(cpu[name])), 3),
            "clean_epoch_wall_s": round(float(np.median(wall["clean"])), 3),
            "rounds": rounds,
            "samples": samples,
            "batch_size": batch_size,
            "load_avg_1min": round(load, 2),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'method':<8} {'measure':<40} {'cpu ratio':>9} {'range':>11} {'target':>7}  ok  {'wall ratio':>10}")
    for r in rows:
        spread = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        print(f"{r['method']:<8} {r['measure']:<40} {r['ratio']:>9.3f} {spread:>11} {r['target']:>7.2f}  "
              f"{'yes' if r['meets_target'] else 'NO ':<3} {r['wall_ratio']:>10.3f}")
    if rows:
        r = rows[0]
        print(f"clean epoch {r['clean_epoch_cpu_s']} s CPU / {r['clean_epoch_wall_s']} s wall, {r['samples']} samples, "
              f"batch {r['batch_size']}, {r['rounds']} rounds, 1-min load average {r['load_avg_1min']}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="4-step epochs")
    args = parser.parse_args(argv)
    rows = run(rounds=args.rounds, quick=args.quick, samples=args.samples, batch_size=args.batch_size)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
