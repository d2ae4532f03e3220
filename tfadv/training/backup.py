"""keras.callbacks.BackupAndRestore that writes its checkpoint at most once per `every_seconds`, and tells
the epoch it will resume at before `fit` starts.

Keras writes the weights and the optimizer state after every epoch. When epochs take milliseconds (the demo
profiles' digits nets), that file is a tenth of the training time (batchsize demo, measured); when they take
minutes, every epoch is still saved. A run killed between checkpoints resumes from the last one, so it loses
at most `every_seconds` of training and never a finished epoch's result that was written elsewhere.

Keras restores the weights, the optimizer and the epoch, but neither the input pipeline nor the model's
random state, so a resumed run would differ from an uninterrupted one. A resumed process builds its dataset
anew, and its first epoch would see the first epoch's shuffle: `resume_epoch()` reads the epoch from the
checkpoint so that the dataset can be built from it (tfadv.datasets.pipeline: epochs_done, batches_done),
and `fit` refuses to go on if Keras restored another epoch. Keras also leaves out the states of the model's
SeedGenerators (Dropout's masks) and what an adversarial train step carries from batch to batch (Free's
perturbation, Stale's queue: AdversarialModel.training_state), so they would start over: this callback
saves them next to its checkpoint and restores them with it, each replica's own under a distribution
strategy. So too the state of the callbacks given as `stateful_callbacks` (tfadv.training's
CatastrophicOverfittingCallback: its checks so far and best weights), which must come before this callback
in fit's callbacks, so that their epoch-end work is done when the checkpoint is written.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence

import keras
import numpy as np

#: The most training a killed run repeats, in seconds: short next to a paper cell's epochs, long next to
#: a demo epoch's checkpoint.
EVERY_SECONDS = 60.0


class TimedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore (save_freq="epoch") that skips an epoch's checkpoint when the last one is younger
    than `every_seconds` (default: EVERY_SECONDS, read when the callback is made); `every_seconds=0` saves
    every epoch, exactly as Keras does. `stateful_callbacks`: callbacks of the same fit, listed before this
    one, whose state (their get_state() and set_state()) is saved and restored with the checkpoint."""

    def __init__(self, backup_dir: str, every_seconds: float | None = None, double_checkpoint: bool = True,
                 stateful_callbacks: Sequence[keras.callbacks.Callback] = ()):
        every_seconds = EVERY_SECONDS if every_seconds is None else every_seconds
        if not every_seconds >= 0:
            raise ValueError(f"TimedBackupAndRestore: every_seconds must be >= 0, got {every_seconds!r}")
        for callback in stateful_callbacks:
            if not all(hasattr(callback, name) for name in ("get_state", "set_state", "in_fit")):
                raise TypeError(f"TimedBackupAndRestore: stateful_callbacks takes callbacks with get_state(), "
                                f"set_state() and in_fit (as CatastrophicOverfittingCallback), got {callback!r}")
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=double_checkpoint)
        self.every_seconds = float(every_seconds)
        self.stateful_callbacks = list(stateful_callbacks)
        self._promised_epoch: int | None = None

    def resume_epoch(self) -> int:
        """The epoch a `fit` with this callback starts at: the one after the last checkpoint, 0 without one.
        Build the training data from it before `fit`, which restores the checkpoint only once it has begun."""
        self._promised_epoch = checkpointed_epoch(self._training_metadata_path)
        return self._promised_epoch

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._check_restored_epoch()
        for callback in self.stateful_callbacks:
            if not callback.in_fit:
                raise RuntimeError(f"TimedBackupAndRestore: {type(callback).__name__} is one of its "
                                   "stateful_callbacks, so list it before the backup in fit's callbacks: its "
                                   "epoch-end work must be done when the checkpoint is written")
        self._restore_unsaved_state()
        self._saved_at = time.monotonic()  # a run's first checkpoint is due every_seconds after it starts

    def _check_restored_epoch(self) -> None:
        # Keras falls back to its previous checkpoint when the last one does not load, and then copies that
        # checkpoint's epoch over the last one's: the data built for resume_epoch() would be off by the
        # epochs in between, and the run would silently differ from an uninterrupted one.
        restored = checkpointed_epoch(self._training_metadata_path)
        if self._promised_epoch is not None and restored != self._promised_epoch:
            raise RuntimeError(f"{self.backup_dir}: the training data was built to resume at epoch "
                               f"{self._promised_epoch}, but Keras restored the checkpoint of epoch {restored} "
                               "(the last one did not load); run again to resume from there")

    def _save_model(self):
        # This state first: a kill between the two files leaves it one checkpoint ahead of Keras', and its
        # previous file (.bkp) still goes with Keras' checkpoint. The other way round, nothing would.
        self._save_unsaved_state()
        super()._save_model()

    @property
    def _unsaved_state_path(self) -> str:
        return os.path.join(self.backup_dir, "unsaved_state.npz")

    def _save_unsaved_state(self) -> None:
        """The state Keras' checkpoint leaves out, with the epoch it goes with, the previous file kept."""
        path = self._unsaved_state_path
        os.makedirs(self.backup_dir, exist_ok=True)
        if os.path.exists(path):
            shutil.copyfile(path, path + ".bkp")
        states = {f"state_{i}_replica_{r}": part.numpy()
                  for i, variable in enumerate(unsaved_state(self.model)) for r, part in enumerate(replicas(variable))}
        states.update({f"callback_{j}__{key}": value for j, callback in enumerate(self.stateful_callbacks)
                       for key, value in callback.get_state().items()})
        with open(path + ".tmp", "wb") as f:  # a file object: np.savez would add its own suffix to a name
            np.savez(f, epoch=self._current_epoch, **states)
        os.replace(path + ".tmp", path)  # whole or not at all, as a kill may come at any time

    def _restore_unsaved_state(self) -> None:
        epoch, states = checkpointed_epoch(self._training_metadata_path), unsaved_state(self.model)
        if epoch == 0 or not (states or self.stateful_callbacks):  # a fresh start, or nothing to restore
            return
        for path in (self._unsaved_state_path, self._unsaved_state_path + ".bkp"):
            if os.path.exists(path):
                with np.load(path) as saved:
                    if int(saved["epoch"]) == epoch:
                        _assign(states, saved, path)
                        self._restore_callbacks(saved, path)
                        return
        raise RuntimeError(f"{self.backup_dir}: the checkpoint of epoch {epoch} lacks the state Keras' checkpoint "
                           "leaves out (Dropout's random generators, an adversarial model's training_state, the "
                           "stateful_callbacks'), so the resumed run would differ from an uninterrupted one; delete "
                           "the folder to train again from the start")

    def _restore_callbacks(self, saved, path: str) -> None:
        for j, callback in enumerate(self.stateful_callbacks):
            prefix = f"callback_{j}__"
            state = {name[len(prefix):]: saved[name] for name in saved.files if name.startswith(prefix)}
            if not state:
                raise RuntimeError(f"{path} holds no state of {type(callback).__name__} (stateful_callbacks[{j}]): "
                                   "the run that wrote it had no such callback; resume as it ran, or delete the "
                                   "folder to train again from the start")
            callback.set_state(state)

    def on_epoch_end(self, epoch, logs=None):
        # Keras' own bookkeeping, then its own writer (BackupAndRestore has no public hook for either).
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        if time.monotonic() - self._saved_at >= self.every_seconds:
            self._save_model()
            self._saved_at = time.monotonic()


def checkpointed_epoch(metadata_path: str) -> int:
    """The epoch Keras' BackupAndRestore resumes at from its training_metadata.json (0 when there is none)."""
    if not os.path.exists(metadata_path):
        return 0
    with open(metadata_path) as f:
        return int(json.load(f)["epoch"])


def unsaved_state(model: keras.Model) -> list:
    """The model's variables Keras' checkpoint leaves out: the states of its SeedGenerators, which draw
    Dropout's masks (and any layer's own random numbers), in the model's order; then an adversarial model's
    training_state."""
    saved = {id(v) for v in model.weights}
    extra = model.training_state() if hasattr(model, "training_state") else []
    return [v for v in model.variables if id(v) not in saved] + list(extra)


def replicas(variable) -> tuple:
    """Each replica's own copy of a variable (a per-replica variable of a distribution strategy has one per
    device, and Free's and Stale's state differs between them), or the variable itself."""
    return tuple(getattr(variable, "values", None) or (variable,))


def _assign(states: list, saved, path: str) -> None:
    """Assign each saved replica's value, refusing a file written for another model or replica count."""
    names = {f"state_{i}_replica_{r}" for i, v in enumerate(states) for r in range(len(replicas(v)))}
    stored = {name for name in saved.files if name.startswith("state_")}
    if stored != names:
        raise RuntimeError(f"{path} holds {len(stored)} saved states, this model and strategy have {len(names)} "
                           "(another model, or another number of replicas, wrote it): resume with the model and "
                           "devices that wrote it, or delete the folder to train again from the start")
    for i, variable in enumerate(states):
        for r, part in enumerate(replicas(variable)):
            value = saved[f"state_{i}_replica_{r}"]
            if value.shape != tuple(part.shape):
                raise RuntimeError(f"{path}: saved state {i} ({variable.name}) has shape {value.shape}, this model's "
                                   f"{tuple(part.shape)} (another batch_size or model wrote it): resume with the "
                                   "settings that wrote it, or delete the folder to train again from the start")
            part.assign(value)
