"""Per-sample random numbers inside a compiled loop, keyed on (seed, sample id, stream, counter).

A score-based attack draws fresh numbers for every sample at every query. TensorFlow's stateless ops take one
seed per call, so drawing per sample would need a `map_fn` per query (thousands of them). Instead each
draw is a counter-based hash (SplitMix64's finaliser, Steele et al. 2014) of the sample's key and the counter:
vectorised over the batch, and a sample's numbers never depend on which batch it is in.
"""
from __future__ import annotations

import tensorflow as tf

_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB


def _u64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.uint64)


def _mix(z: tf.Tensor) -> tf.Tensor:
    """SplitMix64 finaliser: a bijection of uint64 with full avalanche (wrap-around arithmetic)."""
    z = z + _u64(_GOLDEN)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(30))) * _u64(_MIX_1)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(27))) * _u64(_MIX_2)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(31)))


def _as_u64(value: int | tf.Tensor) -> tf.Tensor:
    # int64 -> uint64 keeps the bits (negative seeds stay distinct from positive ones).
    return tf.cast(tf.cast(value, tf.int64), tf.uint64)


def sample_keys(seed: int | tf.Tensor, sample_ids: tf.Tensor, stream: int | tf.Tensor) -> tf.Tensor:
    """(N,) uint64 keys, one per sample: a hash chain of the seed, the sample id and the stream (restart)."""
    key = _mix(_as_u64(seed))
    key = _mix(tf.bitwise.bitwise_xor(key, _as_u64(stream)))
    return _mix(tf.bitwise.bitwise_xor(key, _as_u64(sample_ids)))


def uniform(keys: tf.Tensor, counter: int | tf.Tensor, width: int) -> tf.Tensor:
    """(N, width) float32 uniform on [0, 1): draw `counter` of each sample's stream, `width` numbers each."""
    slots = _as_u64(counter) * _u64(width) + _as_u64(tf.range(width, dtype=tf.int64))
    bits = _mix(tf.bitwise.bitwise_xor(keys[:, None], _mix(slots)[None, :]))
    # The top 24 bits fill a float32 mantissa exactly, so the result is never 1.0.
    return tf.cast(tf.bitwise.right_shift(bits, _u64(40)), tf.float32) * (1.0 / 2**24)


def integers(keys: tf.Tensor, counter: int | tf.Tensor, width: int, high: int | tf.Tensor) -> tf.Tensor:
    """(N, width) int32 uniform on {0, ..., high - 1} (high <= 2^24, so the float rounding is exact)."""
    u = uniform(keys, counter, width)
    value = tf.cast(tf.floor(u * tf.cast(high, tf.float32)), tf.int32)
    return tf.minimum(value, tf.cast(high, tf.int32) - 1)


def signs(keys: tf.Tensor, counter: int | tf.Tensor, width: int) -> tf.Tensor:
    """(N, width) float32 entries of -1 or +1 with equal probability."""
    return tf.where(uniform(keys, counter, width) < 0.5, -1.0, 1.0)
