"""Crash-safe result storage for experiment grids: one file per finished cell, merged into one tidy CSV.

A cell's file appears only once all of its rows are on disk (written to a temporary file, fsynced, then
renamed with `os.replace`), so a run killed at any moment leaves each cell either complete or absent.
Re-running skips the complete ones; shards write disjoint cells and `merge` unions them.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

CELL_COLUMN = "cell"
CELLS_DIR = "cells"
# JSON, not CSV, for cell files: CSV loses types ("inf" and "2" in a `norm` column come back as floats).
CELL_SUFFIX = ".json"
TABLE_NAME = "results.csv"
_TMP_SUFFIX = ".tmp"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's host and pid in the name let a later run tell a dead writer's leftover from a live one.
    tmp = path.with_name(f".{path.name}~{socket.gethostname()}~{os.getpid()}{_TMP_SUFFIX}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not supported (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by writers on this host that are no longer running; return them.

    Files from live writers (another shard sharing the directory) and from other hosts are left alone;
    they are never read as results either way.
    """
    host = socket.gethostname()
    removed = []
    for tmp in Path(directory).glob(f".*{_TMP_SUFFIX}"):
        parts = tmp.name[: -len(_TMP_SUFFIX)].rsplit("~", 2)
        if len(parts) != 3 or parts[1] != host or not parts[2].isdigit():
            continue
        if not _pid_alive(int(parts[2])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def cell_file_name(key: str) -> str:
    """File name of a cell: a hash of its key (keys hold characters that file systems dislike)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + CELL_SUFFIX


def _scalar(key: str, name: str, value):
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = value.item()
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise TypeError(f"cell {key!r}: column {name!r} must hold a scalar (str, int, float, bool, None), "
                        f"got {type(value).__name__}")
    return value


def _frame(key: str, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, CELL_COLUMN, key)
    return df


class CellStore:
    """Finished cells of one output directory, one file each: `out_dir/cells/<hash>.json` (key and rows)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.cells_dir = self.out_dir / CELLS_DIR
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp_files(self.cells_dir)

    def path(self, key: str) -> Path:
        return self.cells_dir / cell_file_name(key)

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, rows: Iterable[Mapping] | Mapping) -> pd.DataFrame:
        """Store the rows of one finished cell atomically; returns them as `load` will (with a `cell` column)."""
        rows = [rows] if isinstance(rows, Mapping) else list(rows)
        if not rows:
            raise ValueError(f"cell {key!r} produced no rows; a finished cell must record at least one row")
        for row in rows:
            if not isinstance(row, Mapping):
                raise TypeError(f"cell {key!r}: each row must be a dict, got {type(row).__name__}")
            if CELL_COLUMN in row and row[CELL_COLUMN] != key:
                raise ValueError(f"cell {key!r}: a row has its own {CELL_COLUMN!r} column ({row[CELL_COLUMN]!r})")
        rows = [{name: _scalar(key, name, value) for name, value in row.items() if name != CELL_COLUMN}
                for row in rows]
        atomic_write_text(self.path(key), json.dumps({CELL_COLUMN: key, "rows": rows}, indent=1))
        return _frame(key, rows)

    def read(self, key: str) -> pd.DataFrame:
        return _read_cell_file(self.path(key))

    def load(self) -> pd.DataFrame:
        """All finished cells of this directory in one DataFrame, sorted by cell key."""
        return _concat_sorted(_read_cell_file(p) for p in sorted(self.cells_dir.glob("*" + CELL_SUFFIX)))


def _read_cell_file(path: Path) -> pd.DataFrame:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        key, rows = record[CELL_COLUMN], record["rows"]
        if not isinstance(key, str) or not isinstance(rows, list) or not rows \
                or not all(isinstance(row, dict) for row in rows):
            raise ValueError("unexpected structure")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt cell file {path} ({e}); delete it to recompute that cell") from e
    return _frame(key, rows)


def _concat_sorted(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = list(frames)
    if not frames:
        return pd.DataFrame({CELL_COLUMN: pd.Series(dtype=str)})
    df = pd.concat(frames, ignore_index=True, sort=False)
    # Stable sort: rows keep the order the cell wrote them in; cells come in key order whatever the shard.
    return df.sort_values(CELL_COLUMN, kind="mergesort").reset_index(drop=True)


def merge(out_dir: str | os.PathLike, *other_dirs: str | os.PathLike) -> pd.DataFrame:
    """Union the cells of `out_dir` and `other_dirs` (e.g. shard outputs) into `out_dir/results.csv`.

    A cell present in several directories is kept once; copies that disagree raise a ValueError naming the
    cell and both files. The table is sorted by cell key (rows within a cell keep their order), so the same
    set of cells gives the same table however it was sharded.
    """
    out_dir = Path(out_dir)
    sources = [out_dir / CELLS_DIR]
    for d in other_dirs:
        if not (Path(d) / CELLS_DIR).is_dir():
            raise FileNotFoundError(f"no {CELLS_DIR}/ directory in {d}: is it a tfadv output directory?")
        sources.append(Path(d) / CELLS_DIR)
    cells: dict[str, tuple[Path, pd.DataFrame]] = {}
    for source in sources:
        for path in sorted(source.glob("*" + CELL_SUFFIX)) if source.is_dir() else []:
            df = _read_cell_file(path)
            key = df[CELL_COLUMN].iloc[0]
            if key in cells:
                first_path, first = cells[key]
                if not first.equals(df):
                    raise ValueError(f"cell {key!r} has two different results: {first_path} and {path}; "
                                     "delete the wrong one and merge again")
                continue
            cells[key] = (path, df)
    table = _concat_sorted(df for _, df in cells.values())
    atomic_write_csv(table, out_dir / TABLE_NAME)
    return table

