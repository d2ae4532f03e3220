"""FAB: the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples
with a fast adaptive boundary attack"), a minimal-norm attack; AutoAttack runs its targeted form, FAB-T.

Each iteration linearises the decision boundary between the true class y and a class k at the current point
x_i: the hyperplane pi = {p : f_k(x_i) - f_y(x_i) + <grad(f_k - f_y)(x_i), p - x_i> = 0}. It projects both
x_i and the original x onto pi intersected with the input box (`project_onto_hyperplane`: the
minimal-norm displacement, exact), and moves to a convex combination biased towards x (eq. 9 of the paper):
    alpha = min(||d_i|| / (||d_i|| + ||d_0||), alpha_max),
    x_i+1 = clip((1 - alpha)(x_i + eta d_i) + alpha (x + eta d_0)).
When x_i+1 is adversarial it is kept if it is the closest found so far, and the iterate steps back towards x:
x_i+1 <- x + beta (x_i+1 - x). FAB-T takes k = the target (one gradient per iteration); untargeted FAB takes
the class whose linearised boundary is nearest (the full Jacobian per iteration).

A sample counts as broken when its closest adversarial point lies within eps (AutoAttack's test); the returned
point is that one, else the clean input. Restart 0 starts at x; later restarts start at a random point at
distance eps / 2 (as the reference code, fra31/auto-attack fab_base.py).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, losses, model_outputs, tracing, validation
from tfadv.attacks import scores
from tfadv.attacks.base import Attack

_STREAMS = 128
_MIN_STEP_NORM = 1e-8  # the reference's floor on ||d|| in alpha
_BISECTIONS = 40  # halvings of [0, largest breakpoint]: below float32 resolution


def project_onto_hyperplane(w, c, low, high, norm: str) -> tf.Tensor:
    """The minimal-norm d (rows of (N, d)) with <w, d> = c and low <= d <= high (low <= 0 <= high).

    Along the optimal path coordinate i moves as s sign(w_i) min(mu |w_i|, B_i) (L2) or s sign(w_i)
    min(mu, B_i) (L-inf), s = sign(c) and B_i the room left towards the box in that direction, so <w, d> =
    reach(mu) is piecewise linear and increasing in mu. Bisection brackets the mu with reach(mu) = |c| to
    float precision (no sort: sorting the breakpoints cost 3x a gradient pass of a small CNN on CPU); the
    linear piece there then gives mu exactly. If even the whole box cannot reach the hyperplane, d goes to
    the box's corner (the closest reachable point).
    """
    sign = tf.where(c >= 0, 1.0, -1.0)[:, None]
    abs_w = tf.abs(w)
    room = tf.where(sign * w > 0, high, -low)
    moving = abs_w > 0
    slope = abs_w * abs_w if norm == "2" else abs_w  # d<w, d>/d mu of a coordinate not yet at the box
    rate = abs_w if norm == "2" else tf.ones_like(abs_w)  # d|d_i|/d mu
    breakpoint = tf.where(moving, room / tf.where(moving, rate, 1.0), 0.0)  # where coordinate i reaches the box
    target = tf.abs(c)
    reach = lambda mu: tf.reduce_sum(abs_w * tf.minimum(mu[:, None] * rate, room), axis=1)  # noqa: E731
    high_mu = tf.reduce_max(breakpoint, axis=1)
    feasible = reach(high_mu) >= target

    def halve(k, low_mu, high_mu):
        mid = 0.5 * (low_mu + high_mu)
        short = reach(mid) < target
        return k + 1, tf.where(short, mid, low_mu), tf.where(short, high_mu, mid)

    _, low_mu, high_mu = tf.while_loop(lambda k, *_: k < _BISECTIONS, halve, (0, tf.zeros_like(high_mu), high_mu))
    saturated = moving & (breakpoint <= low_mu[:, None])
    free = tf.reduce_sum(tf.where(saturated | ~moving, 0.0, slope), axis=1)
    reached = tf.reduce_sum(tf.where(saturated, abs_w * room, 0.0), axis=1)
    mu = tf.where(free > 0, (target - reached) / tf.where(free > 0, free, 1.0), high_mu)
    mu = tf.where(feasible, tf.clip_by_value(mu, low_mu, high_mu), np.inf)[:, None]
    return tf.where(moving, sign * tf.sign(w) * tf.minimum(mu * rate, room), 0.0)


class FAB(Attack):
    """FAB (untargeted) or FAB-T (`targeted=True`: the `n_target_classes` runner-up classes on the clean
    input, one run each; labels stay the true labels, success is misclassification within eps)."""

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        steps: int = 100,
        *,
        targeted: bool = False,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        seed: int | None = None,
        jit_compile: bool = False,
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        targeted = validation.flag("FAB", "targeted", targeted)
        super().__init__(model, eps=eps, norm=norm, from_logits=from_logits, clip_min=clip_min,
                         clip_max=clip_max, targeted=False, seed=seed, jit_compile=jit_compile,
                         output_index=output_index, check_output_kind=check_output_kind)
        self.steps = validation.integer("FAB", "steps", steps, minimum=1)
        n_target_classes = validation.integer("FAB", "n_target_classes", n_target_classes, minimum=1)
        if targeted and n_target_classes >= _STREAMS:
            raise ValueError(f"FAB: n_target_classes must be < {_STREAMS}, got {n_target_classes}")
        self.target_classes = n_target_classes if targeted else 0
        self.alpha_max = validation.real("FAB", "alpha_max", alpha_max, minimum=0.0)
        self.eta = validation.real("FAB", "eta", eta, minimum=1.0)
        self.beta = validation.real("FAB", "beta", beta, minimum=0.0)
        for name, value in (("alpha_max", self.alpha_max), ("beta", self.beta)):
            if value > 1.0:
                raise ValueError(f"FAB: {name} must be a number in [0, 1], got {value!r}")
        self.training = False
        self.rand_init = False
        self.name = "fab-t" if targeted else "fab"
        # The projections and the convex combination, fused by XLA into a few passes over memory.
        self._step_fused = tracing.compile_once(self._step, jit_compile=True)
        scores.check_target_count("FAB", self.target_classes, scores.model_classes(model))

    def _validated(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        x, y_onehot = super()._validated(x, y)
        scores.check_target_count("FAB", self.target_classes, int(y_onehot.shape[-1]))
        return x, y_onehot

    # ------------------------------------------------------------------------------------ numerics
    def _boundary(self, x1, y_onehot, t_onehot):
        """f = z_k - z_y and its input gradient for the chosen class k: the target (FAB-T), or the class
        whose linearised boundary is nearest in the attack's norm (untargeted, from the Jacobian)."""
        return tracing.call_as_own_graph(self._own_graph, self._boundary_pass, x1, y_onehot, t_onehot)

    def _boundary_pass(self, x1, y_onehot, t_onehot):
        if t_onehot is not None:
            with tf.GradientTape() as tape:
                tape.watch(x1)
                z = scores.output_logits(self.forward(x1), self.from_logits)
                f = tf.reduce_sum(z * (t_onehot - y_onehot), axis=-1)
                total = tf.reduce_sum(f)  # summed: each sample's gradient is its own
            return f, losses.require_input_gradient(tape.gradient(total, x1), "FAB")
        with tf.GradientTape() as tape:
            tape.watch(x1)
            z = scores.output_logits(self.forward(x1), self.from_logits)
            z_true = tf.reduce_sum(z * y_onehot, axis=-1, keepdims=True)
        # A model with no gradient path from x was refused by _inspect (pfor's Jacobian would read it as zero).
        jac = tape.batch_jacobian(z, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        jac = tf.reshape(jac, [tf.shape(x1)[0], tf.shape(z)[1], -1])
        grad_true = tf.reduce_sum(jac * y_onehot[:, :, None], axis=1, keepdims=True)
        f_all, g_all = z - z_true, jac - grad_true
        dual = tf.reduce_sum(tf.abs(g_all), axis=-1) if self.norm == "inf" else tf.norm(g_all, axis=-1)
        distance = tf.where(y_onehot > 0, np.inf, tf.abs(f_all) / (dual + 1e-12))
        k = tf.argmin(distance, axis=-1)
        grad = tf.reshape(tf.gather(g_all, k, batch_dims=1), tf.shape(x1))
        return tf.gather(f_all, k, batch_dims=1), grad

    def _step(self, x, x1, f, grad):
        """Project x1 and x onto the linearised boundary and take the biased convex combination (eq. 9)."""
        n = tf.shape(x)[0]
        flat = lambda t: tf.reshape(t, [n, -1])  # noqa: E731
        w = flat(grad)
        plane = tf.reduce_sum(w * flat(x1), axis=1) - f  # <w, p> = plane on the linearised boundary
        points = tf.concat([flat(x1), flat(x)], axis=0)
        w2 = tf.concat([w, w], axis=0)
        c = tf.concat([plane, plane], axis=0) - tf.reduce_sum(w2 * points, axis=1)
        if self.clip_min is None:
            d = self._unboxed(w2, c)
        else:
            d = project_onto_hyperplane(w2, c, self.clip_min - points, self.clip_max - points, self.norm)
        size = tf.maximum(geometry.norm_of(d, self.norm), _MIN_STEP_NORM)
        d1, d0 = tf.reshape(d[:n], tf.shape(x)), tf.reshape(d[n:], tf.shape(x))
        alpha = tf.clip_by_value(size[:n] / (size[:n] + size[n:]), 0.0, self.alpha_max)
        alpha = geometry.broadcast_per_sample(alpha, x)
        moved = (x1 + self.eta * d1) * (1.0 - alpha) + (x + self.eta * d0) * alpha
        return geometry.clip_to_range(moved, self.clip_min, self.clip_max)

    def _unboxed(self, w, c):
        """Closed-form projection without an input box: c w / ||w||^2 (L2), c sign(w) / ||w||_1 (L-inf)."""
        if self.norm == "2":
            return w * tf.math.divide_no_nan(c, tf.reduce_sum(w * w, axis=1))[:, None]
        return tf.sign(w) * tf.math.divide_no_nan(c, tf.reduce_sum(tf.abs(w), axis=1))[:, None]

    def _start(self, x, sample_ids, restart):
        """x for restart 0; else a random point at distance eps / 2 (the reference's restarts)."""
        seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64) if self.seed is None else tf.constant(self.seed, tf.int64)
        t = geometry.random_start(tf.shape(x), 1.0, self.norm, geometry.sample_seeds(seed, sample_ids, restart))
        length = geometry.norm_of(t, self.norm)
        t = t * geometry.broadcast_per_sample(0.5 * self.eps / tf.where(length > 0, length, 1.0), t)
        moved = geometry.clip_to_range(x + t, self.clip_min, self.clip_max)
        return tf.cond(restart > 0, lambda: moved, lambda: x)

    # ------------------------------------------------- segments (tfadv.evaluation.compaction drives them)
    def segment_stages(self) -> list[int]:
        return list(range(1, max(self.target_classes, 1) + 1))

    @property
    def segment_steps(self) -> int:
        return self.steps

    def segment_begin(self, x, y_onehot, sample_ids, restart, stage, batch_sizes=None) -> dict[str, tf.Tensor]:
        """The start point of a run against target rank `stage` (no model pass for the untargeted attack)."""
        n = tf.shape(x)[0]
        state = {"x": x, "y": y_onehot, "x1": self._start(x, sample_ids, tf.cast(restart, tf.int64)),
                 "best": tf.fill([n], tf.constant(np.inf, tf.float32)), "x_best": x}
        if self.target_classes:
            z_clean = scores.output_logits(self.forward(x), self.from_logits)
            state["t"] = scores.ranked_target(z_clean, y_onehot, stage)
        return state

    def segment_run(self, state, start, stop) -> dict[str, tf.Tensor]:
        """Iterations start .. stop - 1; keeps the closest adversarial point found."""
        x, y_onehot, t_onehot = state["x"], state["y"], state.get("t")

        def body(i, s):
            f, grad = self._boundary(s["x1"], y_onehot, t_onehot)
            x1 = self._step_fused(x, s["x1"], f, grad)
            adversarial = scores.misclassified(self.forward(x1), y_onehot)
            distance = geometry.norm_of(x1 - x, self.norm)
            closer = adversarial & (distance < s["best"])
            back = x + self.beta * (x1 - x)
            return i + 1, dict(
                s, x1=geometry.select_per_sample(adversarial, back, x1),
                best=tf.where(closer, distance, s["best"]),
                x_best=geometry.select_per_sample(closer, x1, s["x_best"]))

        stop = tf.cast(stop, tf.int32)
        _, state = tf.while_loop(lambda i, s: i < stop, body, (tf.cast(start, tf.int32), state))
        return state

    def segment_fooled(self, state) -> tf.Tensor:
        # Tolerance: the norm of a point built as x + eta d can exceed eps by float rounding alone.
        return state["best"] <= self.eps * (1.0 + 1e-6)

    def segment_output(self, state) -> tf.Tensor:
        """The closest adversarial point if it lies within eps, else the clean input."""
        return geometry.select_per_sample(self.segment_fooled(state), state["x_best"], state["x"])

    def _attack(self, x, y_onehot, sample_ids, restart, with_stats: bool = False, batch_sizes=None):
        best = tf.fill([tf.shape(x)[0]], tf.constant(np.inf, tf.float32))
        x_best = x
        for rank in self.segment_stages():
            run = self.segment_run(self.segment_begin(x, y_onehot, sample_ids, restart, rank), 0, self.steps)
            closer = run["best"] < best
            x_best = geometry.select_per_sample(closer, run["x_best"], x_best)
            best = tf.minimum(best, run["best"])
        merged = {"x": x, "best": best, "x_best": x_best}
        success, x_out = self.segment_fooled(merged), self.segment_output(merged)
        if not with_stats:
            return x_out
        return x_out, {"success": success, "distance": best,
                       "prediction": model_outputs.predicted_classes(self.forward(x_out))}
