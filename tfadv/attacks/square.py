"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based random search, no gradients.

Each query changes one random square window of the current best perturbation and keeps the change if the
margin loss z_y - max_{i != y} z_i went down (or the sample got misclassified). The window covers a fraction
p of the image, halved on the paper's schedule (`square_fraction`). L-inf: the window is set to x +/- eps per
channel (vertical stripes to start). L2: a centred pseudo-Gaussian bump moves mass between two windows and
the perturbation is rescaled to norm eps (Algorithm 3 of the paper).

Faithful to the reference code (fra31/auto-attack, square.py, as AutoAttack runs it: p_init 0.8, no rescaled
schedule), except that the window position, the signs and the L2 transpose are drawn per sample, keyed on
(seed, sample id, restart, query), so a sample's attack does not depend on its batch (the reference draws one
window position per query for the whole batch), and positions cover all h - s + 1 offsets.
The query loop is compiled: one `tf.while_loop` per run of queries that share a window size (static shapes),
leaving as soon as every sample of the batch is fooled.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, model_outputs, tracing, validation
from tfadv.attacks import draws, scores
from tfadv.attacks.base import Attack

#: (last iteration of a phase, divisor of p_init) of the reference's `p_selection`.
P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))
P_FINAL_DIVISOR = 512
SCHEDULE_LENGTH = 10_000  # the iteration count the schedule was written for
_STREAMS = 128


def square_fraction(i: int, queries: int, p_init: float, rescale: bool = False) -> float:
    """p at iteration i (0-based): p_init up to i = 10, then halved at 50, 200, 500, 1000, 2000, 4000, 6000
    and 8000. With `rescale`, i is first mapped to int(i / queries * 10000)."""
    if rescale:
        i = int(i / queries * SCHEDULE_LENGTH)
    for last, divisor in P_SCHEDULE:
        if i <= last:
            return p_init / divisor
    return p_init / P_FINAL_DIVISOR


def square_side(p: float, height: int, width: int, norm: str) -> int:
    """Side of the window covering a fraction p of the h x w image (L2: odd and at least 3)."""
    side = int(round(np.sqrt(p * height * width)))
    if norm == "inf":
        side = max(side, 1)
    else:
        side = max(side, 3)
        side += 1 - side % 2
    return min(side, height, width)


def _eta_rectangles(rows: int, cols: int) -> np.ndarray:
    """Nested rectangles around the centre weighted 1/(k+1)^2, unit L2 norm (reference `eta_rectangles`)."""
    delta = np.zeros([rows, cols], np.float64)
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        delta[max(top, 0):min(top + 2 * k + 1, rows), max(left, 0):min(left + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        top, left = top - 1, left - 1
    return delta / np.sqrt(np.sum(delta**2))


def l2_bump(side: int) -> np.ndarray:
    """The s x s L2 update: a positive bump on the top half, a negative one on the bottom, unit norm."""
    bump = np.concatenate([_eta_rectangles(side // 2, side), -_eta_rectangles(side - side // 2, side)], axis=0)
    return (bump / np.sqrt(np.sum(bump**2))).astype(np.float32)


def _phases(queries: int, p_init: float, rescale: bool, height: int, width: int, norm: str) -> list[tuple[int, int, int]]:
    """(first iteration, end, window side): maximal runs of iterations with the same side."""
    phases: list[tuple[int, int, int]] = []
    for i in range(queries):
        side = square_side(square_fraction(i, queries, p_init, rescale), height, width, norm)
        if phases and phases[-1][2] == side:
            phases[-1] = (phases[-1][0], i + 1, side)
        else:
            phases.append((i, i + 1, side))
    return phases


def _band(start: tf.Tensor, side: int, length: int) -> tf.Tensor:
    """(N, length) float mask of positions start .. start + side - 1."""
    pos = tf.range(length, dtype=tf.int32)[None, :]
    return tf.cast((pos >= start[:, None]) & (pos < start[:, None] + side), tf.float32)


def _selection(start: tf.Tensor, side: int, length: int) -> tf.Tensor:
    """(N, length, side) 0/1 matrices with S[n, start_n + a, a] = 1: they cut out and paste windows."""
    pos = tf.range(length, dtype=tf.int32)[None, :, None]
    offset = tf.range(side, dtype=tf.int32)[None, None, :]
    return tf.cast(tf.equal(pos, start[:, None, None] + offset), tf.float32)


class Square(Attack):
    """Square attack, L-inf or L2. `queries` iterations after one initial query (the reference's count).
    `targeted=True` runs the targeted margin toward each of the `n_target_classes` runner-up classes in turn
    (the labels stay the true labels; success is misclassification), as APGD-T."""

    needs_input_gradient = False  # score-based: it attacks models without a gradient path too

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        queries: int = 5000,
        *,
        p_init: float = 0.8,
        rescale_schedule: bool = False,
        targeted: bool = False,
        n_target_classes: int = 9,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        seed: int | None = None,
        jit_compile: bool = False,
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        targeted = validation.flag("Square", "targeted", targeted)
        super().__init__(model, eps=eps, norm=norm, from_logits=from_logits, clip_min=clip_min,
                         clip_max=clip_max, targeted=False, seed=seed, jit_compile=jit_compile,
                         output_index=output_index, check_output_kind=check_output_kind)
        self.queries = validation.integer("Square", "queries", queries, minimum=1)
        self.p_init = validation.real("Square", "p_init", p_init, positive=True)
        if self.p_init > 1.0:
            raise ValueError(f"Square: p_init must be a number in (0, 1], got {p_init!r}")
        self.rescale_schedule = validation.flag("Square", "rescale_schedule", rescale_schedule)
        self.target_classes = validation.integer("Square", "n_target_classes", n_target_classes, minimum=1) if targeted else 0
        if self.target_classes >= _STREAMS:
            raise ValueError(f"Square: n_target_classes must be < {_STREAMS}, got {n_target_classes!r}")
        self.training = False
        self.rand_init = True
        self.name = "square-t" if targeted else "square"
        # A proposal is a dozen image-sized element-wise operations against one forward pass: fused by XLA
        # (as APGD's step) they cost a fraction of the query instead of about as much again.
        self._propose = tracing.compile_once(self._propose_linf if self.norm == "inf" else self._propose_l2,
                                             jit_compile=True)
        inputs = getattr(model, "inputs", None)
        if inputs and len(inputs) == 1:
            self._check_image_shape(tuple(inputs[0].shape))
        scores.check_target_count("Square", self.target_classes, scores.model_classes(model))

    def _check_image_shape(self, shape: tuple) -> None:
        if len(shape) != 4 or None in shape[1:]:
            raise ValueError(f"Square: inputs must be images (N, H, W, C) of known size, got shape {shape}")
        if self.norm == "2" and min(shape[1], shape[2]) < 5:
            raise ValueError(f"Square: the L2 attack needs images of at least 5 x 5 pixels, got {shape[1]} x {shape[2]}")

    def _validated(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        x, y_onehot = super()._validated(x, y)
        self._check_image_shape(tuple(x.shape))
        scores.check_target_count("Square", self.target_classes, int(y_onehot.shape[-1]))
        return x, y_onehot

    # ------------------------------------------------------------------------------------ numerics
    def _score(self, x_query, y_onehot, t_onehot):
        """One query: the loss to lower (the margin, or the targeted margin) and misclassification."""
        y_pred = self.forward(x_query)
        z = scores.output_logits(y_pred, self.from_logits)
        loss = scores.margin(z, y_onehot) if t_onehot is None else -scores.margin(z, t_onehot)
        return loss, scores.misclassified(y_pred, y_onehot)

    def _clip(self, x, x_new):
        return geometry.clip_to_range(x + geometry.project(x_new - x, self.eps, self.norm), self.clip_min, self.clip_max)

    def _init_linf(self, x, keys):
        """Vertical stripes: each column of each channel set to x +/- eps."""
        _, _, width, channels = x.shape
        stripes = tf.reshape(draws.signs(keys, -1, width * channels), [-1, 1, width, channels])
        return self._clip(x, x + self.eps * stripes)

    def _init_l2(self, x, keys):
        """A grid of s x s bumps (s = h // 5), random sign per block and channel, scaled to norm eps."""
        _, height, width, channels = x.shape
        side = height // 5
        first = (height - 5 * side) // 2
        bump = tf.constant(l2_bump(side))
        rows = list(range(first, height - side + 1, side))[: height // side]
        cols = list(range(first, width - side + 1, side))[: width // side]
        sign = tf.reshape(draws.signs(keys, -1, len(rows) * len(cols) * channels), [-1, len(rows), len(cols), channels])
        delta = tf.zeros_like(x)
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                block = bump[None, :, :, None] * sign[:, a, b][:, None, None, :]
                paddings = [[0, 0], [r, height - r - side], [c, width - c - side], [0, 0]]
                delta += tf.pad(block, paddings)
        return self._rescaled(x, delta)

    def _rescaled(self, x, delta):
        length = geometry.broadcast_per_sample(geometry.l2_norm(delta), delta)
        return geometry.clip_to_range(x + self.eps * delta / (length + 1e-12), self.clip_min, self.clip_max)

    def _propose_linf(self, x, x_best, keys, i, side):
        _, height, width, channels = x.shape
        u = draws.uniform(keys, i, 2 + channels)
        top = tf.cast(tf.floor(u[:, 0] * (height - side + 1)), tf.int32)
        left = tf.cast(tf.floor(u[:, 1] * (width - side + 1)), tf.int32)
        window = _band(top, side, height)[:, :, None, None] * _band(left, side, width)[:, None, :, None]
        sign = tf.where(u[:, 2:] < 0.5, -1.0, 1.0)[:, None, None, :]
        return self._clip(x, x_best + 2.0 * self.eps * sign * window)

    def _propose_l2(self, x, x_best, keys, i, side):
        """Algorithm 3: a new bump in window 1 (keeping its old mass), window 2 emptied, norm back to eps."""
        _, height, width, channels = x.shape
        u = draws.uniform(keys, i, 5 + channels)
        start = [tf.cast(tf.floor(u[:, k] * (size - side + 1)), tf.int32) for k, size in enumerate((height, width) * 2)]
        rows1, cols1 = _selection(start[0], side, height), _selection(start[1], side, width)
        mask1 = _band(start[0], side, height)[:, :, None, None] * _band(start[1], side, width)[:, None, :, None]
        mask2 = _band(start[2], side, height)[:, :, None, None] * _band(start[3], side, width)[:, None, :, None]
        delta = x_best - x
        window_norm = lambda t: tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2], keepdims=True))  # noqa: E731
        old = tf.einsum("nra,nrqc,nqb->nabc", rows1, delta, cols1)
        union_norm = window_norm(delta * tf.maximum(mask1, mask2))
        image_norm = geometry.broadcast_per_sample(geometry.l2_norm(delta), delta)
        bump = tf.constant(l2_bump(side))
        bump = tf.where(u[:, 4, None, None] < 0.5, bump[None], tf.transpose(bump)[None])
        sign = tf.where(u[:, 5:] < 0.5, -1.0, 1.0)[:, None, None, :]
        new = bump[..., None] * sign + old / (1e-12 + window_norm(old))
        budget = tf.sqrt(tf.maximum(self.eps**2 - image_norm**2, 0.0) / channels + union_norm**2)
        new = new / (1e-12 + window_norm(new)) * budget
        delta = delta * (1.0 - mask2) * (1.0 - mask1) + tf.einsum("nra,nabc,nqb->nrqc", rows1, new, cols1)
        return self._rescaled(x, delta)

    # ------------------------------------------------- segments (tfadv.evaluation.compaction drives them)
    def segment_stages(self) -> list[int]:
        return list(range(1, max(self.target_classes, 1) + 1))

    @property
    def segment_steps(self) -> int:
        return self.queries

    def segment_begin(self, x, y_onehot, sample_ids, restart, stage, batch_sizes=None, done=None) -> dict[str, tf.Tensor]:
        """The initial query. Samples fooled (or `done` before the run) stop changing and counting queries."""
        seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64) if self.seed is None else self.seed
        keys = draws.sample_keys(seed, sample_ids, tf.cast(restart, tf.int64) * _STREAMS + tf.cast(stage, tf.int64))
        t_onehot = None
        if self.target_classes:
            z_clean = scores.output_logits(self.forward(x), self.from_logits)
            t_onehot = scores.ranked_target(z_clean, y_onehot, stage)
        x_best = self._init_linf(x, keys) if self.norm == "inf" else self._init_l2(x, keys)
        loss, fooled = self._score(x_best, y_onehot, t_onehot)
        done = tf.zeros_like(fooled) if done is None else done
        state = {"x": x, "y": y_onehot, "keys": keys, "x_best": x_best, "loss": loss, "fooled": fooled | done,
                 "used": tf.where(done, 0.0, 1.0)}
        if t_onehot is not None:
            state["t"] = t_onehot
        return state

    def segment_run(self, state, start, stop) -> dict[str, tf.Tensor]:
        """Iterations start .. stop - 1: one while loop per run of equal window sizes, each leaving as soon
        as every sample is fooled."""
        x, y_onehot, t_onehot, keys = state["x"], state["y"], state.get("t"), state["keys"]
        _, height, width, _ = x.shape
        start, stop = tf.cast(start, tf.int64), tf.cast(stop, tf.int64)
        for first, end, side in _phases(self.queries, self.p_init, self.rescale_schedule, height, width, self.norm):

            def body(i, s, side=side):
                active = tf.logical_not(s["fooled"])
                x_new = self._propose(x, s["x_best"], keys, i, side)
                loss, fooled_now = self._score(x_new, y_onehot, t_onehot)
                improved = active & (loss < s["loss"])
                accept = improved | (active & fooled_now)
                return i + 1, dict(
                    s, x_best=geometry.select_per_sample(accept, x_new, s["x_best"]),
                    loss=tf.where(improved, loss, s["loss"]), fooled=s["fooled"] | (active & fooled_now),
                    used=s["used"] + tf.cast(active, tf.float32))

            begin, end_here = tf.maximum(start, first), tf.minimum(stop, end)
            _, state = tf.while_loop(
                lambda i, s, end_here=end_here: (i < end_here) & tf.reduce_any(tf.logical_not(s["fooled"])),
                body, (begin, state))
        return state

    def segment_fooled(self, state) -> tf.Tensor:
        return state["fooled"]

    def segment_output(self, state) -> tf.Tensor:
        return state["x_best"]

    def _attack(self, x, y_onehot, sample_ids, restart, with_stats: bool = False, batch_sizes=None):
        x_out, fooled = x, tf.zeros([tf.shape(x)[0]], tf.bool)
        used, first_loss = tf.zeros([tf.shape(x)[0]]), None
        for rank in self.segment_stages():
            run = self.segment_run(self.segment_begin(x, y_onehot, sample_ids, restart, rank, done=fooled), 0, self.queries)
            # The first run's points for the samples it does not fool; later runs only add fooling points.
            keep = tf.logical_not(fooled) if rank == 1 else run["fooled"] & tf.logical_not(fooled)
            x_out = geometry.select_per_sample(keep, run["x_best"], x_out)
            fooled, used = run["fooled"], used + run["used"]
            first_loss = run["loss"] if first_loss is None else first_loss
        if not with_stats:
            return x_out
        return x_out, {"success": fooled, "queries": used, "loss": first_loss,
                       "prediction": model_outputs.predicted_classes(self.forward(x_out))}
