"""Crash-safe storage of an experiment grid: one output folder per configuration, one file per finished cell.

    OUT/config.json        the configuration these results belong to (tfadv.experiments.identity)
    OUT/cells/<id>.json    one finished cell: its key, the configuration's fingerprint, its tables' rows
                           and what it was computed with (the thread count)
    OUT/<table>.csv        every finished cell's rows, merged (results.csv, and any extra table a paper keeps)
    OUT/cell_times.csv     each finished cell's wall and CPU seconds (kept out of the tables: they vary run to run)
    OUT/cell_warnings.csv  the tfadv warnings raised while computing each cell (tfadv.validation.TfadvWarning)

A cell file appears only once all of its rows are on disk (tfadv.experiments.atomic), so a run killed at
any moment leaves each cell complete or absent, and a re-run computes only what is missing. A folder holds
one configuration: a run or a merge with another configuration stops and names what differs. A cell file
is checked against its name and the configuration whenever it is read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from tfadv.experiments import atomic, identity

CONFIG_FILE = "config.json"
CELLS_DIR = "cells"
CELL_COLUMN = "cell"
MAIN_TABLE = "results"
#: TensorFlow CPU threads of the process that computed a cell (on a CPU, its numbers depend on them).
THREADS_COLUMN = "tf_cpu_threads"
#: The devices and kernels that computed it (tfadv.experiments.machine.kernels): they change trained numbers too.
KERNELS_COLUMN = "tf_kernels"
#: The pretrained weights of a cell's model, where a runner records them (tfadv.models.imagenet.weights_provenance);
#: a value starting with "NOT " marks weights that are not the official ones.
WEIGHTS_COLUMN = "weights"
#: The data a cell's numbers come from, where a runner records it beyond the profile's dataset name (a local
#: directory named by a hash of its listing: tfadv.datasets.imagenet_v2.source_provenance).
DATA_COLUMN = "data"
#: A cell returns rows of its main table, or {table name: rows} to keep more than one table.
CellOutput = Mapping[str, Any] | Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Mapping[str, Any]]]


class ConfigurationError(ValueError):
    """An output folder, a shard or a cell file belongs to another configuration than this run's."""


def claim_folder(out: str | os.PathLike, configuration: Mapping[str, Any]) -> str:
    """Make `out` the home of `configuration` (writing OUT/config.json), or refuse if it holds another one.

    Returns the configuration's fingerprint.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder; give a folder for the results")
    stored = read_configuration(out)
    if stored is None and (out / CELLS_DIR).is_dir() and any((out / CELLS_DIR).iterdir()):
        raise ConfigurationError(
            f"{out} holds cells but no {CONFIG_FILE}: they were written by an older tfadv and their settings are "
            f"unknown. Use another --out, or delete {out / CELLS_DIR} to recompute them.")
    if stored is not None:
        changed = identity.differences(stored, configuration)
        if changed:
            raise ConfigurationError(
                f"{out} holds results of another configuration, which differs from this run in:\n  - "
                + "\n  - ".join(changed) + _code_note(changed)
                + f"\nMixing them would report numbers that no single configuration produced. Give this run its "
                  f"own folder (--out / OUT=), or delete {out} to recompute everything with these settings.")
    else:
        try:
            atomic.write_text(out / CONFIG_FILE, identity.dumps(configuration) + "\n")
        except OSError as e:
            raise ConfigurationError(f"cannot write results to {out}: {e.strerror or e}") from e
    return identity.fingerprint(configuration)


def _code_note(changed: list[str]) -> str:
    if any(line.startswith("code:") for line in changed):
        return ("\n(code: the engine or this paper's cell code changed since those results were computed, so they "
                "may be stale)")
    return ""


def read_configuration(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"corrupt {path} ({e}); delete the folder to recompute it") from e


class CellStore:
    """The finished cells of one configuration in one output folder."""

    def __init__(self, out: str | os.PathLike, configuration: Mapping[str, Any]):
        self.out = Path(out)
        self.fingerprint = claim_folder(self.out, configuration)
        self.cells_dir = self.out / CELLS_DIR
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigurationError(f"cannot write results to {self.out}: {e.strerror or e}") from e
        atomic.remove_dead_writers_files(self.cells_dir)

    def path(self, key: str) -> Path:
        return self.cells_dir / f"{identity.cell_id(self.fingerprint, key)}.json"

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, coordinates: Mapping[str, Any], output: CellOutput,
              computed_with: Mapping[str, Any] | None = None, timing: Mapping[str, float] | None = None,
              warnings: Iterable[str] = ()) -> None:
        """Store one finished cell atomically. `output` is rows of the main table or {table: rows};
        `computed_with` (e.g. the thread count) becomes columns of the cell's main-table rows; `timing`
        (its wall and CPU seconds) and `warnings` (tfadv's, raised computing it) are kept beside the tables,
        not in them, so that equal results compare equal."""
        tables = _tables(key, output)
        record = {CELL_COLUMN: key, "config": self.fingerprint, "coordinates": dict(coordinates),
                  "tables": tables, "computed_with": _row(key, computed_with or {}), "timing": dict(timing or {}),
                  "warnings": [str(text) for text in warnings]}
        atomic.write_text(self.path(key), json.dumps(record, indent=1, allow_nan=True))

    def read(self, key: str) -> dict[str, pd.DataFrame]:
        found_key, tables = read_cell_file(self.path(key), self.fingerprint)
        if found_key != key:  # unreachable unless two keys share a hash prefix; checked all the same
            raise ConfigurationError(f"{self.path(key)} holds cell {found_key!r}, not {key!r}")
        return tables


def read_cell_file(path: Path, fingerprint: str) -> tuple[str, dict[str, pd.DataFrame]]:
    """(key, {table: rows as a DataFrame}) of a cell file, refusing files that are not what their name says."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        key, config, tables = record[CELL_COLUMN], record["config"], record["tables"]
        coordinates, computed_with = record["coordinates"], record.get("computed_with", {})
        if not all(isinstance(part, dict) for part in (tables, coordinates, computed_with)) or not isinstance(key, str):
            raise ValueError("unexpected structure")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"corrupt cell file {path} ({e}); delete it to recompute that cell") from e
    if config != fingerprint:
        raise ConfigurationError(f"cell file {path} belongs to configuration {config}, not to this folder's "
                                 f"{fingerprint}; it was copied here from another run: delete it")
    if identity.cell_id(fingerprint, key) != path.stem:
        raise ConfigurationError(f"cell file {path} records cell {key!r}, whose file would be named "
                                 f"{identity.cell_id(fingerprint, key)}.json: it was renamed or copied under "
                                 "another cell's name; delete it to recompute that cell")
    frames = {}
    for name, rows in tables.items():
        extra = computed_with if name == MAIN_TABLE else {}
        frame = pd.DataFrame([{**coordinates, **row, **extra} for row in rows])
        frame.insert(0, CELL_COLUMN, key)
        frames[name] = frame
    return key, frames


def merge(out: str | os.PathLike, configuration: Mapping[str, Any], other_folders: Iterable = (),
          write: bool = True) -> dict[str, pd.DataFrame]:
    """Union the cells of `out` and `other_folders` (shard outputs) into one table per name.

    Every folder must hold this configuration (else ConfigurationError naming what differs). A cell in
    several folders is kept once; copies that disagree are an error. Tables are sorted by cell key (rows of
    a cell keep their order), so the same cells give the same tables however they were sharded. With
    `write`, each table is written to OUT/<name>.csv.
    """
    fingerprint = identity.fingerprint(configuration)
    folders = [Path(out), *map(Path, other_folders)]
    cells: dict[str, tuple[Path, dict[str, pd.DataFrame]]] = {}
    for folder in folders:
        if folder != folders[0]:
            _check_shard(folder, configuration)
        for path in _cell_files(folder):
            key, tables = read_cell_file(path, fingerprint)
            if key in cells:
                first_path, first = cells[key]
                if first.keys() != tables.keys() or not all(first[t].equals(tables[t]) for t in first):
                    raise ValueError(f"cell {key!r} has two different results: {first_path} and {path}; "
                                     "delete the wrong one and merge again")
                continue
            cells[key] = (path, tables)
    names = sorted({name for _, tables in cells.values() for name in tables} | {MAIN_TABLE})
    merged = {name: _concat_sorted(tables[name] for _, tables in cells.values() if name in tables)
              for name in names}
    if write:
        for name, table in merged.items():
            atomic.write_csv(table, Path(out) / f"{name}.csv")
    return merged


def cell_times(folders: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Wall and CPU seconds of every finished cell in `folders` that recorded them (one row per cell, sorted
    by key; cells written by an older tfadv have none). CPU seconds are the process's, so they count every
    thread of the cell's process."""
    rows: dict[str, dict] = {}
    for record in _cell_records(folders):
        if record.get("timing") and record[CELL_COLUMN] not in rows:
            rows[record[CELL_COLUMN]] = {CELL_COLUMN: record[CELL_COLUMN], **record["timing"]}
    columns = [CELL_COLUMN, "wall_seconds", "cpu_seconds"]
    return pd.DataFrame([rows[k] for k in sorted(rows)], columns=columns)


def cell_warnings(folders: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The tfadv warnings recorded with the finished cells in `folders`: one row per (cell, warning), sorted
    by cell key, in the order each cell raised them."""
    found: dict[str, list[str]] = {}
    for record in _cell_records(folders):
        found.setdefault(record[CELL_COLUMN], list(record.get("warnings", [])))
    rows = [{CELL_COLUMN: key, "warning": text} for key in sorted(found) for text in found[key]]
    return pd.DataFrame(rows, columns=[CELL_COLUMN, "warning"])


def _cell_records(folders: Iterable[str | os.PathLike]) -> Iterable[dict]:
    """The raw records of the cell files in `folders`, folder by folder, in name order (for what is kept
    beside the tables: read_cell_file checks a record for its tables)."""
    for folder in map(Path, folders):
        for path in _cell_files(folder):
            yield json.loads(path.read_text(encoding="utf-8"))


def _cell_files(folder: Path) -> list[Path]:
    """The cell files of an output folder, in name order (none if it has no cells/ yet)."""
    cells = folder / CELLS_DIR
    return sorted(cells.glob("*.json")) if cells.is_dir() else []


def _check_shard(folder: Path, configuration: Mapping[str, Any]) -> None:
    if not (folder / CELLS_DIR).is_dir():
        raise FileNotFoundError(f"no {CELLS_DIR}/ folder in {folder}: is it a tfadv output folder?")
    stored = read_configuration(folder)
    if stored is None:
        raise ConfigurationError(f"{folder} has no {CONFIG_FILE}: its settings are unknown, so it cannot be merged")
    changed = identity.differences(stored, configuration)
    if changed:
        raise ConfigurationError(f"cannot merge {folder}: its configuration differs from this run's in:\n  - "
                                 + "\n  - ".join(changed)
                                 + "\nMerge only shards run with the same profile, options and seed.")


def _tables(key: str, output: CellOutput) -> dict[str, list[dict]]:
    if isinstance(output, Mapping) and output and all(
            isinstance(v, (list, tuple)) and all(isinstance(r, Mapping) for r in v) for v in output.values()):
        tables = {str(name): list(rows) for name, rows in output.items()}
    elif isinstance(output, Mapping):
        tables = {MAIN_TABLE: [output]}
    else:
        tables = {MAIN_TABLE: list(output)}
    if not tables.get(MAIN_TABLE):
        raise ValueError(f"cell {key!r} produced no rows of {MAIN_TABLE!r}; a finished cell records at least one")
    return {name: [_row(key, row) for row in rows] for name, rows in tables.items()}


def _row(key: str, row: Mapping[str, Any]) -> dict:
    if not isinstance(row, Mapping):
        raise TypeError(f"cell {key!r}: each row must be a dict, got {type(row).__name__}")
    clean = {}
    for name, value in row.items():
        if name == CELL_COLUMN:
            raise ValueError(f"cell {key!r}: a row must not have its own {CELL_COLUMN!r} column")
        if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"cell {key!r}: column {name!r} must hold a scalar (str, int, float, bool, None), "
                            f"got {type(value).__name__}")
        clean[str(name)] = value
    return clean


def _concat_sorted(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({CELL_COLUMN: pd.Series(dtype=str)})
    df = pd.concat(frames, ignore_index=True, sort=False)
    return df.sort_values(CELL_COLUMN, kind="mergesort").reset_index(drop=True)
