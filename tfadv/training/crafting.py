"""Training-time perturbations, composed from tfadv.geometry (one step, one projection, one random start).

The adversarial-training models craft inside `train_step`, where every pass counts: these helpers run
exactly the forward/backward passes the papers' loops run and nothing else (no best-iterate selection, no
per-sample statistics), and they take the loss from the model so the attack ascends the very objective
the weight update descends (Wong et al., Shafahi et al. and Madry et al. use one criterion for both).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

from tfadv import geometry

#: Attacks up to this many steps are unrolled into the step's graph; longer ones run in a graph loop so a
#: 128-step attacker compiles as fast as a short one. Measured (tfadv.benchmarks.training, CPU): PGD-3
#: training cost 3.2 clean epochs unrolled vs 4.1 in a tf.while_loop, whose body misses the graph
#: optimisations the unrolled passes get.
UNROLL_STEPS = 10

#: loss_fn(x_adv) -> scalar loss to ascend (already multiplied by the optimizer's loss scale).
LossFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Threat:
    """The threat model: ||delta|| <= eps in `norm`, with x + delta inside [clip_min, clip_max]."""

    eps: float
    norm: geometry.Norm
    clip_min: float | None
    clip_max: float | None


def keep_in_range(delta: tf.Tensor, x: tf.Tensor, threat: Threat) -> tf.Tensor:
    """The perturbation that keeps x + delta inside the valid input range."""
    return geometry.clip_to_range(x + delta, threat.clip_min, threat.clip_max) - x


def ascent_step(
    delta: tf.Tensor, grad: tf.Tensor, x: tf.Tensor, *, step_size: float, threat: Threat, guard_nonfinite: bool = True
) -> tf.Tensor:
    """delta <- Proj_eps(delta + step_size * steepest_ascent(grad)), then x + delta clipped to the range.

    guard_nonfinite zeroes Inf/NaN gradient entries (tfadv.precision.may_overflow says when it is needed).
    """
    if guard_nonfinite:
        grad = geometry.finite_or_zero(grad)
    moved = delta + tf.cast(step_size, delta.dtype) * geometry.steepest_ascent(grad, threat.norm)
    return keep_in_range(geometry.project(moved, threat.eps, threat.norm), x, threat)


def input_gradient(loss_fn: LossFn, x_adv: tf.Tensor) -> tf.Tensor:
    """d loss / d x at x_adv: one forward and one backward pass, no weight gradients."""
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        loss = loss_fn(x_adv)
    return tape.gradient(loss, x_adv)


def random_start(x: tf.Tensor, *, threat: Threat, seed: int, counter: tf.Tensor) -> tf.Tensor:
    """geometry.random_start keyed on (seed, counter, row, replica), clipped so x + delta stays valid.

    The counter is a model variable that advances every step, so each batch gets a fresh draw and a run
    resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
    """
    n = tf.shape(x)[0]
    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else replica.replica_id_in_sync_group
    rows = tf.range(n, dtype=tf.int64) + tf.cast(replica_id, tf.int64) * (1 << 20)
    seeds = geometry.sample_seeds(seed, rows, counter)
    delta = geometry.random_start(tf.shape(x), threat.eps, threat.norm, seeds, dtype=x.dtype)
    return keep_in_range(delta, x, threat)


def pgd_perturbation(
    loss_fn: LossFn,
    x: tf.Tensor,
    delta: tf.Tensor,
    *,
    steps: int,
    step_size: float,
    threat: Threat,
    guard_nonfinite: bool = True,
) -> tf.Tensor:
    """`steps` projected steepest-ascent steps from `delta` (Madry et al. Eq. 2.2)."""

    def step(d: tf.Tensor) -> tf.Tensor:
        grad = input_gradient(loss_fn, x + d)
        return ascent_step(d, grad, x, step_size=step_size, threat=threat, guard_nonfinite=guard_nonfinite)

    if steps <= UNROLL_STEPS:
        for _ in range(steps):
            delta = step(delta)
        return tf.stop_gradient(delta)
    _, delta = tf.while_loop(
        lambda i, _: i < steps,
        lambda i, d: (i + 1, step(d)),
        (tf.constant(0), delta),
        parallel_iterations=1,
    )
    return tf.stop_gradient(delta)
