"""tfadv.evaluation.same_shape: the robust accuracy of tfadv.evaluation, traced once for repeated curves."""
import keras
import numpy as np
import pytest

from tfadv.attacks import PGD
from tfadv.evaluation import robust_mask
from tfadv.evaluation.same_shape import robust_accuracy_same_shape, robust_mask_same_shape, robust_masks_by_steps


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(16, "relu"),
                              keras.layers.Dense(4)])
    rng = np.random.default_rng(0)
    x = rng.random((50, 6, 6, 1), dtype=np.float32)
    y = np.argmax(model(x), -1)
    y[::4] = (y[::4] + 1) % 4  # a quarter of the points misclassified clean
    return model, x, y


def attack(model, seed=3):
    return PGD(model, eps=0.05, steps=3, step_size=0.02, from_logits=True, clip_min=0.0, clip_max=1.0, seed=seed,
               select="first_success")


@pytest.mark.parametrize("batch_size, restarts", [(16, 1), (7, 2), (64, 3)])
def test_same_answer_as_robust_mask(model_and_data, batch_size, restarts):
    model, x, y = model_and_data
    expected = robust_mask(model, attack(model), x, y, batch_size=batch_size, restarts=restarts).mean()
    assert 0 < expected < 0.75  # the attack fools some points, not all
    got = robust_accuracy_same_shape(model, attack(model), x, y, batch_size=batch_size, restarts=restarts)
    assert got == pytest.approx(expected)


def test_traced_once_per_shape_however_many_points_are_still_correct(model_and_data):
    model, x, y = model_and_data
    pgd = attack(model)
    robust_accuracy_same_shape(model, pgd, x[:47], y[:47], batch_size=16)  # batches of 16, 16 and a padded 15
    traced = pgd.tracing_count()
    for shift in (1, 2, 3):  # other labels: other points correct clean, as along a training curve
        robust_accuracy_same_shape(model, pgd, x[:47], (y[:47] + shift) % 4, batch_size=16)
    assert traced <= 2 and pgd.tracing_count() == traced


def test_rejects_attacks_that_cannot_measure_robustness(model_and_data):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match="inference mode"):
        robust_accuracy_same_shape(model, PGD(model, eps=0.05, from_logits=True, training=True), x, y)


def conv_model_and_data():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    x = np.random.default_rng(1).random((40, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x), -1)
    y[::5] = (y[::5] + 1) % 5  # some points misclassified clean
    return model, x, y


def pgd(model, steps, seed=4):
    return PGD(model, eps=0.15, steps=steps, step_size=0.02, from_logits=True, clip_min=0.0, clip_max=1.0, seed=seed,
               select="first_success")


@pytest.mark.parametrize("batch_size, restarts", [pytest.param(16, 1, marks=pytest.mark.slow(seconds=20)), (40, 2)])
def test_pgd_k_read_off_one_run_is_each_separate_pgd_k_point_by_point(batch_size, restarts):
    model, x, y = conv_model_and_data()
    steps = (0, 1, 3, 8)
    masks = robust_masks_by_steps(model, pgd(model, 8), x, y, steps, batch_size=batch_size, restarts=restarts)
    for k in steps[1:]:
        separate = robust_mask_same_shape(model, pgd(model, k), x, y, batch_size=batch_size, restarts=restarts)
        np.testing.assert_array_equal(masks[k], separate, err_msg=f"PGD-{k}")
    # k = 0 is the random start alone: PGD's first step judges it before moving
    accuracies = [masks[k].mean() for k in steps]
    assert len(set(accuracies)) == len(steps) and accuracies == sorted(accuracies, reverse=True), accuracies


@pytest.mark.slow(seconds=15)
def test_success_step_is_the_first_fooling_iterate():
    model, x, y = conv_model_and_data()
    for select in ("first_success", "last", "max_loss"):
        attack = PGD(model, eps=0.15, steps=4, step_size=0.02, from_logits=True, clip_min=0.0, clip_max=1.0, seed=4,
                     select=select)
        _, stats = attack(x, y, sample_ids=np.arange(len(x)), return_stats=True)
        step = stats["success_step"]
        assert set(np.unique(step)) <= {-1, 0, 1, 2, 3, 4} and (step > 0).any() and (step == -1).any()
        if select == "first_success":  # counted fooled exactly when some iterate fooled it
            np.testing.assert_array_equal(stats["success"], step >= 0)
        if select == "last":  # the last iterate fools implies some iterate did
            assert np.all(step[stats["success"]] >= 0)


def test_read_off_needs_first_success_pgd_and_steps_it_ran(model_and_data):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match="select='first_success'"):
        robust_masks_by_steps(model, PGD(model, eps=0.05, steps=3, from_logits=True), x, y, (1, 3))
    for bad in ((1, 4), (-1,), (), (1.5,)):
        with pytest.raises(ValueError, match="steps must be integers from 0 to the attack's 3 steps"):
            robust_masks_by_steps(model, attack(model), x, y, bad)
