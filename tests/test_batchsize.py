"""Kamath et al. 2019: the three training schedules, the Table 1 models, and the runner's smoke profile."""
import keras
import numpy as np
import pandas as pd
import pytest

from tfadv.analysis.batch_size_settings import (
    MOMENTUM_SWEEPS,
    TrainingSetting,
    paper_settings,
    steps_per_epoch,
)
from tfadv.models import kamath

# ------------------------------------------------------------------------------------------- schedules
STEPS = 7  # steps per epoch


def lr_at(schedule, step: int) -> float:
    return float(schedule(step))


@pytest.mark.parametrize("batch_size", [16, 64, 1024])
def test_fixed_lr_and_lr_over_bs(batch_size):
    fixed = TrainingSetting("LR").learning_rate_schedule(batch_size, STEPS)
    ratio = TrainingSetting("LR/BS", 0.9).learning_rate_schedule(batch_size, STEPS)
    for step in (0, STEPS - 1, STEPS, 100 * STEPS - 1):
        assert lr_at(fixed, step) == pytest.approx(0.01, rel=1e-6)
        assert lr_at(ratio, step) == pytest.approx(0.00015625 * batch_size, rel=1e-6)
    if batch_size == 64:  # the two settings coincide at B = 64
        assert lr_at(ratio, 0) == pytest.approx(lr_at(fixed, 0), rel=1e-6)


def test_benchmark_halves_every_five_epochs():
    schedule = TrainingSetting.benchmark().learning_rate_schedule(128, STEPS)
    for epoch in range(100):
        expected = 0.01 * 0.5 ** (epoch // 5)
        first, last = epoch * STEPS, (epoch + 1) * STEPS - 1  # the first and last step of the epoch
        assert lr_at(schedule, first) == pytest.approx(expected, rel=1e-5)
        assert lr_at(schedule, last) == pytest.approx(expected, rel=1e-5)


def test_optimizer_takes_the_scheduled_step():
    """The optimizer really uses these rates: SGD on f(w) = w (gradient 1) moves w by -lr each step."""
    setting = TrainingSetting.benchmark()
    optimizer = setting.optimizer(batch_size=32, steps_per_epoch=1)  # an epoch per step: halving every 5 steps
    assert optimizer.momentum == pytest.approx(0.9)
    plain = TrainingSetting("LR/BS").optimizer(batch_size=32, steps_per_epoch=1)
    w = keras.Variable(0.0)
    moves = []
    for _ in range(12):
        before = float(w.numpy())
        plain.apply([keras.ops.ones(())], [w])
        moves.append(before - float(w.numpy()))
    assert moves == pytest.approx([0.00015625 * 32] * 12, rel=1e-5)


def test_settings_grid_and_validation():
    labels = [s.label for s in paper_settings()]
    assert labels == ["LR, m=0", "LR/BS, m=0", "Benchmark", "LR, m=0.2", "LR, m=0.5", "LR, m=0.9", "LR/BS, m=0.9"]
    assert MOMENTUM_SWEEPS == {"LR": (0.0, 0.2, 0.5, 0.9), "LR/BS": (0.0, 0.9)}
    assert steps_per_epoch(1347, 1024) == 2 and steps_per_epoch(55000, 64) == 860
    assert TrainingSetting("LR/BS", 0.0, lr_scale=4.0).initial_learning_rate(64) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="schedule must be"):
        TrainingSetting("cosine")
    with pytest.raises(ValueError, match="Benchmark setting has momentum"):
        TrainingSetting("Benchmark", 0.0)
    with pytest.raises(ValueError, match="momentum"):
        TrainingSetting("LR", 1.5)


# ------------------------------------------------------------------------------------------- models
# Table 1, written out: (layer, filters/units, kernel or pool size). Input 28x28x1 (M1, StdCNN), 32x32x3 (C1).
TABLE_1 = {
    "StdCNN": [("conv", 10, 3), ("conv", 10, 3), ("pool", None, 2), ("conv", 20, 3), ("conv", 20, 3),
               ("pool", None, 2), ("fc", 50, None), ("dropout", None, None), ("fc", 10, None)],
    "M1": [("conv", 20, 5), ("conv", 20, 5), ("fc", 500, None), ("fc", 10, None)],
    "C1": [("conv", 64, 5), ("pool", None, 3), ("bn", None, None), ("conv", 64, 5), ("pool", None, 3),
           ("bn", None, None), ("fc", 384, None), ("fc", 192, None), ("fc", 10, None)],
}
KIND = {keras.layers.Conv2D: "conv", keras.layers.MaxPooling2D: "pool", keras.layers.Dense: "fc",
        keras.layers.Dropout: "dropout", keras.layers.BatchNormalization: "bn"}


def table_parameter_count(name: str, side: int, channels: int) -> int:
    """Trainable parameters implied by Table 1 with tfadv's padding choices ('valid' for M1/StdCNN; 'same'
    convs and 3x3/2 'same' pooling for C1)."""
    count, features = 0, None
    for kind, width, size in TABLE_1[name]:
        if kind == "conv":
            count += size * size * channels * width + width
            channels = width
            side = side if name == "C1" else side - size + 1
        elif kind == "pool":
            side = -(-side // 2) if name == "C1" else side // size
        elif kind == "bn":
            count += 2 * channels  # gamma, beta (moving statistics are not trainable)
        elif kind == "fc":
            features = features or side * side * channels
            count += features * width + width
            features = width
    return count


@pytest.mark.parametrize("name, shape", [("StdCNN", (28, 28, 1)), ("M1", (28, 28, 1)), ("C1", (32, 32, 3))])
def test_models_match_table_1(name, shape):
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
        elif kind == "dropout":
            assert layer.rate == 0.5
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == table_parameter_count(name, shape[0], shape[2])
    assert model.output_shape == (None, 10)


def test_m1_parameter_count_written_out():
    # 5*5*1*20+20 + 5*5*20*20+20 + (20*20*20)*500+500 + 500*10+10
    assert kamath.m1().count_params() == 520 + 10020 + 4000500 + 5010


def test_resnet18_is_the_cifar_basicblock_variant():
    model = kamath.resnet18()
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == 11_173_962  # the usual CIFAR ResNet18 (3x3 stem, [2,2,2,2] BasicBlocks)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs[0].kernel_size == (3, 3) and convs[0].strides == (1, 1)
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 17  # stem + 8 blocks x 2
    assert not any(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers)


def test_softmax_head_is_float32():
    model = kamath.std_cnn(logits=False)
    out = model(np.zeros((2, 28, 28, 1), "float32"))
    assert np.allclose(np.sum(out, axis=-1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------------- runner
def test_smoke_run_end_to_end_and_resume(tmp_path):
    from reproduce import batchsize

    out = tmp_path / "out"
    table = batchsize.main(["--profile", "smoke", "--out", str(out), "--no-progress"])
    assert len(table) == len(batchsize.grid("smoke")) == 4
    csv = pd.read_csv(out / "results.csv")
    for column in ("test_accuracy", "fgsm_accuracy", "pgd_accuracy", "lambda1_hessianflow"):
        assert csv[column].notna().all(), column
    assert ((csv["fgsm_accuracy"] >= 0) & (csv["fgsm_accuracy"] <= csv["test_accuracy"] + 0.2)).all()
    assert sorted(csv["learning_rate"].round(6)) == sorted([0.01, 0.01, 0.00015625 * 128, 0.00015625 * 512])
    report = (out / "report.md").read_text()
    assert "LR/BS keeps test accuracy roughly constant" in report and "(smoke)" in report
    assert list(out.glob("*.png")) and len(list((out / "checkpoints").glob("*.weights.h5"))) == 4

    # A re-run trains and evaluates nothing: every cell is finished.
    cells = sorted((out / "cells").iterdir())
    assert len(cells) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in cells}
    again = batchsize.main(["--profile", "smoke", "--out", str(out), "--no-progress"])
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True))

    # A cell whose evaluation was lost is re-evaluated from its saved weights, not retrained.
    cells[0].unlink()
    weights = {p: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.weights.h5")}
    third = batchsize.main(["--profile", "smoke", "--out", str(out), "--no-progress"])
    assert {p: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.weights.h5")} == weights
    columns = ["cell", "train_seconds", "train_loss", "test_accuracy", "fgsm_accuracy"]
    pd.testing.assert_frame_equal(third[columns].reset_index(drop=True), table[columns].reset_index(drop=True))


def test_claims_follow_the_measurements():
    from reproduce.batchsize import claims

    rows = []
    for b, (lr_acc, lrbs_acc, lam) in zip((16, 256), ((0.9, 0.9, 1.0), (0.5, 0.88, 3.0))):
        for schedule, acc in (("LR", lr_acc), ("LR/BS", lrbs_acc)):
            rows.append({"dataset": "d", "model": "m", "schedule": schedule, "momentum": 0.0, "batch_size": b,
                         "test_accuracy": acc, "fgsm_accuracy": acc / 2, "pgd_accuracy": acc / 3,
                         "lambda1_hessianflow": lam})
    # Momentum 0.9: lower λ1 at B=16; at B=256 the model did not train (chance accuracy), so it is left out.
    for b, acc, lam in ((16, 0.9, 0.5), (256, 0.1, 0.01)):
        rows.append({"dataset": "d", "model": "m", "schedule": "LR", "momentum": 0.9, "batch_size": b,
                     "test_accuracy": acc, "fgsm_accuracy": acc, "pgd_accuracy": acc, "lambda1_hessianflow": lam})
    found = claims(pd.DataFrame(rows))
    verdicts = {c.claim: c.verdict for c in found}
    momentum = next(c for c in found if c.claim == "LR: momentum lowers λ1 in most cases")
    assert momentum.verdict == "reproduced" and "lower at 1 of 1" in momentum.note
    assert verdicts["LR/BS keeps test accuracy roughly constant across batch sizes"] == "reproduced"
    assert verdicts["Fixed LR: test and FGSM accuracy drop as the batch size grows"] == "reproduced"
    assert verdicts["LR/BS keeps the top Hessian eigenvalue λ1 roughly constant"] == "not reproduced"  # 1 -> 3
    assert verdicts["LR/BS: momentum lowers λ1 in most cases"] == "not measured"


def test_one_shard_under_a_mirrored_strategy(tmp_path):
    """--shard i/n runs only its cells; --strategy mirrored trains on every logical CPU (two, per conftest)."""
    import tensorflow as tf

    from reproduce import batchsize

    assert len(tf.config.list_logical_devices("CPU")) == 2
    out = tmp_path / "shard"
    table = batchsize.main(["--profile", "smoke", "--out", str(out), "--no-progress", "--shard", "1/4",
                            "--strategy", "mirrored"])
    assert list(table["cell"]) == [batchsize.cell_key(batchsize.grid("smoke")[1])]  # cells 1, 5, ... of 4
    assert np.isfinite(table["train_loss"]).all() and np.isfinite(table["lambda1_hessianflow"]).all()


def test_paper_cell_on_mock_tfds(tmp_path):
    """The paper profile's data path (tfds MNIST / CIFAR-10 splits, [0, 1] pixels, CIFAR crop-and-flip) and
    one of its cells, shortened to one epoch, on tfds' offline mock data."""
    import dataclasses

    import tensorflow_datasets as tfds

    from reproduce import batchsize

    with tfds.testing.mock_data(num_examples=16):
        x_train, y_train, x_test, y_test = batchsize.load_data("cifar10", None, str(tmp_path / "tfds"))
        assert x_train.shape == (16, 32, 32, 3) and 0.0 <= x_train.min() and x_train.max() <= 1.0
        batch = next(iter(batchsize.training_data(x_train, y_train, 8, augment=True, seed=0)))
        assert batch[0].shape == (8, 32, 32, 3)

        profile = dataclasses.replace(
            batchsize.PROFILES["paper"], epochs=1, eval_samples=8,
            hessian={"hessianflow": batchsize.PowerIteration(max_iterations=2, tolerance=1e-2, num_samples=8)})
        args = batchsize.build_parser("batchsize", "").parse_args(
            ["--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "tfds"), "--no-progress"])
        args.strategy = "default"
        cell = {"profile": "paper", "dataset": "mnist", "model": "StdCNN", "schedule": "LR/BS", "momentum": 0.9,
                "batch_size": 8}
        row = batchsize.make_run_one(args, profile)(cell)
    assert row["learning_rate"] == pytest.approx(0.00015625 * 8)
    assert row["eps"] == 0.3 and row["pgd_steps"] == 40 and row["steps_per_epoch"] == 2
    assert np.isfinite(row["lambda1_hessianflow"]) and 0.0 <= row["pgd_accuracy"] <= 1.0
