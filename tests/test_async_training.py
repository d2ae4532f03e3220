"""Asynchronous adversarial training: real workers on logical CPU devices, a bounded queue, one trainer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.training.asynchronous import AdversarialBatch, admissible, assign_devices, staleness, train_async
from tfadv.attacks import PGD


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _dataset(n=96, batch=8):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 3, n).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0).batch(batch, drop_remainder=True)


def _attack(model):
    return PGD(model, eps=0.1, steps=2, from_logits=True, clip_min=0.0, clip_max=1.0)


def test_two_logical_cpu_devices_are_configured():
    assert len(tf.config.list_logical_devices("CPU")) >= 2


def test_devices_trainer_first_workers_round_robin():
    assert assign_devices(3, ["/d:0", "/d:1", "/d:2"]) == ("/d:0", ["/d:1", "/d:2", "/d:1"])
    assert assign_devices(2, ["/d:0"]) == ("/d:0", ["/d:0", "/d:0"])
    trainer, workers = assign_devices(1)
    assert trainer.endswith("CPU:0") and workers[0].endswith("CPU:1")


def test_admission_rule_is_the_staleness_bound():
    batch = AdversarialBatch(x=None, y=None, version=10, worker=0, craft_seconds=0.0)
    assert staleness(batch, 13) == 3
    assert admissible(batch, 13, 3) and not admissible(batch, 14, 3) and admissible(batch, 10**6, None)


def test_workers_and_trainer_on_two_devices_respect_the_staleness_bound():
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    # refresh_every=1 and a queue deeper than the bound: batches queued while the trainer traces its first
    # step are several versions old by the time it reaches them, so the bound has something to refuse.
    run = train_async(model, _attack, _dataset(), steps=12, num_workers=2, refresh_every=1, queue_size=6,
                      max_staleness=1)
    steps = run.steps
    assert list(steps["step"]) == list(range(12))
    assert steps["staleness"].between(0, 1).all()
    assert (steps["staleness"] == steps["step"] - steps["version"]).all()
    assert set(steps["worker"]) <= {0, 1}
    assert len(run.refused) > 0 and (run.refused["staleness"] > 1).all()
    assert run.worker_devices == [d.name for d in tf.config.list_logical_devices("CPU")][1:] * 2
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    summary = run.summary()
    assert summary["trainer_steps"] == 12 and summary["staleness_max"] <= 1


def test_snapshot_versions_follow_the_refresh_interval():
    run = train_async(_tiny_model(), _attack, _dataset(), steps=9, num_workers=1, refresh_every=4, queue_size=2)
    steps = run.steps
    assert (steps["version"] % 4 == 0).all()
    assert (steps["version"] <= steps["step"]).all()
    assert run.refused.empty


def test_synchronous_baseline_has_zero_staleness():
    run = train_async(_tiny_model(), _attack, _dataset(), steps=5, num_workers=0)
    assert list(run.steps["staleness"]) == [0] * 5 and run.worker_devices == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0, num_workers=1), "steps"),
        (dict(steps=3, num_workers=-1), "num_workers"),
        (dict(steps=3, num_workers=1, refresh_every=10, max_staleness=5), "stall"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_async(_tiny_model(), _attack, _dataset(), **kwargs)


def test_a_failing_worker_stops_the_trainer():
    def broken(model):
        def attack(x, y):
            raise FloatingPointError("boom")
        return attack

    def warm_broken(model):
        calls = []

        def attack(x, y):
            calls.append(1)
            if len(calls) > 1:
                raise FloatingPointError("boom")
            return x
        return attack

    with pytest.raises(RuntimeError, match="worker failed"):
        train_async(_tiny_model(), warm_broken, _dataset(), steps=5, num_workers=1)
    with pytest.raises(FloatingPointError):
        train_async(_tiny_model(), broken, _dataset(), steps=5, num_workers=1)
