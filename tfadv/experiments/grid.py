"""Running a grid of cells: shards, dependencies between cells, resume, progress.

A grid is a list of cells, each a flat dict of scalars (its coordinates). `--only coordinate=value[,value...]`
keeps the cells with one of the values (repeat it to narrow further) and the cells they need. Shard i of n
takes the cells at positions i, i+n, i+2n, ...; the n shards partition the grid. A cell that reads other
cells' artifacts (a transfer matrix over trained models) waits until those cells are finished: in the run's
own folder, or in a --merge folder when `--merge ... --finish` computes the cells no folder has finished.
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Sequence, TypeVar

import keras

from tfadv import validation
from tfadv.experiments import claims as cell_claims
from tfadv.experiments import identity, locks as cell_locks, machine, store

if TYPE_CHECKING:
    from tfadv.experiments.run import Run

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse "i/n" (0-based shard i of n) into (i, n); None stays None (the whole grid)."""
    if text is None:
        return None
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shard must look like i/n with integers, e.g. 0/4; got {text!r}")
    i, n = int(parts[0]), int(parts[1])
    if n < 1:
        raise ValueError(f"shard {text!r}: the number of shards n must be at least 1")
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: the index is 0-based, so i must satisfy 0 <= i < {n}")
    return i, n


def select_only(cells: Sequence[dict], filters: Sequence[str] | None,
                needs: Callable[[dict], Sequence[dict]]) -> list[dict]:
    """The cells matching every filter `coordinate=value[,value...]` (a value matches a number as a number,
    None as "none"), and every cell they need, in grid order. A filter that names no coordinate of the grid,
    is malformed, or leaves no cell is an error that says so."""
    if not filters:
        return list(cells)
    coordinates = sorted({name for cell in cells for name in cell})
    chosen = list(cells)
    for text in filters:
        name, _, listed = (part.strip() for part in text.partition("="))
        values = [v.strip() for v in listed.split(",")]
        if not name or not listed or any(not v or "=" in v for v in values):
            raise store.ConfigurationError(
                f"--only {text!r}: expected coordinate=value[,value...], one coordinate per --only "
                "(e.g. --only method=fast --only epochs=90)")
        if name not in coordinates:
            raise store.ConfigurationError(
                f"--only {text!r}: no cell has the coordinate {name!r}; the grid's coordinates are {', '.join(coordinates)}")
        chosen = [c for c in chosen if name in c and any(_matches(c[name], v) for v in values)]
    if not chosen:
        raise store.ConfigurationError(f"--only {' '.join(filters)}: no cell of this grid matches every filter")
    keys = {identity.cell_key(c) for c in chosen}
    pending = list(chosen)
    while pending:  # a transfer cell brings the trainings it reads
        for needed in needs(pending.pop()):
            if identity.cell_key(needed) not in keys:
                keys.add(identity.cell_key(needed))
                pending.append(needed)
    return [c for c in cells if identity.cell_key(c) in keys]


def _matches(value, text: str) -> bool:
    if value is None:
        return text.lower() == "none"
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return str(value) == text


def select_shard(cells: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """Cells of shard (i, n): those at positions i, i+n, i+2n, ...; the n shards partition the grid."""
    if shard is None:
        return list(cells)
    i, n = shard
    return list(cells)[i::n]


def check_unique(cells: Sequence[dict]) -> list[str]:
    keys = [identity.cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"the grid lists these cells more than once: {duplicated}")
    return keys


def run_cells(run: "Run", cells: Sequence[dict], claims: Path | None = None) -> list[dict]:
    """Run every cell of `cells` not yet finished, each stored the moment it finishes.

    Cells whose prerequisites (Experiment.needs) are not all finished wait; those still waiting at the end
    are returned (a later invocation, or the parent of --jobs, runs them). An exception in a cell
    propagates and nothing of that cell is written. With `claims`, the folder of a --jobs run
    (tfadv.experiments.claims), this process computes only the cells it takes there, one at a time. While a
    cell it could compute waits only for cells other processes are computing (their locks held), it waits too.
    """
    check_unique(cells)
    todo = [c for c in cells if not run.finished(c)]
    if len(todo) < len(cells):
        run.log(f"{len(cells) - len(todo)} of {len(cells)} cells already finished in "
                f"{', '.join(map(str, run.folders))}; skipping them")
    if not todo:
        return []
    run.prepare()
    bar = keras.utils.Progbar(len(todo), unit_name="cell", verbose=1 if run.show_progress else 0)
    done = 0
    if claims is not None:  # in the order the parent chose (longest first), else the grid's
        rank = cell_claims.ranks(claims)
        todo.sort(key=lambda c: rank.get(run.cell_id(c), len(rank)))
    while todo:
        ready = [c for c in todo if all(run.finished(n) for n in run.needs(c))]
        cell, lock = _take_next(run, ready, claims)
        if cell is not None:
            run.log(f"cell {identity.cell_key(cell)}")
            started, started_cpu = time.perf_counter(), time.process_time()
            try:
                output, raised = _computed(run, cell)
                timing = {"wall_seconds": time.perf_counter() - started,
                          "cpu_seconds": time.process_time() - started_cpu}
                run.store.write(identity.cell_key(cell), cell, output, {
                    store.THREADS_COLUMN: machine.threads_in_effect(), store.KERNELS_COLUMN: machine.kernels()},
                    timing, raised)
            finally:
                cell_locks.release(lock, remove=run.finished(cell))
            run.discard_work(cell)
            done += 1
            bar.update(done)
        elif _waits_on_others(run, todo, claims):
            time.sleep(cell_claims.POLL_SECONDS)
        else:
            break
        todo = [c for c in todo if not run.finished(c)]  # other processes' finished cells drop out too
    if claims is not None:  # cells other processes took are theirs to finish (or, if they died, to report)
        todo = [c for c in todo if not cell_claims.taken(claims, run.cell_id(c))]
    for cell in todo:
        waiting = [identity.cell_key(n) for n in run.needs(cell) if not run.finished(n)]
        print(f"cell {identity.cell_key(cell)} waits for {len(waiting)} unfinished cell(s), e.g. {waiting[0]}: it "
              f"reads what they write, so it runs only where they are finished. Run again once they are finished "
              f"in {run.out}; if they finish in other shards' folders, merge those with --finish (--out {run.out} "
              "--merge THEIR_FOLDERS --finish)", file=sys.stderr)
    return todo


#: Where the warnings shown again after a cell are registered, so that each shows as often as it would have.
_SHOWN: dict = {}


def _computed(run: "Run", cell: dict) -> tuple[store.CellOutput, list[str]]:
    """The cell's output and the tfadv warnings raised computing it (each text once, in order), to be stored
    with it: a warning printed in the middle of a long log would otherwise never reach the report. Every
    warning is still shown (after the cell, or as it fails)."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", validation.TfadvWarning)
            output = run.experiment.run_cell(dict(cell), run)
    finally:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=_SHOWN)
    raised = []
    for w in caught:
        if issubclass(w.category, validation.TfadvWarning) and str(w.message) not in raised:
            raised.append(str(w.message))
    return output, raised


def _take_next(run: "Run", ready: Sequence[dict], claims: Path | None) -> tuple[dict | None, IO | None]:
    """The first ready cell this process may compute, with its lock held: not locked by another process
    writing into this folder (tfadv.experiments.locks), not finished meanwhile, and, in a --jobs run, taken
    here (tfadv.experiments.claims)."""
    for cell in ready:
        name = run.cell_id(cell)
        lock = cell_locks.acquire(run.work_root, name)
        if lock is None:
            if name not in run.cache.setdefault("cells left to other processes", set()):
                run.cache["cells left to other processes"].add(name)
                run.log(f"cell {identity.cell_key(cell)}: another process writing into {run.out} is computing it; "
                        "left to that process")
            continue
        if run.finished(cell) or (claims is not None and not cell_claims.take(claims, name)):
            cell_locks.release(lock)
            continue
        return cell, lock
    return None, None


def _waits_on_others(run: "Run", todo: Sequence[dict], claims: Path | None) -> bool:
    """Is a cell this process could compute being computed by another live process, or waiting only for
    cells that are? Then this process waits for them rather than end with them unfinished."""
    def in_progress(cell: dict) -> bool:
        return cell_locks.held_elsewhere(run.work_root, run.cell_id(cell))

    for cell in todo:
        if claims is not None and cell_claims.taken(claims, run.cell_id(cell)):
            continue  # another process of this --jobs run took it: its to finish, or to report
        if in_progress(cell):
            return True
        unfinished = [n for n in run.needs(cell) if not run.finished(n)]
        if unfinished and all(in_progress(n) for n in unfinished):
            return True
    return False
