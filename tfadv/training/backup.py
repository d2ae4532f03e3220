"""keras.callbacks.BackupAndRestore that writes its checkpoint at most once per `every_seconds`.

Keras writes the weights and the optimizer state after every epoch. When epochs take milliseconds (the demo
profiles' digits nets), that file is a tenth of the training time (batchsize demo, measured); when they take
minutes, every epoch is still saved. A run killed between checkpoints resumes from the last one, so it loses
at most `every_seconds` of training and never a finished epoch's result that was written elsewhere.
"""
from __future__ import annotations

import time

import keras

#: The most training a killed run repeats, in seconds: short next to a paper cell's epochs, long next to
#: a demo epoch's checkpoint.
EVERY_SECONDS = 60.0


class TimedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore (save_freq="epoch") that skips an epoch's checkpoint when the last one is younger
    than `every_seconds` (default: EVERY_SECONDS, read when the callback is made); `every_seconds=0` saves
    every epoch, exactly as Keras does."""

    def __init__(self, backup_dir: str, every_seconds: float | None = None, double_checkpoint: bool = True):
        every_seconds = EVERY_SECONDS if every_seconds is None else every_seconds
        if not every_seconds >= 0:
            raise ValueError(f"TimedBackupAndRestore: every_seconds must be >= 0, got {every_seconds!r}")
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=double_checkpoint)
        self.every_seconds = float(every_seconds)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._saved_at = time.monotonic()  # a run's first checkpoint is due every_seconds after it starts

    def on_epoch_end(self, epoch, logs=None):
        # Keras' own bookkeeping, then its own writer (BackupAndRestore has no public hook for either).
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        if time.monotonic() - self._saved_at >= self.every_seconds:
            self._save_model()
            self._saved_at = time.monotonic()
