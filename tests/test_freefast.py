"""The freefast runner: its grid, its evaluation protocol, its claims, and a smoke run end to end."""
import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce import freefast
from tfadv.experiments.runner import cell_key


def test_paper_grid_is_the_papers_tables():
    cells = pd.DataFrame(freefast.PROFILES["paper"].cells)
    free45 = cells[(cells.method == "free") & (cells.epochs == 45)]
    assert sorted(free45.replays) == [2, 4, 8, 10] and set(free45.batch_size) == {128}
    fast45 = cells[(cells.method == "fast") & (cells.epochs == 45)]
    assert sorted(zip(fast45.alpha_ratio, fast45.batch_size)) == [(1.25, 128), (1.25, 256), (2.0, 128), (2.0, 256)]
    long = cells[cells.epochs == 90]
    assert sorted(zip(long.method, long.architecture)) == sorted(
        [(m, a) for m in ("free", "fast") for a in ("preact_resnet18", "resnet50")])
    assert len({cell_key(c) for c in freefast.PROFILES["paper"].cells}) == len(cells) == 12
    # alpha ratios are the paper's 10/255 and 16/255 at eps = 8/255.
    assert 1.25 * freefast.CIFAR_EPS == pytest.approx(10 / 255) and 2.0 * freefast.CIFAR_EPS == pytest.approx(16 / 255)
    paper = freefast.PROFILES["paper"]
    assert (paper.eps, paper.eval_step_size, paper.eval_steps, paper.restarts) == (8 / 255, 2 / 255, (10, 20, 50), 1)
    assert paper.dtype_policy == "mixed_float16" and paper.lr("free") == 0.04 and paper.lr("fast") == 0.2


def test_free_epochs_follow_the_seed_convention():
    # 45 passes of m replays: the LR schedule spans epochs * batches * m optimizer steps.
    free8 = {"method": "free", "epochs": 45, "replays": 8}
    fast = {"method": "fast", "epochs": 45, "replays": None}
    assert freefast.optimizer_steps(free8, 391) == 45 * 391 * 8
    assert freefast.optimizer_steps(fast, 391) == 45 * 391


def test_dtype_policy_is_restored_even_on_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with freefast.dtype_policy("mixed_float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def _row(method, replays=None, alpha_ratio=None, natural=0.8, pgd=0.4, architecture="preact_resnet18",
         epochs=45, batch_size=128, seconds=30.0):
    return {"method": method, "architecture": architecture, "batch_size": batch_size, "epochs": epochs,
            "replays": replays, "alpha_ratio": alpha_ratio, "natural_accuracy": natural, "pgd10_accuracy": pgd,
            "pgd20_accuracy": pgd, "pgd50_accuracy": pgd, "avg_epoch_seconds": seconds, "train_minutes": 1.0}


def _verdicts(claims):
    return {c.claim: c.verdict for c in claims}


def test_claims_follow_the_measured_numbers():
    profile = freefast.PROFILES["demo"]
    empty = pd.DataFrame()
    collapsed = pd.DataFrame([_row("fast", alpha_ratio=1.25, pgd=0.4), _row("fast", alpha_ratio=2.0, pgd=0.0)])
    survived = pd.DataFrame([_row("fast", alpha_ratio=1.25, pgd=0.4), _row("fast", alpha_ratio=2.0, pgd=0.3)])
    claim = "Fast with α=16/255 (2ε) collapses to 0 PGD accuracy, α=10/255 (1.25ε) does not"
    assert _verdicts(freefast.phenomenon_claims(collapsed, empty, profile))[claim] == "reproduced"
    assert _verdicts(freefast.phenomenon_claims(survived, empty, profile))[claim] == "not reproduced"
    assert _verdicts(freefast.phenomenon_claims(empty, empty, profile))[claim] == "not measured"

    free = pd.DataFrame([_row("free", replays=m, natural=n, pgd=p, seconds=s) for m, n, p, s in
                         ((2, 0.9, 0.3, 30), (4, 0.87, 0.45, 60), (8, 0.84, 0.49, 120), (10, 0.82, 0.48, 150))]
                        + [_row("fast", alpha_ratio=1.25, natural=0.85, pgd=0.46, seconds=30)])
    verdicts = _verdicts(freefast.phenomenon_claims(free, empty, profile))
    assert verdicts["Free: natural accuracy falls as m grows"] == "reproduced"
    assert verdicts["Free: robustness rises with m up to m=8, the best m"] == "reproduced"
    assert verdicts["Fast (α=10/255) trains about 4× faster per epoch than Free m=8"] == "reproduced"
    assert verdicts["PreActResNet18: Free m=8 is more robust (PGD-50) than Fast α=10/255"] == "reproduced"


def test_paper_numbers_are_judged_only_on_cifar10():
    paper_rows = freefast.paper_table()
    as_measured = paper_rows.rename(columns={})
    claims = freefast.number_claims(as_measured, freefast.PROFILES["paper"])
    assert len(claims) == len(paper_rows) and all(c.verdict == "reproduced" for c in claims)
    shifted = as_measured.assign(natural_accuracy=as_measured.natural_accuracy - 0.05)
    assert all(c.verdict == "partly reproduced" for c in freefast.number_claims(shifted, freefast.PROFILES["paper"]))
    demo = freefast.number_claims(as_measured, freefast.PROFILES["demo"])
    assert all(c.verdict == "not measured" for c in demo)


def test_robust_evaluation_is_monotone_in_steps_and_restarts():
    profile = freefast.PROFILES["smoke"]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((24, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x), axis=-1)  # all correct clean, so every loss of accuracy is the attack's
    one = freefast.robust_evaluator(model, profile, seed=0, steps=(1, 5))(x, y)
    assert one["natural_accuracy"] == 1.0
    assert 1.0 >= one["pgd1_accuracy"] >= one["pgd5_accuracy"]
    assert one["pgd5_accuracy"] < 1.0  # eps = 0.3 on an untrained linear model: the attack must bite
    more = freefast.robust_evaluator(model, dataclasses.replace(profile, restarts=3), seed=0, steps=(1,))(x, y)
    assert more["pgd1_accuracy"] <= one["pgd1_accuracy"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("freefast_smoke")
    table = freefast.run(["--profile", "smoke", "--out", str(out), "--no-progress"])
    return out, table


def test_smoke_run_writes_table_curves_figures_report(smoke_run):
    out, table = smoke_run
    cells = freefast.PROFILES["smoke"].cells
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["cell"]) == sorted(cell_key(c) for c in cells)
    accuracy = results[["natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy"]].to_numpy()
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    assert np.all(np.diff(accuracy, axis=1) <= 1e-9)  # natural >= PGD-10 >= PGD-20 >= PGD-50
    assert np.all(results["train_minutes"] > 0) and np.all(results["avg_epoch_seconds"] > 0)
    np.testing.assert_allclose(results["train_minutes"] * 60 / results["epochs"], results["avg_epoch_seconds"])
    curves = pd.read_csv(out / "curves.csv")
    per_cell = curves.groupby("cell")["epoch"].apply(sorted)
    for cell in cells:
        assert per_cell[cell_key(cell)] == list(range(1, cell["epochs"] + 1))
    assert {"val_natural_accuracy", "val_pgd_accuracy", "train_accuracy", "epoch_seconds"} <= set(curves.columns)
    figures = sorted(p.name for p in out.glob("*.png"))
    assert "final_accuracy.png" in figures and any(f.startswith("curves_free") for f in figures)
    report = (out / "report.md").read_text()
    assert "profile **smoke**" in report and "Free m=8" in report and "0.486" in report  # paper numbers beside
    assert "(smoke)" in report and "passes" in report
    assert not any((out / "work").iterdir())  # finished cells leave no scratch behind


@pytest.mark.slow
def test_killed_run_resumes_mid_cell_and_skips_finished_cells(tmp_path, monkeypatch):
    cells = (freefast._cell("fast", "preact_resnet18", 32, 2, alpha_ratio=1.25),
             freefast._cell("free", "preact_resnet18", 32, 2, replays=2))
    monkeypatch.setitem(freefast.PROFILES, "smoke", dataclasses.replace(freefast.PROFILES["smoke"], cells=cells))
    argv = ["--profile", "smoke", "--out", str(tmp_path), "--no-progress"]
    started = []
    original = freefast.EpochLog.on_epoch_begin

    class Killed(Exception):
        pass

    def killing(self, epoch, logs=None):
        key = (self.path.parent / "cell.txt").read_text().strip()
        started.append((key, epoch))
        if "method=free" in key and epoch == 1 and kill[0]:
            raise Killed("simulated kill after the first epoch was backed up")
        original(self, epoch, logs)

    kill = [True]
    monkeypatch.setattr(freefast.EpochLog, "on_epoch_begin", killing)
    with pytest.raises(Killed):
        freefast.run(argv)
    assert len(list((tmp_path / "cells").iterdir())) == 1, started  # the finished cell is on disk
    first_run = list(started)
    started.clear()
    kill[0] = False
    freefast.run(argv)
    free_key, fast_key = cell_key(cells[1]), cell_key(cells[0])
    assert (fast_key, 0) in first_run and not any(k == fast_key for k, _ in started)  # finished cell skipped
    assert [e for k, e in started if k == free_key] == [1]  # resumed at the second epoch
    results = pd.read_csv(tmp_path / "results.csv")
    assert sorted(results["cell"]) == sorted([free_key, fast_key])
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert sorted(curves[curves["cell"] == free_key]["epoch"]) == [1, 2]


@pytest.mark.slow
def test_resnet50_and_pgd_cells_run(tmp_path, monkeypatch):
    cells = (freefast._cell("fast", "resnet50", 32, 1, alpha_ratio=1.25),
             freefast._cell("pgd", "preact_resnet18", 32, 1))
    monkeypatch.setitem(freefast.PROFILES, "smoke", dataclasses.replace(freefast.PROFILES["smoke"], cells=cells))
    freefast.run(["--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    results = pd.read_csv(tmp_path / "results.csv").set_index("architecture")
    assert set(results.index) == {"resnet50", "preact_resnet18"}
    assert results.loc["resnet50", "eval_points"] == 16 and 0 <= results.loc["resnet50", "pgd50_accuracy"] <= 1
    assert (tmp_path / "preact_vs_resnet50_fast.png").exists() is False  # only one network ran Fast


def test_paper_data_path_reads_cifar10_through_tfds(tmp_path):
    import tensorflow_datasets as tfds

    freefast.load_data.cache_clear()
    with tfds.testing.mock_data(num_examples=8):
        data = freefast.load_data("cifar10", 32, 3, None, None, str(tmp_path))
    freefast.load_data.cache_clear()
    assert data.x_train.shape == (8, 32, 32, 3) and data.x_test.shape == (8, 32, 32, 3)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0 and data.x_train.max() > 0.5  # /255 once
    assert set(np.unique(data.y_train)) <= set(range(10))
    batch_x, batch_y = next(iter(freefast.training_dataset(data, 4, augment=True, seed=0)))
    assert batch_x.shape == (4, 32, 32, 3) and batch_y.shape == (4,)
