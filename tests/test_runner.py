"""Runner infrastructure: command line, cell keys, shards, resume after failure or kill -9, progress."""
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfadv.experiments.store import CellStore, merge
from tfadv.experiments.runner import build_parser, cell_key, parse_shard, progress, run_cells, run_grid, select_shard

REPO = Path(__file__).resolve().parents[1]
GRID = [{"model": m, "batch": b, "eps": e} for m in ("cnn", "mlp") for b in (1, 4, 16) for e in (0.5, 8.0)]


def run_one(cell):
    """Two rows per cell, with values that depend on the cell (floats exercise the CSV round trip)."""
    return [{"run": r, "success": (cell["batch"] * cell["eps"] + r) / 7.0} for r in range(2)]


class Counter:
    def __init__(self, fn=run_one):
        self.fn, self.calls = fn, []

    def __call__(self, cell):
        self.calls.append(cell_key(cell))
        return self.fn(cell)


def test_cell_key_is_readable_and_order_independent():
    assert cell_key({"norm": "inf", "batch": 8}) == "batch=8,norm=inf"
    assert cell_key({"batch": 8, "norm": "inf"}) == cell_key({"norm": "inf", "batch": 8})
    assert cell_key({"batch": np.int64(8), "fp16": np.bool_(True)}) == "batch=8,fp16=True"
    assert cell_key({"eps": 0.1}) != cell_key({"eps": 0.2})


@pytest.mark.parametrize("cell, error", [({}, ValueError), ({"a": [1, 2]}, TypeError),
                                         ({"a": "x,y"}, ValueError), ({"a=b": 1}, ValueError)])
def test_cell_key_rejects_bad_cells(cell, error):
    with pytest.raises(error):
        cell_key(cell)


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("2/3", (2, 3)), (" 1/4 ", (1, 4)), (None, None)])
def test_parse_shard_accepts(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, message", [("3/3", "0 <= i < 3"), ("-1/3", "i/n with integers"),
                                           ("1/0", "at least 1"), ("a/b", "i/n with integers"),
                                           ("1", "i/n with integers"), ("1/2/3", "i/n with integers")])
def test_bad_shard_strings_raise_clear_errors(text, message, capsys):
    with pytest.raises(ValueError, match=message):
        parse_shard(text)
    with pytest.raises(SystemExit) as exit_info:
        build_parser("demo", "d").parse_args(["--shard", text])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err


def test_parser_defaults_merge_dirs_and_help_for_every_option(monkeypatch):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    parser = build_parser("minibatch", "Mini-batch attacks.")
    args = parser.parse_args([])
    assert (args.profile, args.out, args.shard, args.merge, args.merge_dirs, args.progress, args.seed) == (
        "paper", os.path.join("results", "minibatch"), None, False, [], True, 0)
    assert args.data_dir == os.path.join("data", "tfds")
    args = parser.parse_args(["--profile", "smoke", "--shard", "1/4", "--merge", "x", "y", "--no-progress"])
    assert (args.profile, args.shard, args.merge, args.merge_dirs, args.progress) == ("smoke", (1, 4), True,
                                                                                     ["x", "y"], False)
    assert parser.parse_args(["--merge"]).merge is True
    monkeypatch.setenv("TFDS_DATA_DIR", "/datasets")
    assert build_parser("k", "d").parse_args([]).data_dir == "/datasets"
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "huge"])
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"option {action.option_strings} has no help text"
        for option in action.option_strings:
            assert option in text


def test_select_shard_partitions_the_grid():
    shards = [select_shard(GRID, (i, 5)) for i in range(5)]
    keys = [cell_key(c) for shard in shards for c in shard]
    assert sorted(keys) == sorted(cell_key(c) for c in GRID)  # union is the grid, nothing twice
    assert select_shard(GRID, "1/5") == shards[1] == GRID[1::5]
    assert select_shard(GRID, None) == GRID
    with pytest.raises(ValueError):
        select_shard(GRID, (5, 5))


def test_run_cells_resumes_without_recomputing_finished_cells(tmp_path):
    first = Counter()
    run_cells(GRID[:5], first, CellStore(tmp_path), progress=False)
    assert len(first.calls) == 5
    second = Counter()
    table = run_cells(GRID, second, CellStore(tmp_path), progress=False)
    assert second.calls == [cell_key(c) for c in GRID[5:]]
    assert len(table) == 2 * len(GRID)
    assert set(table["cell"]) == {cell_key(c) for c in GRID}
    # The cell's parameters become columns of each row.
    assert {"model", "batch", "eps", "run", "success"} <= set(table.columns)
    third = Counter()
    run_cells(GRID, third, CellStore(tmp_path), progress=False)
    assert third.calls == []


def test_failing_cell_writes_nothing_and_is_rerun(tmp_path):
    def flaky(cell):
        if cell["batch"] == 4:
            raise RuntimeError("boom")
        return run_one(cell)

    store = CellStore(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        run_cells(GRID, flaky, store, progress=False)
    assert not store.done(cell_key(GRID[2]))
    assert store.done(cell_key(GRID[0]))
    counter = Counter()
    run_cells(GRID, counter, store, progress=False)
    assert cell_key(GRID[2]) in counter.calls and cell_key(GRID[0]) not in counter.calls


def test_duplicate_cells_in_grid_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="more than once"):
        run_cells([GRID[0], dict(reversed(list(GRID[0].items())))], run_one, CellStore(tmp_path), progress=False)


def test_shards_then_merge_equal_one_unsharded_run(tmp_path):
    run_cells(GRID, run_one, CellStore(tmp_path / "all"), progress=False)
    whole = merge(tmp_path / "all")
    shard_dirs = [tmp_path / f"shard{i}" for i in range(3)]
    for i, d in enumerate(shard_dirs):
        run_cells(select_shard(GRID, f"{i}/3"), run_one, CellStore(d), progress=False)
    merged = merge(tmp_path / "merged", *shard_dirs)
    pd.testing.assert_frame_equal(merged, whole)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "merged" / "results.csv"), whole)
    # Shards sharing one output directory give the same table too.
    for i in range(3):
        run_cells(select_shard(GRID, (i, 3)), run_one, CellStore(tmp_path / "shared"), progress=False)
    pd.testing.assert_frame_equal(merge(tmp_path / "shared"), whole)


def test_run_grid_runs_shard_then_merges_and_warns_about_missing_cells(tmp_path, capsys):
    parser = build_parser("demo", "d")
    out = str(tmp_path / "out")
    table = run_grid(parser.parse_args(["--out", out, "--shard", "0/2", "--no-progress"]), GRID, run_one)
    assert set(table["cell"]) == {cell_key(c) for c in GRID[0::2]}
    assert "not finished yet" in capsys.readouterr().err
    counter = Counter()
    run_grid(parser.parse_args(["--out", out, "--merge", "--no-progress"]), GRID, counter)
    assert counter.calls == []  # --merge runs nothing
    assert "6 of 12 cells are not finished" in capsys.readouterr().err
    table = run_grid(parser.parse_args(["--out", out, "--shard", "1/2", "--no-progress"]), GRID, run_one)
    assert len(table) == 2 * len(GRID) and "not finished" not in capsys.readouterr().err


_KILLED_RUN = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.test_runner import GRID, run_one
from tfadv.experiments.store import CellStore
from tfadv.experiments.runner import run_cells

def slow(cell):
    if cell == GRID[3]:
        time.sleep(600)  # stands in for a long computation; the test kills the process here
    return run_one(cell)

run_cells(GRID, slow, CellStore({out!r}), progress=False)
"""


def test_kill_9_mid_run_then_rerun_gives_the_same_table(tmp_path):
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN.format(repo=str(REPO), out=str(out))))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "cells").glob("*.json"))) < 3:
            assert proc.poll() is None, "the child run exited before it was killed"
            assert time.monotonic() < deadline, "the child run wrote no cells within 60 s"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    counter = Counter()
    run_cells(GRID, counter, CellStore(out), progress=False)
    assert counter.calls == [cell_key(c) for c in GRID[3:]]
    run_cells(GRID, run_one, CellStore(tmp_path / "clean"), progress=False)
    pd.testing.assert_frame_equal(merge(out), merge(tmp_path / "clean"))


def test_progress_reports_counts_and_eta():
    stream = io.StringIO()
    items = list(progress(range(4), desc="cells", stream=stream, interval=0.0))
    assert items == [0, 1, 2, 3]
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("cells: [") and "0/4" in lines[0]
    assert "ETA" in lines[2] and "2/4" in lines[2]
    assert "4/4" in lines[-1] and "ETA" not in lines[-1]
    stream = io.StringIO()
    assert list(progress(iter("ab"), stream=stream, enabled=False)) == ["a", "b"]
    assert stream.getvalue() == ""


def test_report_has_claims_table_sections_and_settings(tmp_path):
    from tfadv.experiments.report import Claim, verdict, write_report

    claims = [Claim("sum loss removes the drop", "94.5% -> 85.5%", "90.1% -> 89.9%", verdict(True)),
              Claim("fp16 | weaker", "yes", "n/a", verdict(None), note="needs a GPU")]
    path = write_report(tmp_path / "report.md", title="Mini-batch", key="minibatch", profile="demo",
                        claims=claims, sections=[("Mechanism", "Median norms shrink.")],
                        settings={"learning rate": 0.01})
    text = path.read_text()
    lines = text.splitlines()
    header = lines.index("| claim | paper | measured (demo) | verdict | note |")
    assert lines[header + 2] == "| sum loss removes the drop | 94.5% -> 85.5% | 90.1% -> 89.9% | " \
                                "**reproduced** (demo) |  |"
    assert "| fp16 \\| weaker | yes | n/a | **not measured** (demo) | needs a GPU |" in lines
    assert text.index("## Mechanism") < text.index("## Settings tfadv chose")
    assert "| learning rate | 0.01 |" in lines
    assert verdict(False) == "not reproduced" and verdict(False, partly=True) == "partly reproduced"
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("c", "p", "m", "confirmed")


def test_markdown_table_formats_floats_escapes_cells_and_checks_row_width():
    from tfadv.experiments.report import markdown_table

    table = pd.DataFrame({"kappa": [1, 8], "accuracy": [0.123456, np.float32(0.5)], "note": ["a|b", "two\nlines"]})
    assert markdown_table(table.columns, table.itertuples(index=False), float_format="{:.2f}").splitlines() == [
        "| kappa | accuracy | note |", "|---|---|---|", "| 1 | 0.12 | a\\|b |", "| 8 | 0.50 | two<br>lines |"]
    with pytest.raises(ValueError, match="a row has 2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [(1, 2)])


def test_save_figure_writes_png_and_closes_figure(tmp_path):
    import matplotlib.pyplot as plt

    from tfadv.experiments.figures import save_figure, set_style

    set_style()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 4], [0.9, 0.8, 0.7])
    path = save_figure(fig, tmp_path / "figs" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
