"""The `minibatch` demo's speed: emulated against real batching, and --jobs 2 against one process.

1. The demo's batch-size sweep (batch 1 to 128, float32, mean loss, L2 and L∞ PGD, run 0) through the
   runner's own cell code in one process, once with --batching real and once with --batching emulated:
   the first pass (tracing included, what a demo pays) and the median of later passes, wall and CPU.
2. (not with --quick) The whole demo twice in subprocesses into fresh folders: one process on every core
   (--jobs 1 --threads <cores>) and --jobs 2 (two processes of one thread each, the default on 2 cores):
   the wall-time ratio, i.e. what two processes buy over one that has the whole machine. (The two runs'
   numbers differ in the last bits: on a CPU they depend on the thread count.)
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

SWEEP = ["--precisions", "float32", "--losses", "mean", "--attacks", "PGD"]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def sweep_seconds(batching: str, rounds: int) -> dict[str, float]:
    """Wall and CPU seconds of the demo's batch-1..128 PGD cells (run 0) in one process."""
    from reproduce.minibatch import EXPERIMENT, cells
    from tfadv.experiments.cli import open_run, parser

    with tempfile.TemporaryDirectory() as out:
        args = parser(EXPERIMENT).parse_args(["--profile", "demo", "--out", out, "--batching", batching,
                                              "--no-progress", *SWEEP])
        run = open_run(EXPERIMENT, args)
        run.prepare()
        todo = [c for c in cells.grid(run) if c["run"] == 0 and c["sharpness"] == 1.0]
        passes = []
        for _ in range(1 + rounds):
            wall, cpu = _clock()
            for cell in todo:
                cells.run_cell(cell, run)
            passes.append((time.perf_counter() - wall, time.process_time() - cpu))
    later = passes[1:]
    return {"first_wall": passes[0][0], "first_cpu": passes[0][1],
            "wall": statistics.median(p[0] for p in later), "cpu": statistics.median(p[1] for p in later)}


def demo_wall_seconds(jobs: int, threads: int) -> float:
    """Wall seconds of the whole demo in a subprocess, into a fresh folder."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reproduce.minibatch", "--profile", "demo", "--jobs", str(jobs),
                        "--threads", str(threads), "--out", out, "--no-progress"], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def run(rounds: int = 7, quick: bool = False) -> list[dict[str, object]]:
    rounds = max(1, min(rounds, 3))  # each pass is seconds to minutes
    real, emulated = sweep_seconds("real", rounds), sweep_seconds("emulated", rounds)
    rows: list[dict[str, object]] = [{
        "case": "minibatch demo sweep, batch 1..128: real / emulated",
        **{f"real/emulated ({k.replace('_', ' ')})": round(real[k] / emulated[k], 2) for k in real},
        "emulated_first_wall_s": round(emulated["first_wall"], 1), "real_first_wall_s": round(real["first_wall"], 1),
    }]
    if not quick:
        from tfadv.experiments import machine

        one, two = demo_wall_seconds(1, machine.cpu_count()), demo_wall_seconds(2, 1)
        rows.append({"case": f"minibatch demo: --jobs 1 --threads {machine.cpu_count()} / --jobs 2 (wall)",
                     "jobs1_wall_s": round(one, 1),
                     "jobs2_wall_s": round(two, 1), "speed-up": round(one / two, 2)})
    return rows
