"""APGD: the paper's schedule and step-size rule, DLR on hand-computed logits, the attack contract,
batch invariance, APGD-T's targets, errors before compute, and APGD-CE against PGD at equal cost."""
from fractions import Fraction
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import geometry
from tfadv.attacks import APGD, PGD, scores
from tfadv.attacks.apgd import checkpoint_lengths, checkpoints, halve_step
from tfadv.evaluation import robust_accuracy

from autoattack_support import held_out, small_cnn, trained_cnn

EPS = {"inf": 0.1, "2": 1.0}


# ------------------------------------------------------------------------------------- the schedule
def paper_checkpoints(steps: int) -> list[int]:
    """ceil(p_j N) from the paper: p_0 = 0, p_1 = 0.22, p_j+1 = p_j + max(p_j - p_j-1 - 0.03, 0.06), exact."""
    p_prev, p, out = Fraction(0), Fraction(22, 100), []
    while p <= 1:
        out.append(math.ceil(p * steps))
        p_prev, p = p, p + max(p - p_prev - Fraction(3, 100), Fraction(6, 100))
    return out


@pytest.mark.parametrize("steps", [100, 200, 1000])
def test_checkpoints_match_the_paper(steps):
    assert checkpoints(steps) == paper_checkpoints(steps)


def test_checkpoints_of_the_standard_budget_and_the_integer_form():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    # Small budgets: the reference code's floors, each gap at least one iteration.
    assert checkpoint_lengths(10) == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert checkpoint_lengths(1) == [1]


def test_halving_conditions():
    t, f = tf.constant(True), tf.constant(False)
    call = lambda inc, reduced, last, best: bool(halve_step(tf.constant(inc), 20.0, 0.75, reduced, tf.constant(last), tf.constant(best)))  # noqa: E731
    assert call(15.0, t, 1.0, 2.0)        # (1): rose in 15 <= 0.75 * 20 of the steps
    assert not call(16.0, t, 1.0, 2.0)    # rose often enough, already halved last time
    assert call(16.0, f, 2.0, 2.0)        # (2): not halved last time and no improvement
    assert not call(16.0, f, 1.0, 2.0)    # improved since the last checkpoint


def test_constant_loss_halves_the_step_at_every_checkpoint():
    """A linear model under L-inf: the first step reaches the best corner and the loss never rises again,
    so condition (1) halves the step at each of the 8 checkpoints of a 100-step run."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    attack = APGD(model, 0.1, "inf", 100, from_logits=True, seed=0)
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 4)), tf.float32)
    y_onehot = tf.one_hot([0, 1, 2, 0, 1], 3)
    state = attack._begin(x, y_onehot, None, tf.range(5, dtype=tf.int64), tf.constant(0, tf.int64))
    state = attack._iterate(x, y_onehot, None, state, 0, 100)
    np.testing.assert_allclose(state["step"].numpy(), 2 * 0.1 / 2**8, rtol=1e-6)


def test_one_iteration_is_the_momentum_step_of_algorithm_1():
    """x_k+1 = P(x_k + a (z - x_k) + (1 - a)(x_k - x_k-1)), z = P(x_k + eta sign(g)), a = 0.75 after step 0."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    attack = APGD(model, 0.3, "inf", 100, from_logits=True, seed=0)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    y_onehot = tf.one_hot([0, 1, 2, 0], 3)
    state = attack._begin(x, y_onehot, None, tf.range(4, dtype=tf.int64), tf.constant(0, tf.int64))
    x_k = x + tf.constant(rng.uniform(-0.3, 0.3, (4, 6)), tf.float32)
    x_prev = x + tf.constant(rng.uniform(-0.3, 0.3, (4, 6)), tf.float32)
    grad = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    state.update(x_adv=x_k, x_prev=x_prev, grad=grad, step=tf.fill([4], 0.2))
    after = attack._iteration(tf.constant(1), x, attack._bounds(x), y_onehot, None, state)
    project = lambda v: x.numpy() + np.clip(v - x.numpy(), -0.3, 0.3)  # noqa: E731
    z = project(x_k.numpy() + 0.2 * np.sign(grad.numpy()))
    expected = project(x_k.numpy() + 0.75 * (z - x_k.numpy()) + 0.25 * (x_k.numpy() - x_prev.numpy()))
    np.testing.assert_allclose(after["x_adv"].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(after["x_prev"].numpy(), x_k.numpy())


def test_eot_averages_gradients_and_losses():
    """On a deterministic model, EOT over 3 draws gives the single-draw loss and gradient (a mean, not a sum)."""
    model = trained_cnn()
    x, y = held_out(8)
    y_onehot = tf.one_hot(y, 10)
    one = APGD(model, 0.1, "inf", 5)._loss_and_grad(tf.constant(x), y_onehot, None)
    three = APGD(model, 0.1, "inf", 5, eot_iter=3)._loss_and_grad(tf.constant(x), y_onehot, None)
    np.testing.assert_allclose(three[0].numpy(), one[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(three[1].numpy(), one[1].numpy(), rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------------------------- DLR
def test_dlr_and_targeted_dlr_on_hand_computed_logits():
    z = tf.constant([[3.0, 1.0, 2.0, 0.5], [3.0, 1.0, 2.0, 0.5]])
    y = tf.one_hot([0, 2], 4)
    # sorted: 3, 2, 1, 0.5. Row 0: -(3 - 2) / (3 - 1); row 1 (misclassified): -(2 - 3) / (3 - 1).
    np.testing.assert_allclose(scores.dlr(z, y).numpy(), [-0.5, 0.5], rtol=1e-6)
    t = tf.one_hot([1, 3], 4)
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): row 0 -(3 - 1) / 2.25, row 1 -(2 - 0.5) / 2.25.
    np.testing.assert_allclose(scores.targeted_dlr(z, y, t).numpy(), [-2 / 2.25, -1.5 / 2.25], rtol=1e-6)
    np.testing.assert_allclose(scores.margin(z, y).numpy(), [1.0, -1.0])


def test_scores_read_probabilities_as_logits():
    """log p is the logits shifted per sample, which DLR, margin and cross-entropy ignore."""
    z = tf.constant([[3.0, 1.0, 2.0, 0.5], [-1.0, 4.0, 0.0, 2.0]])
    y = tf.one_hot([0, 2], 4)
    p = tf.constant(tf.nn.softmax(z).numpy())  # a plain tensor: no Keras logits attached
    for fn in (scores.dlr, scores.margin, scores.cross_entropy):
        np.testing.assert_allclose(fn(scores.output_logits(p, False), y).numpy(), fn(z, y).numpy(), rtol=1e-5, atol=1e-6)


def test_ranked_targets_are_the_runner_ups_in_order():
    z = tf.constant([[0.0, 5.0, 3.0, 4.0, 1.0]])
    y = tf.one_hot([1], 5)
    picks = [int(tf.argmax(scores.ranked_target(z, y, r), -1)[0]) for r in (1, 2, 3, 4)]
    assert picks == [3, 2, 4, 0]


# ---------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("norm,kind", [("inf", "ce"), ("2", "dlr"), ("inf", "apgd-t")])
def test_stays_in_ball_and_range_and_reports_success_truthfully(norm, kind):
    trained = trained_cnn()
    x, y = held_out(40)
    options = dict(loss="dlr", targeted=True, n_target_classes=2) if kind == "apgd-t" else dict(loss=kind)
    attack = APGD(trained, EPS[norm], norm, 6, clip_min=0.0, clip_max=1.0, seed=0, **options)
    x_adv, stats = attack(x, y, return_stats=True)
    size = geometry.norm_of(tf.constant(x_adv.numpy() - x), norm).numpy()
    assert np.all(size <= EPS[norm] * (1 + 1e-5)) and x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0
    # A sample reported fooled is fooled by the returned point.
    np.testing.assert_array_equal(stats["success"], stats["prediction"] != y)
    assert stats["success"].any() and not stats["success"].all()


def test_results_do_not_depend_on_the_batch():
    """Sample by sample, in batches of 64 or of 32 (multiples of 16: see tfadv.evaluation.compaction)."""
    trained = trained_cnn()
    x, y = held_out(64)
    attack = APGD(trained, 0.1, "inf", 5, clip_min=0.0, clip_max=1.0, seed=3)
    whole, stats = attack(x, y, sample_ids=np.arange(64), return_stats=True)
    parts = [attack(x[i : i + 32], y[i : i + 32], sample_ids=np.arange(i, i + 32), return_stats=True) for i in (0, 32)]
    np.testing.assert_array_equal(np.concatenate([p[0].numpy() for p in parts]), whole.numpy())
    np.testing.assert_array_equal(np.concatenate([p[1]["success"] for p in parts]), stats["success"])


def test_apgd_ce_is_at_least_as_strong_as_pgd_at_equal_gradient_passes():
    """20 gradient passes each: PGD-20 (counting any fooling iterate) and APGD-CE with 19 steps + start."""
    trained = trained_cnn()
    x, y = held_out(200)
    pgd = PGD(trained, 0.1, "inf", steps=20, clip_min=0.0, clip_max=1.0, seed=0, select="first_success")
    apgd = APGD(trained, 0.1, "inf", 19, clip_min=0.0, clip_max=1.0, seed=0)
    pgd_accuracy = robust_accuracy(trained, pgd, x, y, batch_size=200)
    apgd_accuracy = robust_accuracy(trained, apgd, x, y, batch_size=200)
    assert apgd_accuracy <= pgd_accuracy
    assert apgd_accuracy < 0.9  # the attack does something on this non-robust model


def test_restarts_use_fresh_random_starts():
    trained = trained_cnn()
    x, y = held_out(20)
    attack = APGD(trained, 0.1, "inf", 2, seed=0)  # no clipping: the start itself is visible
    first = attack._start(tf.constant(x), tf.range(20, dtype=tf.int64), tf.constant(0, tf.int64)).numpy()
    again = attack._start(tf.constant(x), tf.range(20, dtype=tf.int64), tf.constant(0, tf.int64)).numpy()
    other = attack._start(tf.constant(x), tf.range(20, dtype=tf.int64), tf.constant(128, tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # The start lies on the boundary of the L-inf ball (t / max|t|), not inside it.
    np.testing.assert_allclose(np.max(np.abs(first - x), axis=(1, 2, 3)), 0.1, rtol=1e-5)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(loss="hinge"), "loss must be 'ce' or 'dlr'"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(rho=1.5), "rho must be a number in"),
        (dict(eot_iter=0), "eot_iter must be an integer >= 1"),
        (dict(eps=-1.0), "eps must be"),
        (dict(loss="dlr", targeted=True, n_target_classes=10), "n_target_classes = 10"),
    ],
)
def test_bad_arguments_fail_before_compute(kwargs, message):
    model = small_cnn()
    options = dict(eps=0.1, norm="inf", steps=5) | kwargs
    with pytest.raises(ValueError, match=message):
        APGD(model, **options)


def test_dlr_refuses_models_with_too_few_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGD(small_cnn(classes=2), 0.1, loss="dlr")
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGD(small_cnn(classes=3), 0.1, loss="dlr", targeted=True, n_target_classes=2)
    APGD(small_cnn(classes=2), 0.1, loss="ce")  # cross-entropy works with two classes
