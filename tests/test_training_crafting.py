"""Issue 11: one step for attacks and training. A training model crafts exactly what tfadv.attacks.PGD
crafts on the same model, inputs and seed; long attacks loop in the graph; float16 overflow is guarded."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_training import EPS, build, compile_, data

from tfadv import geometry
from tfadv.attacks import PGD
from tfadv.training import PGDAdversarialModel, crafting

RADIUS = {"inf": EPS, "2": 0.6}


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training-mode"])
def test_training_crafting_equals_the_pgd_attack(norm, training):
    """Same start (seed, row, step counter) = (seed, sample id, restart), same clip-project-clip steps."""
    eps = RADIUS[norm]
    model = compile_(build(PGDAdversarialModel, norm=norm, eps=eps, steps=3, step_size=eps / 2, seed=3,
                           attack_training_mode=training))
    x, y = data(16)
    model.train_counter.assign(5)
    attack = PGD(model, eps, norm, steps=3, step_size=eps / 2, seed=3, from_logits=True, clip_min=0.0, clip_max=1.0,
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), training=training)
    expected = attack(x, y, sample_ids=np.arange(16), restart=5).numpy()
    crafted = model.craft(tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(crafted, expected, atol=1e-6)
    assert np.abs(crafted - x).max() > 0.5 * (eps if norm == "inf" else eps / 8)


def test_l2_steps_clip_before_projecting_as_the_attacks_do():
    """At the edge of the valid range the two orders differ for L2; training takes the attacks' order."""
    x = tf.constant([[0.95, 0.5, 0.5]])
    grad = tf.constant([[1.0, 0.2, 0.0]])
    threat = crafting.Threat(0.3, "2", 0.0, 1.0)
    stepped = crafting.ascent_step(x, x, grad, step_size=0.5, threat=threat, guard_nonfinite=False).numpy()
    expected = geometry.pgd_step(x, x, grad, step_size=0.5, eps=0.3, norm="2", clip_min=0.0, clip_max=1.0).numpy()
    np.testing.assert_allclose(stepped, expected, atol=1e-7)
    project_first = np.clip(x + geometry.project(0.5 * geometry.steepest_ascent(grad, "2"), 0.3, "2"), 0, 1)
    assert not np.allclose(stepped, project_first, atol=1e-4)


def test_long_attacks_run_in_a_graph_loop_with_the_same_result(monkeypatch):
    model = build(PGDAdversarialModel, batchnorm=False, steps=1, step_size=0.05)
    x, y = data(8)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def craft():
        return crafting.pgd(
            lambda x_adv: loss(y, model(x_adv)), tf.constant(x), tf.constant(x), steps=12, step_size=0.02,
            threat=crafting.Threat(EPS, "inf", 0.0, 1.0),
        ).numpy()

    looped = craft()
    monkeypatch.setattr(crafting, "UNROLL_STEPS", 12)
    np.testing.assert_allclose(craft(), looped, atol=1e-6)
    assert np.abs(looped - x).max() == pytest.approx(EPS, abs=1e-6)


def test_mixed_float16_crafting_zeroes_overflowed_gradients_and_float32_skips_the_check():
    from tfadv.precision import dtype_policy, loss_scale

    with dtype_policy("mixed_float16"):
        mixed = build(PGDAdversarialModel, batchnorm=False, norm="2", eps=0.5, steps=2, step_size=0.3)
    # A loss scale far beyond float16's range: the input gradient's backward pass overflows to Inf/NaN.
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01), initial_scale=2.0**100)
    mixed.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert mixed.guard_nonfinite
    x, y = (tf.constant(a) for a in data(16))
    assert np.all(np.isfinite(mixed.craft(x, y).numpy()))
    unguarded = crafting.pgd(
        mixed.attack_loss(y, training=False), x, x, steps=1, step_size=0.3, threat=mixed.threat,
        scale=loss_scale(mixed.optimizer), guard_nonfinite=False,
    )
    assert not np.all(np.isfinite(unguarded.numpy())), "no overflow happened: the test is void"
    assert not compile_(build(PGDAdversarialModel, batchnorm=False, steps=1, step_size=0.1)).guard_nonfinite


def test_the_input_gradient_is_unscaled_so_the_l2_floor_sees_the_true_gradient():
    """A loss scale of 2**15 must not change the crafted example (it would, through the 1e-12 floor of
    the L2 step, if the scaled gradient reached the step)."""
    model = build(PGDAdversarialModel, batchnorm=False, norm="2", eps=0.5, steps=2, step_size=0.3)
    x, y = (tf.constant(a) for a in data(16))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tiny = lambda x_adv: 1e-9 * loss(y, model(x_adv))  # ||g|| far below the floor's 1e-6
    threat = crafting.Threat(0.5, "2", 0.0, 1.0)
    plain = crafting.pgd(tiny, x, x, steps=2, step_size=0.3, threat=threat).numpy()
    scaled = crafting.pgd(tiny, x, x, steps=2, step_size=0.3, threat=threat, scale=tf.constant(2.0**15)).numpy()
    np.testing.assert_allclose(scaled, plain, atol=1e-6)
