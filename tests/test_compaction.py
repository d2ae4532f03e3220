"""Compaction: the same per-sample robust/fooled answers as the plain attack, for every attack that runs in
segments, with fewer model rows evaluated; and the bookkeeping (segments, buckets, packing)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.attacks import APGD, FAB, PGD, Square
from tfadv.evaluation import robust_mask
from tfadv.evaluation.compaction import (bucket_sizes, pack, robust_mask_compacted, run_compacted, segment_bounds,
                                        supports_segments)

from autoattack_support import held_out, trained_cnn


def test_segments_buckets_and_packing():
    ends = [stop for _, stop in segment_bounds(100)]
    assert ends == [1, 2, 3, 4, 6, 8, 11, 16, 23, 33, 47, 66, 93, 100]
    assert segment_bounds(1) == [(0, 1)]
    assert bucket_sizes(128) == [32, 48, 64, 96, 128] and bucket_sizes(100) == [32, 48, 64, 96, 100]
    assert bucket_sizes(448) == [32, 48, 64, 96, 128, 192, 256, 384, 448] and bucket_sizes(16) == [16]
    assert pack(300, 128) == [(0, 128, 128), (128, 256, 128), (256, 300, 48)]
    assert pack(20, 128) == [(0, 20, 32)] and pack(0, 128) == []


ATTACKS = {
    "apgd-ce": lambda m: APGD(m, 0.1, "inf", 12, clip_min=0.0, clip_max=1.0, seed=0),
    "apgd-t": lambda m: APGD(m, 0.1, "inf", 6, loss="dlr", targeted=True, n_target_classes=3, clip_min=0.0,
                             clip_max=1.0, seed=0),
    "apgd-dlr-l2": lambda m: APGD(m, 1.0, "2", 12, loss="dlr", clip_min=0.0, clip_max=1.0, seed=0),
    "square-l2": lambda m: Square(m, 1.0, "2", 40, clip_min=0.0, clip_max=1.0, seed=0),
    "fab-t": lambda m: FAB(m, 0.1, "inf", 8, targeted=True, n_target_classes=2, clip_min=0.0, clip_max=1.0, seed=0),
    "pgd-linf-mean": lambda m: PGD(m, 0.1, "inf", steps=10, clip_min=0.0, clip_max=1.0, seed=0, select="first_success"),
    "pgd-l2-sum": lambda m: PGD(m, 1.0, "2", steps=10, reduction="sum", clip_min=0.0, clip_max=1.0, seed=0,
                                select="first_success"),
}


@pytest.mark.parametrize("name", [pytest.param("apgd-t", marks=pytest.mark.slow(seconds=35)), "pgd-linf-mean", *(
    pytest.param(n, marks=pytest.mark.slow) for n in ("apgd-ce", "apgd-dlr-l2", "fab-t", "square-l2", "pgd-l2-sum"))])
def test_same_per_sample_answers_as_the_plain_attack(name):
    """192 samples in batches of 64; two restarts, so the second runs on the first's survivors."""
    model = trained_cnn()
    x, y = held_out(192)
    attack = ATTACKS[name](model)
    plain = robust_mask(model, attack, x, y, batch_size=64, restarts=2, early_exit=False)
    compacted = robust_mask(model, attack, x, y, batch_size=64, restarts=2)  # early exit by default
    np.testing.assert_array_equal(compacted, plain)
    clean = np.argmax(model.predict(x, verbose=0), -1) == y
    assert 0 < plain.sum() < clean.sum()  # the attack breaks some samples and not all


class RowCounter(keras.layers.Layer):
    """Identity that counts the rows it sees (forward passes, gradient passes included)."""

    def build(self, input_shape):
        self.rows = self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="int64")

    def call(self, x):
        self.rows.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return x


@pytest.mark.slow(seconds=20)
def test_fooled_samples_stop_costing():
    model = trained_cnn()
    counter = RowCounter()
    inputs = keras.Input((8, 8, 1))
    counted = keras.Model(inputs, model(counter(inputs)))
    x, y = held_out(256)
    attack = APGD(counted, 0.2, "inf", 32, clip_min=0.0, clip_max=1.0, seed=0)  # eps 0.2: most samples fall
    before = int(counter.rows.numpy())
    plain = robust_mask(counted, attack, x, y, batch_size=128, early_exit=False)
    plain_rows = int(counter.rows.numpy()) - before
    before = int(counter.rows.numpy())
    compacted = robust_mask_compacted(counted, attack, x, y, batch_size=128)
    compacted_rows = int(counter.rows.numpy()) - before
    np.testing.assert_array_equal(compacted, plain)
    assert plain.mean() < 0.2
    assert compacted_rows < 0.5 * plain_rows


def test_attacks_judged_on_one_iterate_are_not_cut_short():
    """PGD returning its last iterate (the default) counts a sample fooled only if that iterate fools it:
    stopping at the first fooling iterate would change the answer, so it runs whole."""
    model = trained_cnn()
    last = PGD(model, 0.1, "inf", steps=5, clip_min=0.0, clip_max=1.0, seed=0)
    assert not supports_segments(last)
    assert supports_segments(PGD(model, 0.1, "inf", steps=5, clip_min=0.0, clip_max=1.0, seed=0, select="first_success"))
    assert not supports_segments(PGD(model, 1.0, "2", steps=5, seed=0, select="first_success", l2_rand_init="batch_radius"))
    x, y = held_out(64)
    np.testing.assert_array_equal(robust_mask(model, last, x, y), robust_mask(model, last, x, y, early_exit=False))


def test_recorded_points_are_the_plain_runs():
    """PGD freezes a sample at its first fooling iterate, so the point compaction records for each sample,
    fooled or not, is the plain run's, bit for bit."""
    model = trained_cnn()
    x, y = held_out(192)
    attack = ATTACKS["pgd-linf-mean"](model)
    onehot = np.eye(10, dtype=np.float32)[y]
    fooled, x_adv = run_compacted(attack, x, onehot, np.arange(len(x)), batch_size=64)
    plain, plain_x = run_compacted(attack, x, onehot, np.arange(len(x)), batch_size=64, compact=False)
    np.testing.assert_array_equal(fooled, plain)
    np.testing.assert_array_equal(x_adv, plain_x)
    assert 0 < fooled.sum() < len(x)
    assert np.all(np.argmax(model.predict(x_adv, verbose=0), -1)[fooled] != y[fooled])
