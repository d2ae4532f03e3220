"""Evaluation on a tf.data.Dataset of (x, y) batches, as Keras' evaluate takes: the same answers as on the
arrays it holds, and clear errors for what cannot be evaluated."""
import numpy as np
import pytest
import tensorflow as tf

from tfadv.attacks import PGD
from tfadv.evaluation import accuracy, auto_attack, check_gradient_masking, robust_accuracy, robust_mask
from tfadv.evaluation.data import evaluation_arrays

from autoattack_support import held_out, small_cnn

SETTINGS = dict(eps=0.1, norm="inf", clip_min=0.0, clip_max=1.0, from_logits=True)


def _dataset(x, y, batch=7):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _model_and_data(n):
    """An untrained CNN and digits labelled with its own predictions, so that every sample starts correct."""
    model = small_cnn()
    x, _ = held_out(n)
    return model, x, np.argmax(model.predict(x, verbose=0), axis=-1)


def test_robust_accuracy_of_a_dataset_is_that_of_its_arrays():
    model, x, y = _model_and_data(40)
    attack = PGD(model, 0.1, steps=5, step_size=0.03, seed=0, from_logits=True, clip_min=0.0, clip_max=1.0)
    expected = robust_mask(model, attack, x, y, restarts=2)
    assert 0 < expected.sum() < len(x)  # some robust, some broken: the comparison can fail
    np.testing.assert_array_equal(robust_mask(model, attack, _dataset(x, y), restarts=2), expected)
    one_hot = _dataset(x, tf.one_hot(y, 10))
    assert robust_accuracy(model, attack, one_hot, restarts=2) == expected.mean()
    assert accuracy(model, one_hot) == accuracy(model, x, y) == 1.0


@pytest.mark.slow(seconds=60)
def test_auto_attack_and_the_masking_checks_of_a_dataset_are_those_of_its_arrays():
    model, x, y = _model_and_data(24)
    cascade = dict(SETTINGS, version="custom", attacks=["apgd-ce", "square"], steps=4, queries=20)
    arrays, dataset = auto_attack(model, x, y, **cascade), auto_attack(model, _dataset(x, y), **cascade)
    assert 0 < arrays.robust_accuracy < 1
    assert arrays.robust_accuracy == dataset.robust_accuracy and list(arrays.broken_by) == list(dataset.broken_by)
    np.testing.assert_array_equal(np.asarray(arrays.x_adv), np.asarray(dataset.x_adv))
    checks = dict(SETTINGS, steps=2, queries=10, restarts=2, eps_factors=(0.5, 1.0))
    from_arrays = check_gradient_masking(model, x, y, **checks).to_markdown()
    assert check_gradient_masking(model, _dataset(x, y), **checks).to_markdown() == from_arrays


def test_what_cannot_be_evaluated_is_named():
    x, y = held_out(8)
    with pytest.raises(ValueError, match="leave y out"):
        evaluation_arrays("robust_accuracy", _dataset(x, y), y)
    with pytest.raises(ValueError, match="y is required unless x is a tf.data.Dataset"):
        evaluation_arrays("auto_attack", x, None)
    with pytest.raises(ValueError, match=r"must yield \(x, y\) batches, got 3-tuples"):
        evaluation_arrays("auto_attack", tf.data.Dataset.from_tensor_slices((x, y, y)).batch(4), None)
    with pytest.raises(ValueError, match="batch it first"):
        evaluation_arrays("auto_attack", tf.data.Dataset.from_tensor_slices((x, y)), None)
    with pytest.raises(ValueError, match="repeats forever"):
        evaluation_arrays("auto_attack", _dataset(x, y).repeat(), None)
    with pytest.raises(ValueError, match="yields no batches"):
        evaluation_arrays("auto_attack", _dataset(x, y).take(0), None)
    attack = PGD(small_cnn(), 0.1, steps=1, from_logits=True, clip_min=0.0, clip_max=1.0)
    with pytest.raises(TypeError, match="an attack takes one batch"):
        attack(_dataset(x, y), None)


def test_no_samples_is_refused_by_name_not_answered_with_nan():
    """The probe: robust_accuracy of empty arrays returned nan silently; an attack and the masking checks
    failed deep inside TensorFlow."""
    model, x, y = _model_and_data(4)
    attack = PGD(model, 0.1, steps=1, from_logits=True, clip_min=0.0, clip_max=1.0)
    empty = r"no samples: x has shape \(0, 8, 8, 1\)"
    with pytest.raises(ValueError, match=f"robust_accuracy: {empty}"):
        robust_accuracy(model, attack, x[:0], y[:0])
    with pytest.raises(ValueError, match=f"robust_accuracy: {empty}"):
        robust_mask(model, attack, x[:0], y[:0])
    with pytest.raises(ValueError, match=f"PGD: {empty}"):
        attack(x[:0], y[:0])
    with pytest.raises(ValueError, match=f"check_gradient_masking: {empty}"):
        check_gradient_masking(model, x[:0], y[:0], **SETTINGS)
    with pytest.raises(ValueError, match=f"auto_attack: {empty}"):
        auto_attack(model, x[:0], y[:0], **SETTINGS)
    with pytest.raises(ValueError, match=f"accuracy: {empty}"):
        accuracy(model, x[:0], y[:0])
    with pytest.raises(ValueError, match=f"robust_accuracy: {empty}"):
        robust_accuracy(model, attack, tf.data.Dataset.from_tensors((x[:0], y[:0])))  # one batch of none
