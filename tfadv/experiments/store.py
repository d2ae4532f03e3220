"""Crash-safe storage of an experiment grid: one output folder per configuration, one file per finished cell.

    OUT/config.json        the configuration these results belong to (tfadv.experiments.identity)
    OUT/cells/<id>.json    one finished cell: its key, the configuration's fingerprint, its tables' rows
                           and what it was computed with (the thread count)
    OUT/<table>.csv        every finished cell's rows, merged (results.csv, and any extra table a paper keeps)
    OUT/cell_times.csv     each finished cell's wall and CPU seconds (kept out of the tables: they vary run to run)
    OUT/cell_warnings.csv  the tfadv warnings raised while computing each cell (tfadv.validation.TfadvWarning)

A cell file appears only once all of its rows are on disk (tfadv.experiments.atomic), so a run killed at
any moment leaves each cell complete or absent, and a re-run computes only what is missing. A folder holds
one configuration: a run or a merge with another configuration stops and names what differs (a folder that
holds no finished cell and no artifact yet is free: another configuration takes it over). A cell file is
checked against its name and the configuration whenever it is read; it records its configuration's
fingerprint, so config.json can be written again from the cells it vouches for.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

import numpy as np
import pandas as pd

from tfadv.experiments import atomic, identity, locks

CONFIG_FILE = "config.json"
CELLS_DIR = "cells"
#: Files that outlive their cell (a trained model other cells read), named by the runner: tfadv.experiments.run.
ARTIFACTS_DIR = "artifacts"
#: Scratch folders of the cells being computed, and their locks (tfadv.experiments.locks).
WORK_DIR = "work"
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
#: Timing: what a cell measured of the clock rather than of its model, so two honest runs of one cell differ
#: there. A column is timing if its name ends in one of these; in a long table (METRIC_COLUMN names what each
#: row's VALUE_COLUMN holds), so is the value of a row whose metric's name does. They cover the five
#: runners' timing: minibatch's `seconds`; batchsize's `train_cpu_seconds`, `eval_cpu_seconds`, `cpu_seconds`;
#: freefast's `avg_epoch_seconds`, `cell_cpu_seconds`, `aa_cpu_seconds`, `masking_cpu_seconds`,
#: `train_minutes`, `train_cpu_minutes` and its curves' `epoch_seconds`, `epoch_cpu_seconds`; efficient's
#: metrics `cpu_seconds`, `wall_seconds`, `steady_seconds`, `steps_per_second` and `trainer_wait_fraction`
#: (the share of the trainer's wall time spent waiting); batchnorm records none. No other column or metric of
#: theirs ends so (every table of their smoke runs checked).
TIMING_SUFFIXES = ("seconds", "minutes", "per_second", "wait_fraction")
METRIC_COLUMN, VALUE_COLUMN = "metric", "value"
#: A cell returns rows of its main table, or {table name: rows} to keep more than one table.
CellOutput = Mapping[str, Any] | Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Mapping[str, Any]]]


class ConfigurationError(ValueError):
    """An output folder, a shard or a cell file belongs to another configuration than this run's."""


class CellConflictError(ConfigurationError):
    """Two folders hold copies of one cell whose results (timing aside) differ."""


def is_timing(name: Any) -> bool:
    """Is a column (or a long row's metric) of this name timing (TIMING_SUFFIXES)?"""
    return isinstance(name, str) and name.endswith(TIMING_SUFFIXES)


def claim_folder(out: str | os.PathLike, configuration: Mapping[str, Any]) -> list[str]:
    """Make `out` the home of `configuration` (writing OUT/config.json), or refuse if it holds another one.

    A folder of another configuration that holds no finished cell and no artifact (a run that failed
    before finishing any) is taken over. Returns what that replaced configuration differed in (empty when
    nothing was replaced).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder; give a folder for the results")
    stored = read_configuration(out)
    if stored is None:
        _check_cells_vouch_for(out, identity.fingerprint(configuration))
        _write_configuration(out, configuration)
        return []
    changed = identity.differences(stored, configuration)
    if not changed:
        return []
    refusal = _another_configuration(out, stored, configuration, changed)
    computing = locks.held_in(out / WORK_DIR)
    if computing:
        raise ConfigurationError(f"{refusal}\nA process is computing {len(computing)} cell(s) of that "
                                 f"configuration there now (lock files in {out / WORK_DIR}, naming its process id).")
    if (out / CELLS_DIR).is_dir():
        atomic.remove_dead_writers_files(out / CELLS_DIR)  # a killed writer's leftover is no cell
    if _holds_cells(out):
        raise ConfigurationError(refusal)
    artifacts = _files_under(out / ARTIFACTS_DIR)
    if artifacts:
        # Artifacts are named by the runner, not by configuration (e.g. a model trained once per folder):
        # another configuration would read them as its own.
        raise ConfigurationError(
            f"{refusal}\n{out} holds no finished cell, but {len(artifacts)} artifact file(s) of that configuration "
            f"(e.g. {artifacts[0]}), which a run of this one would read as its own: delete {out / ARTIFACTS_DIR} "
            "to let this run take the folder over, or choose another --out.")
    _write_configuration(out, configuration)
    return changed


def _another_configuration(out: Path, stored: Mapping[str, Any], configuration: Mapping[str, Any],
                           changed: list[str]) -> str:
    """Why `out` (holding `stored`) is not this run's folder: another paper, another profile, or the settings
    that differ."""
    theirs, ours = stored.get("experiment"), configuration.get("experiment")
    if theirs != ours:
        return (f"{out} holds {theirs} results ({CONFIG_FILE}'s experiment), not {ours} results: choose another "
                f"--out for {ours} (its default is results/{ours}/<profile>)")
    if stored.get("profile") != configuration.get("profile"):
        return (f"{out} holds results of another configuration, of the {stored.get('profile')} profile "
                f"({CONFIG_FILE}'s profile), not of {configuration.get('profile')}: choose another --out (the "
                f"default is results/{ours}/{configuration.get('profile')})")
    return (f"{out} holds results of another configuration, which differs from this run in:\n  - "
            + "\n  - ".join(changed) + _code_note(changed)
            + f"\nMixing them would report numbers that no single configuration produced. Give this run its "
              f"own folder (--out / OUT=), or delete {out} to recompute everything with these settings.")


def _check_cells_vouch_for(out: Path, fingerprint: str) -> None:
    """A folder without config.json may be taken only if every cell in it is this configuration's (each
    cell file records its configuration's fingerprint); artifacts need such cells to vouch for them."""
    foreign = []
    for path in _cell_files(out):
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("config")
        except (ValueError, UnicodeDecodeError, AttributeError):
            recorded = None
        if recorded != fingerprint:
            foreign.append(path)
    if foreign:
        raise ConfigurationError(
            f"{out} has no {CONFIG_FILE} and holds cells of another configuration, or of an unknown one (e.g. "
            f"{foreign[0]}): use another --out, or delete {out / CELLS_DIR} to recompute them with these settings.")
    artifacts = _files_under(out / ARTIFACTS_DIR)
    if artifacts and not _cell_files(out):
        raise ConfigurationError(
            f"{out} has no {CONFIG_FILE} and no finished cell, but {len(artifacts)} artifact file(s) of an unknown "
            f"configuration (e.g. {artifacts[0]}): use another --out, or delete {out / ARTIFACTS_DIR}.")


def _write_configuration(out: Path, configuration: Mapping[str, Any]) -> None:
    try:
        atomic.write_text(out / CONFIG_FILE, identity.dumps(configuration) + "\n")
    except OSError as e:
        raise ConfigurationError(f"cannot write results to {out}: {e.strerror or e}") from e


def _holds_cells(out: Path) -> bool:
    """Does `out` hold a finished cell, or one being written by a live process (its temporary file)?"""
    cells = out / CELLS_DIR
    return cells.is_dir() and any(cells.iterdir())


def _files_under(folder: Path) -> list[Path]:
    """The files (not folders) under `folder`, sorted; none if it does not exist."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _code_note(changed: list[str]) -> str:
    if any(line.startswith(("code:", "code.")) for line in changed):
        return ("\n(code: the engine or this paper's cell code changed since those results were computed, so they "
                "may be stale)")
    return ""


def read_configuration(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError(f"a JSON object was expected, not {type(stored).__name__}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigurationError(
            f"corrupt {path} ({e}). Every cell file records its configuration's fingerprint, so delete {path} "
            "only: a run of the same configuration writes it again and keeps the folder's finished cells (cells "
            "of another configuration are never mixed in).") from e
    return stored


class CellStore:
    """The finished cells of one configuration in one output folder."""

    def __init__(self, out: str | os.PathLike, configuration: Mapping[str, Any]):
        self.out = Path(out)
        #: What the configuration this store took the folder over from differed in (empty: none replaced).
        self.replaced = claim_folder(self.out, configuration)
        self.fingerprint = identity.fingerprint(configuration)
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
    record = read_cell_record(path, fingerprint)
    return record[CELL_COLUMN], _frames(record)


def read_cell_record(path: Path, fingerprint: str) -> dict:
    """The record of a cell file (its key, coordinates, tables' rows, ...), refusing files that are not what
    their name says."""
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
    return record


def _frames(record: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """A cell record's tables as DataFrames: its coordinates and (main table) what computed it as columns."""
    frames = {}
    for name, rows in record["tables"].items():
        extra = record.get("computed_with", {}) if name == MAIN_TABLE else {}
        frame = pd.DataFrame([{**record["coordinates"], **row, **extra} for row in rows])
        frame.insert(0, CELL_COLUMN, record[CELL_COLUMN])
        frames[name] = frame
    return frames


def merge(out: str | os.PathLike, configuration: Mapping[str, Any], other_folders: Iterable = (),
          write: bool = True, keys: Collection[str] | None = None) -> dict[str, pd.DataFrame]:
    """Union the cells of `out` and `other_folders` (shard outputs) into one table per name.

    Every folder must hold this configuration (else ConfigurationError naming what differs). With `keys`,
    only those cells' rows (a run's grid); the folders' other cells are still checked. A cell in several
    folders is kept once, the copy of the first folder that holds it (`out` first); copies whose results
    differ beyond their timing are a CellConflictError. Tables are sorted by cell key (rows of a cell keep
    their order), so the same cells give the same tables however they were sharded. With `write`, each
    table is written to OUT/<name>.csv.
    """
    fingerprint = identity.fingerprint(configuration)
    folders = [Path(out), *map(Path, other_folders)]
    cells: dict[str, tuple[Path, dict]] = {}
    for folder in folders:
        if folder != folders[0]:
            check_merge_folder(folder, configuration)
        for path in _cell_files(folder):
            record = read_cell_record(path, fingerprint)
            key = record[CELL_COLUMN]
            if key in cells:
                _check_same_results(key, *cells[key], path, record)
                continue
            cells[key] = (path, record)
    # In key order, so that the columns too (first seen, first placed) do not depend on the sharding.
    kept = [cells[key][1] for key in sorted(cells) if keys is None or key in keys]
    tables = [_frames(record) for record in kept]
    names = sorted({name for frames in tables for name in frames} | {MAIN_TABLE})
    merged = {name: _concat_sorted(frames[name] for frames in tables if name in frames) for name in names}
    if write:
        for name, table in merged.items():
            atomic.write_csv(table, Path(out) / f"{name}.csv")
    return merged


def finished_keys(folders: Iterable[str | os.PathLike]) -> set[str]:
    """The keys of every finished cell in `folders` (of whatever grid)."""
    return {record[CELL_COLUMN] for record in _cell_records(folders)}


#: A conflict names at most this many differing columns.
NAMED_DIFFERENCES = 8


def _check_same_results(key: str, first_path: Path, first: Mapping, path: Path, record: Mapping) -> None:
    """Two copies of one cell are one result when they differ at most in timing (TIMING_SUFFIXES); else
    CellConflictError naming the cell, the columns and the two files. What computed them (threads,
    kernels) is not compared: it says how, not what."""
    differing = result_differences(first["tables"], record["tables"])
    if not differing:
        return
    named = ", ".join(differing[:NAMED_DIFFERENCES]) + (
        f" and {len(differing) - NAMED_DIFFERENCES} more" if len(differing) > NAMED_DIFFERENCES else "")
    raise CellConflictError(
        f"cell {key!r} has two different results, {first_path} and {path}: they differ in {named} (timing may "
        f"differ and is not compared: columns, or long rows' {METRIC_COLUMN}s, ending in "
        f"{', '.join(TIMING_SUFFIXES)}). Delete the copy you do not want (either, if both are honest runs: GPU "
        "kernels and cells whose numbers depend on the clock or on what ran before them in their process are "
        "not bit-reproducible) and merge again.")


def result_differences(first: Mapping[str, list], second: Mapping[str, list]) -> list[str]:
    """Where two copies of a cell's tables ({table: rows}) differ, timing left out: "results.y",
    "results.value (metric=accuracy)", "curves (12 rows there, 10 here)"; empty when they are one result."""
    found: list[str] = []
    for name in sorted(set(first) | set(second)):
        if name not in first or name not in second:
            found.append(f"table {name} (in one copy only)")
        elif len(first[name]) != len(second[name]):
            found.append(f"{name} ({len(first[name])} rows there, {len(second[name])} here)")
        else:
            for a, b in zip(first[name], second[name]):
                found += [where for where in _row_differences(name, a, b) if where not in found]
    return found


def _row_differences(table: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    timing = _timing_fields(a) | _timing_fields(b)
    found = []
    for column in dict.fromkeys([*a, *b]):
        if column not in timing and not _same_value(a.get(column), b.get(column)):
            metric = a.get(METRIC_COLUMN) if column == VALUE_COLUMN and METRIC_COLUMN in a else None
            found.append(f"{table}.{column}" + (f" ({METRIC_COLUMN}={metric})" if metric is not None else ""))
    return found


def _timing_fields(row: Mapping[str, Any]) -> set[str]:
    """The fields of a row that hold timing: timing columns, and a long row's value if its metric is timing."""
    fields = {name for name in row if is_timing(name)}
    if is_timing(row.get(METRIC_COLUMN)):
        fields.add(VALUE_COLUMN)
    return fields


def _same_value(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (a cell file keeps NaN as NaN)."""
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def cell_times(folders: Iterable[str | os.PathLike], keys: Collection[str] | None = None) -> pd.DataFrame:
    """Wall and CPU seconds of every finished cell in `folders` that recorded them (with `keys`, of those
    cells only; one row per cell, sorted by key; cells written by an older tfadv have none). CPU seconds are
    the process's, so they count every thread of the cell's process."""
    rows: dict[str, dict] = {}
    for record in _cell_records(folders, keys):
        if record.get("timing") and record[CELL_COLUMN] not in rows:
            rows[record[CELL_COLUMN]] = {CELL_COLUMN: record[CELL_COLUMN], **record["timing"]}
    columns = [CELL_COLUMN, "wall_seconds", "cpu_seconds"]
    return pd.DataFrame([rows[k] for k in sorted(rows)], columns=columns)


def cell_warnings(folders: Iterable[str | os.PathLike], keys: Collection[str] | None = None) -> pd.DataFrame:
    """The tfadv warnings recorded with the finished cells in `folders` (with `keys`, of those cells only):
    one row per (cell, warning), sorted by cell key, in the order each cell raised them."""
    found: dict[str, list[str]] = {}
    for record in _cell_records(folders, keys):
        found.setdefault(record[CELL_COLUMN], list(record.get("warnings", [])))
    rows = [{CELL_COLUMN: key, "warning": text} for key in sorted(found) for text in found[key]]
    return pd.DataFrame(rows, columns=[CELL_COLUMN, "warning"])


def _cell_records(folders: Iterable[str | os.PathLike], keys: Collection[str] | None = None) -> Iterable[dict]:
    """The raw records of the cell files in `folders` (with `keys`, of those cells only), folder by folder,
    in name order (for what is kept beside the tables: read_cell_record checks a record for its tables)."""
    for folder in map(Path, folders):
        for path in _cell_files(folder):
            record = json.loads(path.read_text(encoding="utf-8"))
            if keys is None or record[CELL_COLUMN] in keys:
                yield record


def _cell_files(folder: Path) -> list[Path]:
    """The cell files of an output folder, in name order (none if it has no cells/ yet); not the temporary
    file of a cell being written (tfadv.experiments.atomic)."""
    cells = folder / CELLS_DIR
    found = sorted(cells.glob("*.json")) if cells.is_dir() else []
    return [path for path in found if not path.name.startswith(atomic.TMP_MARKER)]


def check_merge_folder(folder: Path, configuration: Mapping[str, Any]) -> None:
    """Refuse, naming it, a --merge folder that is not the output folder of a run of `configuration`."""
    if not folder.exists():
        raise ConfigurationError(f"--merge {folder}: no such folder; give the --out folder of a shard of this run")
    if not folder.is_dir():
        raise ConfigurationError(f"--merge {folder} is a file, not a folder; give the --out folder of a shard")
    stored = read_configuration(folder)
    if stored is None and not (folder / CELLS_DIR).is_dir():
        raise ConfigurationError(f"--merge {folder} holds no {CONFIG_FILE} and no {CELLS_DIR}/: it is not the output "
                                 "folder of a tfadv run; give the --out folder of a shard")
    if stored is None:
        raise ConfigurationError(f"--merge {folder} has no {CONFIG_FILE}: its settings are unknown, so it cannot be "
                                 "merged")
    if stored.get("experiment") != configuration.get("experiment"):
        raise ConfigurationError(f"--merge {folder} holds {stored.get('experiment')} results ({CONFIG_FILE}'s "
                                 f"experiment), not {configuration.get('experiment')} results: merge only shards "
                                 "of this run")
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
