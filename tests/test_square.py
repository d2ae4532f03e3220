"""Square: the schedule of window sizes, the L2 update's shape, the per-sample random draws, the attack
contract in both norms, batch invariance, and errors before compute."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import geometry
from tfadv.attacks import Square, draws
from tfadv.attacks.square import _phases, l2_bump, square_fraction, square_side

from autoattack_support import held_out, small_cnn, trained_cnn

EPS = {"inf": 0.1, "2": 1.0}


def test_fraction_schedule_halves_at_the_reference_iterations():
    p = [square_fraction(i, 5000, 0.8) for i in (0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001,
                                                 4000, 4001, 6000, 6001, 8000, 8001, 9999)]
    expected = [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125,
                0.00625, 0.00625, 0.003125, 0.003125, 0.0015625, 0.0015625]
    np.testing.assert_allclose(p, expected)
    # Rescaled to 10,000 iterations: iteration 100 of 1,000 is iteration 1,000 of the schedule.
    assert square_fraction(100, 1000, 0.8, rescale=True) == pytest.approx(0.8 / 16)
    assert square_fraction(100, 1000, 0.8, rescale=False) == pytest.approx(0.8 / 4)


def test_window_sides():
    # 28 x 28 (MNIST): sqrt(0.8 * 784) = 25.04 -> 25; p = 0.05 -> 6.26 -> 6; the floor is 1 (L-inf).
    assert square_side(0.8, 28, 28, "inf") == 25
    assert square_side(0.05, 28, 28, "inf") == 6
    assert square_side(1e-6, 28, 28, "inf") == 1
    # L2: odd and at least 3; never larger than the image.
    assert square_side(0.05, 28, 28, "2") == 7
    assert square_side(1e-6, 28, 28, "2") == 3
    assert square_side(1.0, 8, 8, "2") == 8
    phases = _phases(5000, 0.8, False, 32, 32, "inf")
    assert phases[0] == (0, 11, 29) and phases[-1][1] == 5000
    assert all(a[1] == b[0] for a, b in zip(phases, phases[1:]))


def test_l2_bump_is_a_unit_dipole():
    for side in (3, 5, 8):
        bump = l2_bump(side)
        assert bump.shape == (side, side)
        assert np.sum(bump**2) == pytest.approx(1.0, rel=1e-6)
        assert np.all(bump[: side // 2] >= 0) and np.all(bump[side // 2 :] <= 0)
        assert bump[side // 4, side // 2] == bump[: side // 2].max()  # peaks at the centre of its half


def test_draws_are_uniform_and_per_sample():
    keys = draws.sample_keys(3, tf.range(2000, dtype=tf.int64), 0)
    u = draws.uniform(keys, 7, 4).numpy()
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(u[:, 0], draws.uniform(keys, 8, 4).numpy()[:, 0])[0, 1]) < 0.05
    # A sample's numbers depend on its id, not on its batch.
    some = draws.sample_keys(3, tf.constant([5, 1999], tf.int64), 0)
    np.testing.assert_array_equal(draws.uniform(some, 7, 4).numpy(), u[[5, 1999]])
    counts = np.bincount(draws.integers(keys, 1, 1, 5).numpy().ravel(), minlength=5)
    assert counts.min() > 340 and counts.max() < 460


@pytest.mark.parametrize("norm", ["inf", pytest.param("2", marks=pytest.mark.slow(seconds=20))])
def test_stays_in_ball_and_range_and_breaks_some_samples(norm):
    model = trained_cnn()
    x, y = held_out(64)
    attack = Square(model, EPS[norm], norm, 60, clip_min=0.0, clip_max=1.0, seed=0)
    x_adv, stats = attack(x, y, return_stats=True)
    x_adv = x_adv.numpy()
    size = geometry.norm_of(tf.constant(x_adv - x), norm).numpy()
    assert np.all(size <= EPS[norm] * (1 + 1e-5)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    np.testing.assert_array_equal(stats["success"], stats["prediction"] != y)
    assert 0 < stats["success"].sum() < len(y)
    # Fooled samples stop querying; the others use the whole budget (plus the initial query).
    assert np.all(stats["queries"][~stats["success"]] == 61)
    assert np.all(stats["queries"][stats["success"]] <= 61)
    if norm == "inf":  # every changed pixel sits on a face of the box or of the range
        moved = np.abs(x_adv - x) > 1e-6
        on_face = np.isclose(np.abs(x_adv - x), 0.1, atol=1e-6) | np.isin(x_adv, (0.0, 1.0))
        assert np.all(on_face[moved])


@pytest.mark.slow(seconds=15)
def test_results_do_not_depend_on_the_batch():
    """Randomness keyed on sample ids: the same squares and decisions in any batch. The values agree to a
    float32 ulp, not bit for bit: on an AMD EPYC (AVX2) CPU 2 of 4,096 values differed by 6e-8 between
    batches of 64 and 32 (bit-identical on the CPU before; not from the XLA-fused proposal, measured)."""
    model = trained_cnn()
    x, y = held_out(64)
    attack = Square(model, 0.1, "inf", 30, clip_min=0.0, clip_max=1.0, seed=5)
    whole, whole_stats = attack(x, y, sample_ids=np.arange(64), return_stats=True)
    parts = [attack(x[i : i + 32], y[i : i + 32], sample_ids=np.arange(i, i + 32), return_stats=True)
             for i in (0, 32)]
    np.testing.assert_allclose(np.concatenate([p[0].numpy() for p in parts]), whole.numpy(), rtol=0, atol=1.2e-7)
    for stat in ("success", "queries"):
        joined = np.concatenate([np.asarray(p[1][stat]) for p in parts])
        np.testing.assert_array_equal(joined, np.asarray(whole_stats[stat]))


def test_bad_arguments_fail_before_compute():
    model = small_cnn()
    with pytest.raises(ValueError, match="queries must be an integer >= 1"):
        Square(model, 0.1, queries=0)
    with pytest.raises(ValueError, match="p_init must be a number in"):
        Square(model, 0.1, p_init=1.5)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="inputs must be images"):
        Square(keras.Model(inputs, keras.layers.Dense(3)(inputs)), 0.1)
    tiny = keras.Input((4, 4, 1))
    with pytest.raises(ValueError, match="at least 5 x 5 pixels"):
        Square(keras.Model(tiny, keras.layers.Dense(3)(keras.layers.Flatten()(tiny))), 0.5, "2")
