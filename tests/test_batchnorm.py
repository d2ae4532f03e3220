"""Models of the batchnorm reproduction (tfadv.models.batchnorm_nets) and its runner (reproduce.batchnorm)."""
import math
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce.batchnorm import EXPERIMENT, cells, linear, training
from tfadv.analysis import corruptions
from tfadv.evaluation import compaction
from tfadv.experiments import main
from tfadv.experiments.identity import cell_key
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
    np.testing.assert_allclose(bn(h, training=True).numpy(), (h - h.mean(0)) / np.sqrt(h.var(0) + c), rtol=1e-4,
                               atol=1e-5)
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
    assert len(learned.get_layer("input_bn").trainable_weights) == 2 and learned.output_shape == (None, 2)


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
    with pytest.raises(ValueError, match="6n"):
        nets.cifar_resnet(12, normalization="fixup")
    with pytest.raises(ValueError, match="weight_decay"):
        nets.mlp((4,), 2, weight_decay=-1.0)


def test_vgg_with_and_without_bn():
    with_bn = nets.vgg("vgg11", batchnorm=True, input_shape=(32, 32, 3), width=0.125)
    without = nets.vgg("vgg11", batchnorm=False, input_shape=(32, 32, 3), width=0.125)
    assert len(_bn_layers(with_bn)) == 8 + 2 and not _bn_layers(without)
    assert with_bn.output_shape == without.output_shape == (None, 10)


# ------------------------------------------------------------------------------------------------- Fixup
@pytest.mark.slow(seconds=15)
def test_fixup_wrn_has_no_bn_and_trains():
    keras.utils.set_random_seed(0)
    model = nets.wide_resnet(10, 1, normalization="fixup", input_shape=(8, 8, 3), num_classes=4)
    assert not _bn_layers(model)
    assert len(_bn_layers(nets.wide_resnet(10, 1, normalization="batchnorm", input_shape=(8, 8, 3)))) == 7
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 3)).astype(np.float32), rng.integers(0, 4, 32)
    np.testing.assert_allclose(model(x).numpy(), 0.0)  # Fixup's zero classifier: the first loss is ln(4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0).history["loss"]
    assert history[0] == pytest.approx(math.log(4), rel=1e-4)
    assert all(np.isfinite(history)) and history[-1] < 0.8 * history[0]


@pytest.mark.slow(seconds=15)
def test_the_authors_cifar_resnet_110():
    bn = nets.cifar_resnet(110, normalization="batchnorm")
    fixup = nets.cifar_resnet(110, normalization="fixup")
    # 1.7 M parameters (He et al.'s ResNet-110); Fixup adds 5 scalars per block and 2 more, and drops BN's.
    count = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert count(bn) == pytest.approx(1.73e6, rel=0.01)
    assert not _bn_layers(fixup) and len(_bn_layers(bn)) == 1 + 54 * 2 + 2
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(fixup(x).numpy(), 0.0)  # zero classifier
    # Zero-initialised last BN of each block: at init every block is its shortcut, so the stem decides.
    assert all(float(np.abs(layer.gamma.numpy()).max()) == 0.0 for layer in _bn_layers(bn) if "bn2" in layer.name)
    assert bn.output_shape == fixup.output_shape == (None, 10)


def test_the_papers_wide_resnet_28_10():
    """Table 2's WRN at full size (the paper-profile wiring test runs WRN-10-2 to save CI minutes)."""
    bn = nets.wide_resnet(28, 10, normalization="batchnorm")
    fixup = nets.wide_resnet(28, 10, normalization="fixup")
    count = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert count(bn) == pytest.approx(36.5e6, rel=0.01)  # Zagoruyko & Komodakis, Table 1: 36.5 M
    assert not _bn_layers(fixup) and len(_bn_layers(bn)) == 2 * 12 + 1
    assert bn.output_shape == fixup.output_shape == (None, 10)


def test_weight_decay_reaches_every_parameter_of_the_authors_resnet():
    model = nets.cifar_resnet(8, normalization="fixup", input_shape=(8, 8, 3), weight_decay=1e-2)
    assert len(model.losses) == len(model.trainable_weights)


def test_slow_variables_get_a_tenth_of_the_step():
    keras.utils.set_random_seed(0)
    model = nets.cifar_resnet(8, normalization="fixup", input_shape=(8, 8, 3), num_classes=3)
    fast, slow = training.optimizer(training.Schedule(lr=0.1, epochs=1), 1), training.optimizer(
        training.Schedule(lr=0.1, epochs=1, slow_lr_factor=0.1), 1)
    grads = [keras.ops.ones_like(v) for v in model.trainable_variables]
    before = [v.numpy().copy() for v in model.trainable_variables]
    fast.apply(grads, model.trainable_variables)
    after_fast = [v.numpy().copy() for v in model.trainable_variables]
    for v, b in zip(model.trainable_variables, before):
        v.assign(b)
    slow.apply(grads, model.trainable_variables)
    for v, b, f in zip(model.trainable_variables, before, after_fast):
        expected = 0.1 if v.name in training.SLOW_VARIABLES else 1.0
        np.testing.assert_allclose(v.numpy() - b, expected * (f - b), rtol=1e-5, atol=1e-7)
    assert {v.name for v in model.trainable_variables} & set(training.SLOW_VARIABLES)
    # ... and inside Keras' compiled train step
    model.compile(optimizer=training.optimizer(training.Schedule(lr=0.1, epochs=1, slow_lr_factor=0.1), 1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    assert np.isfinite(model.fit(x, np.arange(4) % 3, epochs=1, verbose=0).history["loss"][0])


# ------------------------------------------------------------------------------------------ theory curve
def test_bn_max_trainable_depth_matches_the_blog_formula():
    # Values computed independently in the notes from the authors' blog formula.
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
    x, y = rng.uniform(*clip, (20, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 20)
    x_adv = training.pgd(model, eps=0.1, steps=30, step_size=0.01, clip=clip)(x, y).numpy()
    assert np.abs(x_adv - x).max() == pytest.approx(0.1, abs=1e-6)  # 30 steps of 0.01 reach the budget
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    noisy = corruptions.awgn(x, 1.0, clip_min=clip[0], clip_max=clip[1], seed=0)
    assert noisy.min() >= clip[0] and noisy.max() <= clip[1]


def test_toy_data_has_the_papers_moments():
    x, y = linear.toy_data(20000, seed=0)
    np.testing.assert_allclose(x[y == 1].mean(0), [5.0, 0.0], atol=0.03)
    np.testing.assert_allclose(np.cov(x[y == 0].T), linear.TOY_COV, atol=0.03)


def _run(profile, limit=None, **options):
    from reproduce.batchnorm.profiles import PROFILES

    return SimpleNamespace(profile=PROFILES[profile], profile_name=profile, seed=0, limit=limit,
                           options={"experiments": PROFILES[profile].experiments, **options})


def test_grid_is_one_cell_per_trained_model():
    grid = cells.grid(_run("demo"))
    keys = [cell_key(c) for c in grid]
    assert len(keys) == len(set(keys))
    assert {c["normalization"] for c in grid if c.get("model") == "vgg8"} == {"batchnorm", "none"}
    smoke = cells.grid(_run("smoke"))
    assert {c["normalization"] for c in smoke if c.get("model") == "wrn"} == {"batchnorm", "fixup"}
    paper = cells.grid(_run("paper"))
    assert {c["normalization"] for c in paper if c.get("model") == "resnet"} == {"batchnorm", "fixup"}
    assert {c["schedule"] for c in paper if c["experiment"] == "cifar"} == {"small", "large", "reference"}


def test_limit_keeps_every_code_path_in_a_small_grid():
    full, limited = cells.grid(_run("paper")), cells.grid(_run("paper", limit=2))
    assert len(limited) < len(full) / 10
    kinds = lambda grid: {(c["experiment"], c.get("model"), c.get("schedule"), c.get("variant")) for c in grid}
    later_vggs = {("cifar", m, "large", None) for m in ("vgg11", "vgg13", "vgg16", "vgg19")}  # vgg8's path
    assert kinds(limited) == kinds(full) - later_vggs
    assert {c["depth"] for c in limited if c["experiment"] == "depth_batch"} == {2, 60}


def test_every_paper_cell_says_what_it_costs():
    from reproduce.batchnorm import plan

    run = _run("paper")
    run.capped = lambda value: value  # no --limit; the costs are counted, nothing is built
    costs = {cell_key(c): (c, plan.cost(c, run)) for c in cells.grid(run)}
    assert all(c.passes > 0 and c.forwards > 0 and c.steps > 0 for _, c in costs.values())
    trained = [(cell, c) for cell, c in costs.values() if cell["experiment"] == "cifar"]
    assert {cell["model"] for cell, _ in trained} == {"vgg8", "wrn", "vgg11", "vgg13", "vgg16", "vgg19", "resnet"}
    for cell, c in trained:  # 45,000 images trained on (5,000 held out), plus the evaluation's attacks
        assert c.passes > run.profile.cifar.schedules[cell["schedule"]].epochs * 50_000, cell


def test_options_are_checked():
    with pytest.raises(SystemExit):
        main(EXPERIMENT, ["--profile", "smoke", "--experiments", "toy,bogus", "--no-progress"])
    with pytest.raises(SystemExit, match="paper"):
        cells.grid(_run("demo", experiments=("imagenet",)))


@pytest.mark.slow(seconds=45)
def test_smoke_run_writes_results_report_and_resumes(tmp_path):
    args = ["--profile", "smoke", "--out", str(tmp_path), "--no-progress", "--jobs", "1", "--experiments", "toy,tilting"]
    table = main(EXPERIMENT, args)["results"]
    assert set(table["experiment"]) == {"toy", "tilting"}
    assert {"tilt_deg", "clean", "awgn", "fgsm"} <= set(table["metric"])
    accuracies = table[table["metric"].isin(["clean", "awgn", "fgsm"])]["value"]
    assert accuracies.between(0, 1).all()
    report = (tmp_path / "report.md").read_text()
    assert "Table 1" in report and "(smoke)" in report and "| tilting.seeds | 1 |" in report
    assert "| {} | {} | tfadv |".format(*compaction.REPORT_SETTING) in report  # the shortcut the cascade takes
    assert "**reproduced** (" not in report  # one seed, one epoch: never more than partly
    assert (tmp_path / "fig1_toy.png").stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    assert len(stamps) == 2 + 1 + 4  # toy GD/BNGD, nearest centroid, four Table-1 variants x one seed
    again = main(EXPERIMENT, args)["results"]  # every cell is finished: nothing is recomputed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()} == stamps
    pd.testing.assert_frame_equal(table, again)


@pytest.mark.heavy
def test_full_smoke_profile(tmp_path):
    tables = main(EXPERIMENT, ["--profile", "smoke", "--out", str(tmp_path), "--no-progress", "--jobs", "1"])
    assert set(tables["results"]["experiment"]) == {"toy", "tilting", "dimension", "depth_batch", "cifar"}
    for name in ("fig2_depth_batch.png", "tables6_7_dimension.png", "table2_cifar.png", "report.md", "results.csv"):
        assert (tmp_path / name).is_file()
    assert "**reproduced** (" not in (tmp_path / "report.md").read_text()  # a verdict, not the rules
