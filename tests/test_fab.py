"""FAB: the exact projection onto a hyperplane within the box (against a generic solver), a whole FAB-T
run against a plain step-by-step one, the attack contract (a success is a misclassified point within eps),
FAB-T, the untargeted form, and errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linprog, minimize

from tfadv import geometry
from tfadv.attacks import FAB
from tfadv.attacks.fab import project_onto_hyperplane

from autoattack_support import held_out, near_tie, small_cnn, trained_cnn


def _solver(w, c, low, high, norm):
    """The minimal-norm d with <w, d> = c inside the box, by linear programming (L-inf) or SLSQP (L2)."""
    d = len(w)
    if norm == "inf":  # variables (d, r): minimise r with -r <= d_i <= r
        a_ub = np.vstack([np.hstack([np.eye(d), -np.ones((d, 1))]), np.hstack([-np.eye(d), -np.ones((d, 1))])])
        res = linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[w, 0.0][None],
                      b_eq=[c], bounds=list(zip(low, high)) + [(0, None)])
        return res.x[:d]
    res = minimize(lambda v: v @ v, np.zeros(d), jac=lambda v: 2 * v, method="SLSQP", bounds=list(zip(low, high)),
                   constraints=[{"type": "eq", "fun": lambda v: w @ v - c}], options={"ftol": 1e-14, "maxiter": 500})
    return res.x


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_projection_is_the_minimal_norm_point_in_the_box(norm):
    rng = np.random.default_rng(0)
    for trial in range(25):
        t = rng.random(6)
        w = rng.normal(size=6)
        w[rng.random(6) < 0.2] = 0.0
        c = rng.normal() * (0.3 if trial % 4 else 3.0)
        low, high = -t, 1.0 - t
        rows = [tf.constant(a[None], tf.float32) for a in (w, low, high)]
        got = project_onto_hyperplane(rows[0], tf.constant([c], tf.float32), rows[1], rows[2], norm).numpy()[0]
        assert np.all(got >= low - 1e-6) and np.all(got <= high + 1e-6)
        room = np.where(np.sign(c) * w > 0, high, -low)
        if np.sum(np.abs(w) * room) < abs(c):  # the box cannot reach the plane: its nearest corner
            np.testing.assert_allclose(got, np.where(w != 0, np.sign(c) * np.sign(w) * room, 0.0), atol=1e-6)
            continue
        expected = _solver(w, c, low, high, norm)
        assert w @ got == pytest.approx(c, abs=1e-5)
        size = (lambda v: np.abs(v).max()) if norm == "inf" else np.linalg.norm
        assert size(got) == pytest.approx(size(expected), abs=2e-6)


@pytest.mark.parametrize("norm,eps,targeted", [("inf", 0.1, True), ("2", 1.0, False)])
def test_success_is_a_misclassified_point_within_eps(norm, eps, targeted):
    model = trained_cnn()
    x, y = held_out(64)
    attack = FAB(model, eps, norm, 15, targeted=targeted, n_target_classes=2, clip_min=0.0, clip_max=1.0, seed=0)
    x_adv, stats = attack(x, y, return_stats=True)
    x_adv = x_adv.numpy()
    size = geometry.norm_of(tf.constant(x_adv - x), norm).numpy()
    success = stats["success"]
    assert 0 < success.sum() < len(y)
    np.testing.assert_array_equal(success, stats["prediction"] != y)
    assert np.all(size[success] <= eps * (1 + 1e-5)) and np.all(size[~success] == 0.0)
    np.testing.assert_allclose(size[success], stats["distance"][success], rtol=1e-5)
    # Minimal norm: where it found a point beyond eps, the distance says so; the reported distances of
    # successes are small compared with eps.
    assert np.all(stats["distance"][~success] > eps)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def sorted_projection(w, c, low, high, norm):
    """The box-bounded projection's closed form, one row at a time in float64, with mu found by sorting
    the breakpoints (project_onto_hyperplane bisects instead): coordinate i moves s sign(w_i) min(mu r_i, B_i)
    with r_i = |w_i| (L2) or 1 (L-inf), B_i the room towards the box, mu where <w, d> reaches |c|."""
    out = np.zeros_like(w)
    for row, (w_row, c_row, lo, hi) in enumerate(zip(w, c, low, high)):
        s = 1.0 if c_row >= 0 else -1.0
        room = np.where(s * w_row > 0, hi, -lo)
        moving = w_row != 0
        rate = np.abs(w_row) if norm == "2" else np.ones_like(w_row)
        if np.sum(np.abs(w_row) * room) < abs(c_row):  # unreachable: the box's nearest corner
            out[row] = np.where(moving, s * np.sign(w_row) * room, 0.0)
            continue
        order = np.argsort(np.where(moving, room / np.where(moving, rate, 1.0), np.inf))
        absw, rt, rm = np.abs(w_row)[order], rate[order], room[order]
        for k in range(len(order)):  # coordinates before k are at the box, k onwards still move
            reached, slope = np.sum(absw[:k] * rm[:k]), np.sum(absw[k:] * rt[k:])
            mu = (abs(c_row) - reached) / slope
            if mu * rt[k] <= rm[k]:
                break
        out[row] = np.where(moving, s * np.sign(w_row) * np.minimum(mu * rate, room), 0.0)
    return out


def plain_fab_t(boundary, logits_of, x, y, eps, norm, steps, alpha_max=0.1, eta=1.05, beta=0.9):
    """One FAB-T run from x against the top runner-up class, step by step as the reference code's loop
    (fra31/auto-attack fab_base.py) in float64 with inputs in [0, 1]: returns per sample fooled, the
    distance of the closest adversarial point found, the output, and whether an iterate was a tie."""
    size = (lambda v: np.abs(v).max(axis=1)) if norm == "inf" else (lambda v: np.linalg.norm(v, axis=1))
    x1, best, x_best = x.copy(), np.full(len(x), np.inf), x.copy()
    tied = np.zeros(len(x), bool)
    for _ in range(steps):
        f, w = boundary(x1)
        plane = np.sum(w * x1, axis=1) - f
        d1 = sorted_projection(w, plane - np.sum(w * x1, axis=1), -x1, 1.0 - x1, norm)
        d0 = sorted_projection(w, plane - np.sum(w * x, axis=1), -x, 1.0 - x, norm)
        a1, a0 = np.maximum(size(d1), 1e-8), np.maximum(size(d0), 1e-8)
        alpha = np.clip(a1 / (a1 + a0), 0.0, alpha_max)[:, None]
        x1 = np.clip((x1 + eta * d1) * (1 - alpha) + (x + eta * d0) * alpha, 0.0, 1.0)
        z = logits_of(x1)
        tied |= near_tie(z)  # FAB's box clip can eat its overshoot and land the iterate on the boundary
        adversarial = np.argmax(z, axis=1) != y
        closer = adversarial & (size(x1 - x) < best)
        best[closer], x_best[closer] = size(x1 - x)[closer], x1[closer]
        x1[adversarial] = x[adversarial] + beta * (x1 - x)[adversarial]
    fooled = best <= eps * (1 + 1e-6)
    return fooled, best, np.where(fooled[:, None], x_best, x), tied


@pytest.mark.parametrize("norm,eps", [("inf", 0.06), pytest.param("2", 0.2, marks=pytest.mark.slow(seconds=15))])
def test_a_fab_t_run_follows_a_plain_step_by_step_one(norm, eps):
    """The compiled FAB-T run (bisection for the projection, float32) against plain_fab_t (sorting,
    float64) on a small net: the same samples fooled, the same closest distances and points, for every
    sample none of whose iterates was a tie."""
    keras.utils.set_random_seed(6)
    inputs = keras.Input((12,))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Dense(16, activation="tanh")(inputs)))
    x = np.random.default_rng(7).uniform(0.0, 1.0, (40, 12)).astype(np.float32)
    x[:, :3] = np.round(x[:, :3])  # some coordinates on the box: the projection must respect it
    logits = model.predict(x, verbose=0)
    y = np.argmax(logits, axis=-1)
    target = np.argmax(np.where(np.eye(5)[y] > 0, -np.inf, logits), axis=-1)
    attack = FAB(model, eps, norm, 10, targeted=True, n_target_classes=1, from_logits=True, clip_min=0.0,
                 clip_max=1.0, seed=0)
    x_adv, stats = attack(x, y, return_stats=True)

    def boundary(points):
        points = tf.constant(points, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(points)
            z = model(points)
            f = tf.gather(z, target, batch_dims=1) - tf.gather(z, y, batch_dims=1)
            total = tf.reduce_sum(f)
        return f.numpy().astype(np.float64), tape.gradient(total, points).numpy().astype(np.float64)

    logits_of = lambda points: model.predict(points.astype(np.float32), verbose=0)  # noqa: E731
    fooled, best, expected, tied = plain_fab_t(boundary, logits_of, x.astype(np.float64), y, eps, norm, 10)
    kept = ~tied
    assert kept.sum() >= 30 and 0 < fooled[kept].sum() < kept.sum() and np.isfinite(best[kept]).sum() > fooled[kept].sum()
    np.testing.assert_array_equal(stats["success"][kept], fooled[kept])
    np.testing.assert_allclose(stats["distance"][kept], best[kept], rtol=1e-4)
    np.testing.assert_allclose(x_adv.numpy()[kept], expected[kept], atol=1e-4)


def test_bad_arguments_fail_before_compute():
    model = small_cnn()
    for kwargs, message in [(dict(steps=0), "steps must be"), (dict(eta=0.5), "eta must be"),
                            (dict(alpha_max=2.0), "alpha_max must be"), (dict(beta=-0.1), "beta must be")]:
        with pytest.raises(ValueError, match=message):
            FAB(model, 0.1, **kwargs)
    with pytest.raises(ValueError, match="n_target_classes = 5"):
        FAB(small_cnn(classes=3), 0.1, targeted=True, n_target_classes=5)
