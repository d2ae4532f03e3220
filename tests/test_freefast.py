"""The freefast runner: its grids and settings, its evaluation protocol, and a smoke run end to end (with a
kill and a resume). The claims are tested on hand-made tables in test_freefast_claims.py."""
import dataclasses
import types

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce.freefast import EXPERIMENT, cells, cost, evaluation, profiles, training
from reproduce.freefast.paper import CIFAR_EPS
from tfadv.evaluation import compaction
from tfadv.experiments import identity, main
from tfadv.experiments.grid import select_only
from tfadv.training import backup


def fake_run(profile_name="smoke", **changes):
    profile = dataclasses.replace(profiles.PROFILES[profile_name], **changes)
    return types.SimpleNamespace(profile=profile, profile_name=profile_name, options={}, seed=0,
                                 limit=None, capped=lambda v: v)


def test_paper_grid_is_the_papers_tables():
    grid = pd.DataFrame(profiles.PAPER.cells)
    free45 = grid[(grid.method == "free") & (grid.epochs == 45)]
    assert sorted(free45.replays) == [2, 4, 8, 10] and set(free45.batch_size) == {128}
    fast45 = grid[(grid.method == "fast") & (grid.epochs == 45)]
    assert sorted(zip(fast45.alpha_ratio, fast45.batch_size)) == [(1.25, 128), (1.25, 256), (2.0, 128), (2.0, 256)]
    long = grid[grid.epochs == 90]
    assert sorted(zip(long.method, long.architecture)) == sorted(
        (m, a) for m in ("free", "fast") for a in ("preact_resnet18", "resnet50"))
    assert len({identity.cell_key(c) for c in profiles.PAPER.cells}) == len(grid) == 12
    assert 1.25 * CIFAR_EPS == pytest.approx(10 / 255) and 2.0 * CIFAR_EPS == pytest.approx(16 / 255)


def test_paper_profile_is_the_reference_codes_protocol():
    p = profiles.PAPER
    assert (p.eps, p.eval_step_ratio * p.eps, p.eval_steps, p.restarts, p.eval_points) == (
        8 / 255, pytest.approx(2 / 255), (10, 20, 50), 1, None)
    assert {c["eps"] for c in p.cells} == {8 / 255}
    assert p.lr_max["free"] == 0.04 and p.lr_max["fast"] == 0.2 and (p.momentum, p.weight_decay) == (0.9, 5e-4)
    assert p.dtype_policy == "mixed_float16" and p.loss_scaling == "none"  # apex O2, --loss-scale 1.0
    assert p.augment and p.width == 64 and p.curve_steps == 50


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_every_setting_of_every_profile_has_a_source(name):
    run = fake_run(name)
    listed = {s.name: s for s in profiles.settings(run)}
    assert {f.name for f in dataclasses.fields(profiles.Profile)} <= set(listed)
    assert all(s.source for s in listed.values())


def test_free_epochs_follow_the_seed_convention():
    # 45 passes of m replays: the schedule spans epochs * batches * m optimizer steps.
    assert training.optimizer_steps({"replays": 8}, 45, 391) == 45 * 391 * 8
    assert training.optimizer_steps({"replays": None}, 45, 391) == 45 * 391


def test_plan_counts_free_replays_and_the_evaluation_passes():
    run = fake_run("demo")
    fast = cost.cost(profiles.cell("fast", 20, 0.3, alpha_ratio=1.25), run)
    free = cost.cost(profiles.cell("free", 20, 0.3, replays=2), run)
    evaluation_passes = 20 * 150 * 10 + 450 * 50  # curves after every epoch, then PGD-50 (PGD-10/20 read off it)
    # beyond the paper at the claims' eps: AutoAttack (APGD-CE, APGD-T over 3 targets, PGD-50 again) on 150
    # points; the masking checks (12 APGD-CE runs of 20 steps on 100 points) on Fast seed 0 and Free-8, not Free-2.
    autoattack, masking = 150 * 50 * (1 + 3) + 150 * 50, 100 * 20 * (3 + 7 + 2)
    assert fast.passes == 1347 * 20 * 2 + evaluation_passes + autoattack + masking
    assert free.passes == 1347 * 20 * 2 + evaluation_passes + autoattack
    search = cost.cost(profiles.cell("fast", 20, 0.4, alpha_ratio=1.25), run)  # the search's cells: neither
    longer = cost.cost(profiles.cell("fast", 40, 0.3, alpha_ratio=2.0), run)
    assert search.passes == 1347 * 20 * 2 + evaluation_passes and longer.passes == 1347 * 40 * 2 + 40 * 150 * 10 + 450 * 50
    assert fast.precision == "float32" and "preact_resnet18" in fast.model


def test_only_selects_the_papers_cells():
    paper = cells.grid(fake_run("paper"))
    fast_90 = select_only(paper, ["method=fast", "epochs=90"], needs=lambda cell: [])
    assert {(c["method"], c["epochs"]) for c in fast_90} == {("fast", 90)}
    assert len(select_only(paper, ["epochs=90"], needs=lambda cell: [])) == 4
    assert {c["method"] for c in select_only(paper, ["replays=none"], needs=lambda cell: [])} == {"fast"}


def test_seeds_repeat_every_setting_and_keep_the_profiles_cells():
    paper, demo = cells.grid(fake_run("paper")), cells.grid(fake_run("demo"))
    three = cells.grid(types.SimpleNamespace(**{**vars(fake_run("paper")), "options": {"seeds": 3}}))
    assert paper == three[:len(paper)] and len(three) == 3 * len(paper)
    assert sorted({c["repeat"] for c in three}) == [0, 1, 2]
    demo_three = cells.grid(types.SimpleNamespace(**{**vars(fake_run("demo")), "options": {"seeds": 3}}))
    keys = [identity.cell_key(c) for c in demo_three]
    assert demo == demo_three[:len(demo)] and len(set(keys)) == len(keys)  # Fast's three seeds not added twice
    settings = {s.name: s.value for s in profiles.settings(types.SimpleNamespace(**{**vars(fake_run("paper")),
                                                                                  "options": {"seeds": 3}}))}
    assert settings["--seeds"] == 3


@pytest.mark.slow(seconds=15)
def test_robust_evaluation_is_monotone_in_steps_and_restarts():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((24, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x), axis=-1)  # all correct clean, so every loss of accuracy is the attack's
    one = evaluation.evaluator(model, fake_run(), 0.3, (1, 5), seed=0)(x, y)
    assert one["natural_accuracy"] == 1.0 and 1.0 >= one["pgd1_accuracy"] >= one["pgd5_accuracy"]
    assert one["pgd5_accuracy"] < 1.0  # eps = 0.3 on an untrained linear model: the attack must bite
    more = evaluation.evaluator(model, fake_run(restarts=3), 0.3, (1,), seed=0)(x, y)
    assert more["pgd1_accuracy"] <= one["pgd1_accuracy"]


@pytest.mark.slow(seconds=15)
def test_under_limit_pgd_k_capped_alike_is_one_attack_with_the_plain_answer(monkeypatch):
    """--limit 2 caps PGD-10/20/50 to PGD-2: one attack, run once, each column its plain answer."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((24, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x), axis=-1)
    built = []
    monkeypatch.setattr(evaluation, "pgd_attack", lambda *a: built.append(a[3]) or evaluation.PGD(
        model, eps=0.3, norm="inf", steps=a[3], step_size=0.1, rand_init=True, seed=a[4], from_logits=True,
        clip_min=0.0, clip_max=1.0, select="first_success"))
    capped = fake_run()
    capped.capped = lambda v: min(v, 2)
    shared = evaluation.evaluator(model, capped, 0.3, (10, 20, 50), seed=0)(x, y, masks=True)
    assert built == [2]
    plain = evaluation.evaluator(model, fake_run(), 0.3, (2,), seed=0)(x, y, masks=True)
    for k in (10, 20, 50):
        np.testing.assert_array_equal(shared[f"pgd{k}_robust"], plain["pgd2_robust"])
    assert shared["pgd50_accuracy"] < 1.0  # the attack bites, so equal masks mean something


def run_smoke(out, *extra):
    return main(EXPERIMENT, ["--profile", "smoke", "--out", str(out), "--no-progress", "--jobs", "1", *extra])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("freefast_smoke")
    return out, run_smoke(out)


@pytest.mark.slow(seconds=180)
def test_smoke_run_writes_results_curves_figures_and_report(smoke):
    out, tables = smoke
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["cell"]) == sorted(identity.cell_key(c) for c in profiles.SMOKE.cells)
    accuracy = results[["natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy"]].to_numpy()
    assert np.all((accuracy >= 0) & (accuracy <= 1)) and np.all(np.diff(accuracy, axis=1) <= 1e-9)
    assert np.all(results["train_minutes"] > 0) and set(results["eval_points"]) == {16}
    curves = pd.read_csv(out / "curves.csv")
    assert curves.groupby("cell")["epoch"].apply(list).tolist() == [[1, 2]] * 3
    assert {"val_natural_accuracy", "val_pgd_accuracy", "train_adv_accuracy", "epoch_seconds"} <= set(curves)
    assert {"final_accuracy.png", "curves_fast_preactresnet18_2ep.png"} <= {p.name for p in out.glob("*.png")}
    report = (out / "report.md").read_text()
    assert "profile **smoke**" in report and "| eps | 0.3 |" in report and "Free m = 8 is more robust" in report
    assert "| {} | {} | tfadv |".format(*compaction.REPORT_SETTING) in report  # the shortcut the cascade took
    assert len(list((out / "artifacts" / "models").glob("*.weights.h5"))) == 3
    # beyond the paper: AutoAttack on every cell (all at the claims' eps), the masking checks on one
    assert set(results["aa_points"]) == {16} and np.all(results["aa_robust_accuracy"] <= results["aa_clean_accuracy"])
    paired = (results["aa_only_pgd_robust"] - results["aa_only_aa_robust"]) / 16
    assert np.allclose(results["aa_pgd_accuracy"] - results["aa_robust_accuracy"], paired)
    masking = pd.read_csv(out / "masking.csv")
    assert masking["cell"].nunique() == 1 and len(masking) >= 8 and set(masking["raised"]) <= {True, False}
    assert "## AutoAttack beside PGD (beyond the paper)" in report and "## Gradient-masking checks" in report
    assert not any((out / "work").iterdir())  # finished cells leave no scratch behind


@pytest.mark.slow(seconds=215)  # 170 s of it: the module's smoke run, if this check is the first to need it
def test_a_cell_whose_weights_exist_is_not_trained_again(smoke, monkeypatch):
    out, _ = smoke
    first = sorted((out / "cells").glob("*.json"))[0]
    first.unlink()  # as if killed after saving the weights, during the final evaluation

    def no_training(*args, **kwargs):
        raise AssertionError("the weights exist: the cell must not train again")

    monkeypatch.setattr(training, "train", no_training)
    monkeypatch.setattr(training, "read_curve", lambda path, n: pd.DataFrame(
        {"epoch": range(1, n + 1), "epoch_seconds": 1.0, "epoch_cpu_seconds": 1.0}))
    tables = run_smoke(out)
    assert len(tables["results"]) == 3 and first.is_file()


@pytest.mark.slow(seconds=60)
def test_a_killed_cell_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    started = []
    original = training.EpochLog.on_epoch_begin

    class Killed(Exception):
        pass

    def killing(self, epoch, logs=None):
        started.append((self.path.parent.name, epoch))
        if len(started) == 2 and kill:  # the first cell's second epoch: its first is backed up
            raise Killed("simulated kill")
        original(self, epoch, logs)

    kill = True
    monkeypatch.setattr(training.EpochLog, "on_epoch_begin", killing)
    monkeypatch.setattr(backup, "EVERY_SECONDS", 0.0)  # a checkpoint every epoch, as when epochs take minutes
    with pytest.raises(Killed):
        run_smoke(tmp_path, "--only", "method=free")
    work = started[0][0]
    started.clear()
    kill = False
    run_smoke(tmp_path, "--only", "method=free")
    assert started == [(work, 1)]  # resumed at the second epoch
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert curves["epoch"].tolist() == [1, 2]


def test_paper_data_path_reads_cifar10_through_tfds(tmp_path):
    import tensorflow_datasets as tfds

    from reproduce.freefast import data

    run = fake_run("paper")
    run.data_dir, run.cache = str(tmp_path), {}
    run.cached = lambda key, make: run.cache.setdefault(key, make())
    with tfds.testing.mock_data(num_examples=8):
        loaded = data.load(run, "resnet50")
    assert loaded.x_train.shape == (8, 32, 32, 3) and loaded.x_test.shape == (8, 32, 32, 3)
    assert 0.0 <= loaded.x_train.min() and loaded.x_train.max() <= 1.0 and loaded.x_train.max() > 0.5  # /255 once
    assert set(np.unique(loaded.y_train)) <= set(range(10))


@pytest.mark.slow(seconds=145)
def test_paper_profile_code_path_runs_on_cpu_with_stand_ins(tmp_path, monkeypatch):
    """The paper profile's own code (CIFAR-10 through tfds, mixed_float16 without loss scaling, PreActResNet18
    at width 64 and the seed's 1000-way ResNet50, Free and Fast, PGD-10/20/50 and per-epoch PGD-50) on mocked
    CIFAR-10 with random weights, capped by --limit: a first GPU run must not die on a wiring error. Two of
    the twelve cells cover both networks and both methods; AutoAttack runs on the PreActResNet18 one only
    (the same code on either network). The masking checks are left to the smoke run: they attack the same
    float32 evaluation copy as AutoAttack, through the same call, and took a quarter of this test."""
    import tensorflow_datasets as tfds

    free_cell = next(c for c in profiles.PAPER.cells if c.get("replays") == 2)
    monkeypatch.setitem(profiles.PROFILES, "paper", dataclasses.replace(
        profiles.PAPER, aa_cells=(free_cell,), masking_cells=()))

    out = tmp_path / "paper"
    argv = ["--profile", "paper", "--out", str(out), "--limit", "2", "--jobs", "1", "--no-progress",
            "--data-dir", str(tmp_path / "tfds")]
    with tfds.testing.mock_data(num_examples=4):
        main(EXPERIMENT, [*argv, "--only", "method=fast", "--only", "architecture=resnet50"])  # Fast, seed's ResNet50
        tables = main(EXPERIMENT, [*argv, "--only", "replays=2"])                 # Free on PreActResNet18
    results = tables["results"].set_index("architecture")
    assert results.loc["resnet50", "method"] == "fast" and results.loc["preact_resnet18", "method"] == "free"
    assert set(results["eval_points"]) == {2} and set(results["trained_epochs"]) == {2}
    assert set(tables["curves"].groupby("cell")["epoch"].max()) == {2}
    assert (out / "final_accuracy.png").is_file() and (out / "curves_fast_resnet50_90ep.png").is_file()
    report = (out / "report.md").read_text()
    assert "--limit 2" in report and "profile **paper**" in report
    assert "apgd-ce, apgd-t, fab-t, square" in report
    verdict_rows = [line for line in report.splitlines() if "**" in line and "(paper)" in line]
    assert verdict_rows and all("**inconclusive** (paper)" in line for line in verdict_rows)
