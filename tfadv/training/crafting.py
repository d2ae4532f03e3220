"""Training-time perturbations: the attacks' random start, step and loss-scaled gradient, in train_step.

The adversarial-training models craft inside `train_step`, where every pass counts: these helpers run
exactly the forward/backward passes the papers' loops run and nothing else (no best-iterate selection, no
per-sample statistics), and they take the loss from the model so the attack ascends the very objective
the weight update descends (Wong et al., Shafahi et al. and Madry et al. use one criterion for both).
The numerics are tfadv.attacks' own: `geometry.random_start_point`, `geometry.pgd_step` (clip, project,
clip) and `losses.loss_scaled_gradient`, with starts keyed on (seed, row, counter) as an attack keys
them on (seed, sample id, restart): PGDAdversarialModel.craft equals tfadv.attacks.PGD called with
sample_ids = rows and restart = the step counter, when both run in the same compilation mode (XLA draws
other starts than TensorFlow's graph and eager kernels).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

from tfadv import geometry, losses, tracing

#: Attacks up to this many steps are unrolled into the step's graph; longer ones run in a graph loop so a
#: 128-step attacker compiles as fast as a short one. Measured (tfadv.benchmarks.training, CPU): PGD-3
#: training cost 3.2 clean epochs unrolled vs 4.1 in a tf.while_loop, whose body misses the graph
#: optimisations the unrolled passes get.
UNROLL_STEPS = 10

#: loss_fn(x_adv) -> scalar loss to ascend (unscaled: `pgd` applies the loss scale).
LossFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Threat:
    """The threat model: ||delta|| <= eps in `norm`, with x + delta inside [clip_min, clip_max]."""

    eps: float
    norm: geometry.Norm
    clip_min: float | None
    clip_max: float | None
    l2_normalization: geometry.L2Normalization = "clamped"  # geometry.pgd_step's, for norm "2"


def ascent_step(
    x: tf.Tensor, x_adv: tf.Tensor, grad: tf.Tensor, *, step_size: float, threat: Threat, guard_nonfinite: bool = True
) -> tf.Tensor:
    """x_adv <- geometry.pgd_step(...): the attacks' clip, project, clip.

    guard_nonfinite zeroes Inf/NaN gradient entries (tfadv.precision.may_overflow says when it is needed).
    """
    if guard_nonfinite:
        grad = geometry.finite_or_zero(grad)
    return geometry.pgd_step(
        x, x_adv, grad, step_size=tf.cast(step_size, x_adv.dtype), eps=threat.eps, norm=threat.norm,
        clip_min=threat.clip_min, clip_max=threat.clip_max, l2_normalization=threat.l2_normalization,
    )


def input_gradient(loss_fn: LossFn, x_adv: tf.Tensor, scale: tf.Tensor | None = None) -> tf.Tensor:
    """d loss / d x at x_adv (one forward and one backward pass, no weight gradients), back-propagated
    through scale * loss and unscaled again (see losses.loss_scaled_gradient)."""
    grad, _ = losses.loss_scaled_gradient(lambda z: (loss_fn(z), None), x_adv, scale)
    return grad


def random_start(x: tf.Tensor, *, threat: Threat, seed: int, counter: tf.Tensor) -> tf.Tensor:
    """The starting point geometry.random_start_point keyed on (seed, row + replica offset, counter).

    The counter is a model variable that advances every step, so each batch gets a fresh draw and a run
    resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
    """
    n = tf.shape(x)[0]
    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else replica.replica_id_in_sync_group
    rows = tf.range(n, dtype=tf.int64) + tf.cast(replica_id, tf.int64) * (1 << 20)
    return geometry.random_start_point(
        x, eps=threat.eps, norm=threat.norm, seed=seed, sample_ids=rows, restart=counter,
        clip_min=threat.clip_min, clip_max=threat.clip_max,
    )


def evaluation_start(x: tf.Tensor, *, threat: Threat, seed: int, samples_before: tf.Tensor
                     ) -> tuple[tf.Tensor, tf.Tensor]:
    """The starting point of evaluate's attack and the global batch size. Keyed on (seed, sample index,
    restart 0), the index counting the samples evaluated before this batch over every replica, so a sample's
    start does not depend on the batch size or the replica count: tfadv.attacks.PGD's with sample_ids =
    the samples' positions."""
    n = tf.cast(tf.shape(x)[0], tf.int64)
    offset, total = tf.constant(0, tf.int64), n
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:  # replicas may hold unequal shares
        counts = replica.all_gather(tf.reshape(n, [1]), axis=0)
        offset = tf.reduce_sum(counts[: replica.replica_id_in_sync_group])
        total = tf.reduce_sum(counts)
    ids = samples_before + offset + tf.range(n, dtype=tf.int64)
    start = geometry.random_start_point(x, eps=threat.eps, norm=threat.norm, seed=seed, sample_ids=ids, restart=0,
                                        clip_min=threat.clip_min, clip_max=threat.clip_max)
    return start, total


def pgd(
    loss_fn: LossFn,
    x: tf.Tensor,
    x_adv: tf.Tensor,
    *,
    steps: int,
    step_size: float,
    threat: Threat,
    scale: tf.Tensor | None = None,
    guard_nonfinite: bool = True,
    own_graph: bool = False,
) -> tf.Tensor:
    """`steps` projected steepest-ascent steps from the starting point x_adv (Madry et al. Eq. 2.2).

    own_graph: the looped steps' gradient passes as graphs of their own (tracing.own_graph_helps: in a loop
    body, about half the traces of a max-pooling net kept the slow MaxPoolGrad, PGD-16 training steps of
    mnist_challenge's net 120-151 ms against 104-111; unrolled passes are rewritten either way).
    """

    def step(z: tf.Tensor, own: bool = False) -> tf.Tensor:
        grad = tracing.call_as_own_graph(own, lambda w: input_gradient(loss_fn, w, scale), z)
        return ascent_step(x, z, grad, step_size=step_size, threat=threat, guard_nonfinite=guard_nonfinite)

    if steps <= UNROLL_STEPS:
        for _ in range(steps):
            x_adv = step(x_adv)
        return tf.stop_gradient(x_adv)
    _, x_adv = tf.while_loop(
        lambda i, _: i < steps,
        lambda i, z: (i + 1, step(z, own_graph)),
        (tf.constant(0), x_adv),
        parallel_iterations=1,
    )
    return tf.stop_gradient(x_adv)
