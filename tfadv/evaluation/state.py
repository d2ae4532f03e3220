"""The state of an AutoAttack cascade, kept in memory and (with a path) in an .npz file, so that an
interrupted evaluation over a dataset continues where it stopped (the reference's `state_path`).

Per sample it holds where the sample was decided (`broken_at`: CLEAN, a stage index, or NOT_BROKEN), the
example that broke it, and per stage which samples that stage has finished. The file also holds a
fingerprint of the settings, the attacks and the data: a file written for another evaluation is refused.
Writes go to a temporary file first, then replace the state file in one step.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from typing import Any, Sequence

import numpy as np

#: At most one write per this many seconds inside a stage; always one at the end of a stage.
SAVE_INTERVAL_S = 30.0
#: What a state file holds (save writes them, _load needs every one).
_FIELDS = ("key", "stage_names", "started", "broken_at", "done", "found_ids", "found_x", "seconds", "unconfirmed")


def fingerprint(config: dict[str, Any], model: Any, x: np.ndarray, labels: np.ndarray) -> str:
    """A hash of the evaluation settings, the model's weights and the data."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    digest.update(np.ascontiguousarray(x, np.float32).tobytes())
    digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return digest.hexdigest()


class CascadeState:
    CLEAN = -1
    NOT_BROKEN = np.iinfo(np.int32).max

    def __init__(self, path: str | None, key: str, stage_names: Sequence[str], x: np.ndarray):
        self.path, self.key, self.stage_names = path, key, list(stage_names)
        n, stages = len(x), len(stage_names)
        self.started = False
        self.broken_at = np.full(n, self.NOT_BROKEN, np.int32)
        self.done = np.zeros((stages, n), bool)
        self.x_found = np.array(x, np.float32, copy=True)
        self.seconds = np.zeros(stages)
        self.unconfirmed = np.zeros(stages, np.int64)
        self._last_save = -np.inf

    @classmethod
    def open(cls, path: str | None, config: dict[str, Any], model: Any, x: np.ndarray, labels: np.ndarray,
             stage_names: Sequence[str]) -> "CascadeState":
        """A fresh state, or the one saved at `path` if it exists (it must be for this very evaluation)."""
        key = fingerprint(config, model, x, labels) if path is not None else ""
        state = cls(None if path is None else os.fspath(path), key, stage_names, x)
        if state.path is not None and os.path.exists(state.path):
            state._load()
        return state

    @property
    def robust(self) -> np.ndarray:
        return self.broken_at == self.NOT_BROKEN

    def start(self, correct: np.ndarray) -> None:
        """Clean accuracy decides the starting set: misclassified samples are broken before any attack."""
        self.broken_at = np.where(correct, self.NOT_BROKEN, self.CLEAN).astype(np.int32)
        self.started = True
        self.save(force=True)

    def record(self, stage: int, ids: np.ndarray, broken: np.ndarray, x_adv: np.ndarray, unconfirmed: int) -> None:
        self.done[stage, ids] = True
        self.broken_at[ids[broken]] = stage
        self.x_found[ids[broken]] = x_adv[broken]
        self.unconfirmed[stage] += unconfirmed

    def finish_stage(self, stage: int, seconds: float) -> None:
        self.done[stage, :] = True
        self.seconds[stage] += seconds

    # ------------------------------------------------------------------------------------- the file
    def save(self, force: bool) -> None:
        if self.path is None or (not force and time.monotonic() - self._last_save < SAVE_INTERVAL_S):
            return
        found = np.flatnonzero(self.broken_at >= 0)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(self.key), stage_names=np.array(self.stage_names), started=self.started,
                     broken_at=self.broken_at, done=self.done, found_ids=found, found_x=self.x_found[found],
                     seconds=self.seconds, unconfirmed=self.unconfirmed)
        os.replace(tmp, self.path)
        self._last_save = time.monotonic()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as file:
                saved = {name: file[name] for name in _FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"auto_attack: the state file {self.path} cannot be read as an auto_attack state (corrupt, "
                f"truncated or another file: {type(error).__name__}: {error}); delete it to start the evaluation "
                "over, or pass another state_path"
            ) from None
        if str(saved["key"]) != self.key:
            raise ValueError(
                f"auto_attack: the state file {self.path} was written for a different evaluation (model "
                "settings, attacks or data differ); delete it or pass another state_path"
            )
        self.started = bool(saved["started"])
        self.broken_at = saved["broken_at"].astype(np.int32)
        self.done = saved["done"].astype(bool)
        self.x_found[saved["found_ids"]] = saved["found_x"]
        self.seconds = saved["seconds"].astype(float)
        self.unconfirmed = saved["unconfirmed"].astype(np.int64)
