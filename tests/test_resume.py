"""A killed and resumed training ends where the uninterrupted one does: the training pipeline
(tfadv.datasets.pipeline) and its checkpoint (tfadv.training.TimedBackupAndRestore), Dropout's masks
included."""
from itertools import pairwise
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.datasets.pipeline import batches_per_pass, training_dataset, training_stream
from tfadv.training import TimedBackupAndRestore

X = np.random.default_rng(0).random((32, 6, 6, 1), np.float32) + 0.5  # nonzero: a crop's zero border shows
Y = np.arange(32) % 3
BATCH, EPOCHS, KILLED_AT = 8, 4, 2
STEPS = 3  # the stream's steps per epoch: epochs end inside passes of 4 batches


class Killed(Exception):
    pass


class KillAt(keras.callbacks.Callback):
    """A kill when epoch `epoch` begins: the epochs before it are checkpointed."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed(f"simulated kill at epoch {epoch}")


def fresh_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input(X.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(8),
                              keras.layers.Dropout(0.5), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def trained(kind: str, augment: bool, backup_dir: Path | None, kill: bool = False) -> list[np.ndarray]:
    """The weights after EPOCHS epochs of a fresh process's fit: the pipeline and the model made anew
    (resuming from `backup_dir` when it holds a checkpoint); `kill` stops it at KILLED_AT instead.
    `kind`: "dataset" (one pass an epoch), "stream" (epochs of STEPS batches), "fixed" (no shuffle)."""
    model = fresh_model()
    callbacks = [] if backup_dir is None else [TimedBackupAndRestore(str(backup_dir), every_seconds=0)]
    start = callbacks[0].resume_epoch() if callbacks else 0
    if kind == "fixed":
        data, steps = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH), None
    elif kind == "dataset":
        data, steps = training_dataset(X, Y, BATCH, augment=augment, seed=3, epochs_done=start), None
    else:
        data, steps = training_stream(X, Y, BATCH, augment=augment, seed=3, drop_remainder=True,
                                      batches_done=start * STEPS), STEPS
    model.fit(data, epochs=EPOCHS, steps_per_epoch=steps, shuffle=False, verbose=0,
              callbacks=callbacks + ([KillAt(KILLED_AT)] if kill else []))
    return model.get_weights()


@pytest.mark.parametrize("kind, augment", [("fixed", False), pytest.param("dataset", False, marks=pytest.mark.slow(seconds=10)),
                                          ("dataset", True), pytest.param("stream", True, marks=pytest.mark.slow(seconds=10))])
def test_killed_and_resumed_fit_ends_with_the_uninterrupted_weights(tmp_path, kind, augment):
    uninterrupted = trained(kind, augment, None)
    assert all(np.isfinite(w).all() for w in uninterrupted)  # NaN would equal NaN below
    with pytest.raises(Killed):
        trained(kind, augment, tmp_path, kill=True)
    assert TimedBackupAndRestore(str(tmp_path)).resume_epoch() == KILLED_AT
    resumed = trained(kind, augment, tmp_path)
    for mine, theirs in zip(resumed, uninterrupted):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def images_by_sample(passes) -> list[np.ndarray]:
    """Each pass's augmented images, sorted by sample (Y is the sample's id here)."""
    out = []
    for batches in passes:
        images, ids = (np.concatenate(a) for a in zip(*[(b[0].numpy(), b[1].numpy()) for b in batches]))
        out.append(images[np.argsort(ids)])
    return out


def test_augmentation_is_reproducible_and_drawn_afresh_every_pass():
    ids = np.arange(len(X))
    first, second = (training_dataset(X, ids, BATCH, augment=True, seed=3) for _ in range(2))
    a, b = (images_by_sample([ds, ds, ds]) for ds in (first, second))
    for mine, theirs in zip(a, b):  # the same seeds, the same crops (the map runs in parallel)
        np.testing.assert_array_equal(mine, theirs)
    changed = [np.mean([not np.array_equal(p[i], q[i]) for i in ids]) for p, q in pairwise(a)]
    assert min(changed) > 0.8, changed  # 162 crops and flips: a sample keeps its own only by chance
    assert not np.array_equal(images_by_sample([training_dataset(X, ids, BATCH, augment=True, seed=4)])[0], a[0])


@pytest.mark.parametrize("done", [0, 3, 4, 9])
def test_stream_resumes_at_its_batch(done):
    ids = np.arange(len(X))
    whole = [b[1].numpy() for b in training_stream(X, ids, 5, seed=3, drop_remainder=True).take(done + 7)]
    rest = [b[1].numpy() for b in training_stream(X, ids, 5, seed=3, drop_remainder=True, batches_done=done).take(7)]
    assert batches_per_pass(len(X), 5, drop_remainder=True) == 6
    np.testing.assert_array_equal(np.stack(rest), np.stack(whole[done:]))


def test_fit_refuses_to_resume_elsewhere_than_the_data_was_built_for(tmp_path):
    with pytest.raises(Killed):
        trained("dataset", False, tmp_path, kill=True)
    backup = TimedBackupAndRestore(str(tmp_path), every_seconds=0)
    assert backup.resume_epoch() == KILLED_AT
    (tmp_path / "latest.weights.h5").write_bytes(b"torn")  # killed while writing: Keras takes the one before
    model = fresh_model()
    with pytest.raises(RuntimeError, match="resume at epoch 2, but Keras restored the checkpoint of epoch 1"):
        model.fit(training_dataset(X, Y, BATCH, seed=3, epochs_done=KILLED_AT), epochs=EPOCHS, shuffle=False,
                  verbose=0, callbacks=[backup])


def test_a_kill_between_the_unsaved_state_and_keras_checkpoint_resumes_from_the_one_before(tmp_path):
    uninterrupted = trained("dataset", True, None)
    with pytest.raises(Killed):
        trained("dataset", True, tmp_path, kill=True)
    for name in ("latest.weights.h5", "training_metadata.json"):  # Keras' files as before its last write
        (tmp_path / name).write_bytes((tmp_path / f"{name}.bkp").read_bytes())
    assert TimedBackupAndRestore(str(tmp_path)).resume_epoch() == KILLED_AT - 1
    for mine, theirs in zip(trained("dataset", True, tmp_path), uninterrupted):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def adversarial_model(kind: str) -> keras.Model:
    """Free-2 or Stale (s = 3) on a net with Dropout: both carry state from batch to batch."""
    from tfadv.training import FreeAdversarialModel, StaleAdversarialModel

    net = fresh_model()
    common = dict(eps=0.1, clip_min=0.0, clip_max=2.0, batch_size=BATCH, seed=5)
    if kind == "free":
        model = FreeAdversarialModel(net, replays=2, **common)
    else:
        model = StaleAdversarialModel(net, staleness=3, steps=2, step_size=0.05, **common)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def adversarially_trained(kind: str, backup_dir: Path | None, kill: bool = False) -> list[np.ndarray]:
    model = adversarial_model(kind)
    callbacks = [] if backup_dir is None else [TimedBackupAndRestore(str(backup_dir), every_seconds=0)]
    start = callbacks[0].resume_epoch() if callbacks else 0
    data = training_dataset(X, Y, BATCH, seed=3, epochs_done=start)
    model.fit(data, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=callbacks + ([KillAt(KILLED_AT)] if kill else []))
    return model.get_weights() + [v.numpy() for v in model.training_state()]


@pytest.mark.parametrize("kind", ["free", pytest.param("stale", marks=pytest.mark.slow(seconds=15))])
def test_free_and_stale_resume_with_their_perturbation_and_queue(tmp_path, kind):
    uninterrupted = adversarially_trained(kind, None)
    assert all(np.isfinite(w).all() for w in uninterrupted)
    with pytest.raises(Killed):
        adversarially_trained(kind, tmp_path, kill=True)
    resumed = adversarially_trained(kind, tmp_path)
    for mine, theirs in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_a_checkpoint_of_another_models_state_is_refused(tmp_path):
    with pytest.raises(Killed):
        adversarially_trained("free", tmp_path, kill=True)
    with pytest.raises(RuntimeError, match="holds 2 saved states, this model and strategy have 6"):
        adversarially_trained("stale", tmp_path)


def watched(backup_dir: Path | None, kill: bool = False):
    """FGSM-RS training watched for catastrophic overfitting, sabotaged after epoch 5; `kill` stops it when
    epoch 4 begins. Returns the watch and the final weights."""
    from test_training import Sabotage, build, compile_, data

    from tfadv.training import CatastrophicOverfittingCallback, FastAdversarialModel

    x, y = data(64, seed=1)
    keras.utils.set_random_seed(0)
    model = compile_(build(FastAdversarialModel, batchnorm=False, alpha=0.0125, eps=0.01), lr=0.05)
    watch = CatastrophicOverfittingCallback(x[:32], y[:32], eps=0.01, steps=3, threshold=0.2)
    callbacks = [Sabotage(at=5), watch]
    if backup_dir is not None:
        callbacks.append(TimedBackupAndRestore(str(backup_dir), every_seconds=0, stateful_callbacks=[watch]))
    model.fit(x, y, batch_size=16, epochs=8, shuffle=False, verbose=0,
              callbacks=callbacks + ([KillAt(4)] if kill else []))
    return watch, model.get_weights()


def test_a_resumed_fit_judges_a_collapse_against_the_best_accuracy_seen_before_the_kill(tmp_path):
    uninterrupted, final = watched(None)
    assert uninterrupted.collapsed_at == (5, 24) and uninterrupted.best_accuracy > 0.6
    with pytest.raises(Killed):
        watched(tmp_path, kill=True)
    resumed, resumed_final = watched(tmp_path)
    assert resumed.history == uninterrupted.history
    assert resumed.collapsed_at == uninterrupted.collapsed_at
    for mine, theirs in zip(resumed_final, final, strict=True):  # the best weights of an epoch before the kill
        np.testing.assert_array_equal(mine, theirs)


def test_a_stateful_callback_listed_after_the_backup_is_refused_before_training(tmp_path):
    from test_training import build, compile_, data

    from tfadv.training import CatastrophicOverfittingCallback, FastAdversarialModel

    x, y = data(16)
    model = compile_(build(FastAdversarialModel, batchnorm=False, alpha=0.0125, eps=0.01))
    watch = CatastrophicOverfittingCallback(x, y, eps=0.01, steps=1)
    backup = TimedBackupAndRestore(str(tmp_path), stateful_callbacks=[watch])
    with pytest.raises(RuntimeError, match="list it before the backup"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[backup, watch])
    assert int(model.optimizer.iterations) == 0
    with pytest.raises(TypeError, match="stateful_callbacks takes callbacks with get_state"):
        TimedBackupAndRestore(str(tmp_path), stateful_callbacks=[KillAt(1)])
