"""tfadv.evaluation.same_shape: the robust accuracy of tfadv.evaluation, traced once for repeated curves."""
import keras
import numpy as np
import pytest

from tfadv.attacks import PGD
from tfadv.evaluation import robust_mask
from tfadv.evaluation.same_shape import robust_accuracy_same_shape


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
