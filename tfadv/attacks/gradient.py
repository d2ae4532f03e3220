"""FGM and PGD: `steps` steepest-ascent steps with projection, the whole loop in one compiled call."""
from __future__ import annotations

from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, losses, model_outputs, precision, validation
from tfadv.attacks.base import Attack

Select = Literal["last", "max_loss", "first_success"]
_SELECT = ("last", "max_loss", "first_success")


class _GradientAttack(Attack):
    """Shared machinery of FGM and PGD: the compiled step loop, best-iterate selection, diagnostics."""

    def __init__(
        self,
        model: keras.Model,
        *,
        eps: float,
        norm: str | int | float,
        steps: int,
        step_size: float,
        rand_init: bool,
        reduction: str | None,
        from_logits: bool,
        clip_min: float | None,
        clip_max: float | None,
        loss: keras.losses.Loss | None,
        targeted: bool,
        seed: int | None,
        l2_normalization: geometry.L2Normalization,
        l2_rand_init: str,
        loss_scale: float | str | None,
        training: bool,
        select: Select,
        jit_compile: bool,
        output_index: model_outputs.OutputIndex,
        check_output_kind: bool,
    ):
        super().__init__(model, eps=eps, norm=norm, from_logits=from_logits, clip_min=clip_min,
                         clip_max=clip_max, targeted=targeted, seed=seed, jit_compile=jit_compile,
                         output_index=output_index, check_output_kind=check_output_kind)
        name = type(self).__name__
        self.step_size = validation.real(name, "step_size", step_size, minimum=0.0)
        self.steps = validation.integer(name, "steps", steps, minimum=1)
        if reduction is None:
            reduction = getattr(loss, "reduction", None) or "sum_over_batch_size"
        try:
            self.reduction = losses.canonical_reduction(reduction)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        if l2_normalization not in ("clamped", "exact"):
            raise ValueError(f"{name}: l2_normalization must be 'clamped' or 'exact', got {l2_normalization!r}")
        if l2_rand_init not in ("uniform_ball", "batch_radius"):
            raise ValueError(f"{name}: l2_rand_init must be 'uniform_ball' or 'batch_radius', got {l2_rand_init!r}")
        if select not in _SELECT:
            raise ValueError(f"{name}: select must be one of {_SELECT}, got {select!r}")
        if loss_scale is not None and not (isinstance(loss_scale, str) and loss_scale == "per_sample"):
            if isinstance(loss_scale, str):
                raise ValueError(f"{name}: loss_scale must be None, a positive number or 'per_sample', got {loss_scale!r}")
            loss_scale = validation.real(name, "loss_scale", loss_scale, positive=True)
        self.loss = losses.per_sample_loss_fn(loss, self.from_logits, owner=name)
        _refuse_label_smoothing(name, self.loss)
        self.rand_init = validation.flag(name, "rand_init", rand_init)
        self.l2_normalization = l2_normalization
        self.l2_rand_init = l2_rand_init
        self.loss_scale = loss_scale
        self._guard_nonfinite = precision.may_overflow(model, loss_scaled=loss_scale is not None)
        self.training = validation.flag(name, "training", training)
        self.select = select
        #: Which cross-entropy Keras computed on the model output (set when the attack is traced).
        self.loss_path: losses.LossPath | None = None

    # --------------------------------------------------------------------------------- the numerics
    def _objective_and_gradient(self, x_adv: tf.Tensor, y_onehot: tf.Tensor, batch_sizes: tf.Tensor | None = None):
        """Per-sample objective (the loss, negated if targeted), predictions and the input gradient of
        the reduced objective, in float32 and free of loss scaling (not yet checked for non-finites).
        `batch_sizes` (N,): each sample's B in the mean reduction (None: the batch size)."""
        labels = losses.loss_labels(self.loss, y_onehot)

        def reduced_objective(x_adv):
            y_pred = self.forward(x_adv, training=self.training)
            self.loss_path = losses.attack_loss_path(self.loss, y_pred, self.from_logits)
            objective = self.loss(labels, y_pred)
            if self.targeted:
                objective = -objective
            if self.loss_scale == "per_sample":  # the weights go in here, the reduction's 1/B after
                weights = losses.per_sample_loss_scale(self.loss, labels, y_pred, self.from_logits)
                return tf.reduce_sum(objective * weights), (objective, y_pred, weights)
            return losses.reduce_loss(objective, self.reduction, batch_sizes), (objective, y_pred, None)

        constant_scale = None if self.loss_scale == "per_sample" else self.loss_scale
        grad, (objective, y_pred, weights) = losses.loss_scaled_gradient(
            reduced_objective, x_adv, constant_scale, own_graph=self._own_graph, owner=type(self).__name__)
        if self.loss_scale == "per_sample":
            factor = losses.reduction_factor(self.reduction, tf.shape(x_adv)[0] if batch_sizes is None else batch_sizes)
            grad = grad * geometry.broadcast_per_sample(factor / weights, grad)
        return objective, y_pred, grad

    def _finite(self, grad: tf.Tensor) -> tf.Tensor:
        return geometry.finite_or_zero(grad) if self._guard_nonfinite else grad

    def _step(self, x: tf.Tensor, x_adv: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
        return geometry.pgd_step(
            x, x_adv, grad, step_size=self.step_size, eps=self.eps, norm=self.norm, clip_min=self.clip_min,
            clip_max=self.clip_max, l2_normalization=self.l2_normalization,
        )

    def _attack(self, x, y_onehot, *, sample_ids, restart, batch_sizes, with_stats: bool):
        x_adv = self._start(x, sample_ids, restart)
        n = tf.shape(x)[0]
        best = x_adv
        best_objective = tf.fill([n], tf.constant(-np.inf, tf.float32))
        frozen = tf.zeros([n], tf.bool)
        success_step = tf.fill([n], -1)

        def advance(t, x_adv, best, best_objective, frozen, success_step):
            """Step t + 1 from iterate t; also keeps the selected iterate and, with the statistics, the first
            iterate that fooled each sample (the loss and prediction seen are x_adv's)."""
            objective, y_pred, raw_grad = self._objective_and_gradient(x_adv, y_onehot, batch_sizes)
            grad = self._finite(raw_grad)
            fooled = self._success(y_pred, y_onehot) if self.select == "first_success" or with_stats else None
            if with_stats:
                success_step = tf.where((success_step < 0) & fooled, t, success_step)
            if self.select == "max_loss":
                better = objective > best_objective
                best = geometry.select_per_sample(better, x_adv, best)
                best_objective = tf.where(better, objective, best_objective)
            elif self.select == "first_success":
                frozen = frozen | fooled
            stepped = self._step(x, x_adv, grad)
            if self.select == "first_success":
                stepped = geometry.select_per_sample(frozen, x_adv, stepped)
            return stepped, best, best_objective, frozen, success_step, raw_grad

        # The first step is peeled off the loop so its gradient can be reported.
        x_adv, best, best_objective, frozen, success_step, first_raw_grad = advance(
            0, x_adv, best, best_objective, frozen, success_step)
        for t in tf.range(1, self.steps):
            x_adv, best, best_objective, frozen, success_step = advance(
                t, x_adv, best, best_objective, frozen, success_step)[:5]

        if self.select == "max_loss" or with_stats:
            final_objective, final_pred, _ = self._objective_and_gradient(x_adv, y_onehot, batch_sizes)
        if with_stats:  # the last iterate is judged too
            last_fooled = self._success(final_pred, y_onehot)
            success_step = tf.where((success_step < 0) & last_fooled, self.steps, success_step)
        if self.select == "max_loss":
            better = final_objective > best_objective
            x_adv = geometry.select_per_sample(better, x_adv, best)
        if not with_stats:
            return x_adv
        if self.select == "max_loss":
            final_pred = self.forward(x_adv, training=False)
        delta = x_adv - x
        axes = list(range(1, x.shape.rank))
        first_grad = self._finite(first_raw_grad)
        stats = {
            "grad_l2_first": geometry.l2_norm(first_grad),
            "grad_zero_first": tf.reduce_all(tf.equal(first_grad, 0.0), axis=axes),
            "floor_clamped_first": geometry.legacy_floor_clamps(first_grad),
            "nonfinite_grad_first": tf.reduce_any(tf.logical_not(tf.math.is_finite(first_raw_grad)), axis=axes),
            "perturbation_l2": geometry.l2_norm(delta),
            "perturbation_linf": geometry.linf_norm(delta),
            "prediction": model_outputs.predicted_classes(final_pred),
            "success": self._success(final_pred, y_onehot),
            "success_step": success_step,
        }
        return x_adv, stats

    @property
    def restarts_differ(self) -> bool:
        return self.rand_init  # without a random start every restart repeats the first, step for step


def _refuse_label_smoothing(owner: str, loss: keras.losses.Loss) -> None:
    """Refused, not warned about: a smoothed cross-entropy adds (a/C) * sum_j -log p_j, which rises as every
    class's probability falls, so ascending it pulls the output toward uniform instead of onto a wrong class.
    The attack would be weaker and the robust accuracy overstated, and nothing is gained: an attack's labels
    are exactly one-hot (tfadv.labels), so the true class's own loss is the one to ascend."""
    smoothing = loss.get_config().get("label_smoothing", 0.0)
    if smoothing:
        raise ValueError(
            f"{owner}: loss={type(loss).__name__}(label_smoothing={smoothing}): a smoothed loss is no longer the "
            "true class's (or the target's) loss, and ascending it is a weaker attack that overstates robustness; "
            "build the attack's loss with label_smoothing=0 (smoothing belongs to the training loss)"
        )


class FGM(_GradientAttack):
    """Fast Gradient Method (Goodfellow et al.): x + eps * sign(g) for L-inf, x + eps * g/||g||_2 for L2,
    clipped to [clip_min, clip_max]."""

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        *,
        reduction: str | None = None,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        loss: keras.losses.Loss | None = None,
        targeted: bool = False,
        l2_normalization: geometry.L2Normalization = "clamped",
        loss_scale: float | str | None = None,
        training: bool = False,
        jit_compile: bool = False,
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        super().__init__(
            model, eps=eps, norm=norm, steps=1, step_size=eps, rand_init=False, reduction=reduction,
            from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, loss=loss, targeted=targeted,
            seed=None, l2_normalization=l2_normalization, l2_rand_init="uniform_ball",
            loss_scale=loss_scale, training=training, select="last", jit_compile=jit_compile,
            output_index=output_index, check_output_kind=check_output_kind,
        )


class PGD(_GradientAttack):
    """Projected Gradient Descent (Madry et al.): a random start in the eps ball, then `steps` FGM steps
    of `step_size`, each followed by projection onto the eps ball and the clip range:
    x^{t+1} = clip(x + Proj_eps(clip(x^t + step_size * dir(grad)) - x)).

    `select` picks what is returned per sample: the "last" iterate (as Madry et al. and the paper),
    the "max_loss" iterate seen, or the "first_success" (a sample stops moving once it is fooled).
    The statistics (`return_stats=True`) hold `success_step`: per sample, the first iterate that fooled it
    (0: the start, `steps`: the last) or -1. With "first_success", PGD-k of the same seed and step size is
    fooled exactly when 0 <= success_step <= k (tfadv.evaluation.same_shape.robust_masks_by_steps).
    """

    def __init__(
        self,
        model: keras.Model,
        eps: float,
        norm: str | int | float = "inf",
        steps: int = 10,
        step_size: float | None = None,
        rand_init: bool = True,
        *,
        reduction: str | None = None,
        from_logits: bool = False,
        clip_min: float | None = None,
        clip_max: float | None = None,
        loss: keras.losses.Loss | None = None,
        targeted: bool = False,
        seed: int | None = None,
        l2_normalization: geometry.L2Normalization = "clamped",
        l2_rand_init: str = "uniform_ball",
        loss_scale: float | str | None = None,
        training: bool = False,
        select: Select = "last",
        jit_compile: bool = False,
        output_index: model_outputs.OutputIndex = None,
        check_output_kind: bool = True,
    ):
        if step_size is None:
            name = type(self).__name__
            step_size = 2.5 * validation.real(name, "eps", eps) / validation.integer(name, "steps", steps, minimum=1)
        super().__init__(
            model, eps=eps, norm=norm, steps=steps, step_size=step_size, rand_init=rand_init,
            reduction=reduction, from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, loss=loss,
            targeted=targeted, seed=seed, l2_normalization=l2_normalization, l2_rand_init=l2_rand_init,
            loss_scale=loss_scale, training=training, select=select, jit_compile=jit_compile,
            output_index=output_index, check_output_kind=check_output_kind,
        )
        validation.warn_if_short_reach(type(self).__name__, self.eps, self.steps, self.step_size)
