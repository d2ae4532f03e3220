"""The check that the inputs of fit and evaluate lie in the valid range [clip_min, clip_max], under XLA too.

An image in [0, 255] attacked with eps 8/255 would train silently against a vanishing threat. The
`tf.debugging` asserts of each step stop such a batch before it is used, but XLA drops asserts, and Keras
compiles with XLA when asked (jit_compile=True) and by default on a GPU without a distribution strategy
(jit_compile="auto"). So each step also counts its out-of-range batches in a Sum metric (an XLA-compatible
update, summed over replicas), and `RangeCheck`, a callback that fit and evaluate add, reads the count
eagerly: after the first batch, around each validation and at each epoch's and evaluation's end. Not
after every batch: each read waits for the device. train_on_batch and test_on_batch read it on return.
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: Inputs this far outside the range still count as inside it (float round-off of a rescaled image).
TOLERANCE = 1e-6


class InputRange:
    """The valid input range of one model, its in-step checks and its count of out-of-range batches."""

    def __init__(self, owner: str, clip_min: float | None, clip_max: float | None) -> None:
        self.owner, self.clip_min, self.clip_max = owner, clip_min, clip_max
        self.out_of_range_batches = keras.metrics.Sum(name="out_of_range_batches", dtype="float32")

    @property
    def bounded(self) -> bool:
        return self.clip_min is not None or self.clip_max is not None

    def checked(self, x: tf.Tensor) -> tf.Tensor:
        """x, asserted to lie in the range (without XLA) and counted as one out-of-range batch if it does not."""
        if not self.bounded:
            return x
        checks, outside = [], tf.constant(False)
        if self.clip_min is not None:
            low, bound = tf.reduce_min(x), tf.constant(self.clip_min - TOLERANCE, tf.float32)
            checks.append(tf.debugging.assert_greater_equal(low, bound, message=self.side_message("below")))
            outside = tf.logical_or(outside, low < bound)
        if self.clip_max is not None:
            high, bound = tf.reduce_max(x), tf.constant(self.clip_max + TOLERANCE, tf.float32)
            checks.append(tf.debugging.assert_less_equal(high, bound, message=self.side_message("above")))
            outside = tf.logical_or(outside, high > bound)
        self.out_of_range_batches.update_state(tf.cast(outside, tf.float32))
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def side_message(self, side: str) -> str:
        bound = f"clip_min={self.clip_min}" if side == "below" else f"clip_max={self.clip_max}"
        return f"inputs {side} {bound}: scale them to [clip_min, clip_max] or set the range"

    def reset(self) -> None:
        self.out_of_range_batches.reset_state()

    def raise_if_any(self, data: str) -> None:
        """Raise if a batch counted since the last reset was out of range; `data` names where it came from."""
        if not self.bounded:
            return
        count = int(self.out_of_range_batches.result())
        if count:
            raise ValueError(
                f"{self.owner}: {count} batch(es) of {data} had inputs outside the valid range "
                f"[clip_min={self.clip_min}, clip_max={self.clip_max}] (eps is in the units of that range, so the "
                "threat would be of another size than intended): scale the inputs to [clip_min, clip_max] (e.g. divide images in "
                "[0, 255] by 255) or build the model with the inputs' range as clip_min and clip_max"
            )


class RangeCheck(keras.callbacks.Callback):
    """Reads the model's out-of-range count (InputRange) at a few points of fit and evaluate, and raises.

    "After the first batch" is read when the second batch begins: a batch-end hook would make Keras give up
    dispatching the batch-end callbacks asynchronously, for the whole fit."""

    def __init__(self, input_range: InputRange) -> None:
        super().__init__()
        self.input_range = input_range
        self.training = False
        self.train_batches = self.test_batches = 0

    def on_train_begin(self, logs=None) -> None:
        self.training, self.train_batches = True, 0
        self.input_range.reset()

    def on_train_end(self, logs=None) -> None:
        self.training = False

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.train_batches += 1
        if self.train_batches == 2:
            self.input_range.raise_if_any("the training data")

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.input_range.raise_if_any("the training data")

    def on_test_begin(self, logs=None) -> None:
        self.test_batches = 0
        if self.training:  # fit's validation: the count holds the training batches so far
            self.input_range.raise_if_any("the training data")
        else:
            self.input_range.reset()

    def on_test_batch_begin(self, batch, logs=None) -> None:
        self.test_batches += 1
        if self.test_batches == 2:
            self.input_range.raise_if_any(self.test_data)

    def on_test_end(self, logs=None) -> None:
        self.input_range.raise_if_any(self.test_data)

    @property
    def test_data(self) -> str:
        return "the validation data" if self.training else "the evaluation data"
