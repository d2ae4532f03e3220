"""Attacks that run in segments, for tfadv.evaluation.compaction.

An attack runs in segments when it offers:
    segment_stages()                       independent runs per restart (e.g. APGD-T's target ranks)
    segment_steps                          iterations per run
    segment_begin(x, y_onehot, sample_ids, restart, stage, batch_sizes)  -> state (a dict of per-sample tensors
                                           that carries the run's own inputs)
    segment_run(state, start, stop)        iterations start .. stop - 1
    segment_fooled(state), segment_output(state)
    segment_finish(state, start, stop)     optional: one last check after the last iteration
APGD, Square and FAB implement it themselves. PGD (and FGM) do through `SegmentedPGD`, which replays
PGD's own per-sample step (tfadv.attacks.gradient) when PGD counts any fooling iterate: select="first_success".
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfadv import geometry
from tfadv.attacks.gradient import _GradientAttack

_REQUIRED = ("segment_stages", "segment_begin", "segment_run", "segment_fooled", "segment_output", "segment_steps")


def segmented(attack: Any) -> Any | None:
    """The attack itself if it runs in segments, a SegmentedPGD for a PGD that can, else None."""
    if all(hasattr(attack, name) for name in _REQUIRED):
        return attack
    if isinstance(attack, _GradientAttack) and SegmentedPGD.why_not(attack) is None:
        return SegmentedPGD(attack)
    return None


class SegmentedPGD:
    """PGD's iterations in segments. A sample is fooled once any iterate fools it, as PGD with
    select="first_success" reports; each sample's mean-reduction batch size is the one it has in the plain
    run (`batch_sizes`), so its steps are those of the plain run."""

    def __init__(self, attack: _GradientAttack):
        reason = self.why_not(attack)
        if reason is not None:
            raise ValueError(f"{type(attack).__name__} cannot run in segments: {reason}")
        self.attack = attack
        self.jit_compile = attack.jit_compile
        self.output_index = attack.output_index

    @staticmethod
    def why_not(attack: _GradientAttack) -> str | None:
        if attack.select != "first_success":
            return (f"select={attack.select!r} judges one chosen iterate, so stopping a fooled sample early could "
                    "change the answer (select='first_success' counts any fooling iterate)")
        if attack.training or attack.targeted:
            return "only untargeted attacks in inference mode"
        if attack.rand_init and attack.norm == "2" and attack.l2_rand_init == "batch_radius":
            return "l2_rand_init='batch_radius' draws one radius per batch, so a sample's start depends on its batch"
        return None

    def segment_stages(self) -> list[int]:
        return [1]

    @property
    def segment_steps(self) -> int:
        return self.attack.steps

    def segment_begin(self, x, y_onehot, sample_ids, restart, stage, batch_sizes=None) -> dict[str, tf.Tensor]:
        del stage
        n = tf.shape(x)[0]
        batch = tf.fill([n], tf.cast(n, tf.float32)) if batch_sizes is None else batch_sizes
        return {"x": x, "y": y_onehot, "batch": batch, "x_adv": self.attack._start(x, sample_ids, restart),
                "frozen": tf.zeros([n], tf.bool)}

    def segment_run(self, state, start, stop) -> dict[str, tf.Tensor]:
        """PGD's `advance` with select="first_success", iterations start .. stop - 1."""
        attack, x, y_onehot = self.attack, state["x"], state["y"]

        def body(i, s):
            _, y_pred, raw_grad = attack._objective_and_gradient(s["x_adv"], y_onehot, s["batch"])
            frozen = s["frozen"] | attack._success(y_pred, y_onehot)
            stepped = attack._step(x, s["x_adv"], attack._finite(raw_grad))
            x_adv = geometry.select_per_sample(frozen, s["x_adv"], stepped)
            return i + 1, dict(s, x_adv=x_adv, frozen=frozen)

        _, state = tf.while_loop(lambda i, s: i < stop, body, (tf.cast(start, tf.int32), state))
        return state

    def segment_finish(self, state, start, stop) -> dict[str, tf.Tensor]:
        """The last iterate is judged too (PGD's final prediction)."""
        del start, stop
        y_pred = self.attack.forward(state["x_adv"], training=False)
        return dict(state, frozen=state["frozen"] | self.attack._success(y_pred, state["y"]))

    def segment_fooled(self, state) -> tf.Tensor:
        return state["frozen"]

    def segment_output(self, state) -> tf.Tensor:
        return state["x_adv"]

    def _validated(self, x: Any, y: Any):
        return self.attack._validated(x, y)
