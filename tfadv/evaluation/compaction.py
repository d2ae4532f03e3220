"""Evaluation that stops paying for fooled samples.

For robust accuracy a sample is decided once any iterate fools it, so the rest of its attack is wasted work.
An attack that can run in segments (APGD, Square, FAB, and PGD with select="first_success" through
tfadv.attacks.segments) is driven here segment by segment: after each segment the fooled samples leave, and
the survivors of all batches of a window are packed together into as few batches as possible. Segments end
after iterations 1, 2, 3, 4, 6, 8, 11, 16, ... (most samples of a non-robust model fall early), then the
attack's last iteration; stages (APGD-T's targets, restarts) run only on the samples still robust.

Exactness. A sample's trajectory is a function of its own inputs and random keys only: the attacks sum
per-sample losses (or take each sample's mean-reduction batch size as an input), the model runs in inference
mode, and random numbers are keyed on (seed, sample id, restart, stage). Each leftover batch is padded (by
repeating a real row, whose results are dropped) up to the next bucket size, so that few shapes are traced.
The floating-point kernels must also give a row the same result in every batch size used: on x86 CPUs with
oneDNN that holds for batch sizes that are multiples of 16 and fails for some others, so the buckets are
multiples of 16 from MIN_BUCKET, and a `batch_size` that is a multiple of 16 gives per-sample results
identical to the plain attack's (the tests check this sample by sample).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfadv import tracing
from tfadv.attacks import segments

#: Smallest padded batch: a multiple of 16 (see the module docstring), large enough to bound tracing.
MIN_BUCKET = 32
#: Samples whose states are held at once: this many batches (bounds memory on large inputs).
WINDOW_BATCHES = 8
#: Segment ends grow geometrically by this factor (sqrt 2).
SEGMENT_GROWTH = 1.4142
#: How a report says that its robust accuracies took this shortcut: (setting, value), source "tfadv".
REPORT_SETTING = ("early exit of AutoAttack and the masking checks",
                  "on: fooled samples leave the batch after each segment (tfadv.evaluation.compaction); "
                  "per-sample answers tested identical to the plain attack's")


def supports_segments(attack: Any) -> bool:
    """Can `attack` be driven here (tfadv.attacks.segments)?"""
    return segments.segmented(attack) is not None


def segment_bounds(steps: int) -> list[tuple[int, int]]:
    """(start, stop) iteration ranges ending after iterations 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ... (each end
    about sqrt(2) times the last) and after the last iteration: frequent where most samples fall."""
    ends, end = [], 1
    while end < steps:
        ends.append(end)
        end = max(end + 1, int(round(end * SEGMENT_GROWTH)))
    ends.append(steps)
    return list(zip([0] + ends[:-1], ends))


def bucket_sizes(batch_size: int) -> list[int]:
    """Padded batch sizes: powers of two and 1.5 times powers of two (32, 48, 64, 96, 128, 192, ...: all
    multiples of 16) from MIN_BUCKET up to batch_size, and batch_size itself. Padding wastes < 1/3 of a batch."""
    sizes, power = {batch_size}, MIN_BUCKET
    while power < batch_size:
        sizes.update(size for size in (power, power * 3 // 2) if size < batch_size)
        power *= 2
    return sorted(sizes)


def pack(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """(start, stop, padded rows) chunks for n rows: full batches, then the rest in the smallest bucket."""
    chunks = [(s, s + batch_size, batch_size) for s in range(0, n - n % batch_size, batch_size)]
    rest = n % batch_size
    if rest:
        rows = min(size for size in bucket_sizes(batch_size) if size >= rest)
        chunks.append((n - rest, n, rows))
    return chunks


def _pad(t: tf.Tensor, rows: int) -> tf.Tensor:
    n = t.shape[0]
    return t if n == rows else tf.concat([t, tf.repeat(t[:1], rows - n, axis=0)], axis=0)


class _Compiled:
    """The segment functions compiled once per padded batch size (cached on the attack `owner`)."""

    def __init__(self, attack: Any, owner: Any):
        self.attack = attack
        self.cache: dict[tuple, Any] = owner.__dict__.setdefault("_segment_compiled", {})

    def begin(self, x, y, ids, batch, restart: int, stage: int):
        key = ("begin", tuple(x.shape), y.shape[-1])
        if key not in self.cache:
            spec = [tf.TensorSpec(x.shape, tf.float32), tf.TensorSpec(y.shape, tf.float32),
                    tf.TensorSpec(ids.shape, tf.int64), tf.TensorSpec(batch.shape, tf.float32),
                    tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64)]
            fn = lambda x, y, ids, batch, restart, stage: self.attack.segment_begin(  # noqa: E731
                x, y, ids, restart, stage, batch_sizes=batch)
            self.cache[key] = tracing.compile_once(fn, input_signature=spec, jit_compile=self.attack.jit_compile)
        return self.cache[key](x, y, ids, batch, tf.constant(restart, tf.int64), tf.constant(stage, tf.int64))

    def run(self, state: dict[str, tf.Tensor], start: int, stop: int, method: str = "segment_run"):
        key = (method, tuple((k, tuple(v.shape), v.dtype.name) for k, v in sorted(state.items())))
        if key not in self.cache:
            spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in state.items()}
            fn = getattr(self.attack, method)
            self.cache[key] = tracing.compile_once(fn, input_signature=[spec, tf.TensorSpec((), tf.int32),
                                                                      tf.TensorSpec((), tf.int32)],
                                                   jit_compile=self.attack.jit_compile)
        return self.cache[key](state, tf.constant(start, tf.int32), tf.constant(stop, tf.int32))


def run_compacted(attack: Any, x: np.ndarray, y_onehot: np.ndarray, sample_ids: np.ndarray, *,
                  batch_size: int, restart: int = 0, compact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every stage of one restart of `attack` on x; returns (fooled, x_adv) per sample. x_adv is the fooling
    point where fooled, else the first stage's output. `compact=False` runs each stage whole, for checking."""
    driver = segments.segmented(attack)
    if driver is None:
        raise TypeError(f"{type(attack).__name__} cannot run in segments (see tfadv.attacks.segments)")
    fooled = np.zeros(len(x), bool)
    x_adv = np.array(x, np.float32, copy=True)
    plain_batch = np.zeros(len(x), np.float32)
    for start in range(0, len(x), batch_size):  # the batch each sample is in when not compacted
        plain_batch[start : start + batch_size] = min(batch_size, len(x) - start)
    window = batch_size * WINDOW_BATCHES
    compiled = _Compiled(driver, owner=attack)
    for first in range(0, len(x), window):
        part = slice(first, first + window)
        f, out = _window(driver, compiled, x[part], y_onehot[part], sample_ids[part], plain_batch[part],
                         batch_size, restart, compact)
        fooled[part], x_adv[part] = f, out
    return fooled, x_adv


def _window(attack, compiled, x, y_onehot, ids, plain_batch, batch_size, restart, compact):
    fooled = np.zeros(len(x), bool)
    x_adv = np.array(x, np.float32, copy=True)
    bounds = segment_bounds(attack.segment_steps) if compact else [(0, attack.segment_steps)]
    for number, stage in enumerate(attack.segment_stages()):
        chunks = []
        active = np.flatnonzero(~fooled)
        for start, stop, rows in pack(len(active), batch_size):
            pos = active[start:stop]
            tensors = [tf.constant(a[pos]) for a in (x, y_onehot, ids.astype(np.int64), plain_batch)]
            chunks.append((pos, compiled.begin(*[_pad(t, rows) for t in tensors], restart, stage)))
        for start, stop in bounds:
            if compact:
                chunks = _harvest(attack, chunks, fooled, x_adv, batch_size, keep_unfooled=False)
            chunks = [(pos, compiled.run(state, start, stop)) for pos, state in chunks]
        if hasattr(attack, "segment_finish"):
            chunks = [(pos, compiled.run(state, 0, 0, "segment_finish")) for pos, state in chunks]
        _harvest(attack, chunks, fooled, x_adv, batch_size, keep_unfooled=number == 0)
    return fooled, x_adv


def _harvest(attack, chunks, fooled, x_adv, batch_size, keep_unfooled: bool):
    """Record the fooled rows of every chunk (and, with keep_unfooled, the outputs of the others), then
    repack the survivors into as few padded batches as possible."""
    hits = [np.asarray(attack.segment_fooled(state))[: len(pos)] for pos, state in chunks]
    if not keep_unfooled and not any(hit.any() for hit in hits):
        return chunks  # nothing left: the batches stay as they are
    survivors_pos, survivors = [], []
    for (pos, state), hit in zip(chunks, hits):
        if hit.any() or keep_unfooled:
            output = np.asarray(attack.segment_output(state))[: len(pos)]
            fooled[pos[hit]] = True
            x_adv[pos[hit]] = output[hit]
            if keep_unfooled:
                x_adv[pos[~hit]] = output[~hit]
        keep = np.flatnonzero(~hit)
        survivors_pos.append(pos[keep])
        survivors.append({k: tf.gather(v, keep) for k, v in state.items()})
    if not survivors_pos or keep_unfooled:
        return []
    pos = np.concatenate(survivors_pos)
    merged = {k: tf.concat([s[k] for s in survivors], axis=0) for k in survivors[0]}
    return [(pos[start:stop], {k: _pad(v[start:stop], rows) for k, v in merged.items()})
            for start, stop, rows in pack(len(pos), batch_size)]


def robust_mask_compacted(model: Any, attack: Any, x: Any, y: Any, *, batch_size: int = 128, restarts: int = 1,
                          compact: bool = True) -> np.ndarray:
    """Per-sample bool, as tfadv.evaluation.robust_mask: correct clean and not fooled by any restart, with
    fooled samples leaving the batch after every segment (compact=False: each stage run whole).
    Arguments are checked by robust_mask, which calls this for attacks that run in segments."""
    from tfadv.evaluation.clean import predict_labels

    if len(x) == 0:
        return np.zeros(0, bool)
    x_tf, y_tf = attack._validated(x, y)
    x, y_onehot = x_tf.numpy(), y_tf.numpy()
    robust = predict_labels(model, x, batch_size, attack.output_index) == np.argmax(y_onehot, axis=-1)
    for restart in range(restarts):
        remaining = np.flatnonzero(robust)
        if not len(remaining):
            break
        fooled, _ = run_compacted(attack, x[remaining], y_onehot[remaining], remaining, batch_size=batch_size,
                                  restart=restart, compact=compact)
        robust[remaining[fooled]] = False
    return robust
