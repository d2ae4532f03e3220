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


@pytest.mark.parametrize("name", ["free", pytest.param("pgd", marks=pytest.mark.slow(seconds=20))])
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
    pytest.param(StaleAdversarialModel, dict(steps=1, step_size=0.1, staleness=2, batch_size=16),
                 marks=pytest.mark.slow(seconds=15)),
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


@pytest.mark.slow(seconds=35)
def test_evaluate_gives_the_same_numbers_for_any_batch_size_or_replica_count():
    """evaluate's random starts were keyed on the row within the batch and the batch count, so its adversarial
    accuracy moved with batch_size; now on each sample's position: tfadv.attacks.PGD with those sample ids."""
    from tfadv.attacks import PGD

    kwargs = dict(steps=2, step_size=0.05, eval_steps=3, eval_step_size=0.05)
    x, y = data(48)
    single = compile_(build(PGDAdversarialModel, batchnorm=False, **kwargs))
    strategy = two_cpus()
    with strategy.scope():
        mirrored = compile_(build(PGDAdversarialModel, batchnorm=False, **kwargs))
    mirrored.set_weights(single.get_weights())
    logs = [model.evaluate(x, y, batch_size=size, verbose=0, return_dict=True)
            for model in (single, mirrored) for size in (16, 48, 20)]
    for other in logs[1:]:
        assert other["adv_accuracy"] == pytest.approx(logs[0]["adv_accuracy"], abs=1e-6)
        assert other["adv_loss"] == pytest.approx(logs[0]["adv_loss"], rel=1e-5)
    attack = PGD(single, single.eps, "inf", steps=3, step_size=0.05, seed=single.seed + 1, from_logits=True,
                 clip_min=0.0, clip_max=1.0, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_adv = attack(x, y, sample_ids=np.arange(len(x)), restart=0)
    by_hand = np.mean(np.argmax(single.predict(x_adv, verbose=0), -1) == y)
    assert logs[0]["adv_accuracy"] == pytest.approx(by_hand, abs=1e-6)


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


@pytest.mark.slow(seconds=30)
def test_a_resumed_mirrored_free_run_goes_on_from_each_replicas_perturbation(tmp_path):
    from test_resume import Killed, KillAt
    from tfadv.training import TimedBackupAndRestore
    from tfadv.training.backup import replicas

    strategy = two_cpus()
    x, y = data(64)

    def trained(backup_dir=None, kill=False):
        with strategy.scope():
            model = compile_(build(FreeAdversarialModel, batchnorm=False, replays=2, batch_size=16))
        callbacks = [] if backup_dir is None else [TimedBackupAndRestore(str(backup_dir), every_seconds=0)]
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
                  callbacks=callbacks + ([KillAt(2)] if kill else []))
        return model, weights_of(model) + [part.numpy() for part in replicas(model.delta)]

    model, uninterrupted = trained()
    halves = replicas(model.delta)
    assert len(halves) == 2 and not np.allclose(halves[0].numpy(), halves[1].numpy())  # each replica its own
    with pytest.raises(Killed):
        trained(tmp_path, kill=True)
    for mine, theirs in zip(trained(tmp_path)[1], uninterrupted, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
