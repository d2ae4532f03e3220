"""CellStore and merge: atomic per-cell files, leftovers of killed writers, deduplication, conflicts."""
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfadv.experiments.store import CellStore, atomic_write_text, cell_file_name, merge


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_write_then_load_round_trips_rows_with_cell_column(tmp_path):
    store = CellStore(tmp_path)
    assert not store.done("a=1")
    store.write("a=1", [{"a": 1, "acc": 0.5}, {"a": 1, "acc": 0.25}])
    store.write("a=2", {"a": 2, "acc": 0.75})
    assert store.done("a=1") and store.done("a=2") and not store.done("a=3")
    table = store.load()
    assert list(table.columns) == ["cell", "a", "acc"]
    assert table["cell"].tolist() == ["a=1", "a=1", "a=2"]
    assert table["acc"].tolist() == [0.5, 0.25, 0.75]
    # Only finished cell files remain: no temporary file survives a completed write.
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == sorted([cell_file_name("a=1"),
                                                                             cell_file_name("a=2")])


def test_cell_files_keep_column_types(tmp_path):
    store = CellStore(tmp_path)
    rows = [{"norm": "inf", "batch": np.int64(1), "acc": np.float32(0.1), "fp16": np.bool_(True), "tag": None},
            {"norm": "2", "batch": 128, "acc": float("nan"), "fp16": False, "tag": "x"}]
    written = store.write("k=1", rows)
    table = store.load()
    pd.testing.assert_frame_equal(table, written)
    assert table["norm"].tolist() == ["inf", "2"]  # a CSV round trip would turn these into floats
    assert table["batch"].tolist() == [1, 128] and table["fp16"].tolist() == [True, False]
    assert table["acc"].iloc[0] == pytest.approx(0.1) and np.isnan(table["acc"].iloc[1])
    with pytest.raises(TypeError, match="'acc' must hold a scalar"):
        store.write("k=2", [{"acc": np.zeros(3)}])


def test_write_rejects_empty_cells_and_conflicting_cell_column(tmp_path):
    store = CellStore(tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        store.write("a=1", [])
    with pytest.raises(ValueError, match="own 'cell' column"):
        store.write("a=1", [{"cell": "b=2", "x": 1}])
    assert not store.done("a=1")


def test_leftover_tmp_file_of_killed_writer_is_ignored_and_cleaned(tmp_path):
    store = CellStore(tmp_path)
    store.write("a=1", [{"a": 1, "acc": 0.5}])
    # A writer killed (kill -9) between writing its temporary file and renaming it leaves this behind.
    target = cell_file_name("a=2")
    dead = tmp_path / "cells" / f".{target}~{socket.gethostname()}~{_dead_pid()}.tmp"
    dead.write_text('{"cell": "a=2", "rows": [{"a": 2, "ac')  # truncated mid-row
    live = tmp_path / "cells" / f".{target}~{socket.gethostname()}~{os.getpid()}.tmp"
    live.write_text('{"cell": "a=2"')  # a writer still running (e.g. another shard): not ours to delete

    assert not store.done("a=2")
    assert store.load()["cell"].tolist() == ["a=1"]
    CellStore(tmp_path)  # what a re-run does first
    assert not dead.exists()
    assert live.exists()
    assert merge(tmp_path)["cell"].tolist() == ["a=1"]


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_merge_unions_dedupes_and_writes_table(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    CellStore(a).write("k=1", [{"k": 1, "v": 0.1}])
    CellStore(b).write("k=2", [{"k": 2, "v": 0.2}])
    CellStore(b).write("k=1", [{"k": 1, "v": 0.1}])  # same cell finished twice, identical: kept once
    table = merge(a, b)
    assert table["cell"].tolist() == ["k=1", "k=2"]
    pd.testing.assert_frame_equal(pd.read_csv(a / "results.csv"), table)


def test_merge_raises_naming_a_cell_whose_copies_disagree(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    CellStore(a).write("k=1", [{"k": 1, "v": 0.1}])
    CellStore(b).write("k=1", [{"k": 1, "v": 0.3}])
    with pytest.raises(ValueError, match="k=1.*two different results"):
        merge(a, b)


def test_merge_errors_on_missing_shard_dir_and_corrupt_cell(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cells/ directory"):
        merge(tmp_path / "out", tmp_path / "nowhere")
    store = CellStore(tmp_path / "out")
    store.path("k=1").write_text("")
    with pytest.raises(ValueError, match="corrupt cell file"):
        merge(tmp_path / "out")
