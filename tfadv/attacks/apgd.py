"""APGD: Auto-PGD of Croce & Hein (ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1), compiled whole into one `tf.function`.

Per sample, with P the projection onto the eps ball and the input range:
    z      = P(x_k + eta_k * dir(grad f(x_k)))                       (dir: sign for L-inf, g/||g|| for L2)
    x_k+1  = P(x_k + a (z - x_k) + (1 - a)(x_k - x_k-1)),  a = 0.75  (a = 1 on the first step)
The step eta starts at 2 eps. At checkpoints w_j it is halved, and the sample restarts from its best point
(with the gradient there), when (1) the loss rose in at most rho = 0.75 of the steps since w_j-1, or (2) eta
was not halved at w_j-1 and the best loss has not improved since. A sample counts as fooled as soon as any
iterate fools it; the last fooling iterate is returned for it, the highest-loss iterate for the others.

Where this follows the reference code (fra31/auto-attack, autopgd_base.py) rather than the paper's text, as
AutoAttack's published numbers come from the code: the checkpoint recursion in the code's integer form
(`checkpoint_lengths`), condition (1) tested with "<=", the loss summed over the batch, the random start on
the sphere of radius eps. One deliberate difference: the first checkpoint's count of loss increases compares
f(x_1) with f(x_0), as the paper's formula; the code compares it with a zero-initialised buffer.

`targeted=True` is AutoAttack's APGD-T: the labels are still the TRUE labels; the attack runs once per
target class (the `n_target_classes` highest-scoring wrong classes on the clean input, in order) on the
targeted loss, and a sample counts as fooled when it is misclassified as any class, as in AutoAttack.
"""
from __future__ import annotations

from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, losses, model_outputs, precision, tracing, validation
from tfadv.attacks import scores
from tfadv.attacks.base import Attack

ApgdLoss = Literal["ce", "dlr"]

FIRST_CHECKPOINT = 0.22      # p_1
CHECKPOINT_DECREASE = 0.03   # p_j+1 - p_j = max(p_j - p_j-1 - 0.03, 0.06)
MIN_CHECKPOINT_GAP = 0.06
MOMENTUM = 0.75
INITIAL_STEP = 2.0           # eta_0 = 2 eps
#: Random-start streams per restart: target rank r of restart k draws from stream k * _STREAMS + r.
_STREAMS = 128


def checkpoint_lengths(steps: int) -> list[int]:
    """Iterations between consecutive checkpoints, the reference code's integer form of the paper's
    p_0 = 0, p_1 = 0.22, p_j+1 = p_j + max(p_j - p_j-1 - 0.03, 0.06): the first gap is
    max(floor(0.22 N), 1), then each gap shrinks by max(floor(0.03 N), 1) down to max(floor(0.06 N), 1)."""
    first = max(int(FIRST_CHECKPOINT * steps), 1)
    decrease = max(int(CHECKPOINT_DECREASE * steps), 1)
    smallest = max(int(MIN_CHECKPOINT_GAP * steps), 1)
    lengths, gap, total = [], first, 0
    while total + gap <= steps:
        lengths.append(gap)
        total += gap
        gap = max(gap - decrease, smallest)
    return lengths


def checkpoints(steps: int) -> list[int]:
    """w_1, w_2, ...: after how many iterations each step-size check happens."""
    return [int(w) for w in np.cumsum(checkpoint_lengths(steps))]


def halve_step(increases, gap, rho, reduced_last, best_at_last_check, best):
    """Per sample, at a checkpoint: halve the step (and restart from the best point)? Condition (1): the loss
    rose in at most rho of the `gap` steps since the last checkpoint; condition (2): the step was not halved
    at the last checkpoint and the best loss has not improved since."""
    oscillating = increases <= rho * gap
    stalled = tf.logical_not(reduced_last) & (best_at_last_check >= best)
    return oscillating | stalled


class APGD(Attack):
    """Auto-PGD (APGD-CE, APGD-DLR; APGD-T with `targeted=True`). Budget: `steps` + 1 gradient passes per
    target class (one at the start); `eot_iter` gradients are averaged per pass for randomised models."""

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        steps: int = 100,
        *,
        loss: ApgdLoss = "ce",
        targeted: bool = False,
        n_target_classes: int = 9,
        rho: float = 0.75,
        eot_iter: int = 1,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        seed: int | None = None,
        jit_compile: bool = False,
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        # The labels given to APGD-T are true labels and success means misclassification: to the base
        # class (and to robust_accuracy) it is an untargeted attack.
        targeted = validation.flag("APGD", "targeted", targeted)
        super().__init__(model, eps=eps, norm=norm, from_logits=from_logits, clip_min=clip_min,
                         clip_max=clip_max, targeted=False, seed=seed, jit_compile=jit_compile,
                         output_index=output_index, check_output_kind=check_output_kind)
        self.steps = validation.integer("APGD", "steps", steps, minimum=1)
        self.eot_iter = validation.integer("APGD", "eot_iter", eot_iter, minimum=1)
        if loss not in ("ce", "dlr"):
            raise ValueError(f"APGD: loss must be 'ce' or 'dlr', got {loss!r}")
        self.rho = validation.real("APGD", "rho", rho, positive=True)
        if self.rho > 1.0:
            raise ValueError(f"APGD: rho must be a number in (0, 1], got {rho!r}")
        self.loss = loss
        self.target_classes = validation.integer("APGD", "n_target_classes", n_target_classes, minimum=1) if targeted else 0
        if self.target_classes >= _STREAMS:
            raise ValueError(f"APGD: n_target_classes must be < {_STREAMS}, got {n_target_classes}")
        self.training = False  # evaluation attack: the model runs in inference mode
        self.rand_init = True
        self._guard_nonfinite = precision.may_overflow(model, loss_scaled=False)
        lengths = checkpoint_lengths(self.steps)
        is_check = np.zeros(self.steps, bool)
        gap = np.ones(self.steps, np.float32)
        is_check[np.cumsum(lengths) - 1] = True
        gap[np.cumsum(lengths) - 1] = lengths
        self._is_check, self._gap = tf.constant(is_check), tf.constant(gap)
        self._move_fused = tracing.compile_once(self._move, jit_compile=True)
        self._keep_fused = tracing.compile_once(self._keep, jit_compile=True)
        if scores.model_classes(model) is not None:
            self._check_classes(scores.model_classes(model))

    @property
    def name(self) -> str:
        """AutoAttack's name for this configuration: apgd-ce, apgd-dlr, apgd-t (or apgd-t-ce)."""
        if self.target_classes:
            return "apgd-t" if self.loss == "dlr" else "apgd-t-ce"
        return f"apgd-{self.loss}"

    def _check_classes(self, classes: int) -> None:
        need = scores.TARGETED_DLR_MIN_CLASSES if (self.target_classes and self.loss == "dlr") else (
            scores.DLR_MIN_CLASSES if self.loss == "dlr" else 2)
        if classes < need:
            raise ValueError(f"APGD ({self.name}): the loss needs at least {need} classes, the model has {classes}")
        scores.check_target_count(f"APGD ({self.name})", self.target_classes, classes)

    def _validated(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        x, y_onehot = super()._validated(x, y)
        self._check_classes(int(y_onehot.shape[-1]))
        return x, y_onehot

    # ------------------------------------------------------------------------------------ numerics
    def _objective(self, z: tf.Tensor, y_onehot: tf.Tensor, t_onehot: tf.Tensor | None) -> tf.Tensor:
        """The per-sample loss APGD maximises (z: logits or log-probabilities)."""
        if t_onehot is None:
            return scores.cross_entropy(z, y_onehot) if self.loss == "ce" else scores.dlr(z, y_onehot)
        if self.loss == "ce":
            return -scores.cross_entropy(z, t_onehot)
        return scores.targeted_dlr(z, y_onehot, t_onehot)

    def _loss_and_grad(self, x_adv, y_onehot, t_onehot):
        """Per-sample loss, input gradient of the summed loss (so a sample's gradient ignores its batch),
        and whether the model misclassifies x_adv; averaged over `eot_iter` passes (the last pass's
        prediction, as the reference)."""
        def gradient_pass(x_adv):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                y_pred = self.forward(x_adv)
                loss = self._objective(scores.output_logits(y_pred, self.from_logits), y_onehot, t_onehot)
                total = tf.reduce_sum(loss)
            # None (no gradient path from x at all) is refused by name, as PGD's; a zero gradient is kept.
            return y_pred, loss, losses.require_input_gradient(tape.gradient(total, x_adv), "APGD")

        y_pred, loss, grad = tracing.call_as_own_graph(self._own_graph, gradient_pass, x_adv)
        if self.eot_iter > 1:  # one pass is used as is: adding it to zeros and dividing by 1 cost two passes over x
            for _ in range(self.eot_iter - 1):
                y_pred, more_loss, more_grad = tracing.call_as_own_graph(self._own_graph, gradient_pass, x_adv)
                loss, grad = loss + more_loss, grad + more_grad
            loss, grad = loss / self.eot_iter, grad / self.eot_iter
        if self._guard_nonfinite:
            grad = geometry.finite_or_zero(grad)
        return loss, grad, scores.misclassified(y_pred, y_onehot)

    def _project(self, x: tf.Tensor, x_new: tf.Tensor) -> tf.Tensor:
        delta = geometry.project(x_new - x, self.eps, self.norm)
        return geometry.clip_to_range(x + delta, self.clip_min, self.clip_max)

    def _start(self, x: tf.Tensor, sample_ids: tf.Tensor, stream: tf.Tensor) -> tf.Tensor:
        """x + eps * t / ||t||: a uniform point of the eps sphere (L2) or of the cube scaled until it touches
        the boundary (L-inf), as the reference; keyed on (seed, sample id, stream)."""
        if self.seed is None:
            base_seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
        else:
            base_seed = tf.constant(self.seed, tf.int64)
        seeds = geometry.sample_seeds(base_seed, sample_ids, stream)
        t = geometry.random_start(tf.shape(x), 1.0, self.norm, seeds)
        length = geometry.norm_of(t, self.norm)
        scale = self.eps / tf.where(length > 0, length, tf.ones_like(length))
        return geometry.clip_to_range(x + t * geometry.broadcast_per_sample(scale, t), self.clip_min, self.clip_max)

    # --------------------------------------------------------------------------- the loop, in parts
    def _begin(self, x, y_onehot, t_onehot, sample_ids, stream) -> dict[str, tf.Tensor]:
        """State after the random start and its gradient (the first of steps + 1 passes)."""
        x_adv = self._start(x, sample_ids, stream)
        loss, grad, fooled = self._loss_and_grad(x_adv, y_onehot, t_onehot)
        n = tf.shape(x)[0]
        return {
            "x_adv": x_adv, "x_prev": x_adv, "grad": grad, "x_best": x_adv, "grad_best": grad,
            "x_found": x_adv, "fooled": fooled, "loss_prev": loss, "loss_best": loss,
            "loss_best_last": loss, "reduced_last": tf.ones([n], tf.bool),
            "increases": tf.zeros([n], tf.float32),
            "step": tf.fill([n], tf.constant(INITIAL_STEP * self.eps, tf.float32)),
            "zero_grad_first": tf.reduce_all(tf.equal(grad, 0.0), axis=list(range(1, x.shape.rank))),
        }

    def _bounds(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor] | None:
        """L-inf: the box [x - eps, x + eps] within the input range, so that P is one clip (computed once)."""
        if self.norm != "inf":
            return None
        low, high = x - self.eps, x + self.eps
        if self.clip_min is not None:
            low, high = tf.maximum(low, self.clip_min), tf.minimum(high, self.clip_max)
        return low, high

    def _move(self, x, low, high, x_adv, x_prev, grad, step, a):
        """z = P(x_k + eta dir(g)); x_k+1 = P(x_k + a (z - x_k) + (1 - a)(x_k - x_k-1)). Element-wise (L-inf)
        or per sample (L2), so XLA fuses it into one pass over memory: unfused, these dozen image-sized
        operations cost about half a gradient pass of a small CNN on CPU (measured on the digits CNN)."""
        if self.norm == "inf":
            project = lambda v: tf.clip_by_value(v, low, high)  # noqa: E731
        else:
            project = lambda v: self._project(x, v)  # noqa: E731
        step = geometry.broadcast_per_sample(step, x)
        z = project(x_adv + step * geometry.steepest_ascent(grad, self.norm, "exact"))
        return project(x_adv + a * (z - x_adv) + (1.0 - a) * (x_adv - x_prev))

    @staticmethod
    def _keep(x_adv, grad, fooled_now, better, x_found, x_best, grad_best):
        """The last fooling iterate, and the best-loss iterate with its gradient (fused by XLA, as _move)."""
        fooled_now = geometry.broadcast_per_sample(fooled_now, x_adv)
        better = geometry.broadcast_per_sample(better, x_adv)
        return tf.where(fooled_now, x_adv, x_found), tf.where(better, x_adv, x_best), tf.where(better, grad, grad_best)

    def _checkpoint(self, i, s: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """At a checkpoint: halve the step of the samples that meet a condition and restart them from their
        best point with its gradient; remember this checkpoint's best loss and decisions."""
        halve = halve_step(s["increases"], tf.gather(self._gap, i), self.rho, s["reduced_last"],
                           s["loss_best_last"], s["loss_best"])
        return dict(s, step=tf.where(halve, 0.5 * s["step"], s["step"]),
                    x_adv=geometry.select_per_sample(halve, s["x_best"], s["x_adv"]),
                    grad=geometry.select_per_sample(halve, s["grad_best"], s["grad"]),
                    reduced_last=halve, loss_best_last=s["loss_best"], increases=tf.zeros_like(s["increases"]))

    def _iteration(self, i, x, bounds, y_onehot, t_onehot, s: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Iteration i (0-based) of Algorithm 1: momentum step, bookkeeping, and the check at a checkpoint."""
        a = tf.where(tf.equal(i, 0), 1.0, MOMENTUM)
        low, high = bounds if bounds is not None else (x, x)
        x_adv = self._move_fused(x, low, high, s["x_adv"], s["x_prev"], s["grad"], s["step"], a)
        loss, grad, fooled_now = self._loss_and_grad(x_adv, y_onehot, t_onehot)
        better = loss > s["loss_best"]
        x_found, x_best, grad_best = self._keep_fused(x_adv, grad, fooled_now, better, s["x_found"], s["x_best"],
                                                      s["grad_best"])
        s = dict(s, x_prev=s["x_adv"], x_adv=x_adv, grad=grad, fooled=s["fooled"] | fooled_now, x_found=x_found,
                 increases=s["increases"] + tf.cast(loss > s["loss_prev"], tf.float32), loss_prev=loss,
                 x_best=x_best, grad_best=grad_best, loss_best=tf.where(better, loss, s["loss_best"]))
        return tf.cond(tf.gather(self._is_check, i), lambda: self._checkpoint(i, s), lambda: s)

    def _iterate(self, x, y_onehot, t_onehot, state, start, stop) -> dict[str, tf.Tensor]:
        """Iterations start .. stop - 1 (a whole run is start = 0, stop = steps)."""
        bounds = self._bounds(x)
        _, state = tf.while_loop(
            lambda i, s: i < tf.cast(stop, tf.int32),
            lambda i, s: (i + 1, self._iteration(i, x, bounds, y_onehot, t_onehot, s)),
            (tf.cast(start, tf.int32), state),
        )
        return state

    def _targets(self, x, y_onehot, rank):
        """The target of rank `rank` from the clean output, or None for the untargeted attack."""
        if not self.target_classes:
            return None
        z_clean = scores.output_logits(self.forward(x), self.from_logits)
        return scores.ranked_target(z_clean, y_onehot, rank)

    # ------------------------------------------------- segments (tfadv.evaluation.compaction drives them)
    def segment_stages(self) -> list[int]:
        """Independent runs per restart: one per target rank (APGD-T), else one."""
        return list(range(1, max(self.target_classes, 1) + 1))

    @property
    def segment_steps(self) -> int:
        return self.steps

    def segment_begin(self, x, y_onehot, sample_ids, restart, stage, batch_sizes=None) -> dict[str, tf.Tensor]:
        """A run's state after its random start (one gradient pass); it carries its own inputs. (APGD sums
        per-sample losses, so a sample's mean-reduction batch size, `batch_sizes`, plays no part.)"""
        t_onehot = self._targets(x, y_onehot, stage)
        stream = tf.cast(restart, tf.int64) * _STREAMS + tf.cast(stage, tf.int64)
        state = self._begin(x, y_onehot, t_onehot, sample_ids, stream)
        state.update(x=x, y=y_onehot)
        if t_onehot is not None:
            state["t"] = t_onehot
        return state

    def segment_run(self, state, start, stop) -> dict[str, tf.Tensor]:
        return self._iterate(state["x"], state["y"], state.get("t"), state, start, stop)

    def segment_fooled(self, state) -> tf.Tensor:
        return state["fooled"]

    def segment_output(self, state) -> tf.Tensor:
        """The last fooling iterate where the run fooled the sample, else its highest-loss iterate."""
        return geometry.select_per_sample(state["fooled"], state["x_found"], state["x_best"])

    def _attack(self, x, y_onehot, sample_ids, restart, with_stats: bool = False, batch_sizes=None):
        # batch_sizes (mean-reduction emulation) is irrelevant: APGD sums its per-sample losses.
        first = self.segment_run(self.segment_begin(x, y_onehot, sample_ids, restart, 1), 0, self.steps)
        fooled, x_out = first["fooled"], self.segment_output(first)
        if self.target_classes > 1:
            for rank in tf.range(2, self.target_classes + 1):  # autograph: a while loop over the targets
                run = self.segment_run(self.segment_begin(x, y_onehot, sample_ids, restart, rank), 0, self.steps)
                newly = run["fooled"] & tf.logical_not(fooled)
                x_out = geometry.select_per_sample(newly, run["x_found"], x_out)
                fooled = fooled | run["fooled"]
        if not with_stats:
            return x_out
        prediction = model_outputs.predicted_classes(self.forward(x_out))
        delta = x_out - x
        return x_out, {
            "success": fooled,
            "prediction": prediction,
            "loss_best": first["loss_best"],
            "grad_zero_first": first["zero_grad_first"],
            "perturbation_l2": geometry.l2_norm(delta),
            "perturbation_linf": geometry.linf_norm(delta),
        }
