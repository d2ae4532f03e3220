"""APGD: the paper's schedule and step-size rule, a whole run against a plain step-by-step one, DLR on
hand-computed logits, the attack contract, batch invariance, APGD-T's targets, errors before compute, and
APGD-CE against PGD at equal cost."""
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

from autoattack_support import held_out, near_tie, small_cnn, trained_cnn

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


def plain_apgd(loss_grad, x, start, eps, norm, steps, rho=0.75):
    """One APGD-CE run written out plainly in numpy, step by step as Algorithm 1 runs in the reference code
    (fra31/auto-attack), with inputs in [0, 1] and the first checkpoint counting f(x_1) > f(x_0). Returns
    per sample: fooled, the output (last fooling iterate, else the best-loss one), the best loss, and how
    many times its step was halved."""
    def project(v):
        if norm == "inf":
            return np.clip(np.clip(v, x - eps, x + eps), 0.0, 1.0)
        d = v - x
        length = np.linalg.norm(d, axis=1, keepdims=True)
        return np.clip(x + d * np.minimum(1.0, eps / np.maximum(length, 1e-30)), 0.0, 1.0)

    def direction(g):
        if norm == "inf":
            return np.sign(g)
        length = np.linalg.norm(g, axis=1, keepdims=True)
        return np.where(length > 0, g / np.where(length > 0, length, 1.0), 0.0)

    gap, shrink, smallest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    x_adv = x_prev = start
    loss, grad, fooled = loss_grad(x_adv)
    x_found, x_best, grad_best, loss_best = x_adv.copy(), x_adv.copy(), grad.copy(), loss.copy()
    loss_prev, loss_best_last = loss.copy(), loss.copy()
    step, reduced_last = np.full(len(x), 2.0 * eps, np.float32), np.ones(len(x), bool)
    increases, since, halvings = np.zeros(len(x)), 0, np.zeros(len(x), int)
    for i in range(steps):
        a = 1.0 if i == 0 else 0.75
        z = project(x_adv + step[:, None] * direction(grad))
        x_prev, x_adv = x_adv, project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev))
        loss, grad, fooled_now = loss_grad(x_adv)
        x_found[fooled_now] = x_adv[fooled_now]
        fooled = fooled | fooled_now
        increases += loss > loss_prev
        loss_prev = loss
        better = loss > loss_best
        x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss[better]
        since += 1
        if since == gap:
            halve = (increases <= rho * gap) | (~reduced_last & (loss_best_last >= loss_best))
            step[halve] /= 2
            halvings += halve
            x_adv, grad = x_adv.copy(), grad.copy()
            x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
            reduced_last, loss_best_last, increases, since = halve, loss_best.copy(), np.zeros(len(x)), 0
            gap = max(gap - shrink, smallest)
    return fooled, np.where(fooled[:, None], x_found, x_best), loss_best, halvings


@pytest.mark.parametrize("norm,eps", [pytest.param("inf", 0.08, marks=pytest.mark.slow(seconds=25)), ("2", 0.25)])
def test_a_whole_run_follows_a_plain_step_by_step_apgd(norm, eps):
    """The compiled run against plain_apgd from the same random start, on a small net whose loss rises and
    falls, so that samples are halved different numbers of times and some are fooled. The two differ only
    in float rounding, which can swap two iterates of equal loss as the best one: the fooled samples, the
    best losses and the loss of each output must agree, the points only to a fraction of eps; a sample with
    an iterate on the decision boundary within rounding (a tie) is decided by rounding and left out."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(16, activation="tanh", kernel_initializer=keras.initializers.RandomNormal(stddev=4.0))
    model = keras.Model(inputs, keras.layers.Dense(5)(hidden(inputs)))
    x = np.random.default_rng(3).uniform(0.2, 0.8, (40, 12)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=-1)  # every sample correct on the clean input
    steps, ids = 30, np.arange(40)
    attack = APGD(model, eps, norm, steps, from_logits=True, clip_min=0.0, clip_max=1.0, seed=5)
    x_adv, stats = attack(x, y, sample_ids=ids, return_stats=True)
    start = attack._start(tf.constant(x), tf.constant(ids, tf.int64), tf.constant(1, tf.int64)).numpy()

    tied = np.zeros(len(x), bool)  # a sample with an iterate classified by rounding (near_tie)

    def loss_grad(points):
        points = tf.constant(points, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(points)
            logits = model(points)
            loss = scores.cross_entropy(logits, tf.one_hot(y, 5))
            total = tf.reduce_sum(loss)
        tied[:] |= near_tie(logits.numpy())
        return loss.numpy(), tape.gradient(total, points).numpy(), np.argmax(logits.numpy(), axis=-1) != y

    fooled, expected, loss_best, halvings = plain_apgd(loss_grad, x, start, eps, norm, steps)
    kept = ~tied
    assert kept.sum() >= 35 and 0 < fooled[kept].sum() < kept.sum() and len(set(halvings[kept])) > 3
    np.testing.assert_array_equal(stats["success"][kept], fooled[kept])
    np.testing.assert_allclose(stats["loss_best"][kept], loss_best[kept], rtol=1e-4)
    output_loss, _, output_fooled = loss_grad(x_adv.numpy())
    np.testing.assert_array_equal(output_fooled[kept], fooled[kept])
    robust = kept & ~fooled
    np.testing.assert_allclose(output_loss[robust], loss_best[robust], rtol=1e-4)
    np.testing.assert_allclose(x_adv.numpy()[kept], expected[kept], atol=0.05 * eps)


@pytest.mark.slow(seconds=15)
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
@pytest.mark.parametrize("norm,kind", [("inf", "ce"), ("2", "dlr"), pytest.param("inf", "apgd-t", marks=pytest.mark.slow(seconds=15))])
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


@pytest.mark.slow(seconds=20)
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
