"""FAB: the exact projection onto a hyperplane within the box (against a generic solver), the attack
contract (a success is a misclassified point within eps), FAB-T, the untargeted form, and errors."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linprog, minimize

from tfadv import geometry
from tfadv.attacks import FAB
from tfadv.attacks.fab import project_onto_hyperplane

from autoattack_support import held_out, small_cnn, trained_cnn


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


def test_bad_arguments_fail_before_compute():
    model = small_cnn()
    for kwargs, message in [(dict(steps=0), "steps must be"), (dict(eta=0.5), "eta must be"),
                            (dict(alpha_max=2.0), "alpha_max must be"), (dict(beta=-0.1), "beta must be")]:
        with pytest.raises(ValueError, match=message):
            FAB(model, 0.1, **kwargs)
    with pytest.raises(ValueError, match="n_target_classes = 5"):
        FAB(small_cnn(classes=3), 0.1, targeted=True, n_target_classes=5)
