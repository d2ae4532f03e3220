"""--jobs N: one grid, N shard processes, every core or GPU busy, one merged table.

The parent prepares what every cell shares (Experiment.prepare), starts N children running shards
0/N .. N-1/N of the same configuration into the same folder, each pinned to its own GPU
(CUDA_VISIBLE_DEVICES) or, on a CPU-only machine, to its share of the cores (TensorFlow's thread pools),
shows one progress bar over the cells, and finally runs itself the cells that must not share the machine
or that wait for other cells. Interrupting the parent stops the children; every finished cell is already
on disk (cells are written atomically), so nothing finished is lost and a re-run resumes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Sequence

import keras

from tfadv.experiments import machine

if TYPE_CHECKING:
    from tfadv.experiments.run import Run

THREADS_ENV = "TFADV_THREADS"
POLL_SECONDS = 2.0
#: Options the parent sets for each child itself.
_PARENT_OPTIONS = ("--jobs", "--shard", "--out")


def job_count(requested: int | None, profile: str, pending: Sequence[dict]) -> int:
    """--jobs, else one per GPU, else as many as there are pending cells and cores (smoke: 1, it is seconds)."""
    if requested is not None:
        return requested
    if profile == "smoke" or not pending:
        return 1
    gpus = machine.gpus()
    if gpus:
        return len(gpus)
    return max(1, min(machine.cpu_count(), len(pending)))


def limit_threads_from_environment() -> None:
    """In a child of --jobs: use only this job's share of the cores (before TensorFlow starts its pools)."""
    threads = os.environ.get(THREADS_ENV)
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))


def child_environments(count: int) -> list[dict[str, str]]:
    """One environment per child: its own GPU where there are GPUs, else its share of the CPU threads."""
    base = dict(os.environ)
    gpus = machine.gpus()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(len(gpus))]
        return [{**base, "CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(count)]
    threads = str(max(1, machine.cpu_count() // count))
    return [{**base, THREADS_ENV: threads, "OMP_NUM_THREADS": threads} for _ in range(count)]


def child_argv(argv: Sequence[str]) -> list[str]:
    """The user's arguments without those the parent sets per child."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _PARENT_OPTIONS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def run_parallel(run: "Run", cells: Sequence[dict], count: int, argv: Sequence[str]) -> None:
    """Run `cells` in `count` shard processes; returns when all have ended (raises if one failed)."""
    pending = [c for c in cells if not run.finished(c)]
    if not pending:
        return
    run.prepare()  # shared artifacts (a trained model) once, before the children look for them
    logs = run.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", run.experiment.module or f"reproduce.{run.experiment.key}", *child_argv(argv),
               "--out", str(run.out), "--jobs", "1", "--child-of-jobs"]
    run.log(f"{len(pending)} cells in {count} processes (logs in {logs})")
    children = []
    for i, env in enumerate(child_environments(count)):
        log = open(logs / f"shard-{i}-of-{count}.log", "w")
        children.append((subprocess.Popen([*command, "--shard", f"{i}/{count}"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT), log))
    _wait(run, children, pending)


def _wait(run: "Run", children, pending: Sequence[dict]) -> None:
    bar = keras.utils.Progbar(len(pending), unit_name="cell", verbose=1 if run.show_progress else 0)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while any(child.poll() is None for child, _ in children):
            bar.update(sum(run.finished(c) for c in pending))
            time.sleep(POLL_SECONDS)
        bar.update(sum(run.finished(c) for c in pending))
    except KeyboardInterrupt:
        for child, _ in children:
            if child.poll() is None:
                child.terminate()
        for child, _ in children:
            child.wait()
        print(f"\ninterrupted: {sum(run.finished(c) for c in pending)} of {len(pending)} cells are finished and "
              "kept; run the same command again to compute the rest", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, log in children:
            log.close()
    failed = [(child, log) for child, log in children if child.returncode != 0]
    if failed:
        tails = "\n".join(f"--- {log.name} (exit {child.returncode}), last lines:\n" + _tail(log.name)
                          for child, log in failed)
        raise SystemExit(f"{len(failed)} of {len(children)} job processes failed; finished cells are kept.\n{tails}")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _tail(path: str, lines: int = 15) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])
