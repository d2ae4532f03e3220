"""An eps far below the inputs' scale (8/255 on data in [0, 255]) makes any model look robust: attacks,
the evaluation entry points and the training wrappers say so once, attributed to the caller's line."""
import warnings

import keras
import numpy as np
import pytest

from tfadv.attacks import APGD, PGD
from tfadv.evaluation import auto_attack, check_gradient_masking, robust_accuracy
from tfadv.training import PGDAdversarialModel
from tfadv.validation import SMALL_EPS_FRACTION, EpsScaleWarning, EvaluationWarning, small_eps_warning


def logits_net(shape=(8, 8, 1)) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(10)])


def pixels(scale: float, n: int = 16, shape=(8, 8, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in [0, scale], labelled as logits_net classifies them: every sample is attacked."""
    x = np.random.default_rng(0).uniform(0.0, scale, (n, *shape)).astype("float32")
    return x, np.argmax(logits_net(shape)(x), axis=-1)


def eps_warnings(record) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, EpsScaleWarning)]


@pytest.mark.parametrize("eps, norm, span, dims, warned", [
    (8 / 255, "inf", 255.0, 3072, True),        # [0, 1] units on [0, 255] data
    (8 / 255, "inf", 1.0, 3072, False),         # CIFAR-10's usual threat
    (1 / 255, "inf", 1.0, 3072, False),         # one 8-bit level
    (0.5 / 255, "inf", 1.0, 224 * 224 * 3, False),  # half a level: the smallest L-inf eps in common use
    (0.3, "inf", 255.0, 784, True),             # MNIST's eps on [0, 255] MNIST
    (2.0, "2", 255.0, 784, True),               # MNIST's L2 eps on [0, 255] MNIST
    (0.5, "2", 255.0, 3072, True),              # CIFAR-10's L2 0.5 on [0, 255] data
    (0.5, "2", 1.0, 3072, False),
    (0.25, "2", 1.0, 224 * 224 * 3, False),     # ImageNet's smallest usual L2 eps
    (128.0, "2", 255.0, 224 * 224 * 3, False),  # Redgrave & Crum's L2 eps in pixel units
    (0.0, "inf", 255.0, 64, False),             # eps 0 is a deliberate no-op
])
def test_the_threshold_separates_unit_mistakes_from_the_literature_s_threats(eps, norm, span, dims, warned):
    message = small_eps_warning("PGD", eps, norm, span, dims, "clip range")
    assert (message is not None) == warned
    if warned:
        assert f"below {SMALL_EPS_FRACTION[norm]:g}" in message and "[0, 255]" in message


@pytest.mark.parametrize("clip", [{}, {"clip_min": 0.0, "clip_max": 255.0}])
def test_an_attack_warns_once_at_the_callers_line(clip):
    x, y = pixels(255.0)
    attack = PGD(logits_net(), eps=8 / 255, steps=2, step_size=1 / 255, from_logits=True, **clip)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        attack(x, y)
        attack(x, y)  # said once per attack, on its first call
    found = eps_warnings(record)
    assert len(found) == 1
    assert found[0].filename == __file__
    source = "clip range [0, 255]" if clip else "the data's range; no clip_min/clip_max given"
    assert source in str(found[0].message)


def test_robust_accuracy_warns_at_the_callers_line():
    x, y = pixels(255.0)
    net = logits_net()
    with pytest.warns(EpsScaleWarning) as record:
        robust_accuracy(net, PGD(net, eps=8 / 255, steps=2, step_size=1 / 255, from_logits=True), x, y, restarts=2)
    assert [w.filename for w in record if issubclass(w.category, EpsScaleWarning)] == [__file__]


def test_an_eps_that_fits_the_data_is_not_warned_about():
    x, y = pixels(1.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        PGD(logits_net(), eps=8 / 255, steps=2, step_size=2 / 255, from_logits=True, clip_min=0.0, clip_max=1.0)(x, y)
        PGD(logits_net(), eps=0.5, norm="2", steps=2, step_size=0.1, from_logits=True, clip_min=0.0, clip_max=1.0)(x, y)
    assert eps_warnings(record) == []


@pytest.mark.parametrize("compact", [pytest.param(True, marks=pytest.mark.slow(seconds=40)), pytest.param(False, marks=pytest.mark.slow(seconds=55))])
def test_auto_attack_warns_once_and_notes_an_open_range(compact):
    x, y = pixels(255.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = auto_attack(logits_net(), x, y, eps=8 / 255, norm="inf", from_logits=True, steps=2, queries=4,
                             n_target_classes=2, compact=compact)
    assert len(eps_warnings(record)) == 1  # not once more for each of the four attacks
    assert eps_warnings(record)[0].filename == __file__
    assert any("no clip_min/clip_max" in note for note in result.warnings)
    closed = auto_attack(logits_net(), x / 255, y, eps=8 / 255, norm="inf", from_logits=True, clip_min=0.0,
                         clip_max=1.0, steps=2, queries=4, n_target_classes=2)
    assert not any("no clip_min/clip_max" in note for note in closed.warnings)


@pytest.mark.slow(seconds=40)
def test_the_masking_checks_own_smaller_eps_are_not_warned_about():
    """Its sweep runs at eps / 4: below the threshold here, though the user's eps is not."""
    x, y = pixels(1.0)
    eps = 2.0 * SMALL_EPS_FRACTION["inf"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check_gradient_masking(logits_net(), x, y, eps=eps, norm="inf", from_logits=True, clip_min=0.0,
                               clip_max=1.0, steps=2, queries=4, restarts=2)
    assert eps_warnings(record) == []
    with pytest.warns(EpsScaleWarning):  # and the user's own eps still is
        APGD(logits_net(), eps / 4, "inf", 2, from_logits=True, clip_min=0.0, clip_max=1.0)(x, y)


def test_a_training_wrapper_warns_when_fit_starts():
    x, y = pixels(255.0, n=32)
    model = PGDAdversarialModel(logits_net(), eps=8 / 255, steps=1, step_size=8 / 255, clip_min=0.0, clip_max=255.0,
                                eval_steps=0, seed=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(EpsScaleWarning, match="PGDAdversarialModel: eps=0.0313725") as record:
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert [w.filename for w in record if issubclass(w.category, EpsScaleWarning)] == [__file__]


def test_a_training_wrapper_with_an_open_range_judges_eps_against_the_data():
    x, y = pixels(255.0, n=32)
    model = PGDAdversarialModel(logits_net(), eps=8 / 255, steps=1, step_size=8 / 255, clip_min=None, clip_max=None,
                                eval_steps=0, seed=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(EpsScaleWarning, match="the data's range; no clip_min/clip_max given"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)


# ------------------------------------------------------------------- steps that cannot reach eps
@pytest.mark.parametrize("eps, steps, step_size, warned", [
    (0.3, 10, 0.01, True),      # reach 0.1 of eps 0.3: robustness in a third of the ball
    (0.3, 40, 0.01, False),     # mnist_challenge's PGD-40 of 0.01 at 0.3
    (0.3, 3, 0.1, False),       # eps, rounded up (0.1 * 3 is 0.30000000000000004)
    (0.2, 19, 0.2 / 19, False),  # eps as 19 equal steps, rounded down (0.19999999999999998)
])
def test_pgd_whose_steps_cannot_reach_eps_says_so_at_the_callers_line(eps, steps, step_size, warned):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        PGD(logits_net(), eps, steps=steps, step_size=step_size, from_logits=True)
    found = [w for w in record if issubclass(w.category, EvaluationWarning)]
    assert len(found) == warned
    if warned:
        assert "10 steps of 0.01 move at most 0.1 from the start, less than eps=0.3" in str(found[0].message)
        assert found[0].filename == __file__


def test_the_attacks_of_adversarial_training_are_checked_too():
    with pytest.warns(EvaluationWarning, match=r"\(the attack of evaluate\): 2 steps of 0.05"):
        PGDAdversarialModel(logits_net(), eps=0.3, steps=7, step_size=0.1, eval_steps=2, eval_step_size=0.05)
    with pytest.warns(EvaluationWarning, match=r"\(its training attack\): 2 steps of 0.1 move at most 0.2"):
        PGDAdversarialModel(logits_net(), eps=0.3, steps=2, step_size=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvaluationWarning)
        PGDAdversarialModel(logits_net(), eps=0.3, steps=7, step_size=0.1)  # default: 10 steps of eps / 4
