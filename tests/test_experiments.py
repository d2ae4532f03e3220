"""The experiment layer: a result's identity, checked cell files, atomic writes, shards, --jobs, resume."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pandas as pd
import pytest

import toy_experiment
from tfadv.experiments import atomic, cli, grid, identity, jobs, machine, store
from tfadv.experiments import claims as cell_claims
from tfadv.experiments import locks as cell_locks
from tfadv.experiments.cli import main

TESTS = Path(__file__).resolve().parent


def run_toy(*argv):
    return main(toy_experiment.EXPERIMENT, ["--no-progress", "--jobs", "1", *argv])


def test_default_folder_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_toy("--profile", "smoke")
    run_toy("--profile", "demo")
    assert (tmp_path / "results/toy/smoke/report.md").is_file()
    assert (tmp_path / "results/toy/demo/report.md").is_file()
    smoke = pd.read_csv(tmp_path / "results/toy/smoke/results.csv")
    assert set(smoke["points"].dropna()) == {4}


@pytest.mark.parametrize("change, named", [
    (["--profile", "demo"], "profile"),
    (["--seed", "7"], "seed"),
    (["--scale", "2"], "options.scale"),
    (["--threads", "2"], "threads:"),
])
def test_a_folder_of_another_configuration_is_refused_with_the_differences(tmp_path, change, named):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out)
    before = pd.read_csv(Path(out) / "results.csv")
    argv = ["--profile", "smoke", "--out", out, *change]  # argparse keeps the last --profile
    with pytest.raises(SystemExit) as e:
        run_toy(*argv)
    assert named in str(e.value) and "another configuration" in str(e.value)
    pd.testing.assert_frame_equal(pd.read_csv(Path(out) / "results.csv"), before)


def test_a_selection_option_is_not_part_of_the_identity(tmp_path):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out)
    run_toy("--profile", "smoke", "--out", out, "--xs", "1")  # no error: same configuration
    run_toy("--profile", "smoke", "--out", out, "--only", "x=1")


def test_a_cell_file_copied_under_another_cells_name_is_an_error(tmp_path):
    out = tmp_path / "out"
    run_toy("--profile", "smoke", "--out", str(out))
    files = sorted((out / "cells").glob("*.json"))
    shutil.copy(files[0], files[1])
    with pytest.raises(SystemExit, match="renamed or copied under another cell's name"):
        run_toy("--profile", "smoke", "--out", str(out))


def test_a_cell_file_from_another_configuration_is_an_error(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run_toy("--profile", "smoke", "--out", str(first))
    run_toy("--profile", "smoke", "--out", str(second), "--seed", "3")
    foreign = next((second / "cells").glob("*.json"))
    shutil.copy(foreign, first / "cells" / foreign.name)
    with pytest.raises(SystemExit, match="copied here from another run"):
        run_toy("--profile", "smoke", "--out", str(first))


def test_merge_refuses_a_shard_of_another_configuration(tmp_path):
    run_toy("--profile", "smoke", "--out", str(tmp_path / "s0"), "--shard", "0/2")
    run_toy("--profile", "smoke", "--out", str(tmp_path / "s1"), "--shard", "1/2", "--scale", "3")
    with pytest.raises(SystemExit, match="cannot merge") as e:
        run_toy("--profile", "smoke", "--out", str(tmp_path / "s0"), "--merge", str(tmp_path / "s1"))
    assert "options.scale: 3.0 there, 1.0 here" in str(e.value)


def test_shards_merge_into_the_table_of_one_run(tmp_path):
    whole = run_toy("--profile", "demo", "--out", str(tmp_path / "whole"))
    run_toy("--profile", "demo", "--out", str(tmp_path / "s0"), "--shard", "0/2")
    run_toy("--profile", "demo", "--out", str(tmp_path / "s1"), "--shard", "1/2")
    merged = run_toy("--profile", "demo", "--out", str(tmp_path / "s0"), "--merge", str(tmp_path / "s1"))
    # the summary cell waits for points of the other shard: --merge ... --finish computes it (see below)
    assert merged["results"]["kind"].tolist().count("point") == 3
    pd.testing.assert_frame_equal(whole["trace"], merged["trace"])


GRID = [{"model": "a", "kappa": 1, "steps": None}, {"model": "a", "kappa": 4, "steps": 600},
        {"model": "b", "kappa": 4, "steps": 600}, {"model": "transfer", "source": "a", "kappa": 4}]


def needs_of(cell):
    return [c for c in GRID if c.get("model") == cell.get("source") and c["kappa"] == cell["kappa"]]


def test_only_keeps_matching_cells_and_what_they_need_in_grid_order():
    select = lambda *filters: grid.select_only(GRID, list(filters), needs_of)  # noqa: E731
    assert select("model=a") == GRID[:2]
    assert select("kappa=4.0", "model=a,b") == GRID[1:3]  # numbers as numbers; values or'd, filters and'ed
    assert select("steps=none") == GRID[:1]
    assert select("model=transfer") == [GRID[1], GRID[3]]  # the transfer cell brings the training it reads
    assert select() == GRID


@pytest.mark.parametrize("filters,named", [
    (["colour=red"], "no cell has the coordinate 'colour'; the grid's coordinates are kappa, model, source, steps"),
    (["model"], "expected coordinate=value"),
    (["model=a,kappa=4"], "one coordinate per --only"),
    (["model=a,"], "expected coordinate=value"),
    (["model=c"], "no cell of this grid matches"),
    (["model=a", "kappa=2"], "no cell of this grid matches"),
])
def test_only_refuses_what_names_nothing(filters, named):
    with pytest.raises(store.ConfigurationError, match=named):
        grid.select_only(GRID, filters, needs_of)


def test_only_is_a_common_option_of_every_runner_and_says_so_in_the_report(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="toy: --only 'y=1': no cell has the coordinate 'y'"):
        run_toy("--profile", "demo", "--out", str(out), "--only", "y=1")
    tables = run_toy("--profile", "demo", "--out", str(out), "--only", "kind=point", "--only", "x=1,3")
    assert tables["results"]["x"].tolist() == [1, 3]
    assert "--only kind=point --only x=1,3 selected part of the grid" in (out / "report.md").read_text()


@pytest.mark.parametrize("partial,why", [
    (("--shard", "0/2"), "of the grid's 4 cells have finished"),
    (("--only", "x=1,2"), "--only x=1,2 selected part of the grid"),
    (("--xs", "1,2"), "--xs 1,2 selected part of the grid"),
    (("--limit", "2"), "--limit 2 capped"),
], ids=["shard", "only", "fewer-xs", "limit"])
def test_a_partial_run_judges_nothing_final(tmp_path, partial, why):
    """A shard, a selection or a capped run has the rule's answer on fewer cells: y = x grows over x = 1, 2 (or
    1, 3) as over 1, 2, 3, but a rule on fewer cells can come out otherwise, so the verdict is inconclusive and
    says what the cells at hand gave; the whole grid gets the verdict."""
    out = tmp_path / "out"
    run_toy("--profile", "demo", "--out", str(out), *partial)
    text = (out / "report.md").read_text()
    assert "> **Warning.** PARTIAL RUN: " in text and why in text
    assert "**inconclusive** (demo) | partial run (see the warning above); the cells at hand give: reproduced " \
           "(strictly increasing)" in text
    assert "**reproduced**" not in text
    # The whole grid: selections left at the profile's values (the demo's xs, given or not), or widened.
    for name, extra in (("whole", ()), ("given", ("--xs", "1,2,3")), ("wider", ("--xs", "1,2,3,4"))):
        run_toy("--profile", "demo", "--out", str(tmp_path / name), *extra)
        whole = (tmp_path / name / "report.md").read_text()
        assert "**reproduced** (demo) | strictly increasing" in whole and "PARTIAL RUN" not in whole, name


def test_a_cell_that_needs_others_waits_for_them(tmp_path, capsys):
    out = str(tmp_path / "out")
    tables = run_toy("--profile", "demo", "--out", out, "--shard", "1/2")
    assert "summary" not in set(tables["results"]["kind"])
    assert "waits for" in capsys.readouterr().err
    tables = run_toy("--profile", "demo", "--out", out)
    summary = tables["results"].query("kind == 'summary'")["y"].item()
    points = tables["results"].query("kind == 'point'")["y"].sum()
    assert summary == pytest.approx(points)


def test_report_holds_verdicts_settings_and_configuration(tmp_path):
    out = tmp_path / "out"
    run_toy("--profile", "smoke", "--out", str(out))
    text = (out / "report.md").read_text()
    assert "**reproduced** (smoke)" in text
    assert "| scale | 1.0 | tfadv |" in text
    assert identity.fingerprint(json.loads((out / "config.json").read_text())) in text


def test_out_that_is_a_file_is_a_clear_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        run_toy("--profile", "smoke", "--out", str(target))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_that_is_not_writable_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match="cannot write results"):
        run_toy("--profile", "smoke", "--out", str(locked / "out"))


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.weights.h5"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-save")
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_path(target) as tmp:
        assert tmp.name.endswith(".weights.h5")  # Keras and matplotlib read the suffix
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


def test_dead_writers_leftovers_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / f"{atomic.TMP_MARKER}{os.uname().nodename}~999999~x.json"
    live = tmp_path / f"{atomic.TMP_MARKER}{os.uname().nodename}~{os.getpid()}~y.json"
    dead.write_text("{")
    live.write_text("{")
    assert atomic.remove_dead_writers_files(tmp_path) == [dead]
    assert live.exists()


def test_cell_key_is_order_independent_and_rejects_bad_values():
    assert identity.cell_key({"b": 1, "a": "x"}) == identity.cell_key({"a": "x", "b": 1}) == "a=x,b=1"
    with pytest.raises(TypeError):
        identity.cell_key({"a": [1]})
    with pytest.raises(ValueError):
        identity.cell_key({"a": "1,2"})


def test_differences_name_nested_settings():
    assert identity.differences({"p": {"eps": 8, "n": 1}}, {"p": {"eps": 16, "n": 1}}) == ["p.eps: 8 there, 16 here"]


def test_shards_partition_the_grid():
    cells = [{"i": i} for i in range(7)]
    parts = [grid.select_shard(cells, (i, 3)) for i in range(3)]
    assert sorted(c["i"] for part in parts for c in part) == list(range(7))
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            grid.parse_shard(bad)


def _open_toy_run(out):
    args = cli.parser(toy_experiment.EXPERIMENT).parse_args(["--profile", "demo", "--out", str(out)])
    return cli.open_run(toy_experiment.EXPERIMENT, args)


def _recording(run):
    """The run with its cells' computations recorded in the returned list."""
    computed = []

    def run_cell(cell, run):
        computed.append(cell["x"])
        return toy_experiment.run_cell(cell, run)

    run.experiment = dataclasses.replace(run.experiment, run_cell=run_cell)
    return run, computed


def _zombie(pid: int) -> bool:
    """Ended but not yet reaped by its parent (Linux; elsewhere assumed not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.timeout(60)
def test_a_jobs_process_leaves_taken_cells_and_waits_for_those_in_progress(tmp_path):
    """Processes of one --jobs run take cells one at a time: a cell another live process took is its to
    compute, and a cell that needs it waits here until it is finished, rather than being left undone."""
    run, computed = _recording(_open_toy_run(tmp_path / "out"))
    claims = tmp_path / "claims"
    claims.mkdir()
    cells = toy_experiment.grid(run)
    point_2 = next(c for c in cells if c["x"] == 2)
    held = cell_locks.acquire(run.work_root, run.cell_id(point_2))  # "another process", as _take_next does:
    assert cell_claims.take(claims, run.cell_id(point_2))  # the lock, then the claim

    def finish_point_2():
        run.store.write(identity.cell_key(point_2), point_2, toy_experiment.run_cell(point_2, run), {})
        cell_locks.release(held, remove=True)
    other = threading.Timer(2 * cell_claims.POLL_SECONDS, finish_point_2)
    other.start()
    left = grid.run_cells(run, cells, claims=claims)
    other.join()
    assert left == [] and computed == [1, 3, 0]  # the summary (x = 0) ran after x = 2 was finished
    assert all(run.finished(c) for c in cells)
    assert not cell_claims.take(claims, run.cell_id(cells[0]))  # what this process computed, it had taken


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_jobs_process_does_not_wait_for_a_dead_process_cell(tmp_path, capsys, reaped):
    """Not for one its parent has reaped, nor for a zombie (ended, not yet reaped): a --jobs child once
    waited forever for the cell of a sibling that had failed, which the parent had not reaped yet. The
    sibling took x = 2 as _take_next does, lock then claim, and died holding both."""
    run, computed = _recording(_open_toy_run(tmp_path / "out"))
    claims = tmp_path / "claims"
    claims.mkdir()
    cells = toy_experiment.grid(run)
    name = run.cell_id(cells[1])
    lock = cell_locks.lock_path(run.work_root, name)
    lock.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", (  # locks.acquire and claims.take, without importing TensorFlow
        f"import fcntl, os; f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); "
        f"os.close(os.open({str(claims / name)!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY))")])
    if reaped:
        assert dead.wait() == 0
    else:
        while not _zombie(dead.pid):
            time.sleep(0.05)
    assert cell_claims.taken(claims, name) and not cell_locks.held_elsewhere(run.work_root, name)
    left = grid.run_cells(run, cells, claims=claims)
    dead.wait()
    assert computed == [1, 3] and left == [cells[-1]]  # the summary waits for x = 2, which nobody computes
    assert "waits for 1 unfinished cell" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_cell_another_process_is_computing_in_the_folder_is_left_to_it_and_waited_for(tmp_path):
    """Two runs of one command into one folder (or a run beside shards writing there) each computed every
    cell, in the same scratch folders: a cell another process holds is left to it, and a cell that needs
    it waits here until it is finished."""
    run, computed = _recording(_open_toy_run(tmp_path / "out"))
    cells = toy_experiment.grid(run)
    point_2 = next(c for c in cells if c["x"] == 2)
    held = cell_locks.acquire(run.work_root, run.cell_id(point_2))  # "another process": its own open file

    def finish_point_2():
        run.store.write(identity.cell_key(point_2), point_2, toy_experiment.run_cell(point_2, run), {})
        cell_locks.release(held, remove=True)
    other = threading.Timer(2 * cell_claims.POLL_SECONDS, finish_point_2)
    other.start()
    left = grid.run_cells(run, cells)
    other.join()
    assert left == [] and computed == [1, 3, 0]  # x = 2 never computed here; the summary after it
    assert all(run.finished(c) for c in cells) and not list(run.work_root.glob("*.lock"))


@pytest.mark.timeout(60)
def test_a_cell_whose_holder_died_is_computed_here(tmp_path):
    """The lock of a process that ends, kill -9 included, is released: its cell is not left undone."""
    run, computed = _recording(_open_toy_run(tmp_path / "out"))
    cells = toy_experiment.grid(run)
    path = cell_locks.lock_path(run.work_root, run.cell_id(cells[1]))  # x = 2
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, time; f = open({str(path)!r}, 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert cell_locks.held_elsewhere(run.work_root, run.cell_id(cells[1]))
    killer = threading.Timer(2 * cell_claims.POLL_SECONDS, holder.kill)
    killer.start()
    left = grid.run_cells(run, cells)
    killer.join()
    holder.wait()
    assert left == [] and computed == [1, 3, 2, 0]


def test_a_jobs_run_hands_out_the_longest_cells_first(tmp_path):
    """The parent orders the cells by the experiment's cost estimate (toy: x training steps) and every
    process takes them in that order, so no process is left alone with a long cell at the end."""
    run, computed = _recording(_open_toy_run(tmp_path / "out"))
    cells = toy_experiment.grid(run)
    ordered = jobs._longest_first(run, cells)
    assert [c["x"] for c in ordered] == [3, 2, 1, 0]
    claims = tmp_path / "claims"
    claims.mkdir()
    cell_claims.write_order(claims, [run.cell_id(c) for c in ordered])
    assert grid.run_cells(run, cells, claims=claims) == [] and computed == [3, 2, 1, 0]


def test_without_a_cost_estimate_cells_are_handed_out_in_the_grid_order(tmp_path):
    run = _open_toy_run(tmp_path / "out")
    cells = toy_experiment.grid(run)

    def failing(cell, run):
        raise KeyError("no such model")

    for cost in (None, failing):
        run.experiment = dataclasses.replace(run.experiment, cost=cost)
        assert jobs._longest_first(run, cells) == cells


def test_each_cell_records_its_time_beside_its_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_SLEEP", "0.2")
    tables = run_toy("--profile", "smoke", "--out", str(tmp_path))
    times = pd.read_csv(tmp_path / "cell_times.csv")
    assert sorted(times["cell"]) == sorted(tables["results"]["cell"])
    assert (times["wall_seconds"] >= 0.2).all() and (times["cpu_seconds"] >= 0).all()
    assert not any("seconds" in c for c in tables["results"].columns)  # results of equal runs stay equal
    assert f"CPU-minutes in {len(times)} cells" in (tmp_path / "report.md").read_text()


def test_child_argv_drops_what_the_parent_sets():
    argv = ["--profile", "demo", "--jobs", "2", "--out=x", "--shard", "0/2", "--seed", "3", "--threads", "2",
            "--claims", "c"]
    assert jobs.child_argv(argv) == ["--profile", "demo", "--seed", "3"]


def test_threads_that_cannot_apply_are_said_and_the_count_in_effect_recorded(tmp_path, capsys):
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow runs: its pools are fixed
    running = tf.config.threading.get_intra_op_parallelism_threads()
    tables = run_toy("--profile", "smoke", "--out", str(tmp_path), "--threads", str(running + 3))
    assert f"not --threads {running + 3}" in capsys.readouterr().err
    assert set(tables["results"][store.THREADS_COLUMN]) == {running or machine.cpu_count()}


def test_default_job_count_shares_the_cores_by_threads(monkeypatch):
    monkeypatch.setattr(machine, "cpu_count", lambda: 8)
    monkeypatch.setattr(machine, "gpus", lambda: [])
    pending = [{"x": i} for i in range(20)]
    assert jobs.job_count(None, "demo", pending, threads=1) == 8
    assert jobs.job_count(None, "demo", pending, threads=3) == 2
    assert jobs.job_count(None, "demo", pending, threads=0) == 1  # TensorFlow's default uses every core
    assert jobs.job_count(None, "demo", pending[:3], threads=1) == 3
    assert jobs.job_count(5, "demo", pending, threads=0) == 5


def test_the_report_says_when_cells_used_different_thread_counts():
    from tfadv.experiments.cli import threads_fact

    same = pd.DataFrame({store.CELL_COLUMN: ["a", "a", "b"], store.THREADS_COLUMN: [1, 1, 1]})
    assert threads_fact(same) == "1 (every cell)"
    mixed = pd.DataFrame({store.CELL_COLUMN: ["a", "a", "b"], store.THREADS_COLUMN: [1, 1, 2]})
    assert threads_fact(mixed).startswith("MIXED: 1 in 1 cells; 2 in 1 cells.")


def test_cells_record_the_kernels_that_computed_them_and_the_report_warns_when_they_differ(tmp_path):
    import keras
    import tensorflow as tf

    from tfadv.experiments.cli import kernels_fact

    here = machine.kernels()
    assert here.startswith("GPU: " if machine.gpus() else "CPU: ") and ("oneDNN o" in here or machine.gpus())
    assert here.endswith(f"; TensorFlow {tf.__version__}, Keras {keras.__version__}")
    results = run_toy("--profile", "smoke", "--out", str(tmp_path / "out"))["results"]
    assert (results[store.KERNELS_COLUMN] == here).all()
    assert f"devices and kernels per cell | {here} (every cell)" in (tmp_path / "out" / "report.md").read_text()
    other = results.assign(**{store.KERNELS_COLUMN: [here] + ["CPU: another, AVX512F, oneDNN on"] * (len(results) - 1)})
    said = kernels_fact(other)
    assert said.startswith("MIXED: ") and "not bit-comparable" in said
    assert f"CPU: another, AVX512F, oneDNN on in {len(results) - 1} cells" in said and f"{here} in 1 cells" in said


def test_cells_that_ran_onednn_below_avx512_are_warned_about():
    from tfadv.experiments.cli import onednn_fact

    kinds = {"CPU: AMD EPYC, AVX2, oneDNN on; TensorFlow 2.21.0, Keras 3": True,
             "CPU: Intel(R) Xeon(R), 2.2GHz, AVX, oneDNN on; TensorFlow 2.21.0, Keras 3": True,
             "CPU: AMD EPYC, AVX2, oneDNN off; TensorFlow 2.21.0, Keras 3": False,
             "CPU: AMD EPYC, AVX512F, oneDNN on; TensorFlow 2.21.0, Keras 3": False,
             "CPU: Neoverse, vector instructions unknown (aarch64), oneDNN on; TensorFlow 2.21.0, Keras 3": False,
             "GPU: NVIDIA A100 (compute capability 8.0); TensorFlow 2.21.0, Keras 3": False}
    assert {k: machine.onednn_below_avx512(k) for k in kinds} == kinds
    results = pd.DataFrame({store.CELL_COLUMN: [f"c{i}" for i in range(len(kinds))], store.KERNELS_COLUMN: list(kinds)})
    said = onednn_fact(results)
    assert said.startswith("WARNING: 2 of 6 cells ran oneDNN") and "TF_ENABLE_ONEDNN_OPTS=1" in said
    assert onednn_fact(results[~results[store.KERNELS_COLUMN].map(kinds)]) is None
    assert onednn_fact(results.drop(columns=[store.KERNELS_COLUMN])) is None


def test_a_report_of_cells_that_ran_onednn_below_avx512_warns_at_the_top(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "kernels", lambda: "CPU: AMD EPYC, AVX2, oneDNN on; TensorFlow 1")
    run_toy("--profile", "smoke", "--out", str(tmp_path))
    header = (tmp_path / "report.md").read_text().split("## Claims")[0]
    assert "> **Warning.** oneDNN below AVX-512: " in header and "cells ran oneDNN's CPU kernels without AVX-512" in header


@pytest.mark.parametrize("chosen", [pytest.param(None, marks=pytest.mark.slow(seconds=20)),
                                    pytest.param("0", marks=pytest.mark.slow(seconds=20)),
                                    pytest.param("1", marks=pytest.mark.slow(seconds=20))])
def test_a_runner_process_computes_on_the_kernels_tensorflow_or_the_user_chose(chosen):
    """The runners do not turn oneDNN on where TensorFlow leaves it off (on AVX2 its Conv2DBackpropFilter
    corrupted the heap: reproduce/__init__.py); TF_ENABLE_ONEDNN_OPTS still decides."""
    from tensorflow.python.util import _pywrap_util_port

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if chosen is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = chosen
    probe = ("import reproduce.efficient\n"
             "from tensorflow.python.util import _pywrap_util_port\n"
             "print(_pywrap_util_port.IsMklEnabled())")
    done = subprocess.run([sys.executable, "-c", probe], cwd=TESTS.parent, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = {"0": False, "1": True}.get(chosen, _pywrap_util_port.IsMklEnabled())  # this process: TF's own choice
    assert done.stdout.split()[-1] == str(expected)


def test_cells_computed_on_different_kernels_are_warned_about_at_the_top_of_the_report(tmp_path, monkeypatch):
    kinds = iter(["CPU: one; TensorFlow 1", "CPU: another; TensorFlow 1"] * 10)
    monkeypatch.setattr(machine, "kernels", lambda: next(kinds))
    run_toy("--profile", "smoke", "--out", str(tmp_path))
    header = (tmp_path / "report.md").read_text().split("## Claims")[0]
    assert "> **Warning.** devices and kernels per cell: MIXED: CPU: another; TensorFlow 1 in 1 cells; " in header


def test_the_report_says_which_data_the_cells_read_and_warns_when_it_differs():
    from tfadv.experiments.cli import data_fact

    assert data_fact(pd.DataFrame({store.CELL_COLUMN: ["a", "b"], "y": [1, 2]})) is None
    one = pd.DataFrame({store.CELL_COLUMN: ["a", "a", "b", "c"], store.DATA_COLUMN: ["d1", "d1", "d1", None]})
    assert data_fact(one) == "d1 in 2 cells"  # c reads no recorded data
    two = one.assign(**{store.DATA_COLUMN: ["d1", "d1", "d2", None]})
    assert data_fact(two).startswith("MIXED: d1 in 1 cells; d2 in 1 cells. Cells that read different data")


@pytest.mark.parametrize("official", [True, False])
def test_the_report_warns_first_when_cells_used_weights_that_are_not_the_official_files(tmp_path, monkeypatch,
                                                                                      official):
    said = ("official (local file, md5 ab12)" if official else
            "NOT the official weights: resnet50.h5 has md5 cd34, the official file ab12")
    monkeypatch.setenv("TOY_WEIGHTS", said)
    run_toy("--profile", "smoke", "--out", str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert f"| pretrained weights | {'' if official else 'WARNING: 2 of 2 cells'}" in report
    assert f"{said} in 2 cells" in report  # the summary cell records none: it is not counted
    header = report.split("## Claims")[0]
    assert ("**Warning.** pretrained weights: 2 of 2 cells attacked models whose weights are not the "
            "official files" in header) is not official


def test_tfadv_warnings_are_stored_with_their_cell_and_reach_the_report(tmp_path, monkeypatch):
    """Shown as usual, and kept: a warning in the middle of a long log must not be lost to the report."""
    monkeypatch.setenv("TOY_WARN", "1,2")  # one cell of each shard
    with pytest.warns(UserWarning) as shown:
        run_toy("--profile", "demo", "--out", str(tmp_path / "s0"), "--shard", "0/2")
        run_toy("--profile", "demo", "--out", str(tmp_path / "s1"), "--shard", "1/2")
    assert sum("counted robust" in str(w.message) for w in shown) == 4  # twice in each of two cells
    raised = pd.read_csv(tmp_path / "s0/cell_warnings.csv")
    assert raised["warning"].str.contains("of the 10 samples counted robust, 1 have").tolist() == [True]
    monkeypatch.delenv("TOY_WARN")
    run_toy("--profile", "demo", "--out", str(tmp_path / "s0"), "--merge", str(tmp_path / "s1"))  # nothing new
    merged = pd.read_csv(tmp_path / "s0/cell_warnings.csv")
    assert len(merged) == 2 and not merged["warning"].str.contains("not tfadv's").any()
    assert sorted(merged[store.CELL_COLUMN]) == ["kind=point,x=1", "kind=point,x=2"]
    header = (tmp_path / "s0/report.md").read_text().split("## Claims")[0]
    assert ('**Warning.** tfadv warned while computing 2 of the 3 finished cells (all in cell_warnings.csv): '
            '2 cell(s), e.g.' in header)  # one kind: the two texts differ only in their numbers
    assert "robust_accuracy: of the 10 samples counted robust, 1 have" in header


def test_the_warnings_of_a_failing_cell_are_still_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_WARN", "1")
    monkeypatch.setenv("TOY_FAIL_CELL", "1")
    with pytest.warns(UserWarning, match="counted robust"), pytest.raises(RuntimeError, match="fails on purpose"):
        run_toy("--profile", "smoke", "--out", str(tmp_path))


def test_a_report_without_tfadv_warnings_says_none(tmp_path):
    run_toy("--profile", "smoke", "--out", str(tmp_path))
    assert "tfadv warned" not in (tmp_path / "report.md").read_text()
    assert pd.read_csv(tmp_path / "cell_warnings.csv").empty


def _toy_env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **extra}


@pytest.mark.slow(seconds=55)
def test_ctrl_c_says_how_many_cells_are_kept_in_a_sentence_not_a_traceback(tmp_path):
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "toy_experiment", "--profile", "paper", "--no-progress", "--out", str(out)]
    # 5 s per cell: the interrupt lands seconds before the last cell would end, even on a loaded machine (at
    # 1 s the run once finished between the poll that saw its first cell and the signal).
    proc = subprocess.Popen(command, env=_toy_env(TOY_SLEEP="5"), stderr=subprocess.PIPE, text=True)

    def finished():
        return [p for p in (out / "cells").glob("*.json") if not p.name.startswith(atomic.TMP_MARKER)]
    deadline = time.monotonic() + 120
    while not finished():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    said = re.search(r"toy: interrupted: (\d+) of 5 cells are finished and kept; run the same command again", err)
    assert said and int(said[1]) == len(finished()) >= 1
    assert "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_jobs_child_ends_when_its_parent_is_killed_9(tmp_path):
    """Orphans went on computing the cells the rerun handed out again, in the same work folders."""
    pid_file = tmp_path / "child.pid"
    child = (f"from tfadv.experiments import jobs; jobs.end_with_parent(); import os, time; "
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", (
        f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}], "
        f"env={{**os.environ, {jobs.PARENT_VARIABLE!r}: str(os.getpid())}}); time.sleep(120)")], env=_toy_env())
    deadline = time.monotonic() + 120
    while not pid_file.is_file() or not pid_file.read_text():
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    orphan, deadline = int(pid_file.read_text()), time.monotonic() + 30

    def alive():
        try:
            os.kill(orphan, 0)
        except ProcessLookupError:
            return False
        return not _zombie(orphan)
    while alive():
        assert time.monotonic() < deadline, "the child outlived its killed parent by 30 s"
        time.sleep(0.1)


def test_a_figure_the_report_no_longer_draws_is_removed_not_left_beside_it(tmp_path, capsys):
    run_toy("--profile", "smoke", "--out", str(tmp_path))
    (tmp_path / "fig2_success_l2.png").write_bytes(b"an earlier report's figure")
    (tmp_path / "notes.txt").write_text("not a figure: kept")
    run_toy("--profile", "smoke", "--out", str(tmp_path))  # the toy draws no figure
    assert not (tmp_path / "fig2_success_l2.png").exists() and (tmp_path / "notes.txt").exists()
    assert "removed fig2_success_l2.png, an earlier report's figure" in capsys.readouterr().err


@pytest.mark.slow(seconds=45)
def test_kill_9_mid_run_then_rerun_gives_the_same_table(tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "toy_experiment", "--profile", "paper", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(command, env=_toy_env(TOY_SLEEP="1"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "cells").glob("*.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "report.md").exists()
    resumed = run_toy("--profile", "paper", "--out", str(out))
    fresh = run_toy("--profile", "paper", "--out", str(tmp_path / "fresh"))
    # The killed process ran its cells on its own thread count, this test process on TensorFlow's default.
    pd.testing.assert_frame_equal(resumed["results"].drop(columns=store.THREADS_COLUMN),
                                  fresh["results"].drop(columns=store.THREADS_COLUMN))


class _Child:
    """A job process that runs for `polls` polls, then exits 0."""

    def __init__(self, polls: int):
        self.polls, self.returncode = polls, None

    def poll(self):
        self.polls -= 1
        self.returncode = None if self.polls > 0 else 0
        return self.returncode


@pytest.mark.parametrize("terminal", [True, False])
def test_the_jobs_bar_ticks_in_a_terminal_and_updates_a_log_file_once_per_finished_cell(monkeypatch, terminal):
    updates = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, count):
            updates.append(count)

    class Log:
        name = "job.log"

        def close(self):
            pass

    finished_after = {"a": 3, "b": 6}  # polls until each cell's file appears
    polls = {"n": 0}

    class FakeRun:
        show_progress = True

        def finished(self, cell):
            return polls["n"] >= finished_after[cell]

    def count_poll(seconds):
        polls["n"] += 1

    monkeypatch.setattr(jobs.keras.utils, "Progbar", Bar)
    monkeypatch.setattr(jobs.time, "sleep", count_poll)
    monkeypatch.setattr(jobs, "sys", types.SimpleNamespace(stdout=types.SimpleNamespace(isatty=lambda: terminal)))
    jobs._wait(FakeRun(), [(_Child(10), Log())], ["a", "b"])
    if terminal:
        assert len(updates) == 10 and updates[-1] == 2  # 9 polls and the final count
    else:
        assert updates == [0, 1, 2, 2]  # one per change, and the final count


@pytest.mark.slow
def test_jobs_run_shard_processes_into_one_folder(tmp_path):
    out = tmp_path / "parallel"
    done = subprocess.run([sys.executable, "-m", "toy_experiment", "--profile", "paper", "--jobs", "2",
                           "--out", str(out)], env=_toy_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # The parent's log says it ran the cells in 2 processes, not that they were "already finished" (by its children).
    assert "cells in 2 processes" in done.stderr and "already finished" not in done.stderr
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == ["job-0-of-2.log", "job-1-of-2.log"]
    assert not list((out / "work").glob("claims-*"))  # the run's claims go with it
    serial = run_toy("--profile", "paper", "--out", str(tmp_path / "serial"))
    parallel = pd.read_csv(out / "results.csv")
    # Cells record their process's thread count; this test process's TensorFlow already runs with its default.
    assert (parallel[store.THREADS_COLUMN] == jobs.CPU_THREADS_PER_CELL).all()
    pd.testing.assert_frame_equal(parallel.drop(columns=store.THREADS_COLUMN),
                                  pd.read_csv(tmp_path / "serial/results.csv").drop(columns=store.THREADS_COLUMN))
    assert serial["results"].query("kind == 'summary'").shape[0] == 1


@pytest.mark.slow(seconds=95)
def test_a_trained_cell_is_the_same_under_jobs_1_and_jobs_2(tmp_path):
    """On a CPU a trained cell's numbers depend on TensorFlow's thread count, which once followed --jobs
    (2 threads alone, 1 per child of --jobs 2 on 2 cores): batchsize's smoke Hessian eigenvalues moved by 6e-8."""
    tables = {}
    for count in ("1", "2"):
        out = tmp_path / f"jobs-{count}"
        done = subprocess.run([sys.executable, "-m", "reproduce.batchsize", "--profile", "smoke", "--no-progress",
                               "--jobs", count, "--out", str(out)], cwd=TESTS.parent, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        table = pd.read_csv(out / "results.csv")
        tables[count] = table.drop(columns=[c for c in table.columns if c.endswith("seconds")])
    pd.testing.assert_frame_equal(tables["1"], tables["2"], check_exact=True)
    assert (tables["1"][store.THREADS_COLUMN] == jobs.CPU_THREADS_PER_CELL).all()
    assert f"TensorFlow CPU threads per cell | {jobs.CPU_THREADS_PER_CELL} (every cell)" in (
        tmp_path / "jobs-2" / "report.md").read_text()


@pytest.mark.slow
def test_jobs_report_a_failing_child_and_keep_finished_cells(tmp_path):
    out = tmp_path / "failing"
    done = subprocess.run([sys.executable, "-m", "toy_experiment", "--profile", "paper", "--no-progress", "--jobs",
                           "2", "--out", str(out)], env=_toy_env(TOY_FAIL_CELL="2"), capture_output=True, text=True)
    assert done.returncode != 0 and "fails on purpose" in done.stderr and "-of-2.log (exit 1)" in done.stderr
    # The job that took x = 2 stopped there and kept nothing of it; the other took the remaining points
    # (x = 1, 3, 4: whichever job took which) and did not wait for the failed job's cell (the summary needs it).
    assert len(list((out / "cells").glob("*.json"))) == 3


def test_store_refuses_a_cell_without_main_rows(tmp_path):
    cells = store.CellStore(tmp_path, {"a": 1})
    with pytest.raises(ValueError, match="no rows"):
        cells.write("x=1", {"x": 1}, {"results": [], "other": [{"v": 1}]})


def test_limit_is_part_of_the_identity_and_caps_counts(tmp_path):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out, "--limit", "3")
    with pytest.raises(SystemExit, match="limit: 3 there, None here"):
        run_toy("--profile", "smoke", "--out", out)


def test_plan_counts_flops_and_claims_no_folder(tmp_path, capsys):
    out = tmp_path / "never"
    table = run_toy("--profile", "demo", "--out", str(out), "--plan")["plan"]
    # a Dense 4 -> 3 layer: 12 multiplies and 12 adds (the bias add included) per sample
    assert table["forward GFLOPs per sample"].item() == pytest.approx(24e-9, rel=0.5)
    assert table["passes (fwd+bwd)"].item() == 10 * (1 + 2 + 3 + 0)
    assert "GPU-hours" in capsys.readouterr().out
    assert not out.exists()


def test_counting_flops_leaves_tensorflows_log_level_as_it_found_it():
    import logging

    import keras
    import tensorflow as tf

    from tfadv.experiments import plan

    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    before = tf.get_logger().level
    tf.get_logger().setLevel("INFO")
    try:
        assert plan.forward_flops(net) > 0 and tf.get_logger().level == logging.INFO  # not the ERROR set inside
    finally:
        tf.get_logger().setLevel(before)


def test_a_change_of_the_cell_code_makes_stored_results_stale(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out)
    monkeypatch.setattr(identity, "code_hashes", lambda module, cell_modules: "edited")
    with pytest.raises(SystemExit, match="code: .* there, 'edited' here") as e:
        run_toy("--profile", "smoke", "--out", out)
    assert "may be stale" in str(e.value)


def test_code_hashes_cover_what_the_cell_code_imports_and_nothing_the_report_alone_reads(tmp_path, monkeypatch):
    package = tmp_path / "paper_x"
    package.mkdir()
    files = {"__init__.py": "from paper_x import cells, claims\n",
             "cells.py": "from paper_x.training import fit\n\ndef run_cell():\n    from . import numerics\n",
             "training.py": "fit = 1\n", "numerics.py": "N = 1\n",
             "claims.py": "from paper_x import readings\n", "readings.py": "R = 1\n", "plan.py": "P = 1\n"}
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = identity.code_hashes("paper_x", ["paper_x.cells"])
    for name in ("claims.py", "readings.py", "plan.py"):  # report-only, or --plan's: results stay valid
        (package / name).write_text(files[name] + "# edited\n")
        assert identity.code_hashes("paper_x", ["paper_x.cells"]) == first, name
    for name in ("cells.py", "training.py", "numerics.py", "__init__.py"):  # cell code, found through imports
        (package / name).write_text(files[name] + "# edited\n")
        edited = identity.code_hashes("paper_x", ["paper_x.cells"])
        changed = identity.differences({"code": first}, {"code": edited})
        assert len(changed) == 1 and changed[0].startswith(f"code.paper_x/{name}: "), changed  # the file is named
        (package / name).write_text(files[name])
    # Cell code in the __init__ itself cannot be told apart from the report's imports: the whole package counts.
    whole = identity.code_hashes("paper_x", ["paper_x", "paper_x.cells"])
    (package / "plan.py").write_text("P = 2\n")
    assert identity.code_hashes("paper_x", ["paper_x", "paper_x.cells"]) != whole
    with pytest.raises(ValueError, match="no cell code of 'paper_x'"):
        identity.code_hashes("paper_x", ["elsewhere.cells"])


@pytest.mark.parametrize("key", ["minibatch", "freefast", "efficient", "batchsize", "batchnorm"])
def test_each_runners_cell_code_leaves_its_report_modules_out(key):
    """What the cell code imports is its identity; the modules that only shape the report are not."""
    import importlib

    package = importlib.import_module(f"reproduce.{key}")
    folder = Path(package.__file__).parent
    hashed = {p.name for p in identity.cell_code_files(f"reproduce.{key}", folder,
                                                        package.EXPERIMENT.cell_code_modules())}
    assert {"__init__.py", "cells.py", "profiles.py"} <= hashed
    assert not hashed & {"claims.py", "figures.py", "sections.py", "__main__.py"}, sorted(hashed)


def test_an_option_given_at_its_profile_value_is_the_same_configuration(tmp_path):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out)
    run_toy("--profile", "smoke", "--out", out, "--noise", "0.01")  # the profile's own value: no error
    with pytest.raises(SystemExit, match="options.noise: 0.01 there, 0.5 here"):
        run_toy("--profile", "smoke", "--out", out, "--noise", "0.5")


# ------------------------------------------------------------------------ merging copies of a cell
def _cell_file(out: Path, x: int) -> Path:
    """The cell file of the toy's point x in `out`."""
    for path in (out / "cells").glob("*.json"):
        if json.loads(path.read_text())["cell"] == f"kind=point,x={x}":
            return path
    raise AssertionError(f"no cell x={x} in {out}")


@pytest.mark.parametrize("name", ["seconds", "train_cpu_seconds", "eval_cpu_seconds", "cpu_seconds",
                                  "avg_epoch_seconds", "aa_cpu_seconds", "epoch_cpu_seconds", "train_minutes",
                                  "train_cpu_minutes", "wall_seconds", "steady_seconds", "steps_per_second",
                                  "trainer_wait_fraction"])
def test_the_runners_timing_columns_are_timing(name):
    assert store.is_timing(name)


@pytest.mark.parametrize("name", ["y", "test_accuracy", "pgd_accuracy", "epochs", "steps", "batch_size",
                                  "staleness_mean", "refused_batches", "lambda1", "value", "metric", "train_loss",
                                  store.THREADS_COLUMN, store.KERNELS_COLUMN])
def test_other_columns_are_not_timing(name):
    assert not store.is_timing(name)


def test_two_copies_of_a_cell_that_differ_only_in_timing_merge_keeping_the_out_folders(tmp_path, monkeypatch):
    """A whole run and a shard of the same configuration both computed x = 2: its timing differs (a column,
    and a long row whose metric is timing), its numbers do not, so it is one honest cell twice."""
    monkeypatch.setenv("TOY_TIMED", "1")
    whole = run_toy("--profile", "smoke", "--out", str(tmp_path / "a"))
    shard = run_toy("--profile", "smoke", "--out", str(tmp_path / "b"), "--shard", "1/2")
    mine = lambda tables: tables["results"].query("x == 2")["train_seconds"].item()  # noqa: E731
    assert mine(whole) != mine(shard)
    merged = run_toy("--profile", "smoke", "--out", str(tmp_path / "a"), "--merge", str(tmp_path / "b"))
    for name in ("results", "trace"):
        pd.testing.assert_frame_equal(merged[name], whole[name])
    merged = run_toy("--profile", "smoke", "--out", str(tmp_path / "b"), "--merge", str(tmp_path / "a"))
    assert mine(merged) == mine(shard)  # the --out folder's copy, whichever folder that is


def test_copies_of_a_cell_that_differ_in_a_result_are_a_clear_error_naming_cell_columns_and_files(tmp_path,
                                                                                                    monkeypatch):
    monkeypatch.setenv("TOY_TIMED", "1")
    run_toy("--profile", "smoke", "--out", str(tmp_path / "a"))
    run_toy("--profile", "smoke", "--out", str(tmp_path / "b"), "--shard", "1/2")
    edited = _cell_file(tmp_path / "b", 2)
    record = json.loads(edited.read_text())
    record["tables"]["results"][0]["y"] += 1
    edited.write_text(json.dumps(record))
    with pytest.raises(SystemExit) as e:
        run_toy("--profile", "smoke", "--out", str(tmp_path / "a"), "--merge", str(tmp_path / "b"))
    said = str(e.value)
    assert "cell 'kind=point,x=2'" in said and "results.y" in said
    assert str(_cell_file(tmp_path / "a", 2)) in said and str(edited) in said
    assert "train_seconds" not in said and "wall_seconds" not in said  # timing is not a difference


# ------------------------------------------------------------------------ the report covers its grid
def test_the_tables_and_the_report_cover_exactly_this_runs_grid(tmp_path):
    """A folder may hold more cells than this run's grid (an earlier run with more --xs): its tables,
    verdicts and facts are this grid's, and the report says the others are kept aside."""
    out = tmp_path / "out"
    run_toy("--profile", "demo", "--out", str(out), "--xs", "1,2,3,4")
    tables = run_toy("--profile", "demo", "--out", str(out))
    assert tables["results"].query("kind == 'point'")["x"].tolist() == [1, 2, 3]
    assert pd.read_csv(out / "results.csv").query("kind == 'point'")["x"].tolist() == [1, 2, 3]
    assert len(pd.read_csv(out / "cell_times.csv")) == 4
    text = (out / "report.md").read_text()
    verdict = next(line for line in text.splitlines() if line.startswith("| y grows with x"))
    assert "| cells finished | 4 of 4 |" in text and verdict.count("→") == 2  # over x = 1, 2, 3
    assert "1 finished cell(s) of this configuration outside this run's grid" in text


def test_only_chooses_what_runs_not_what_the_report_covers(tmp_path):
    """Selections add up in one folder, as shards do: the report covers the finished cells of the run's grid
    (its profile and options), says which are missing, and is whole once they are all there."""
    out = tmp_path / "out"
    run_toy("--profile", "demo", "--out", str(out), "--only", "x=1")
    tables = run_toy("--profile", "demo", "--out", str(out), "--only", "x=2,3")
    assert tables["results"]["x"].tolist() == [1, 2, 3]
    text = (out / "report.md").read_text()
    assert "| cells finished | 3 of 4 (" in text and "--only x=2,3 selected part of the grid" in text
    run_toy("--profile", "demo", "--out", str(out), "--only", "kind=summary")  # with the points it reads
    text = (out / "report.md").read_text()
    assert "| cells finished | 4 of 4 |" in text and "PARTIAL RUN" not in text


# ------------------------------------------------------------------------ folder messages
def test_a_folder_of_another_experiment_is_named_as_such(tmp_path):
    out = str(tmp_path / "out")
    run_toy("--profile", "smoke", "--out", out)
    other = dataclasses.replace(toy_experiment.EXPERIMENT, key="other")
    with pytest.raises(SystemExit) as e:
        main(other, ["--no-progress", "--profile", "smoke", "--out", out])
    said = str(e.value)
    assert f"{out} holds toy results ({store.CONFIG_FILE}'s experiment)" in said and "choose another --out" in said
    assert "delete" not in said and "profile_settings" not in said and "stale" not in said


def test_a_corrupt_config_is_deleted_alone_and_the_cells_are_reused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_toy("--profile", "smoke", "--out", str(out))
    config = out / store.CONFIG_FILE
    config.write_text(config.read_text()[:40])  # truncated
    with pytest.raises(SystemExit) as e:
        run_toy("--profile", "smoke", "--out", str(out))
    assert f"delete {config} only" in str(e.value) and "delete the folder" not in str(e.value)
    config.unlink()
    monkeypatch.setenv("TOY_FAIL_CELL", "1")  # x = 1 would fail if it were computed again
    run_toy("--profile", "smoke", "--out", str(out))
    assert config.is_file() and "| cells finished | 3 of 3 |" in (out / "report.md").read_text()
    config.unlink()
    with pytest.raises(SystemExit, match="cells of another configuration"):
        run_toy("--profile", "smoke", "--out", str(out), "--seed", "4")


# ------------------------------------------------------------------------ clear errors
@pytest.mark.parametrize("kind", ["missing", "file", "not-an-output"])
def test_merge_of_a_folder_that_is_not_a_shard_names_it(tmp_path, kind):
    target = tmp_path / kind
    if kind == "file":
        target.write_text("x")
    elif kind == "not-an-output":
        target.mkdir()
    with pytest.raises(SystemExit) as e:
        run_toy("--profile", "smoke", "--out", str(tmp_path / "out"), "--merge", str(target))
    assert f"--merge {target}" in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before the folder was claimed


def test_a_negative_seed_is_refused_when_parsed(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_toy("--profile", "smoke", "--out", str(tmp_path / "out"), "--seed", "-1")
    assert "--seed: expected a whole number >= 0, got '-1'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_finished_cells_is_reclaimed_by_another_configuration(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("TOY_FAIL_CELL", "1")  # the first cell fails: nothing finishes
    with pytest.raises(RuntimeError):
        run_toy("--profile", "smoke", "--out", str(out), "--seed", "5")
    monkeypatch.delenv("TOY_FAIL_CELL")
    run_toy("--profile", "smoke", "--out", str(out))
    assert f"{out} held another configuration (seed: 5 there, 0 here) but no finished cell" in capsys.readouterr().err
    assert json.loads((out / store.CONFIG_FILE).read_text())["seed"] == 0
    with pytest.raises(SystemExit, match="another configuration"):  # now it holds finished cells: refused
        run_toy("--profile", "smoke", "--out", str(out), "--seed", "5")


def test_a_folder_whose_first_cell_is_being_computed_is_not_reclaimed(tmp_path):
    """Not while a process of its configuration is computing there, though nothing is finished yet."""
    out = tmp_path / "out"
    run = _open_toy_run(out)
    held = cell_locks.acquire(run.work_root, run.cell_id(toy_experiment.grid(run)[0]))
    with pytest.raises(SystemExit, match="(?s)seed: 0 there, 5 here.*A process is computing 1 cell"):
        run_toy("--profile", "demo", "--out", str(out), "--seed", "5")
    cell_locks.release(held)
    run_toy("--profile", "demo", "--out", str(out), "--seed", "5")  # its process ended: the folder is free
    assert json.loads((out / store.CONFIG_FILE).read_text())["seed"] == 5


def test_a_folder_with_artifacts_but_no_finished_cells_is_not_reclaimed(tmp_path):
    """Artifacts are not named by configuration (a runner's trained model): another one must not read them."""
    out = tmp_path / "out"
    run_toy("--profile", "smoke", "--out", str(out), "--seed", "5")
    for path in (out / "cells").glob("*.json"):
        path.unlink()
    with pytest.raises(SystemExit) as e:
        run_toy("--profile", "smoke", "--out", str(out))
    assert "artifacts" in str(e.value) and "seed: 5 there, 0 here" in str(e.value)


def test_an_empty_shard_is_an_error_that_names_the_grid_size(tmp_path):
    with pytest.raises(SystemExit) as e:
        run_toy("--profile", "smoke", "--out", str(tmp_path / "out"), "--shard", "7/10")
    assert "shard 7/10 is empty: the grid has 3 cells" in str(e.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ cells that wait for other shards
def test_merge_says_how_to_finish_the_cells_that_wait_for_other_shards_and_that_command_does(tmp_path, capsys):
    """The summary reads every point's artifact; in separate shard folders no shard has them all. --merge
    says so and gives the command that computes it, reading the other folder's cells and artifacts."""
    whole = run_toy("--profile", "demo", "--out", str(tmp_path / "whole"))
    for i in (0, 1):
        run_toy("--profile", "demo", "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2")
    waiting = capsys.readouterr().err
    assert "cell kind=summary,x=0 waits for 2 unfinished cell(s)" in waiting and "--finish" in waiting
    merge = ["--no-progress", "--jobs", "1", "--profile", "demo", "--out", str(tmp_path / "s0"), "--merge",
             str(tmp_path / "s1")]
    main(toy_experiment.EXPERIMENT, merge)
    command = f"python -m toy_experiment {' '.join(merge)} --finish"
    assert command in capsys.readouterr().err
    report = (tmp_path / "s0" / "report.md").read_text()
    assert "1 of the 4 cells of this run is finished in no folder" in report and command in report
    finished = main(toy_experiment.EXPERIMENT, [*merge, "--finish"])
    pd.testing.assert_frame_equal(finished["results"], whole["results"])
    assert "PARTIAL RUN" not in (tmp_path / "s0" / "report.md").read_text()


def test_finish_without_merge_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--finish"):
        run_toy("--profile", "smoke", "--out", str(tmp_path / "out"), "--finish")
