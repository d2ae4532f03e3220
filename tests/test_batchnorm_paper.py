"""The paper profile's own code path, end to end on a CPU with local stand-ins, capped by --limit.

MNIST, CIFAR-10, CIFAR-10.1 v6 and CIFAR-10-C come from tensorflow-datasets' mock data, ImageNetV2 from a
tiny directory in its tarball layout, the keras.applications models from random weights saved under their
official file names. The paper's networks are built at full size (VGG8, the four ImageNet models) except
the residual families, at WRN-10-2 and ResNet-20, and Figure 2's deepest net, at 10 layers instead of 60: the
same builders and code paths (WRN-28-10 and ResNet-110 are built in tests/test_batchnorm.py; at full size
here they doubled the time). --limit caps images, steps, epochs, seeds and grid axes, so a first
GPU run cannot die on wiring. Three tests, so that none takes more than a few minutes of CI's budget: the
experiments on synthetic data and digits-sized nets, the CIFAR experiment, and the ImageNet one, marked heavy
(`make test-all`, not CI).
"""
import dataclasses

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from reproduce.batchnorm import EXPERIMENT, imagenet, profiles
from tfadv.experiments import main

LIMIT = "3"


def imagenet_weights(folder):
    """Random weights of the paper profile's four ImageNet models, saved as Keras' official h5 files."""
    from keras.src.legacy.saving import legacy_h5_format

    folder.mkdir()
    for name in ("vgg16", "vgg19", "resnet50", "densenet121"):
        model = imagenet.classifier(name, None)
        with h5py.File(folder / imagenet.official_file(name), "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        del model
        keras.backend.clear_session()  # the two VGGs alone hold 1.1 GB
    return folder


def imagenet_v2_dir(folder):
    for label in (3, 17, 999):
        (folder / str(label)).mkdir(parents=True)
        for k in range(2):
            pixels = np.random.default_rng(label + k).integers(0, 256, (40, 50, 3), dtype=np.uint8)
            (folder / str(label) / f"{k}.jpeg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return folder


def small_paper_profile(monkeypatch):
    paper = profiles.PROFILES["paper"]
    cifar = dataclasses.replace(paper.cifar, wrn_depth=10, wrn_width=2, resnet_depth=20)
    depth_batch = dataclasses.replace(paper.depth_batch, depths=(2, 10))
    monkeypatch.setitem(profiles.PROFILES, "paper", dataclasses.replace(paper, cifar=cifar, depth_batch=depth_batch))


def run_paper(tmp_path, *extra):
    import tensorflow_datasets as tfds

    args = ["--profile", "paper", "--limit", LIMIT, "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress",
            "--data-dir", str(tmp_path / "tfds"), *extra]
    with tfds.testing.mock_data(num_examples=64):
        return main(EXPERIMENT, args)


def assert_wiring_report(out, results):
    assert results["value"].notna().all()
    report = (out / "report.md").read_text()
    verdicts = [line for line in report.splitlines() if "** (paper) |" in line]
    assert verdicts and all("**inconclusive** (paper)" in line for line in verdicts)
    assert f"--limit {LIMIT}" in report
    assert pd.read_csv(out / "results.csv").shape[0] == len(results)


@pytest.mark.slow(seconds=125)
def test_paper_profile_runs_its_small_experiments_on_stand_ins(tmp_path, monkeypatch):
    small_paper_profile(monkeypatch)
    tables = run_paper(tmp_path, "--experiments", "toy,tilting,dimension,depth_batch")
    results, out = tables["results"], tmp_path / "out"
    assert set(results["experiment"]) == {"toy", "tilting", "dimension", "depth_batch"}
    for name in ("fig1_toy.png", "tables6_7_dimension.png", "fig2_depth_batch.png"):
        assert (out / name).stat().st_size > 0
    assert_wiring_report(out, results)


@pytest.mark.slow(seconds=220)
def test_paper_profile_runs_the_cifar_experiment_on_stand_ins(tmp_path, monkeypatch):
    small_paper_profile(monkeypatch)
    tables = run_paper(tmp_path, "--experiments", "cifar")
    results, out = tables["results"], tmp_path / "out"
    assert set(results["experiment"]) == {"cifar"}
    assert set(results["test_set"]) == {"train", "test", "cifar10_1_v6", "cifar10_c"}
    assert set(results["model"]) == {"vgg8", "wrn", "resnet"}
    beyond = results[results["metric"] == "autoattack_linf"]  # under --limit on the first run's BN model only
    assert set(beyond["model"]) == {"vgg8"} and set(beyond["normalization"]) == {"batchnorm"}
    assert set(tables["masking"]["model"]) == {"vgg8"}
    assert (out / "table2_cifar.png").stat().st_size > 0
    assert_wiring_report(out, results)


@pytest.mark.heavy  # the four keras.applications models: a minute and a half of CI that other code paths share
def test_paper_profile_imagenet_runs_on_stand_ins(tmp_path):
    tables = run_paper(tmp_path, "--experiments", "imagenet",
                       "--weights-dir", str(imagenet_weights(tmp_path / "weights")),
                       "--imagenet-dir", str(imagenet_v2_dir(tmp_path / "imagenet_v2")))
    results = tables["results"]
    assert set(results["experiment"]) == {"imagenet"}
    assert set(results["model"]) == {"vgg16", "vgg19", "resnet50", "densenet121"}
    assert results["weights"].str.startswith("NOT the official weights: ").all()  # random, under official names
    assert results["data"].str.startswith("directory of 6 images, listing sha256 ").all()
    assert_wiring_report(tmp_path / "out", results)
    assert "**Warning.** pretrained weights: 4 of 4 cells" in (tmp_path / "out" / "report.md").read_text()
