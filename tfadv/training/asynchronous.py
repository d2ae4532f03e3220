"""Asynchronous adversarial training (Bhat, Tsipras & Madry 2018, Sec. 5 and Fig. 9).

Attack workers craft adversarial batches from a snapshot of the trainer's weights and put them in a
bounded queue; one trainer takes them off the queue and updates the weights. The trainer re-publishes its
weights every `refresh_every` steps (the paper: every 100 steps), so a batch is *stale*: it was crafted
with the weights of an earlier trainer step. Every batch carries that step (its snapshot `version`), the
trainer records the staleness it actually saw, and it refuses batches older than `max_staleness`.

TensorFlow does the parallel work: each worker owns a replica of the model built on its own device
(`tf.device`: a GPU each on a multi-GPU box, logical CPU devices here), its compiled attack runs there, and
its data comes from its own `tf.data` shard. Workers are Python threads that drive those compiled
functions (TensorFlow releases the GIL while they run); a `queue.Queue(maxsize=queue_size)` is the
bounded queue. With `num_workers=0` the trainer crafts its own batches: synchronous adversarial training,
the paper's one-GPU baseline for the speedup.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

#: Builds the attack a worker runs on its replica, e.g. `lambda m: PGD(m, eps=0.3, steps=8, ...)`.
AttackFactory = Callable[[keras.Model], Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]

_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class AdversarialBatch:
    """One crafted batch, labelled with the trainer step whose weights crafted it."""

    x: tf.Tensor
    y: tf.Tensor
    version: int
    worker: int
    craft_seconds: float


class SnapshotBoard:
    """The trainer's latest published weights and their version (the trainer step), shared by threads."""

    def __init__(self, weights: list[np.ndarray], version: int = 0):
        self._lock = threading.Lock()
        self._version = version
        self._weights = weights

    def publish(self, version: int, weights: list[np.ndarray]) -> None:
        with self._lock:
            if version < self._version:
                raise ValueError(f"snapshot versions must not go back: {version} after {self._version}")
            self._version, self._weights = version, weights

    def latest(self) -> tuple[int, list[np.ndarray]]:
        with self._lock:
            return self._version, self._weights


def staleness(batch: AdversarialBatch, step: int) -> int:
    """Trainer steps between the weights that crafted the batch and the weights it now updates."""
    return step - batch.version


def admissible(batch: AdversarialBatch, step: int, max_staleness: int | None) -> bool:
    """The trainer's rule: use a batch only if it is at most `max_staleness` steps old."""
    return max_staleness is None or staleness(batch, step) <= max_staleness


def assign_devices(num_workers: int, devices: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """(trainer device, one device per worker): the trainer takes the first device, workers the rest,
    round-robin. Defaults to the logical GPUs, or the logical CPUs on a host without any."""
    if devices is None:
        logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        devices = [d.name for d in logical]
    devices = list(devices)
    if not devices:
        raise ValueError("no devices to run on")
    spare = devices[1:] or devices[:1]
    return devices[0], [spare[i % len(spare)] for i in range(num_workers)]


@dataclass
class AsyncRun:
    """What one run measured. `steps`: one row per trainer update; `refused`: batches the trainer dropped."""

    steps: pd.DataFrame
    refused: pd.DataFrame
    num_workers: int
    trainer_device: str
    worker_devices: list[str]
    wall_seconds: float
    steady_seconds: float = field(default=float("nan"))

    @property
    def steps_per_second(self) -> float:
        """Trainer updates per second after the first one (which includes tracing)."""
        return (len(self.steps) - 1) / self.steady_seconds if self.steady_seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        used = self.steps["staleness"]
        return {
            "workers": self.num_workers,
            "devices": 1 + len(set(self.worker_devices) - {self.trainer_device}),
            "trainer_steps": len(self.steps),
            "refused_batches": len(self.refused),
            "wall_seconds": self.wall_seconds,
            "steady_seconds": self.steady_seconds,
            "steps_per_second": self.steps_per_second,
            "staleness_mean": float(used.mean()),
            "staleness_median": float(used.median()),
            "staleness_max": int(used.max()),
            "trainer_wait_fraction": float(self.steps["wait_seconds"].sum() / max(self.wall_seconds, 1e-9)),
        }


def train_async(
    model: keras.Model,
    make_attack: AttackFactory,
    dataset: tf.data.Dataset,
    *,
    steps: int,
    num_workers: int,
    refresh_every: int = 100,
    queue_size: int | None = None,
    max_staleness: int | None = None,
    devices: Sequence[str] | None = None,
    verbose: bool = False,
) -> AsyncRun:
    """Train the compiled `model` for `steps` updates on adversarial batches crafted by `num_workers` workers.

    `dataset` yields natural `(x, y)` batches (it is repeated; worker i reads shard i). `make_attack(m)`
    returns the attack run on model m. Each update is `model.train_on_batch(x_adv, y)`, so the model's
    compiled loss and optimizer apply, as in Keras. `max_staleness` must be at least `refresh_every - 1`:
    otherwise a batch from the newest snapshot could be refused and the trainer would stall.
    """
    queue_size = _checked_arguments(model, steps, num_workers, refresh_every, queue_size, max_staleness)
    trainer_device, worker_devices = assign_devices(num_workers, devices)
    if num_workers == 0:
        return _train_sync(model, make_attack, dataset, steps, trainer_device, verbose)

    board = SnapshotBoard(model.get_weights())
    batches: queue.Queue[AdversarialBatch] = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    errors: list[BaseException] = []
    workers = [
        _Worker(i, model, make_attack, dataset.repeat().shard(num_workers, i), device, board, batches, stop, errors)
        for i, device in enumerate(worker_devices)
    ]
    for w in workers:  # trace in this thread: Keras' tracing state is not meant to be shared by threads
        w.warm_up()
    threads = [threading.Thread(target=w.run, name=f"tfadv-attack-worker-{w.index}", daemon=True) for w in workers]
    trainer = _Trainer(model, board, batches, errors, trainer_device, refresh_every, max_staleness)
    start = time.perf_counter()
    for t in threads:
        t.start()
    try:
        first_done = trainer.run(steps, start, verbose)
    finally:
        stop.set()
        _drain(batches)
        for t in threads:
            t.join(timeout=60)
    end = time.perf_counter()
    if errors:
        raise RuntimeError("an attack worker failed") from errors[0]
    return AsyncRun(
        steps=pd.DataFrame(trainer.rows),
        refused=pd.DataFrame(trainer.refused, columns=["step", "version", "staleness", "worker"]),
        num_workers=num_workers,
        trainer_device=trainer_device,
        worker_devices=worker_devices,
        wall_seconds=end - start,
        steady_seconds=end - first_done,
    )


def _checked_arguments(model, steps, num_workers, refresh_every, queue_size, max_staleness) -> int:
    """Validate train_async's arguments before any thread starts; returns the queue size."""
    _check_positive("steps", steps)
    _check_positive("refresh_every", refresh_every)
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if queue_size is None:
        queue_size = max(num_workers, 1)
    _check_positive("queue_size", queue_size)
    if max_staleness is not None and max_staleness < refresh_every - 1:
        raise ValueError(
            f"max_staleness={max_staleness} is below refresh_every - 1 = {refresh_every - 1}: batches crafted "
            "from the newest snapshot would be refused and training would stall"
        )
    if model.optimizer is None:
        raise ValueError("compile the model (optimizer and loss) before train_async")
    return queue_size


class _Trainer:
    """The trainer side: takes batches off the queue, refuses stale ones, updates, republishes weights."""

    def __init__(self, model, board, batches, errors, device, refresh_every, max_staleness):
        self.model, self.board, self.batches, self.errors, self.device = model, board, batches, errors, device
        self.refresh_every, self.max_staleness = refresh_every, max_staleness
        self.rows: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []

    def run(self, steps: int, start: float, verbose: bool) -> float:
        """`steps` updates; returns the time the first one finished (it includes tracing)."""
        bar = keras.utils.Progbar(steps, unit_name="step") if verbose else None
        first_done = None
        step = 0
        while step < steps:
            waited = time.perf_counter()
            batch = _next_batch(self.batches, self.errors)
            wait_seconds = time.perf_counter() - waited
            age = staleness(batch, step)
            if not admissible(batch, step, self.max_staleness):
                self.refused.append({"step": step, "version": batch.version, "staleness": age, "worker": batch.worker})
                continue
            with tf.device(self.device):
                logs = self.model.train_on_batch(batch.x, batch.y, return_dict=True)
            self.rows.append(_step_row(step, batch, age, wait_seconds, self.batches.qsize(), logs, start))
            step += 1
            if step % self.refresh_every == 0:
                self.board.publish(step, self.model.get_weights())
            first_done = first_done or time.perf_counter()
            if bar is not None:
                bar.update(step, [("staleness", age)])
        return first_done


class _Worker:
    """One attack worker: a model replica and its attack on one device, fed by one tf.data shard."""

    def __init__(self, index, model, make_attack, dataset, device, board, batches, stop, errors):
        self.index, self.device, self.board, self.batches = index, device, board, batches
        self.stop, self.errors = stop, errors
        with tf.device(device):
            self.replica = keras.models.clone_model(model)
        self.attack = make_attack(self.replica)
        self.data = iter(dataset)
        self.version = -1

    def warm_up(self) -> None:
        x, y = next(self.data)
        self._sync_weights()
        with tf.device(self.device):
            self.attack(x, y)

    def _sync_weights(self) -> None:
        version, weights = self.board.latest()
        if version != self.version:
            self.replica.set_weights(weights)
            self.version = version

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                x, y = next(self.data)
                self._sync_weights()
                started = time.perf_counter()
                with tf.device(self.device):
                    x_adv = self.attack(x, y)
                batch = AdversarialBatch(x_adv, y, self.version, self.index, time.perf_counter() - started)
                while not self.stop.is_set():
                    try:
                        self.batches.put(batch, timeout=_POLL_SECONDS)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # surfaced by the trainer, which would otherwise wait forever
            self.errors.append(e)


def _train_sync(model, make_attack, dataset, steps, device, verbose) -> AsyncRun:
    """The baseline: the trainer crafts each batch itself with its current weights (staleness 0)."""
    attack = make_attack(model)
    data = iter(dataset.repeat())
    rows = []
    bar = keras.utils.Progbar(steps, unit_name="step") if verbose else None
    start = time.perf_counter()
    first_done = None
    for step in range(steps):
        x, y = next(data)
        started = time.perf_counter()
        with tf.device(device):
            x_adv = attack(x, y)
            batch = AdversarialBatch(x_adv, y, step, -1, time.perf_counter() - started)
            logs = model.train_on_batch(batch.x, batch.y, return_dict=True)
        rows.append(_step_row(step, batch, 0, 0.0, 0, logs, start))
        if first_done is None:
            first_done = time.perf_counter()
        if bar is not None:
            bar.update(step + 1)
    end = time.perf_counter()
    return AsyncRun(
        steps=pd.DataFrame(rows),
        refused=pd.DataFrame(columns=["step", "version", "staleness", "worker"]),
        num_workers=0,
        trainer_device=device,
        worker_devices=[],
        wall_seconds=end - start,
        steady_seconds=end - first_done,
    )


def _step_row(step, batch, age, wait_seconds, depth, logs, start) -> dict[str, Any]:
    row = {
        "step": step,
        "version": batch.version,
        "staleness": age,
        "worker": batch.worker,
        "wait_seconds": wait_seconds,
        "craft_seconds": batch.craft_seconds,
        "queue_depth": depth,
        "elapsed_seconds": time.perf_counter() - start,
    }
    row.update({k: float(v) for k, v in logs.items()})
    return row


def _next_batch(batches: queue.Queue, errors: list[BaseException]) -> AdversarialBatch:
    while True:
        if errors:
            raise RuntimeError("an attack worker failed") from errors[0]
        try:
            return batches.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue


def _drain(batches: queue.Queue) -> None:
    while True:
        try:
            batches.get_nowait()
        except queue.Empty:
            return


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
