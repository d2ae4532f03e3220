"""Models of the batchnorm reproduction (tfadv.models.batchnorm_nets) and its runner (reproduce.batchnorm)."""
import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from reproduce import batchnorm as runner
from tfadv.models import batchnorm_nets as nets


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


# ------------------------------------------------------------------------------------------------ BN's c
@pytest.mark.parametrize("c", [1e-3, 0.5])
def test_bn_epsilon_is_honoured_in_layers_and_in_the_normalisation(c):
    model = nets.deep_fc((4,), 3, depth=2, width=5, batchnorm=True, epsilon=c)
    layers = _bn_layers(model)
    assert len(layers) == 2 and all(layer.epsilon == c for layer in layers)

    h = np.random.default_rng(0).normal(2.0, 0.3, (16, 5)).astype(np.float32)
    bn = layers[0]
    train_out = bn(h, training=True).numpy()  # batch statistics, biased variance
    expected = (h - h.mean(0)) / np.sqrt(h.var(0) + c)
    np.testing.assert_allclose(train_out, expected, rtol=1e-4, atol=1e-5)

    mean, var = np.full(5, 1.5, np.float32), np.full(5, 0.04, np.float32)
    bn.moving_mean.assign(mean)
    bn.moving_variance.assign(var)
    np.testing.assert_allclose(bn(h, training=False).numpy(), (h - mean) / np.sqrt(var + c), rtol=1e-4, atol=1e-5)


def test_linear_model_bn_affine_fixed_or_learned():
    fixed = nets.linear_classifier((8, 8, 1), batchnorm="fixed", epsilon=0.1)
    bn = fixed.get_layer("input_bn")
    assert bn.epsilon == 0.1 and not bn.center and not bn.scale and not bn.trainable_weights
    learned = nets.linear_classifier((8, 8, 1), batchnorm="learned")
    gamma = learned.get_layer("input_bn").gamma.numpy()
    assert 0.0 <= gamma.min() and gamma.max() <= 1.0 and gamma.std() > 0.05  # gamma ~ U(0, 1)
    assert len(learned.get_layer("input_bn").trainable_weights) == 2
    assert learned.output_shape == (None, 2)


def test_signed_logits_make_softmax_cross_entropy_the_logistic_loss():
    z = np.array([[-3.0], [0.0], [2.5]], np.float32)
    logits = nets.SignedLogits()(z).numpy()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(np.ones(3), logits).numpy()
    np.testing.assert_allclose(ce, np.log1p(np.exp(-z[:, 0])), rtol=1e-5)


def test_mlp_has_one_bn_layer_and_half_width_hidden_layers():
    model = nets.mlp((8, 8, 1), 10, batchnorm_layer=0)
    assert len(_bn_layers(model)) == 1
    assert [model.get_layer(f"dense_{i}").units for i in (0, 1)] == [32, 32]
    assert not _bn_layers(nets.mlp((8, 8, 1), 10))
    with pytest.raises(ValueError, match="batchnorm_layer"):
        nets.mlp((8, 8, 1), 10, batchnorm_layer=2)


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="epsilon"):
        nets.batch_norm(0.0)
    with pytest.raises(ValueError, match="num_classes"):
        nets.linear_classifier((4,), 1)
    with pytest.raises(ValueError, match="variant"):
        nets.vgg("vgg7", batchnorm=True)
    with pytest.raises(ValueError, match="6n"):
        nets.wide_resnet(12, 1, normalization="fixup")
    with pytest.raises(ValueError, match="weight_decay"):
        nets.mlp((4,), 2, weight_decay=-1.0)


def test_vgg_with_and_without_bn():
    with_bn = nets.vgg("vgg11", batchnorm=True, input_shape=(32, 32, 3), width=0.125)
    without = nets.vgg("vgg11", batchnorm=False, input_shape=(32, 32, 3), width=0.125)
    assert len(_bn_layers(with_bn)) == 8 + 2 and not _bn_layers(without)
    assert with_bn.output_shape == without.output_shape == (None, 10)


# ------------------------------------------------------------------------------------------------- Fixup
def test_fixup_wrn_has_no_bn_and_trains():
    keras.utils.set_random_seed(0)
    model = nets.wide_resnet(10, 1, normalization="fixup", input_shape=(8, 8, 3), num_classes=4)
    assert not _bn_layers(model)
    assert len(_bn_layers(nets.wide_resnet(10, 1, normalization="batchnorm", input_shape=(8, 8, 3)))) == 7
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    # Fixup's zero-initialised classifier: every logit starts at 0, so the first loss is ln(4).
    np.testing.assert_allclose(model(x).numpy(), 0.0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0).history["loss"]
    assert history[0] == pytest.approx(math.log(4), rel=1e-4)
    assert all(np.isfinite(history)) and history[-1] < 0.8 * history[0]


# ------------------------------------------------------------------------------------------ theory curve
def test_bn_max_trainable_depth_matches_the_blog_formula():
    # Values computed independently in the anchors notes from the authors' blog formula.
    expected = {4: 15.8, 8: 30.9, 16: 37.0, 32: 39.6, 64: 40.7, 128: 41.2, 1024: 41.7}
    for batch, depth in expected.items():
        assert nets.bn_max_trainable_depth(batch) == pytest.approx(depth, abs=0.05)
    with pytest.raises(ValueError, match="batch_size >= 4"):
        nets.bn_max_trainable_depth(3)


# -------------------------------------------------------------------------------------- runner pieces
def test_bim_and_awgn_respect_their_bounds():
    keras.utils.set_random_seed(0)
    model = nets.mlp((6, 6, 1), 3, hidden_units=(16, 16), batchnorm_layer=0)
    rng = np.random.default_rng(0)
    clip = (-0.5, 2.0)
    x = rng.uniform(*clip, (20, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    x_adv = runner.bim(model, 0.1, 30, 0.01, clip)(x, y).numpy()
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert np.abs(x_adv - x).max() >= 0.1 - 1e-6  # 30 steps of 0.01 reach the budget
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    noisy = runner.noise.awgn(x, 1.0, clip_min=clip[0], clip_max=clip[1], seed=0)
    assert noisy.min() >= clip[0] and noisy.max() <= clip[1]


def test_toy_data_has_the_papers_moments():
    x, y = runner.toy_data(20000, seed=0)
    np.testing.assert_allclose(x[y == 1].mean(0), [5.0, 0.0], atol=0.03)
    np.testing.assert_allclose(np.cov(x[y == 0].T), runner.TOY_COV, atol=0.03)


@pytest.mark.parametrize("measured, paper, verdict", [
    ((-10.0, 1.0), -6.0, "reproduced"), ((-30.0, 1.0), -6.0, "partly reproduced"),
    ((-1.0, 1.0), -6.0, "not reproduced"), ((4.0, 1.0), -6.0, "not reproduced"),
    ((-6.0, float("nan")), -6.0, "partly reproduced"), (None, -6.0, "not measured")])
def test_delta_verdicts(measured, paper, verdict):
    assert runner.delta_verdict(measured, paper) == verdict


def test_grid_is_one_cell_per_trained_model_and_shards_partition_it():
    from tfadv.experiments.runner import cell_key, select_shard

    cells = runner.grid(runner.PROFILES["demo"], runner.PROFILES["demo"].experiments, 0)
    keys = [cell_key(c) for c in cells]
    assert len(keys) == len(set(keys))
    assert {c["normalization"] for c in cells if c.get("model") == "wrn"} == {"batchnorm", "fixup"}
    shards = [select_shard(cells, (i, 3)) for i in range(3)]
    assert sorted(cell_key(c) for s in shards for c in s) == sorted(keys)


def test_runner_rejects_unknown_experiments(tmp_path):
    with pytest.raises(SystemExit, match="unknown experiments"):
        runner.main(["--profile", "smoke", "--out", str(tmp_path), "--experiments", "toy,bogus"])
    with pytest.raises(SystemExit, match="paper"):
        runner.main(["--profile", "smoke", "--out", str(tmp_path), "--experiments", "imagenet"])


def test_smoke_run_writes_results_report_and_resumes(tmp_path):
    args = ["--profile", "smoke", "--out", str(tmp_path), "--no-progress", "--experiments", "toy,tilting"]
    table = runner.main(args)
    assert set(table["experiment"]) == {"toy", "tilting"}
    assert {"tilt_deg", "clean", "awgn", "fgsm"} <= set(table["metric"])
    assert ((table["metric"] != "tilt_deg") | table["value"].between(0, 180)).all()
    accuracies = table[table["metric"].isin(["clean", "awgn", "fgsm"])]["value"]
    assert accuracies.between(0, 1).all()
    report = (tmp_path / "report.md").read_text()
    assert "Table 1" in report and "(smoke)" in report and "Settings tfadv chose" in report
    assert (tmp_path / "fig1_toy.png").stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    assert len(stamps) == 2 + 1 + 4  # toy GD/BNGD, nearest centroid, four Table-1 variants x one seed
    again = runner.main(args)  # every cell is finished: nothing is recomputed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()} == stamps
    pd.testing.assert_frame_equal(table, again)


@pytest.mark.slow
def test_full_smoke_profile(tmp_path):
    table = runner.main(["--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    assert set(table["experiment"]) == set(runner.PROFILES["smoke"].experiments)
    for name in ("fig2_depth_batch.png", "tables6_7_dimension.png", "table2_cifar.png", "report.md", "results.csv"):
        assert (tmp_path / name).is_file()


# --------------------------------------------------------------------------- the paper profile's data path
def _tiny_paper_profile():
    import dataclasses

    return dataclasses.replace(runner.PROFILES["paper"], cifar_models=("vgg8",), cifar_seeds=1, cifar_epochs=1,
                               cifar_width=1 / 16, cifar_augment=True, cifar_pgd_steps=1, eval_limit=8,
                               tilt_train_per_class=5, tilt_epochs=1)


def test_paper_profile_reads_mnist_3_vs_7_through_tfds(tmp_path):
    import argparse

    import tensorflow_datasets as tfds

    runner._cache.clear()
    with tfds.testing.mock_data(num_examples=200):
        x_tr, y_tr, x_te, y_te, x_ref, y_ref = runner.tilting_data(_tiny_paper_profile(), str(tmp_path), seed=0)
        rows = runner.run_tilting({"experiment": "tilting", "variant": "bngd_fixed", "seed": 0},
                                  _tiny_paper_profile(), argparse.Namespace(data_dir=str(tmp_path), out=str(tmp_path)))
    runner._cache.clear()
    assert x_tr.shape == (10, 28, 28, 1) and set(y_tr) == {0, 1} and 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert set(y_ref) <= {0, 1} and len(x_ref) >= len(x_tr)
    assert {r["metric"] for r in rows} >= {"tilt_deg", "clean", "awgn", "fgsm"}


def test_paper_profile_cifar_cell_on_mock_tfds(tmp_path):
    """CIFAR-10, CIFAR-10.1 v6 and the CIFAR-10-C noise corruptions, read through tfds (mocked), one tiny VGG."""
    import argparse

    import tensorflow_datasets as tfds

    runner._cache.clear()
    args = argparse.Namespace(data_dir=str(tmp_path), out=str(tmp_path))
    cell = {"experiment": "cifar", "model": "vgg8", "normalization": "batchnorm", "seed": 0}
    with tfds.testing.mock_data(num_examples=24):
        rows = runner.run_cifar(cell, _tiny_paper_profile(), args)
        assert len(list((tmp_path / "models").glob("*.weights.h5"))) == 1
        again = runner.run_cifar(cell, _tiny_paper_profile(), args)  # weights on disk: evaluation only
    runner._cache.clear()
    table = pd.DataFrame(rows)
    assert set(table["test_set"]) == {"train", "test", "cifar10_1_v6", "cifar10_c"}
    c10c = table[table["test_set"] == "cifar10_c"].set_index("metric")["value"]
    for corruption in runner.noise.CIFAR10C_NOISE_CORRUPTIONS:
        severities = [c10c[f"{corruption}_s{s}"] for s in range(1, 6)]
        assert c10c[corruption] == pytest.approx(np.mean(severities))
    pd.testing.assert_frame_equal(table, pd.DataFrame(again))
