"""tfadv.training under MirroredStrategy (2 logical CPUs, from conftest) and mixed_float16."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from tfadv.training import FastAdversarialModel, FreeAdversarialModel, PGDAdversarialModel, StaleAdversarialModel
from tfadv.training.distributed import mirrored_strategy
from test_training import build, compile_, data, weights_of

DETERMINISTIC = {  # no random start, no BatchNorm: one device and two replicas must agree exactly
    "pgd": (PGDAdversarialModel, dict(steps=2, step_size=0.05, rand_init=False, weight_decay=1e-3)),
    "free": (FreeAdversarialModel, dict(replays=2, batch_size=16, weight_decay=1e-3)),
}


def two_cpus():
    """The process's one strategy over the two logical CPUs (see mirrored_strategy)."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py configures them)")
    return mirrored_strategy(tuple(d.name for d in devices[:2]))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_mirrored_fit_matches_single_device(name):
    cls, kwargs = DETERMINISTIC[name]
    x, y = data(32)
    single = compile_(build(cls, batchnorm=False, **kwargs))
    single.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    strategy = two_cpus()
    with strategy.scope():
        mirrored = compile_(build(cls, batchnorm=False, **kwargs))
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2
    history = mirrored.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(weights_of(mirrored), weights_of(single)):
        np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(history.history["adv_loss"][0], single.history.history["adv_loss"][0], rtol=1e-5)
    logs = mirrored.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert 0.0 <= logs["adv_accuracy"] <= logs["accuracy"] <= 1.0


@pytest.mark.parametrize("cls, kwargs", [
    (FastAdversarialModel, dict(alpha=0.125)),
    (StaleAdversarialModel, dict(steps=1, step_size=0.1, staleness=2, batch_size=16)),
])
def test_mirrored_fit_with_batchnorm_and_random_starts(cls, kwargs):
    strategy = two_cpus()
    with strategy.scope():
        model = compile_(build(cls, **kwargs))
    x, y = data(64)
    before = weights_of(model)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0])
    assert any(not np.allclose(b, a) for b, a in zip(before, weights_of(model)))
    if cls is StaleAdversarialModel:
        assert history.history["staleness"][-1] == 2


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("cls, kwargs", [
    (FastAdversarialModel, dict(alpha=0.125)),
    (FreeAdversarialModel, dict(replays=2, batch_size=16)),
])
def test_mixed_float16_scales_the_loss(cls, kwargs, mixed_float16):
    """One update under mixed_float16 moves the weights as much as in float32: the custom train_step
    scaled the loss, so LossScaleOptimizer's unscaling did not shrink the step by 2**15."""
    x, y = data(16)
    model = compile_(build(cls, batchnorm=False, **kwargs), momentum=0.0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[1].compute_dtype == "float16"
    start = weights_of(model)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["adv_loss"][0])
    mixed_step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights_of(model), start)))

    keras.mixed_precision.set_global_policy("float32")
    reference = compile_(build(cls, batchnorm=False, **kwargs), momentum=0.0)
    reference.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    fp32_step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights_of(reference), start)))
    assert 0.5 < mixed_step / fp32_step < 2.0
