"""Helpers the runners share: the training pipeline, clean accuracy, table selection."""
import keras
import numpy as np
import pandas as pd
import pytest

from tfadv.datasets.pipeline import crop_and_flip, training_dataset
from tfadv.evaluation import accuracy
from tfadv.experiments.tables import arrow, pct, select


def test_crop_and_flip_keeps_shape_and_moves_content():
    image = np.arange(4 * 4 * 1, dtype=np.float32).reshape(4, 4, 1)
    seen = {crop_and_flip(image, [key, 0]).numpy().tobytes() for key in range(20)}
    assert crop_and_flip(image, [0, 0]).shape == (4, 4, 1)
    assert len(seen) > 1  # random crops and flips differ
    np.testing.assert_array_equal(crop_and_flip(image, [7, 1]), crop_and_flip(image, [7, 1]))  # keyed


def test_training_dataset_keeps_the_last_partial_batch_unless_asked():
    x, y = np.zeros((10, 4, 4, 1), np.float32), np.arange(10)
    assert [len(b[0]) for b in training_dataset(x, y, 4)] == [4, 4, 2]
    assert [len(b[0]) for b in training_dataset(x, y, 4, drop_remainder=True)] == [4, 4]
    with pytest.raises(ValueError, match="larger than the 10 samples"):
        training_dataset(x, y, 16, drop_remainder=True)
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        training_dataset(x, y[:9], 4)


@pytest.mark.parametrize("augment", [False, True])
def test_training_dataset_runs_without_the_autotune_thread_and_gives_the_same_batches(augment):
    import tensorflow as tf

    x, y = np.random.default_rng(0).random((40, 8, 8, 1), np.float32), np.arange(40)
    ours = training_dataset(x, y, 8, augment=augment, seed=3).repeat()  # .repeat(), as the runners use it
    assert ours.options().autotune.enabled is False  # its iterators end without waiting for that thread
    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True
    tuned = training_dataset(x, y, 8, augment=augment, seed=3).repeat().with_options(autotuned)  # a fresh seed state
    assert tuned.options().autotune.enabled is True
    # Two epochs and a half, reshuffles included: the same images in the same order, and the same crops.
    for mine, theirs in zip(ours.take(12), tuned.take(12)):
        np.testing.assert_array_equal(mine[1].numpy(), theirs[1].numpy())
        np.testing.assert_array_equal(mine[0].numpy(), theirs[0].numpy())


def test_accuracy_reads_ids_and_one_hot():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    model.set_weights([np.eye(2, dtype=np.float32)])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    assert accuracy(model, x, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(model, x, np.eye(2)[[0, 1, 1]]) == pytest.approx(2 / 3)
    assert accuracy(model, x, np.array([[1], [1], [1]])) == pytest.approx(1 / 3)  # Keras' sparse (N, 1) labels
    with pytest.raises(ValueError, match="3 samples but y has 2"):
        accuracy(model, x, np.array([0, 1]))
    # 1-based ids (label 2 never matches a prediction: 1/3 instead of 2/3), float ids, one-hot of another width
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got values in \[1, 2\]"):
        accuracy(model, x, np.array([1, 2, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        accuracy(model, x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one-hot labels have 3 columns"):
        accuracy(model, x, np.eye(3)[[0, 1, 1]])


def test_select_matches_floats_lists_and_missing_columns():
    table = pd.DataFrame({"m": [0.0, 0.9, 0.9000000001, 0.5], "s": ["LR", "LR", "LR/BS", "LR"]})
    assert len(select(table, m=0.9)) == 2
    assert len(select(table, m=0.9, s="LR")) == 1
    assert len(select(table, s=["LR", "LR/BS"])) == 4
    assert select(table, nope=1).empty
    assert pct(0.4567) == "45.7%" and pct(float("nan")) == "n/a" and arrow([1, 0.5]) == "1.00 → 0.50"
