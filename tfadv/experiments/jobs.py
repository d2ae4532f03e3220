"""--jobs N: one grid, N processes, every core or GPU busy, one merged table.

The parent prepares what every cell shares (Experiment.prepare), starts N children of the same
configuration into the same folder, each pinned to its own GPU (CUDA_VISIBLE_DEVICES) or, on a CPU-only
machine, to `--threads` cores (TensorFlow's thread pools); each child takes the next cell nobody has taken
(tfadv.experiments.claims), the longest first by the experiment's cost estimate, so none idles while cells
are left and none is left alone with a long cell at the end. The parent shows one progress bar over the
cells, and finally runs itself the cells that must not share the machine or that still wait for others.
Interrupting the parent stops the children; every finished cell is already on disk (cells are written
atomically), so nothing finished is lost and a re-run resumes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import keras

from tfadv.experiments import claims as cell_claims
from tfadv.experiments import machine, plan

if TYPE_CHECKING:
    from tfadv.experiments.run import Run

POLL_SECONDS = 2.0
#: The environment variable that gives a --jobs child its parent's process id (end_with_parent).
PARENT_VARIABLE = "TFADV_JOBS_PARENT"
#: prctl's option asking the kernel for a signal when the parent process dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Options the parent sets for each child itself.
_PARENT_OPTIONS = ("--jobs", "--shard", "--out", "--threads", "--claims")
#: TensorFlow CPU threads per cell process on a CPU-only machine, whatever --jobs is: on a CPU a trained
#: cell's numbers depend on the thread count (TensorFlow splits its reductions per thread; efficient's smoke
#: curves move by 5e-7 between 1 and 2 threads, a demo cell by 2 accuracy points after training), so it
#: must not follow from how many processes share the machine.
CPU_THREADS_PER_CELL = 1


def cell_threads(requested: int | None) -> int:
    """--threads, else CPU_THREADS_PER_CELL on a CPU-only machine, else 0 (TensorFlow's default: with GPUs
    the CPU threads only feed the input pipeline)."""
    if requested is not None:
        return requested
    return 0 if machine.gpus() else CPU_THREADS_PER_CELL


def use_threads(threads: int, child: bool = False) -> bool:
    """Size TensorFlow's intra-op pool (the one the numbers depend on) before it starts; a child of --jobs
    also gets at most 2 inter-op threads so N children do not oversubscribe the cores. False if this
    process's TensorFlow already runs with other pools (main() called from a notebook or a test): they
    stay, and each cell records the count in effect."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        if child:
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads or machine.cpu_count()))
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    return True


def job_count(requested: int | None, profile: str, pending: Sequence[dict], threads: int) -> int:
    """--jobs, else one per GPU, else as many as there are pending cells and `threads`-sized shares of the
    cores (threads 0: TensorFlow's default, every core; smoke: 1, it is seconds)."""
    if requested is not None:
        return requested
    if profile == "smoke" or not pending:
        return 1
    gpus = machine.gpus()
    if gpus:
        return len(gpus)
    return max(1, min(machine.cpu_count() // (threads or machine.cpu_count()), len(pending)))


def child_environments(count: int, threads: int) -> list[dict[str, str]]:
    """One environment per child: its own GPU where there are GPUs; OpenMP sized like TensorFlow's pool."""
    base = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
    gpus = machine.gpus()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(len(gpus))]
        return [{**base, "CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(count)]
    return [{**base, "OMP_NUM_THREADS": str(threads or max(1, machine.cpu_count() // count))} for _ in range(count)]


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


def run_parallel(run: "Run", cells: Sequence[dict], count: int, argv: Sequence[str], threads: int) -> None:
    """Run `cells` in `count` processes of `threads` TensorFlow CPU threads each, each taking the next
    cell nobody has taken; returns when all have ended (raises if one failed)."""
    pending = [c for c in cells if not run.finished(c)]
    if not pending:
        return
    run.prepare()  # shared artifacts (a trained model) once, before the children look for them
    logs = run.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    scratch = run.work_root
    scratch.mkdir(parents=True, exist_ok=True)
    claims = Path(tempfile.mkdtemp(prefix="claims-", dir=scratch))  # this run's own: old claims never count
    cell_claims.write_order(claims, [run.cell_id(c) for c in _longest_first(run, pending)])
    command = [sys.executable, "-m", run.experiment.module or f"reproduce.{run.experiment.key}", *child_argv(argv),
               "--out", str(run.out), "--jobs", "1", "--threads", str(threads), "--claims", str(claims),
               "--child-of-jobs"]
    run.log(f"{len(pending)} cells in {count} processes (logs in {logs})")
    children = []
    try:
        for i, env in enumerate(child_environments(count, threads)):
            log = open(logs / f"job-{i}-of-{count}.log", "w")
            children.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        _wait(run, children, pending)
    finally:
        shutil.rmtree(claims, ignore_errors=True)


def _longest_first(run: "Run", cells: Sequence[dict]) -> list[dict]:
    """The cells by the experiment's cost estimate, longest first; in the grid's order if it has none."""
    if run.experiment.cost is None:
        return list(cells)
    try:
        return plan.longest_first(run, cells)
    except Exception as e:  # the order only decides who computes what, so a failed estimate costs only time
        run.log(f"cells handed out in the grid's order: their cost estimate failed ({type(e).__name__}: {e})")
        return list(cells)


def _wait(run: "Run", children, pending: Sequence[dict]) -> None:
    bar = keras.utils.Progbar(len(pending), unit_name="cell", verbose=1 if run.show_progress else 0)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    # A terminal's bar ticks every poll (its clock moves); a log file (SLURM, `make demo > log`) gets one
    # update per finished cell instead of one per poll.
    ticking, shown = sys.stdout.isatty(), -1
    try:
        # Poll every child each round (no short-circuit): a child that ended is reaped at once.
        while [child.poll() for child, _ in children].count(None):
            finished = sum(run.finished(c) for c in pending)
            if ticking or finished != shown:
                bar.update(finished)
                shown = finished
            time.sleep(POLL_SECONDS)
        bar.update(sum(run.finished(c) for c in pending))
    except KeyboardInterrupt:
        for child, _ in children:
            if child.poll() is None:
                child.terminate()
        for child, _ in children:
            child.wait()
        raise  # cli.main says how many cells are kept
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, log in children:
            log.close()
    failed = [(child, log) for child, log in children if child.returncode != 0]
    if failed:
        tails = "\n".join(f"--- {log.name} (exit {child.returncode}), last lines:\n" + _tail(log.name)
                          for child, log in failed)
        raise SystemExit(f"{len(failed)} of {len(children)} job processes failed; finished cells are kept.\n{tails}")


def end_with_parent() -> None:
    """In a --jobs child: have the kernel send this process SIGTERM when its parent dies, kill -9 included
    (Linux; elsewhere a killed parent's children run on). An orphan would go on computing cells that a rerun
    hands out again, in the same work folders."""
    parent = os.environ.get(PARENT_VARIABLE)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != int(parent):  # the parent died before the request was made
        raise SystemExit("the --jobs parent of this process has ended; stopping")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _tail(path: str, lines: int = 15) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])
