"""tfadv.training: the adversarial train_step models under fit/evaluate/save, schedule and callbacks."""
import functools
import warnings

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfadv.training import (
    CatastrophicOverfittingCallback,
    CyclicLearningRate,
    FastAdversarialModel,
    FreeAdversarialModel,
    PGDAdversarialModel,
    StaleAdversarialModel,
    TimedBackupAndRestore,
)
from tfadv.training import callbacks
from tfadv.validation import EvaluationWarning, TfadvWarning

EPS = 0.1
MODELS = {
    "pgd": (PGDAdversarialModel, dict(steps=3, step_size=0.04)),
    "fast": (FastAdversarialModel, dict(alpha=0.125)),
    "free": (FreeAdversarialModel, dict(replays=2, batch_size=16)),
    "stale": (StaleAdversarialModel, dict(steps=2, step_size=0.06, staleness=2, batch_size=16)),
}


def build(cls, batchnorm=True, input_shape=(8, 8, 1), classes=3, extra_layer=None, **kwargs):
    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    if batchnorm:
        h = keras.layers.BatchNormalization()(h)
    if extra_layer is not None:
        h = extra_layer(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(2), dtype="float32")(h)
    kwargs.setdefault("eps", EPS)
    kwargs.setdefault("seed", 3)
    return cls(inputs, outputs, **kwargs)


def compile_(model, lr=0.1, momentum=0.9, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **kwargs,
    )
    return model


def data(n=40, shape=(8, 8, 1), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    # A learnable signal: the class shifts the image brightness.
    x = np.clip(rng.random((n,) + shape) * 0.5 + y.reshape((-1,) + (1,) * len(shape)) * 0.25, 0, 1)
    return x.astype("float32"), y


def weights_of(model):
    return [w.numpy().copy() for w in model.trainable_weights]


@pytest.mark.parametrize("name", [n if n == "pgd" else pytest.param(n, marks=pytest.mark.slow(seconds=12))
                                  for n in MODELS])
def test_fit_trains_and_evaluate_reports_clean_and_adversarial(name):
    cls, kwargs = MODELS[name]
    model = compile_(build(cls, weight_decay=5e-4, **kwargs))
    x, y = data(32)
    before = weights_of(model)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    # Named by their inputs: fit pays for no clean pass, so it logs adversarial metrics only.
    assert {"adv_loss", "adv_accuracy"} <= set(history.history) <= {"adv_loss", "adv_accuracy", "staleness"}
    assert np.all(np.isfinite(history.history["adv_loss"]))
    assert any(not np.allclose(b, a) for b, a in zip(before, weights_of(model)))
    updates_per_batch = kwargs.get("replays", 1)
    assert int(model.optimizer.iterations) == 2 * 2 * updates_per_batch  # 2 epochs of 2 batches
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "adv_accuracy", "adv_loss"}
    assert logs["adv_accuracy"] <= logs["accuracy"] + 1e-6
    assert logs["adv_loss"] >= logs["loss"] - 1e-4


class CountingLayer(keras.layers.Layer):
    """Identity that counts forward calls and backward passes through it (graph-safe)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.forward = keras.Variable(0, dtype="int64", trainable=False, name="forward")
        self.backward = keras.Variable(0, dtype="int64", trainable=False, name="backward")

    def call(self, inputs):
        self.forward.assign_add(1)
        counter = self.backward

        @tf.custom_gradient
        def identity(t):
            def grad(upstream):
                with tf.control_dependencies([counter.assign_add(1)]):
                    return tf.identity(upstream)

            return tf.identity(t), grad

        return identity(inputs)


@pytest.mark.parametrize(
    "name, passes_per_batch",
    [("free", 2), ("fast", 2), ("pgd", 4)],  # Free: m replays, 1 pass each; Fast: 2; PGD-3: K + 1
)
def test_forward_and_backward_passes_per_batch(name, passes_per_batch):
    cls, kwargs = MODELS[name]
    counter = CountingLayer()
    model = compile_(build(cls, extra_layer=counter, **kwargs))
    x, y = data(32)
    model.check_before_compute()  # fit's one-off output-kind check: one forward pass on a probe batch
    assert int(counter.forward.numpy()) == 1 and int(counter.backward.numpy()) == 0
    counter.forward.assign(0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(counter.forward.numpy()) == 2 * passes_per_batch
    assert int(counter.backward.numpy()) == 2 * passes_per_batch


def test_free_delta_comes_from_the_weight_update_backward_pass():
    model = compile_(build(FreeAdversarialModel, batchnorm=False, replays=1, batch_size=8), momentum=0.0)
    x, y = data(8)
    x_t, y_t = tf.constant(x), tf.constant(y)
    with tf.GradientTape() as tape:  # gradient at the weights *before* the step, delta = 0
        tape.watch(x_t)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y_t, model(x_t, training=True))
    expected = np.clip(x + EPS * np.sign(tape.gradient(loss, x_t).numpy()), 0, 1) - x
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(model.delta.numpy(), expected, atol=1e-6)
    assert np.abs(expected).max() == pytest.approx(EPS)


def test_free_delta_persists_and_short_last_batch_updates_a_slice():
    model = compile_(build(FreeAdversarialModel, replays=2, batch_size=16))
    x, y = data(20)  # batches of 16 and 4
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after_one = model.delta.numpy().copy()
    assert np.abs(after_one).max() <= EPS + 1e-6 and np.abs(after_one).max() > 0
    model.fit(x[16:], y[16:], batch_size=16, epochs=1, verbose=0)  # only the short batch
    after_two = model.delta.numpy()
    np.testing.assert_array_equal(after_two[4:], after_one[4:])
    assert not np.allclose(after_two[:4], after_one[:4])
    with pytest.raises(ValueError, match="built with batch_size=16"):
        model.fit(*data(32), batch_size=32, epochs=1, verbose=0)


class RecordingFree(FreeAdversarialModel):
    """Keeps the lowest and highest input any replay trained on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lowest = tf.Variable(np.inf, trainable=False)
        self.highest = tf.Variable(-np.inf, trainable=False)

    def descent_loss(self, x, y, sample_weight):
        self.lowest.assign(tf.minimum(self.lowest, tf.reduce_min(x)))
        self.highest.assign(tf.maximum(self.highest, tf.reduce_max(x)))
        return super().descent_loss(x, y, sample_weight)


@pytest.mark.parametrize("clip_inputs", [False, True])
def test_free_trains_outside_the_valid_range_only_as_wongs_code_does(clip_inputs):
    # A first batch in mid-range leaves delta at +-eps; a second of 0s and 1s then starts from it. Wong's
    # train_free.py (the default) trains on x + delta there, outside [0, 1]; Shafahi's codes clip x + delta.
    model = compile_(build(RecordingFree, replays=2, batch_size=16, clip_inputs=clip_inputs))
    x, y = data(32)
    x[:16] = 0.5
    x[16:] = np.indices(x[16:].shape).sum(axis=0) % 2
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    lowest, highest = float(model.lowest.numpy()), float(model.highest.numpy())
    if clip_inputs:
        assert lowest >= 0.0 and highest <= 1.0
    else:
        assert lowest < -EPS / 2 and highest > 1 + EPS / 2
    assert np.abs(model.delta.numpy()).max() <= EPS + 1e-6


class RecordingFast(FastAdversarialModel):
    """Keeps the last batch the weights were updated on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = tf.Variable(tf.zeros((16, 8, 8, 1)), trainable=False)

    def fit_on_batch(self, x_adv, y, sample_weight=None):
        self.seen.assign(x_adv)
        return super().fit_on_batch(x_adv, y, sample_weight)


def test_fast_delta_stays_in_the_ball_and_valid_range():
    model = compile_(build(RecordingFast, alpha=2 * EPS))  # alpha = 2 eps: projection must bite
    x, y = data(16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    delta = model.seen.numpy() - x
    assert np.abs(delta).max() <= EPS + 1e-6
    assert np.isclose(np.abs(delta), EPS, atol=1e-6).mean() > 0.5  # sign step of 2 eps lands on the boundary
    assert model.seen.numpy().min() >= 0.0 and model.seen.numpy().max() <= 1.0


@pytest.mark.parametrize("name", [n if n == "pgd" else pytest.param(n, marks=pytest.mark.slow(seconds=12))
                                  for n in MODELS])
def test_save_load_round_trip(name, tmp_path):
    cls, kwargs = MODELS[name]
    model = compile_(build(cls, attack_training_mode=name != "stale", weight_decay=1e-4, **kwargs))
    x, y = data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is cls
    for key in cls._adversarial_keys:
        assert getattr(loaded, key) == getattr(model, key), key
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert int(loaded.train_counter.numpy()) == int(model.train_counter.numpy())
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)  # compiled state came back too


def test_weight_decay_is_coupled_l2_in_the_loss():
    x, y = data(16)
    lr, wd = 0.1, 0.01
    updated = []
    for decay in (0.0, wd):
        model = compile_(build(PGDAdversarialModel, batchnorm=False, steps=2, step_size=0.05, rand_init=False,
                               weight_decay=decay), lr=lr, momentum=0.0)
        start = weights_of(model)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        updated.append(weights_of(model))
    for w0, plain, decayed in zip(start, *updated):
        np.testing.assert_allclose(decayed - plain, -lr * wd * w0, atol=1e-6)


def test_weight_decay_on_kernels_only():
    model = build(PGDAdversarialModel, steps=1, step_size=0.05, weight_decay=1.0, weight_decay_on="kernels")
    expected = 0.5 * sum(float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables if v.path.endswith("kernel"))
    assert float(model.l2_penalty()) == pytest.approx(expected, rel=1e-5)


def test_stale_batches_were_crafted_exactly_s_steps_earlier():
    s = 3
    model = compile_(build(StaleAdversarialModel, steps=1, step_size=0.05, staleness=s, batch_size=8))
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append([int(self.model.optimizer.iterations.numpy())])

        def on_train_batch_end(self, batch, logs=None):
            seen[-1].append(int(logs["staleness"]))

    x, y = data(80)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[Probe()])
    steps = [t for t, _ in seen]
    assert steps == list(range(10))
    crafted_at = [t - age for t, age in seen]
    assert crafted_at[:s] == steps[:s]  # filling: trains on the fresh batch
    assert crafted_at[s:] == [t - s for t in steps[s:]]
    # The ring holds the last s crafted batches, each tagged with its crafting step.
    assert sorted(model.queue_crafted_at.numpy().tolist()) == [7, 8, 9]


def test_stale_queue_returns_the_enqueued_examples():
    """With s = 1 and no random start, the batch trained on at step t is x_t's adversarial copy."""
    model = compile_(build(StaleAdversarialModel, steps=1, step_size=0.05, staleness=1, batch_size=8,
                           rand_init=False), lr=0.0)
    x, y = data(16)
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0, shuffle=False)
    queued = model.queue_x.numpy()[0]
    assert np.abs(queued - x[:8]).max() == pytest.approx(0.05, abs=1e-6)  # lr=0: crafted = fresh PGD step
    np.testing.assert_allclose(model.queue_y.numpy()[0], np.eye(3)[y[:8]])


def test_cyclic_learning_rate_shape_and_serialization():
    schedule = CyclicLearningRate(0.2, total_steps=100)
    values = [float(schedule(t)) for t in (0, 25, 50, 75, 100, 150)]
    np.testing.assert_allclose(values, [0.0, 0.1, 0.2, 0.1, 0.0, 0.0], atol=1e-7)
    mnist = CyclicLearningRate(5e-3, total_steps=10, peak_at=0.4)
    assert float(mnist(4)) == pytest.approx(5e-3) and float(mnist(7)) == pytest.approx(2.5e-3)
    revived = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(revived, CyclicLearningRate) and float(revived(25)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps"):
        CyclicLearningRate(0.1, total_steps=0)


def test_cyclic_learning_rate_drives_the_optimizer():
    model = compile_(build(FastAdversarialModel, alpha=0.1))
    model.optimizer.learning_rate = CyclicLearningRate(0.2, total_steps=6)
    x, y = data(32)
    before = weights_of(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 2 steps, the first with lr(0) = 0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.2 * 2 / 3)
    assert any(not np.allclose(b, a) for b, a in zip(before, weights_of(model)))


@pytest.mark.parametrize("how", ["arrays", "validation_split", *(
    pytest.param(how, marks=pytest.mark.slow(seconds=10)) for how in ("dataset", "second_fit", "mixed_precision"))])
def test_a_cyclic_schedule_that_ends_before_the_fit_is_flagged_with_its_numbers(how):
    """Free-m makes m optimizer updates per batch: a cyclic schedule sized in batches (2 epochs x 2 batches
    = 4) reaches learning rate 0 after a quarter of Free-4's 16 updates, and the rest learn nothing."""
    model = build(FreeAdversarialModel, replays=4, batch_size=16)
    optimizer = keras.optimizers.SGD(CyclicLearningRate(0.1, total_steps=4))
    if how == "mixed_precision":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data(40 if how == "validation_split" else 32)
    fit = dict(x=x, y=y, batch_size=16, epochs=2, verbose=0)
    if how == "dataset":
        fit = dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, verbose=0)
    if how == "validation_split":
        fit["validation_split"] = 0.2  # 32 training samples, 2 batches
    if how == "second_fit":
        fit["epochs"] = 1
        model.fit(**fit)  # updates 0..7: ends early too (warned), so look at the second fit's numbers
    with pytest.warns(TfadvWarning, match="CyclicLearningRate, total_steps=4") as record:
        model.fit(**fit)
    done = 8 if how == "second_fit" else 0
    planned = 8 if how == "second_fit" else 16
    assert f"this fit makes {planned} optimizer updates from update {done}, so its last " \
           f"{min(planned, done + planned - 4)} learn nothing" in str(record[0].message)
    assert record[0].filename == __file__


def test_a_cyclic_schedule_sized_in_optimizer_updates_is_silent():
    model = build(FreeAdversarialModel, replays=4, batch_size=16)
    model.compile(keras.optimizers.SGD(CyclicLearningRate(0.1, total_steps=2 * 2 * 4)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data(32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TfadvWarning)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 16


def test_a_schedule_one_update_per_epoch_short_is_within_tolerance():
    """total_steps = epochs * floor(samples / batch_size) misses each epoch's short batch: 1 idle update in
    101 is within IDLE_UPDATES_TOLERANCE; 2 in 102 are not."""
    from tfadv.training.schedules import IDLE_UPDATES_TOLERANCE, warn_if_schedule_ends_early

    assert IDLE_UPDATES_TOLERANCE == 0.01
    optimizer = keras.optimizers.SGD(CyclicLearningRate(0.1, total_steps=100))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TfadvWarning)
        warn_if_schedule_ends_early("m", optimizer, 101)
    with pytest.warns(TfadvWarning, match="its last 2 learn nothing"):
        warn_if_schedule_ends_early("m", optimizer, 102)


class Sabotage(keras.callbacks.Callback):
    """Forces a collapse: after epoch `at`, the classifier is replaced by noise."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            dense = self.model.layers[-1]
            dense.kernel.assign(np.random.default_rng(5).normal(0, 3, dense.kernel.shape))


def test_catastrophic_overfitting_callback_restores_best_weights():
    x, y = data(64, seed=1)
    model = compile_(build(FastAdversarialModel, batchnorm=False, alpha=0.0125, eps=0.01), lr=0.05)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)  # learn the easy signal first
    watch = CatastrophicOverfittingCallback(x[:32], y[:32], eps=0.01, steps=3, threshold=0.2)
    # Sabotage runs before the watcher in the epoch-end callback order, so the watcher sees the collapse.
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[Sabotage(at=1), watch])
    accuracies = [a for _, _, a in watch.history]
    assert watch.best_accuracy > 0.6
    assert watch.collapsed_at is not None and watch.collapsed_at[0] == 1
    assert accuracies[-1] < watch.best_accuracy - 0.2
    assert len(history.history["adv_loss"]) == 2  # stopped at the collapse
    restored = callbacks._restorable(model)
    assert len(restored) == len(model.weights) - 2  # all but the two random-start counters
    for variable, best in zip(restored, watch.best_weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), best)
    # Not rewound with the weights (it was, with set_weights): a later step would redraw used starts.
    assert int(model.train_counter.numpy()) == (5 + 2) * 4
    assert "adv_check_accuracy" in history.history


def test_l2_crafting_under_a_mean_loss_is_said_to_weaken_with_the_batch_and_exact_is_kept_in_the_config():
    x, y = data(32)
    clamped = compile_(build(PGDAdversarialModel, norm="2", eps=0.5, steps=2, step_size=0.25))
    with pytest.warns(EvaluationWarning, match="weaker the larger the batch"):
        clamped.fit(x, y, batch_size=16, epochs=1, verbose=0)
    summed = build(PGDAdversarialModel, norm="2", eps=0.5, steps=2, step_size=0.25)
    summed.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"))
    exact = compile_(build(PGDAdversarialModel, norm="2", eps=0.5, steps=2, step_size=0.25, l2_normalization="exact"))
    for model in (summed, exact):
        with warnings.catch_warnings():
            warnings.simplefilter("error", EvaluationWarning)
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert exact.get_config()["l2_normalization"] == "exact" and exact.threat.l2_normalization == "exact"
    with pytest.raises(ValueError, match="l2_normalization must be 'clamped' or 'exact'"):
        build(PGDAdversarialModel, norm="2", steps=2, step_size=0.25, l2_normalization="unit")


def test_catastrophic_overfitting_callback_quiet_on_healthy_training():
    x, y = data(64, seed=1)
    model = compile_(build(FastAdversarialModel, batchnorm=False, alpha=0.0125, eps=0.01), lr=0.05)
    watch = CatastrophicOverfittingCallback(x[:32], y[:32], eps=0.01, steps=3, every_steps=2)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[watch])
    assert watch.collapsed_at is None and len(history.history["adv_loss"]) == 3
    assert len(watch.history) == 3 * 4 // 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps=0.0, alpha=0.1), "eps"),
        (dict(eps=0.1, alpha=-1.0), "alpha"),
        (dict(eps=0.1, alpha=0.1, norm="1"), "norm"),
        (dict(eps=0.1, alpha=0.1, clip_min=1.0, clip_max=0.0), "clip_min"),
        (dict(eps=0.1, alpha=0.1, weight_decay_on="biases"), "weight_decay_on"),
        (dict(eps=0.1, alpha=0.1, attack_training_mode="train"), "attack_training_mode"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build(FastAdversarialModel, **kwargs)


def test_free_refuses_inference_mode_crafting():
    with pytest.raises(ValueError, match="attack_training_mode"):
        build(FreeAdversarialModel, replays=2, batch_size=8, attack_training_mode=False)


def test_attack_training_mode_controls_batchnorm_updates_while_crafting():
    x, y = data(16)
    moving = {}
    for mode in (True, False):
        model = compile_(build(PGDAdversarialModel, steps=3, step_size=0.04, attack_training_mode=mode), lr=0.0)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        moving[mode] = bn.moving_mean.numpy()
    # momentum 0.99 per BN update: 1 (training pass) vs 1 + 3 (attack passes) updates from zero.
    ratio = np.abs(moving[True]).sum() / np.abs(moving[False]).sum()
    assert ratio == pytest.approx((1 - 0.99**4) / (1 - 0.99), rel=0.1)


@pytest.mark.parametrize("backup_callback, epochs_rerun", [
    (keras.callbacks.BackupAndRestore, 1),
    (functools.partial(TimedBackupAndRestore, every_seconds=0.0), 1),  # a checkpoint every epoch, as Keras'
    (functools.partial(TimedBackupAndRestore, every_seconds=1e9), 3),  # none yet: the whole training reruns
], ids=["keras", "timed-every-epoch", "timed-not-due"])
def test_backup_and_restore_resumes_to_the_uninterrupted_result(tmp_path, backup_callback, epochs_rerun):
    x, y = data(32)

    def fresh():
        return compile_(build(PGDAdversarialModel, batchnorm=False, steps=2, step_size=0.05, seed=11))

    reference = fresh()
    reference.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated preemption")

    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="preemption"):
        fresh().fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
                    callbacks=[backup_callback(backup), Crash()])
    resumed = fresh()
    history = resumed.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
                          callbacks=[backup_callback(backup)])
    assert len(history.history["adv_loss"]) == epochs_rerun  # only the epochs after the last checkpoint ran
    for a, b in zip(weights_of(resumed), weights_of(reference)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_timed_backup_refuses_a_negative_interval(tmp_path):
    with pytest.raises(ValueError, match="every_seconds must be >= 0"):
        TimedBackupAndRestore(str(tmp_path), every_seconds=-1)


def test_inputs_outside_the_valid_range_are_refused():
    model = compile_(build(FastAdversarialModel, alpha=0.1))
    x, y = data(16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="clip_max=1.0"):
        model.fit(x * 255, y, batch_size=16, epochs=1, verbose=0)


@pytest.mark.parametrize("call, data_named", [
    ("fit", "the training data"), pytest.param("validation", "the validation data", marks=pytest.mark.slow(seconds=25)),
    pytest.param("evaluate", "the evaluation data", marks=pytest.mark.slow(seconds=20)),
    pytest.param("train_on_batch", "the batch given to train_on_batch", marks=pytest.mark.slow(seconds=20)),
    pytest.param("test_on_batch", "the batch given to test_on_batch", marks=pytest.mark.slow(seconds=20)),
])
def test_inputs_outside_the_valid_range_are_refused_under_xla(call, data_named):
    # XLA drops the step's asserts; the count of out-of-range batches the step keeps must still stop the run.
    model = compile_(build(FastAdversarialModel, alpha=0.1), jit_compile=True)
    x, y = data(32)
    bad = x * 16
    runs = {
        "fit": lambda: model.fit(bad, y, batch_size=16, epochs=1, verbose=0),
        "validation": lambda: model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(bad, y)),
        "evaluate": lambda: model.evaluate(bad, y, batch_size=16, verbose=0),
        "train_on_batch": lambda: model.train_on_batch(bad[:16], y[:16]),
        "test_on_batch": lambda: model.test_on_batch(bad[:16], y[:16]),
    }
    with pytest.raises(ValueError, match=rf"FastAdversarialModel: 1 batch\(es\) of {data_named} had inputs outside "
                                         r"the valid range \[clip_min=0.0, clip_max=1.0\]"):
        runs[call]()
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # valid inputs train on, the count reset
    assert model.jit_compile and np.isfinite(history.history["adv_loss"][0])
