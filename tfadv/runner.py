"""What every paper runner shares: the command line, the grid of cells, shards, resume, and progress.

A runner lists its grid as flat dicts of scalars (one dict per cell), and writes one function that
computes the rows of one cell:

    parser = build_parser("minibatch", "Mini-batch attack generation (Redgrave & Crum 2023).")
    args = parser.parse_args()
    table = run_grid(args, cells, run_one, desc="cells")   # runs this shard, then merges what is on disk
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from tfadv.results import CellStore, merge

PROFILES = ("paper", "demo", "smoke")
DEFAULT_DATA_DIR = os.path.join("data", "tfds")

T = TypeVar("T")
Scalar = str | int | float | bool | None


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


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


class _MergeAction(argparse.Action):
    """`--merge [DIR ...]` sets args.merge=True and args.merge_dirs to the extra directories given."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.merge = True
        namespace.merge_dirs = list(values)


def build_parser(key: str, description: str) -> argparse.ArgumentParser:
    """The options every runner shares; a runner adds its own to the returned parser."""
    parser = argparse.ArgumentParser(
        prog=f"python -m reproduce.{key}",
        description=description,
        epilog="Results: OUT/results.csv (one tidy row per cell and run), OUT/*.png, OUT/report.md, and "
               "OUT/cells/ (one file per finished cell; re-running skips them, so a killed run resumes).",
    )
    parser.add_argument("--profile", choices=PROFILES, default="paper",
                        help="paper: the paper's full protocol (GPU, pretrained weights, full datasets); "
                             "demo: the same code on scikit-learn's bundled digits, minutes on a CPU, offline; "
                             "smoke: seconds, for tests and CI (default: %(default)s)")
    parser.add_argument("--out", default=os.path.join("results", key), metavar="DIR",
                        help="output directory: results.csv, figures, report.md, cells/ (default: %(default)s)")
    parser.add_argument("--shard", type=_shard_arg, default=None, metavar="i/n",
                        help="run only shard i of n (0-based): cells i, i+n, i+2n, ... of the grid; run the n "
                             "shards in parallel (one per GPU or SLURM array task) into one --out, or into "
                             "several and combine them with --merge")
    parser.add_argument("--merge", nargs="*", action=_MergeAction, default=False, metavar="DIR",
                        help="run nothing: merge the finished cells of --out and of the given shard output "
                             "directories into --out/results.csv and rebuild figures and report")
    parser.set_defaults(merge_dirs=[])
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR", DEFAULT_DATA_DIR), metavar="DIR",
                        help="tensorflow-datasets data_dir holding prepared datasets (see data/README.md); "
                             "(default: $TFDS_DATA_DIR if set, else data/tfds)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not show progress bars (they go to stderr)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed of the run (default: %(default)s)")
    return parser


def cell_key(cell: Mapping[str, Scalar]) -> str:
    """A stable, readable key for a cell, independent of the dict's order: "batch=8,model=resnet50,norm=2"."""
    if not isinstance(cell, Mapping) or not cell:
        raise ValueError(f"a cell must be a non-empty dict of parameter name -> scalar, got {cell!r}")
    parts = []
    for name in sorted(cell):
        value = cell[name]
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(name, str) or not name or any(c in name for c in ",="):
            raise ValueError(f"cell parameter names must be non-empty strings without ',' or '=': {name!r}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"cell parameter {name!r} must be a scalar (str, int, float, bool, None), "
                            f"got {type(value).__name__}")
        if isinstance(value, str) and any(c in value for c in ",="):
            raise ValueError(f"cell parameter {name!r}={value!r}: values must not contain ',' or '='")
        parts.append(f"{name}={value}")
    return ",".join(parts)


def select_shard(cells: Sequence[T], shard: tuple[int, int] | str | None) -> list[T]:
    """Cells of shard (i, n): those at positions i, i+n, i+2n, ...; the n shards partition the grid."""
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard is None:
        return list(cells)
    i, n = shard
    parse_shard(f"{i}/{n}")
    return list(cells)[i::n]


def run_cells(cells: Sequence[Mapping[str, Scalar]], run_one: Callable[[dict], Mapping | list[Mapping]],
              store: CellStore | str | os.PathLike, desc: str = "cells", progress: bool = True) -> pd.DataFrame:
    """Run `run_one` on every cell not yet in `store`, storing each cell's rows as soon as it finishes.

    `run_one(cell)` returns the cell's rows (a list of dicts, or one dict); the cell's parameters are added
    to each row as columns (a row's own value wins). An exception in `run_one` propagates and nothing of
    that cell is written. `store` is a CellStore or an output directory. Returns the rows of all `cells`,
    as stored on disk.
    """
    store = store if isinstance(store, CellStore) else CellStore(store)
    keys = [cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"the grid lists these cells more than once: {duplicated}")
    todo = [(k, c) for k, c in zip(keys, cells) if not store.done(k)]
    if len(todo) < len(cells) and progress:
        print(f"{desc}: {len(cells) - len(todo)} of {len(cells)} already finished in {store.cells_dir}, "
              "skipping them", file=sys.stderr)
    for key, cell in _progress(todo, total=len(todo), desc=desc, enabled=progress):
        rows = run_one(dict(cell))
        rows = [rows] if isinstance(rows, Mapping) else list(rows)
        store.write(key, [{**cell, **row} for row in rows])
    frames = [store.read(k) for k in keys]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def run_grid(args: argparse.Namespace, cells: Sequence[Mapping[str, Scalar]],
             run_one: Callable[[dict], Mapping | list[Mapping]], desc: str = "cells") -> pd.DataFrame:
    """The usual flow of a runner: run this shard's cells (unless --merge), then merge into results.csv.

    Returns the merged table of every finished cell in --out and the --merge directories; warns on stderr
    when cells of the grid are still missing (other shards not finished or not merged yet).
    """
    if not args.merge:
        run_cells(select_shard(cells, args.shard), run_one, CellStore(args.out), desc=desc,
                  progress=args.progress)
    table = merge(args.out, *args.merge_dirs)
    missing = sorted({cell_key(c) for c in cells} - set(table["cell"]))
    if missing:
        print(f"{len(missing)} of {len(cells)} cells are not finished yet (e.g. {missing[0]}); the table, "
              "figures and report cover the finished ones", file=sys.stderr)
    return table


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", enabled: bool = True,
             stream=None, interval: float | None = None) -> Iterator[T]:
    """Yield from `iterable`, drawing a text bar with counts, elapsed time and ETA on stderr.

    On a terminal the bar redraws in place; in a log file (SLURM, CI) it prints a line at most every
    `interval` seconds (default 30) so that logs stay short.
    """
    if not enabled:
        yield from iterable
        return
    stream = stream or sys.stderr
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None
    tty = hasattr(stream, "isatty") and stream.isatty()
    interval = (0.2 if tty else 30.0) if interval is None else interval
    start = last = time.monotonic()
    _draw(stream, desc, 0, total, 0.0, tty, final=False)
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        final = total is not None and done >= total
        if final or now - last >= interval:
            _draw(stream, desc, done, total, now - start, tty, final)
            last = now


_progress = progress  # run_cells' keyword `progress` shadows the function inside it


def _draw(stream, desc: str, done: int, total: int | None, elapsed: float, tty: bool, final: bool) -> None:
    if total:
        width = 24
        filled = int(width * done / total)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        eta = elapsed / done * (total - done) if done else math.nan
        timing = f"{_format_seconds(elapsed)} elapsed" if final else \
            f"{_format_seconds(elapsed)} elapsed, ETA {_format_seconds(eta)}"
    else:
        bar, timing = f"{done}/?", f"{_format_seconds(elapsed)} elapsed"
    line = f"{desc + ': ' if desc else ''}{bar} {timing}"
    stream.write(("\r" + line + "\x1b[K" + ("\n" if final else "")) if tty else line + "\n")
    stream.flush()


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
