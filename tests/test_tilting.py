"""Boundary tilting angle (tfadv.analysis.tilting) against hand-computed values."""
import math

import keras
import numpy as np
import pytest

from tfadv.analysis import tilting
from tfadv.models import batchnorm_nets as nets

# Two classes with centroids (-1, 0) and (1, 0): the nearest-centroid direction is (2, 0).
X_REF = np.array([[-1.0, 0.5], [-1.0, -0.5], [1.0, 0.5], [1.0, -0.5]], np.float32)
Y_REF = np.array([0, 0, 1, 1])


def _linear(w, b=0.0, **kwargs):
    model = nets.linear_classifier((2,), 2, **kwargs)
    model.get_layer("linear").set_weights([np.array(w, np.float32).reshape(2, 1), np.array([b], np.float32)])
    return model


def test_nearest_centroid_direction_points_from_negative_to_positive_class():
    np.testing.assert_allclose(tilting.nearest_centroid_direction(X_REF, Y_REF, 1), [2.0, 0.0])
    np.testing.assert_allclose(tilting.nearest_centroid_direction(X_REF, Y_REF, 0), [-2.0, 0.0])


@pytest.mark.parametrize("w, expected", [((1.0, 0.0), 0.0), ((1.0, 1.0), 45.0), ((1.0, -math.sqrt(3)), 60.0),
                                         ((0.0, 1.0), 90.0), ((-1.0, 0.0), 180.0)])
def test_tilting_angle_of_hand_built_linear_classifier(w, expected):
    assert tilting.tilting_angle(_linear(w, b=0.3), X_REF, Y_REF) == pytest.approx(expected, abs=1e-4)


def test_tilting_angle_of_batch_normalised_classifier_uses_input_space_weights():
    # BN (affine fixed) with inference variances v and constant c: effective w_i / sqrt(v_i + c).
    c, variances, w = 1e-3, np.array([1.0, 0.01], np.float32), (1.0, 1.0)
    model = _linear(w, batchnorm="fixed", epsilon=c)
    model.get_layer("input_bn").set_weights([np.array([0.2, -0.1], np.float32), variances])
    effective = np.array(w) / np.sqrt(variances + c)
    expected = math.degrees(math.atan2(effective[1], effective[0]))
    assert tilting.tilting_angle(model, X_REF, Y_REF) == pytest.approx(expected, abs=1e-3)
    assert expected > 70  # the low-variance direction dominates: the boundary is tilted


def test_input_space_weights_refuses_a_nonlinear_model():
    with pytest.raises(ValueError, match="not affine"):
        tilting.input_space_weights(nets.mlp((2,), 2, hidden_units=(8, 8)), (2,))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="zero vector"):
        tilting.angle_degrees([0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="different sizes"):
        tilting.angle_degrees([1.0, 0.0], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="another class"):
        tilting.nearest_centroid_direction(X_REF, np.ones(4, int), 1)


def _one_logit(w, b=0.0):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([np.array(w, np.float32).reshape(2, 1), np.array([b], np.float32)])
    return model


@pytest.mark.parametrize("w, expected", [((1.0, 1.0), 45.0), ((-1.0, 0.0), 180.0)])
def test_a_one_logit_sigmoid_model_scores_class_1_against_class_0(w, expected):
    """A single logit (sigmoid model on labels 0/1) is its own decision score; it used to fail inside
    TensorFlow ("slice index 1 of dimension 1 out of bounds")."""
    assert tilting.tilting_angle(_one_logit(w, b=0.3), X_REF, Y_REF) == pytest.approx(expected, abs=1e-4)


def test_class_ids_that_match_neither_labels_nor_outputs_are_named():
    """MNIST 3 vs 7: raw labels with the default classes (1, 0) used to end in "cannot reshape array of size
    0"; classes beyond the model's outputs in a TensorFlow slice error; a one-logit model cannot say which of
    3 and 7 its logit scores."""
    y37 = np.where(Y_REF == 1, 7, 3)
    with pytest.raises(ValueError, match=r"no samples of positive_class=1 and negative_class=0 .*\[3, 7\]"):
        tilting.tilting_angle(_linear((1.0, 0.0)), X_REF, y37)
    with pytest.raises(ValueError, match=r"positive_class=7 and negative_class=3 must index the model's 2 logits"):
        tilting.tilting_angle(_linear((1.0, 0.0)), X_REF, y37, positive_class=7, negative_class=3)
    with pytest.raises(ValueError, match="one logit.*positive_class=7, negative_class=3.*Relabel y_reference"):
        tilting.tilting_angle(_one_logit((1.0, 0.0)), X_REF, y37, positive_class=7, negative_class=3)
    ten = keras.Sequential([keras.Input((2,)), keras.layers.Dense(10)])  # a 10-class model: ids index logits
    weights = np.zeros((2, 10), np.float32)
    weights[0, 7] = 1.0
    ten.layers[0].set_weights([weights, np.zeros(10, np.float32)])
    assert tilting.tilting_angle(ten, X_REF, y37, positive_class=7, negative_class=3) == pytest.approx(0.0, abs=1e-4)
