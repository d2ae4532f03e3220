"""The `minibatch` runner: smoke run end to end, resume after kill -9, shards + merge equal one run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce import minibatch

ROOT = Path(__file__).resolve().parents[1]
# A reduced smoke grid for the bookkeeping tests: L2 only, float32, both attacks and losses = 6 cells.
SMALL = ["--profile", "smoke", "--norms", "l2", "--precisions", "float32", "--no-loss-scaling-line", "--no-progress"]
TIMING = ["seconds"]


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=TIMING).sort_values("cell").reset_index(drop=True)


def _finished_cells(out: Path) -> int:
    cells = out / "cells"
    return sum(1 for p in cells.iterdir() if not p.name.startswith(".")) if cells.is_dir() else 0


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    table = minibatch.main([*SMALL, "--out", str(out)])
    return out, table


def test_smoke_end_to_end_holds_the_grid(tmp_path):
    table = minibatch.main(["--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the fp16 cells
    profile = minibatch.PROFILES["smoke"]
    # 3 precision settings x 2 norms x 2 losses x (FGM + PGD x runs) x batch sizes
    expected = 3 * 2 * 2 * (1 + profile.runs) * len(profile.batch_sizes)
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == len(table) == expected and on_disk["cell"].is_unique
    for name in ("fig2_success_l2.png", "fig3_success_linf.png", "fig_mechanism.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert set(on_disk["batch_size"]) == set(profile.batch_sizes)
    assert set(on_disk["loss"]) == {"mean", "sum"} and set(on_disk["norm"]) == {"l2", "linf"}
    assert set(zip(on_disk["precision"], on_disk["loss_scale"])) == set(minibatch.PRECISIONS)
    for column in ("success_rate", "clean_error", "zero_grad_frac", "floor_clamp_frac"):
        assert on_disk[column].between(0, 1).all(), column
    assert (on_disk["images"] == profile.images).all()
    # Keras' loss path: the float32 softmax is bypassed via its logits; the float16 output is clipped.
    paths = on_disk.groupby("precision")["loss_path"].unique()
    assert list(paths["float32"]) == ["softmax_logits_shortcut"]
    assert list(paths["mixed_float16"]) == ["clipped_probabilities"]
    # Attacks never leave the eps ball.
    l2 = on_disk[on_disk["norm"] == "l2"]
    assert (l2["median_pert_l2"] <= l2["eps"] * (1 + 1e-4)).all()
    report = (tmp_path / "report.md").read_text()
    assert "94.54%" in report and "85.47%" in report and "**not measured** (smoke)" in report
    assert "per-sample loss scaling" in report and "fig2_success_l2.png" in report


def test_shards_and_merge_equal_one_run(small_run, tmp_path):
    full_dir, full = small_run
    shards = [tmp_path / "s0", tmp_path / "s1"]
    for i, out in enumerate(shards):
        part = minibatch.main([*SMALL, "--out", str(out), "--shard", f"{i}/2"])
        assert 0 < len(part) < len(full)
    merged = minibatch.main([*SMALL, "--out", str(tmp_path / "merged"), "--merge", *map(str, shards)])
    pd.testing.assert_frame_equal(_comparable(merged), _comparable(full))
    assert (tmp_path / "merged" / "report.md").exists()


def test_resume_after_kill_gives_the_same_table(small_run, tmp_path):
    full_dir, full = small_run
    out = tmp_path / "killed"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "reproduce.minibatch", *SMALL, "--out", str(out)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "w"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if _finished_cells(out) >= 1:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    finished = _finished_cells(out)
    assert finished >= 1, f"no cell finished before the kill: {(tmp_path / 'log').read_text()[-2000:]}"
    assert finished < len(full), "the run ended before the kill; nothing was resumed"
    resumed = minibatch.main([*SMALL, "--out", str(out)])
    pd.testing.assert_frame_equal(_comparable(resumed), _comparable(full))


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        minibatch.main(["--profile", "smoke", "--out", str(tmp_path), "--norms", "1"])
    with pytest.raises(SystemExit):
        minibatch.main(["--profile", "smoke", "--out", str(tmp_path), "--models", "vgg16"])


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit):
        minibatch.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--shard", "--merge", "--profile", "--weights-dir", "--imagenet-dir", "--batch-sizes",
                   "--precisions", "--l2-rand-init"):
        assert option in text


@pytest.mark.slow
def test_paper_profile_path_on_local_files(tmp_path):
    """The paper profile's own loading code, offline: ImageNetV2 layout + an official-format (legacy .h5)
    weights file, one ImageNet model at 224, FGM only."""
    import h5py
    import tensorflow as tf
    from keras.src.legacy.saving import legacy_h5_format

    from tfadv.models.imagenet import ARCHITECTURES, build_imagenet_model

    images = tmp_path / "imagenetv2"
    for label in (1, 500):
        (images / str(label)).mkdir(parents=True)
        pixels = np.random.default_rng(label).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        (images / str(label) / "a.jpeg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    weights = tmp_path / "weights"
    weights.mkdir()
    model = build_imagenet_model("resnet50", weights=None)
    with h5py.File(weights / ARCHITECTURES["resnet50"].weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    out = tmp_path / "out"
    table = minibatch.main(["--profile", "paper", "--out", str(out), "--models", "resnet50", "--norms", "l2",
                            "--attacks", "FGM", "--precisions", "float32", "--no-loss-scaling-line",
                            "--batch-sizes", "1,2", "--images", "2", "--imagenet-dir", str(images),
                            "--weights-dir", str(weights), "--no-progress"])
    assert len(table) == 4 and (table["images"] == 2).all() and (table["model"] == "resnet50").all()
    assert "**not measured** (paper)" in (out / "report.md").read_text()


def test_temperature_scaling_recovers_a_known_temperature():
    from tfadv.models.digits_cnn import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 4.0, (4000, 10))
    true_t = 2.5
    p = np.exp(logits / true_t)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert abs(fit_temperature(logits, labels) - true_t) < 0.15 * true_t


def test_digits_cnn_refuses_to_train_under_mixed_precision():
    from tfadv.models.digits_cnn import train_digits_cnn

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with pytest.raises(RuntimeError, match="float32"):
            train_digits_cnn(np.zeros((4, 16, 16, 3), "float32"), np.arange(4))
    finally:
        keras.mixed_precision.set_global_policy(previous)
