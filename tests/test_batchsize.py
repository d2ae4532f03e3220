"""Kamath et al. 2019: the three training schedules, micro-batch accumulation, the Table 1 models, the grid,
and the runner end to end (smoke; and the paper profile's own code path on mock data, marked slow)."""
import json

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce import batchsize
from reproduce.batchsize import cells, profiles
from tfadv.analysis.batch_size_settings import (
    MOMENTUM_SWEEPS,
    TrainingSetting,
    accumulation_steps,
    paper_settings,
    updates_per_epoch,
)
from tfadv.experiments import main
from tfadv.experiments.grid import select_only
from tfadv.models import kamath

# ------------------------------------------------------------------------------------------- schedules
UPDATES = 7  # optimizer updates per epoch


def lr_at(schedule, step: int) -> float:
    return float(schedule(step))


@pytest.mark.parametrize("batch_size", [16, 64, 1024])
def test_fixed_lr_and_lr_over_bs(batch_size):
    fixed = TrainingSetting("LR").learning_rate_schedule(batch_size, UPDATES)
    ratio = TrainingSetting("LR/BS", 0.9).learning_rate_schedule(batch_size, UPDATES)
    for step in (0, UPDATES - 1, UPDATES, 100 * UPDATES - 1):
        assert lr_at(fixed, step) == pytest.approx(0.01, rel=1e-6)
        assert lr_at(ratio, step) == pytest.approx(0.00015625 * batch_size, rel=1e-6)
    if batch_size == 64:  # the two settings coincide at B = 64
        assert lr_at(ratio, 0) == pytest.approx(lr_at(fixed, 0), rel=1e-6)


@pytest.mark.parametrize("updates", [UPDATES, 2.5])  # accumulated micro-batches can leave a fraction
def test_benchmark_halves_every_five_epochs(updates):
    schedule = TrainingSetting.benchmark().learning_rate_schedule(128, updates)
    for epoch in range(100):
        expected = 0.01 * 0.5 ** (epoch // 5)
        first, last = int(np.ceil(epoch * updates)), int(np.ceil((epoch + 1) * updates)) - 1
        assert lr_at(schedule, first) == pytest.approx(expected, rel=1e-5)
        assert lr_at(schedule, last) == pytest.approx(expected, rel=1e-5)


def test_optimizer_takes_the_scheduled_step():
    """The optimizer really uses these rates: SGD on f(w) = w (gradient 1) moves w by -lr each step."""
    optimizer = TrainingSetting.benchmark().optimizer(batch_size=32, updates_per_epoch=1)
    assert optimizer.momentum == pytest.approx(0.9)
    plain = TrainingSetting("LR/BS").optimizer(batch_size=32, updates_per_epoch=1)
    w = keras.Variable(0.0)
    moves = []
    for _ in range(12):
        before = float(w.numpy())
        plain.apply([keras.ops.ones(())], [w])
        moves.append(before - float(w.numpy()))
    assert moves == pytest.approx([0.00015625 * 32] * 12, rel=1e-5)


def test_accumulation_averages_micro_batches_into_one_update():
    """HessianFlow's large_ratio: k micro-batch gradients averaged, one step of the batch's learning rate."""
    optimizer = TrainingSetting("LR/BS").optimizer(batch_size=256, updates_per_epoch=1, accumulation=2)
    w = keras.Variable(0.0)
    optimizer.apply([keras.ops.convert_to_tensor(1.0)], [w])
    assert float(w.numpy()) == 0.0  # the first micro-batch only accumulates
    optimizer.apply([keras.ops.convert_to_tensor(3.0)], [w])
    assert float(w.numpy()) == pytest.approx(-0.00015625 * 256 * 2.0, rel=1e-5)  # mean gradient 2


def test_settings_grid_micro_batches_and_validation():
    labels = [s.label for s in paper_settings()]
    assert labels == ["LR, m=0", "LR/BS, m=0", "Benchmark", "LR, m=0.2", "LR, m=0.5", "LR, m=0.9", "LR/BS, m=0.9"]
    assert MOMENTUM_SWEEPS == {"LR": (0.0, 0.2, 0.5, 0.9), "LR/BS": (0.0, 0.9)}
    assert accumulation_steps(64, 128) == 1 and accumulation_steps(2048, 128) == 16
    assert accumulation_steps(512, None) == 1
    assert updates_per_epoch(55000, 64) == 859  # the last partial batch is dropped
    assert updates_per_epoch(55000, 2048, micro_batch=128) == pytest.approx(429 / 16)
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(200, 128)
    with pytest.raises(ValueError, match="no full batch"):
        updates_per_epoch(100, 128)
    with pytest.raises(ValueError, match="schedule must be"):
        TrainingSetting("cosine")
    with pytest.raises(ValueError, match="Benchmark setting has momentum"):
        TrainingSetting("Benchmark", 0.0)


# ------------------------------------------------------------------------------------------- models
# Table 1 as tfadv builds it: (layer, filters/units, kernel or pool size). C1 in HessianFlow's order.
TABLE_1 = {
    "StdCNN": [("conv", 10, 3), ("conv", 10, 3), ("pool", None, 2), ("conv", 20, 3), ("conv", 20, 3),
               ("pool", None, 2), ("fc", 50, None), ("dropout", None, None), ("fc", 10, None)],
    "M1": [("conv", 20, 5), ("conv", 20, 5), ("fc", 500, None), ("fc", 10, None)],
    "C1": [("conv", 64, 5), ("bn", None, None), ("pool", None, 3), ("conv", 64, 5), ("bn", None, None),
           ("pool", None, 3), ("fc", 384, None), ("fc", 192, None), ("fc", 10, None)],
}
KIND = {keras.layers.Conv2D: "conv", keras.layers.MaxPooling2D: "pool", keras.layers.Dense: "fc",
        keras.layers.Dropout: "dropout", keras.layers.BatchNormalization: "bn"}


@pytest.mark.parametrize("name, shape, parameters", [
    ("StdCNN", (28, 28, 1), 100 + 910 + 1820 + 3620 + 320 * 50 + 50 + 510),
    ("M1", (28, 28, 1), 520 + 10020 + 4000500 + 5010),
    # HessianFlow's c1_model: 4,864 + 128 + 102,464 + 128 + 4096*384+384 + 384*192+192 + 1,930
    ("C1", (32, 32, 3), 4864 + 128 + 102464 + 128 + 4096 * 384 + 384 + 384 * 192 + 192 + 1930),
])
def test_models_match_table_1(name, shape, parameters):
    model = kamath.MODELS[name](shape)
    layers = [(KIND[type(l)], l) for l in model.layers if type(l) in KIND]
    assert [kind for kind, _ in layers] == [row[0] for row in TABLE_1[name]]
    for (kind, layer), (_, width, size) in zip(layers, TABLE_1[name]):
        if kind == "conv":
            assert (layer.filters, layer.kernel_size) == (width, (size, size))
        elif kind == "pool":
            assert layer.pool_size == (size, size)
        elif kind == "fc":
            assert layer.units == width
        elif kind == "bn":  # PyTorch's BatchNorm2d defaults, as in HessianFlow
            assert (layer.momentum, layer.epsilon) == (0.9, 1e-5)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == parameters
    assert model.output_shape == (None, 10)


def test_resnet18_is_the_cifar_basicblock_variant():
    model = kamath.resnet18()
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == 11_173_962  # the usual CIFAR ResNet18 (3x3 stem, [2,2,2,2] BasicBlocks)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs[0].kernel_size == (3, 3) and convs[0].strides == (1, 1)
    assert not any(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers)


# ------------------------------------------------------------------------------------------- grid
class FakeRun:
    def __init__(self, profile="paper", **options):
        self.profile, self.profile_name = profiles.PROFILES[profile], profile
        self.options, self.seed = {"seeds": self.profile.seeds, **options}, 0


def open_run(*argv: str, **kwargs):
    from tfadv.experiments import cli

    return cli.open_run(batchsize.EXPERIMENT, cli.parser(batchsize.EXPERIMENT).parse_args(list(argv)), **kwargs)


@pytest.mark.parametrize("profile", ["demo", "smoke"])
def test_seeds_at_the_profiles_value_is_the_same_configuration(profile):
    own = str(profiles.PROFILES[profile].seeds)
    plain, given = (open_run("--profile", profile, *flags, claim_folder=False) for flags in ([], ["--seeds", own]))
    assert given.options == plain.options and plain.options["seeds"] == int(own)
    assert given.configuration == plain.configuration and given.out == plain.out
    assert cells.grid(given) == cells.grid(plain)
    assert profiles.settings(given) == profiles.settings(plain)
    more = open_run("--profile", profile, "--seeds", "5", claim_folder=False)
    assert more.configuration == plain.configuration  # a selection: more seeds add cells to the same folder
    assert len(cells.grid(more)) > len(cells.grid(plain))
    row = next(s for s in profiles.settings(more) if s.name == "seeds per point")
    assert row.value == 5 and "(--seeds 5; the profile's" in row.source


def test_paper_grid_and_only():
    grid = cells.grid(FakeRun())
    assert len(grid) == (4 * 7 + 2 * 3) * 7 * 3  # studies x settings x batch sizes x seeds
    picked = select_only(cells.grid(FakeRun(seeds=1)), ["dataset=cifar10", "batch_size=32,256", "momentum=0"],
                         needs=lambda cell: [])
    assert {(c["model"], c["schedule"], c["batch_size"]) for c in picked} == {
        (m, s, b) for m in ("C1", "ResNet18") for s in ("LR", "LR/BS") for b in (32, 256)}


def test_demo_search_cells_do_not_repeat_the_grid():
    grid = cells.grid(FakeRun("demo"))
    search = [c for c in grid if c["lr_scale"] != profiles.DEMO.lr_scale or c["batch_size"] > 128
              or c["epochs"] != profiles.DEMO.epochs]
    assert search and len(grid) == len({json.dumps(c, sort_keys=True) for c in grid})
    assert all(c["schedule"] == "LR/BS" and c["seed"] == 0 for c in search)


def test_every_setting_names_its_source():
    for name in profiles.PROFILES:
        found = profiles.settings(FakeRun(name))
        assert all(s.source.split(":")[0] in ("paper", "reference code", "tfadv") for s in found)
    paper = {s.name: s.source for s in profiles.settings(FakeRun("paper"))}
    assert paper["large batches"].startswith("reference code: HessianFlow")
    assert paper["λ1 stopping rule and data"].startswith("reference code: HessianFlow")
    assert paper["batch sizes"].startswith("tfadv")


# ------------------------------------------------------------------------------------------- runner
@pytest.mark.slow(seconds=65)
def test_smoke_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "out"
    tables = main(batchsize.EXPERIMENT, ["--profile", "smoke", "--out", str(out), "--no-progress"])
    table = tables["results"]
    assert len(table) == len(cells.grid(FakeRun("smoke"))) == 4
    for column in ("test_accuracy", "fgsm_accuracy", "pgd_accuracy", "lambda1", "cpu_seconds"):
        assert table[column].notna().all(), column
    assert sorted(table["learning_rate"].round(6)) == sorted([0.01, 0.01, 0.00015625 * 128, 0.00015625 * 512])
    report = (out / "report.md").read_text()
    # one epoch of 1,347 digits: every model is near chance, so nothing may be judged reproduced
    assert "**reproduced**" not in report and "**not reproduced**" not in report
    assert "did not train" in report and "| batch sizes | 128, 512 | tfadv" in report
    assert list(out.glob("*.png"))
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    # the profile's own --seeds is the same configuration: the folder is reused, nothing recomputed
    again = main(batchsize.EXPERIMENT, ["--profile", "smoke", "--out", str(out), "--no-progress", "--seeds", "1"])
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == mtimes  # nothing recomputed
    pd.testing.assert_frame_equal(again["results"], table)


def test_a_run_killed_during_evaluation_does_not_train_again(tmp_path, monkeypatch):
    run = open_run("--profile", "smoke", "--out", str(tmp_path / "out"), "--no-progress")
    cell = cells.grid(run)[0]
    data = cells.load_data("digits", run)
    setting = TrainingSetting(cell["schedule"], cell["momentum"], cell["lr_scale"])
    model, first = cells.train(cell, run, setting, data)

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(keras.Model, "fit", refuse)
    again, second = cells.train(cell, run, setting, data)
    assert second == first
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow(seconds=75)
def test_the_measured_copy_measures_each_cells_own_weights(tmp_path):
    """Two cells' nets through the one cached copy: FGSM and PGD on the copy give exactly the examples and
    the robust samples of attacks built on each net itself, and the second net costs the copy's attacks
    fewer traces than attacks of its own (a count of clean-correct samples it has not seen may add one);
    the copy's top Hessian eigenvalue is exactly the net's, and its power iteration is traced once."""
    from tfadv.analysis.hessian import top_hessian_eigenvalue
    from tfadv.attacks import FGM, PGD
    from tfadv.evaluation import robust_mask

    run = open_run("--profile", "smoke", "--out", str(tmp_path / "out"), "--no-progress")
    cell = cells.grid(run)[0]
    _, _, x, y = cells.load_data("digits", run)
    x, y, ids = x[:64], y[:64], np.arange(64)
    threat, hessian, seed = run.profile.threats["digits"], run.profile.hessian, cells.cell_seed(cell, run)
    common = {"from_logits": True, "clip_min": 0.0, "clip_max": 1.0}
    traces = []
    for weights_seed in (1, 2):
        keras.utils.set_random_seed(weights_seed)
        model = kamath.MODELS[cell["model"]](x.shape[1:], num_classes=cells.NUM_CLASSES)
        net, fgsm, pgd, top_eigenvalue = cells.measured_copy(model, cell, run, x.shape, hessian)
        own = {fgsm: FGM(model, threat.eps, "inf", **common),
               pgd: PGD(model, threat.eps, "inf", steps=threat.pgd_steps, step_size=threat.pgd_step_size,
                        rand_init=True, seed=seed, **common)}
        for attack, reference in own.items():
            np.testing.assert_array_equal(attack(x, y, sample_ids=ids), reference(x, y, sample_ids=ids))
            robust = robust_mask(net, attack, x, y, batch_size=cells.EVAL_BATCH)
            np.testing.assert_array_equal(robust, robust_mask(model, reference, x, y, batch_size=cells.EVAL_BATCH))
        traces.append({type(a).__name__: (a.tracing_count(), reference.tracing_count())
                       for a, reference in own.items()})
        assert top_eigenvalue(x, y, seed=seed) == top_hessian_eigenvalue(model, x, y, settings=hessian, seed=seed)
    for name, (copy_traces, own_traces) in traces[1].items():
        assert copy_traces - traces[0][name][0] < own_traces, name
    assert top_eigenvalue.tracing_count() == 1
    assert sum(1 for key in run.cache if key[0] == "measured copy") == 1


@pytest.mark.slow(seconds=110)
def test_paper_profile_code_path_on_mock_data(tmp_path):
    """The paper profile on tfds' offline mock MNIST, Fashion-MNIST and CIFAR-10, every Table 1 model and
    ResNet18 with random weights, capped by --limit 1: it runs end to end (micro-batch accumulation at
    B = 256 included), writes results, figures and a report, and judges nothing on untrained models."""
    import tensorflow_datasets as tfds

    out, data_dir = tmp_path / "out", tmp_path / "tfds"
    common = ["--profile", "paper", "--limit", "1", "--seeds", "1", "--only", "schedule=LR/BS", "--only",
              "momentum=0", "--out", str(out), "--data-dir", str(data_dir), "--no-progress", "--jobs", "1"]
    with tfds.testing.mock_data(num_examples=256):
        main(batchsize.EXPERIMENT, [*common, "--only", "model=M1,StdCNN,C1", "--only", "batch_size=32,256"])
        tables = main(batchsize.EXPERIMENT, [*common, "--only", "model=ResNet18", "--only", "batch_size=32"])
    table = tables["results"]
    assert len(table) == 4 * 2 + 2 * 1 + 1
    assert set(table["dataset"]) == {"mnist", "fashion_mnist", "cifar10"}
    assert (table.query("batch_size == 256")["accumulation"] == 2).all()
    assert (table["eps"].isin([0.3, 0.02])).all() and np.isfinite(table["lambda1"]).all()
    report = (out / "report.md").read_text()
    assert "**reproduced**" not in report and "**not reproduced**" not in report and "**partly" not in report
    assert "## Capped run" in report
    assert len(list(out.glob("*.png"))) == 6  # one settings figure per study


def test_regime_search_section_says_where_lr_bs_trains():
    from reproduce.batchsize import sections

    accuracy = {(4.0, 16): 0.97, (4.0, 128): 0.95, (4.0, 512): 0.10, (1.0, 16): 0.90, (1.0, 128): 0.60}
    rows = [{"dataset": "digits", "model": "M1", "schedule": "LR/BS", "momentum": 0.0, "lr_scale": scale,
             "epochs": 30, "batch_size": b, "seed": 0, "test_accuracy": acc, "updates_per_epoch": 1347 // b}
            for (scale, b), acc in accuracy.items()]
    text = sections.search_section(pd.DataFrame(rows), profiles.DEMO)
    assert ("| x4, 30 epochs | 0.97 | 0.95 | 0.10 | at chance (≤ 15%) at B = 512; flat over B ≤ 128: spread 0.020 "
            "(≤ 0.05) around 96% |") in text
    assert "| x1, 30 epochs | 0.90 | 0.60 |  | not flat over B ≤ 128: spread 0.300 (> 0.05) around 75% |" in text
    assert "B=512: 2" in text


def test_plan_counts_every_cell_without_running_any(tmp_path):
    tables = main(batchsize.EXPERIMENT, ["--profile", "demo", "--plan", "--out", str(tmp_path / "out")])
    plan = tables["plan"]
    assert int(plan["cells"].sum()) == len(cells.grid(FakeRun("demo")))
    assert set(plan["model"]) == {"M1 16x16x1", "StdCNN 16x16x1"} and (plan["GPU-hours"] > 0).all()
    assert not (tmp_path / "out").exists()
