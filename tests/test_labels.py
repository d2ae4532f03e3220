"""One label rule (tfadv.labels) for attacks, evaluation, training and the Hessian tool: ids (N,), Keras'
sparse (N, 1), one-hot (N, C); everything else refused by name."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import labels
from tfadv.attacks import PGD
from tfadv.evaluation import accuracy
from tfadv.training.base import correct

from test_training import MODELS, build, data, weights_of

IDS = np.array([0, 2, 1, 2])


@pytest.mark.parametrize("y", [IDS, IDS[:, None], np.eye(3)[IDS], np.eye(3, dtype="float32")[IDS]],
                         ids=["ids", "sparse column", "one-hot", "one-hot float32"])
def test_every_accepted_form_reads_as_the_same_ids_everywhere(y):
    np.testing.assert_array_equal(labels.class_ids(y, 3), IDS)
    np.testing.assert_array_equal(labels.one_hot(y, 3), np.eye(3)[IDS])
    # Training's accuracy (in a graph, with the batch size unknown) and an attack's one-hot rows.
    scores = tf.constant(np.eye(3, dtype="float32")[[0, 2, 1, 0]])  # the last prediction is wrong
    graph = tf.function(correct).get_concrete_function(
        tf.TensorSpec((None,) + y.shape[1:], tf.as_dtype(y.dtype)), tf.TensorSpec((None, 3), tf.float32))
    np.testing.assert_array_equal(graph(tf.constant(y), scores).numpy(), [1, 1, 1, 0])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    attack = PGD(model, 0.1, steps=1, step_size=0.1, from_logits=True)
    x = np.zeros((4, 2), "float32")
    np.testing.assert_array_equal(attack._inputs(x, y)[1].numpy(), np.eye(3)[IDS])
    assert accuracy(model, x, y) == pytest.approx(np.mean(np.argmax(model.predict(x, verbose=0), -1) == IDS))


@pytest.mark.parametrize("y,num_classes,error,message", [
    (np.zeros((4, 3, 1), "int64"), None, ValueError, r"y must be class ids \(N,\) or \(N, 1\), or one-hot \(N, C\)"),
    (np.array([0.0, 1.0]), None, TypeError, "class-id labels must be integers"),
    (np.array([[0.0], [1.0]]), None, TypeError, "class-id labels must be integers"),
    (np.array([1, 3]), 3, ValueError, r"labels must lie in \[0, 3\), got values in \[1, 3\]"),
    (np.array([[-1], [0]]), 3, ValueError, r"labels must lie in \[0, 3\)"),
    (np.eye(4)[[0, 1]], 3, ValueError, "one-hot labels have 4 columns, the model has 3 classes"),
    (np.array([[1.0, 1.0, 0.0]]), 3, ValueError, "one-hot label rows must be non-negative and sum to 1"),
    (np.array([[1.5, -0.5, 0.0]]), 3, ValueError, "one-hot label rows must be non-negative and sum to 1"),
])
def test_other_labels_are_refused_by_name(y, num_classes, error, message):
    with pytest.raises(error, match=f"who: {message}"):
        labels.check(y, num_classes, name="who")


def test_the_row_count_is_checked_when_given_and_unknown_widths_read_as_one_hot():
    with pytest.raises(ValueError, match="with N = 5, got shape"):
        labels.check(IDS, n=5)
    assert labels.is_one_hot((None, None)) and labels.is_one_hot((4, 3))
    assert not labels.is_one_hot((4,)) and not labels.is_one_hot((None, 1))


@pytest.mark.parametrize("name", [n if n == "pgd" else pytest.param(n, marks=pytest.mark.slow(seconds=55 if n == "stale" else 15))
                                  for n in sorted(MODELS)])
def test_every_training_variant_trains_alike_on_every_label_form(name):
    """Stale's queue stores one-hot rows and hands each batch its labels back in their own form: ids,
    Keras' sparse column or one-hot (with the matching loss) must all give the same weights."""
    cls, kwargs = MODELS[name]
    x, y = data(32)
    trained = []
    for form, loss in ((y, "sparse"), (y[:, None], "sparse"), (np.eye(3, dtype="float32")[y], "one-hot")):
        model = build(cls, seed=0, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True) if loss == "sparse" else keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(x, form, batch_size=16, epochs=2, shuffle=False, verbose=0)
        trained.append(weights_of(model))
    for other in trained[1:]:
        for a, b in zip(trained[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ soft rows: no single true class
SMOOTHED = np.eye(3)[IDS] * 0.9 + 0.1 / 3  # label smoothing 0.1
TIE = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])  # mixup's half-and-half: argmax would say class 0


@pytest.mark.parametrize("y", [SMOOTHED, TIE], ids=["smoothed", "tie"])
def test_soft_rows_are_refused_where_a_true_class_is_needed_and_read_whole_by_a_loss(y):
    """The probe: smoothed rows passed the old rule (non-negative, summing to 1) and changed every attack's
    robust accuracy (DLR and the margin read `y_onehot > 0` as the true class); a tie became class 0."""
    message = r"who: label rows must be exactly one-hot \(every entry 0 or 1\).*soft or smoothed.*np.argmax"
    with pytest.raises(ValueError, match=message):
        labels.check(y, 3, name="who")
    with pytest.raises(ValueError, match=message):
        labels.class_ids(y, 3, name="who")
    # A loss reads the whole row (training, the Hessian tool): the rows pass unchanged there.
    np.testing.assert_array_equal(labels.check(y, 3, soft_ok=True), y)
    np.testing.assert_allclose(labels.one_hot(y, 3), y)
    with pytest.raises(ValueError, match="exactly one-hot"):
        labels.one_hot(y, 3, soft_ok=False)
    # Training's graph-side conversions still take soft rows (mixup, smoothed data) as they are.
    np.testing.assert_allclose(labels.one_hot_tensor(tf.constant(y), 3).numpy(), y)
    np.testing.assert_array_equal(labels.ids_tensor(tf.constant(y)).numpy(), np.argmax(y, axis=-1))


@pytest.mark.parametrize("y,message", [
    (SMOOTHED.astype("float32"), "exactly one-hot"),
    (np.eye(3, dtype="float32")[IDS] * 5, "exactly one-hot"),
    (np.array([0, 2, 3, 1]), r"labels must lie in \[0, 3\)"),
    (np.array([[0], [-1], [2], [1]]), r"labels must lie in \[0, 3\)"),
])
def test_graph_side_labels_that_must_name_a_class_are_checked_when_run(y, message):
    """Inside a tf.function labels cannot be checked eagerly: tf.one_hot made an out-of-range id an all-zero
    row and soft rows went through. The checked conversion fails the run with the reason instead."""
    convert = tf.function(lambda t: labels.checked_one_hot_tensor(t, 3, name="who"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        convert(tf.constant(y))
    good = np.eye(3, dtype="float32")[IDS]
    np.testing.assert_array_equal(convert(tf.constant(good)).numpy(), good)
    np.testing.assert_array_equal(convert(tf.constant(IDS[:, None])).numpy(), good)


def test_graph_side_float_ids_and_other_widths_are_refused_when_traced():
    with pytest.raises(TypeError, match="who: class-id labels must be integers"):
        tf.function(lambda t: labels.checked_one_hot_tensor(t, 3, name="who"))(tf.constant([0.0, 2.0]))
    with pytest.raises(ValueError, match="who: one-hot labels have 4 columns, the model has 3 classes"):
        tf.function(lambda t: labels.checked_one_hot_tensor(t, 3, name="who"))(tf.constant(np.eye(4)[[0, 1]]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_training_variant_still_trains_on_smoothed_rows(name):
    """Adversarial training may get soft rows (label smoothing in the data, mixup) through a Keras loss:
    refusing them is for attacks and evaluation, not for training."""
    cls, kwargs = MODELS[name]
    x, y = data(32)
    model = build(cls, seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    before = weights_of(model)
    history = model.fit(x, np.eye(3, dtype="float32")[y] * 0.9 + 0.1 / 3, batch_size=16, epochs=1, shuffle=False,
                        verbose=0)
    assert history.history and all(np.isfinite(values[-1]) for values in history.history.values())
    assert any(not np.allclose(a, b) for a, b in zip(before, weights_of(model)))
