"""The training input pipeline the papers share: shuffle every epoch, optional crop-and-flip, batch.

Augmentation is torchvision's RandomCrop(size, padding=4) with zero fill, then RandomHorizontalFlip, as in
the CIFAR-10 code of Wong et al., Shafahi et al., Kamath et al. and Galloway et al.

Every pass is reproducible and can be resumed. The order of a pass is the seeded shuffle's next reshuffle,
and each image's crop and flip are stateless functions of a key that a seeded `Dataset.random` draws next
to it, anew every pass. Both seeds advance each time an iterator of the dataset is made, whether it reads
anything or not, so a resumed training rebuilds the pipeline and makes (and drops) as many iterators as the
killed run had: `epochs_done` and `batches_done` below.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

PAD = 4
#: Iterators Keras 3's `fit` makes of a finite dataset per epoch: one when the epoch starts and one, never
#: read, when it ends (keras/src/trainers/epoch_iterator.py, Keras 3.15). Each draws the next reshuffle, so
#: epoch e of a `fit` sees the pipeline's pass 2e (tests/test_resume.py checks it against Keras).
KERAS_ITERATORS_PER_EPOCH = 2
#: Mixed with the shuffle's seed into the augmentation keys' seed: the two generators must not share a
#: seed, or the keys would repeat the shuffle's own random draws.
AUGMENT_STREAM = 1


def crop_and_flip(image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """One image: a random crop of the zero-padded image (4 pixels each side), then a random flip, both
    drawn from `key` (a stateless seed, two integers): the same key, the same crop and flip."""
    height, width, channels = image.shape
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, [height, width, channels], seed=crop_key)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_key)


def training_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, augment: bool = False, seed: int = 0,
                     drop_remainder: bool = False, epochs_done: int = 0) -> tf.data.Dataset:
    """(x, y) batches, reshuffled every pass with `seed`; with `augment`, crop_and_flip each image afresh.

    For `fit(dataset, epochs=...)`. `epochs_done`: the epochs a resumed `fit` has already trained
    (TimedBackupAndRestore.resume_epoch()); its next epoch then gets the order and crops that epoch had in
    the uninterrupted run.
    """
    ds = _passes(x, y, batch_size, augment=augment, seed=seed, drop_remainder=drop_remainder)
    _skip_passes(ds, KERAS_ITERATORS_PER_EPOCH * epochs_done)
    return ds


def training_stream(x: np.ndarray, y: np.ndarray, batch_size: int, *, augment: bool = False, seed: int = 0,
                    drop_remainder: bool = False, batches_done: int = 0) -> tf.data.Dataset:
    """training_dataset(...).repeat(), for `fit(stream, steps_per_epoch=...)`: one iterator for the whole
    `fit`, whose epochs need not end where passes do. `batches_done`: the steps a resumed `fit` has already
    trained (resume_epoch() * steps_per_epoch); the stream then goes on with the batch that came next in the
    uninterrupted run.
    """
    ds = _passes(x, y, batch_size, augment=augment, seed=seed, drop_remainder=drop_remainder)
    passes, into_pass = divmod(batches_done, batches_per_pass(len(x), batch_size, drop_remainder))
    _skip_passes(ds, passes)  # a repeat makes one iterator of `ds` per pass
    stream = ds.repeat()
    return stream.skip(into_pass) if into_pass else stream


def batches_per_pass(samples: int, batch_size: int, drop_remainder: bool) -> int:
    return samples // batch_size if drop_remainder else -(-samples // batch_size)


def _passes(x: np.ndarray, y: np.ndarray, batch_size: int, *, augment: bool, seed: int,
            drop_remainder: bool) -> tf.data.Dataset:
    """The pipeline; each iterator of it is the next pass."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if not 1 <= batch_size:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_remainder and batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} is larger than the {len(x)} samples: no full batch")
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        # A stateful random op in a parallel map hands its draws to whichever image's thread comes first:
        # the same seeds gave other crops at 30 to 44 of 64 positions. Keys drawn in order next to the shuffled
        # images make the crops a function of (seeds, pass, position) whatever the threads do.
        ds = tf.data.Dataset.zip(ds, augmentation_keys(seed)).map(_augmented, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(without_autotune_thread())


def augmentation_keys(seed: int) -> tf.data.Dataset:
    """Endless stateless keys (pairs of int64), new ones for every iterator: the augmentation of one pass."""
    key_seed = int(np.random.SeedSequence((seed, AUGMENT_STREAM)).generate_state(1)[0])
    return tf.data.Dataset.random(seed=key_seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)


def _augmented(example: tuple[tf.Tensor, tf.Tensor], key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    image, label = example
    return crop_and_flip(image, key), label


def _skip_passes(ds: tf.data.Dataset, passes: int) -> None:
    """Advance `ds` by `passes` passes without reading them: making an iterator draws the pass's reshuffle
    and keys, and nothing is computed until it is read (50 to 150 ms an iterator for CIFAR-10's 50,000
    images, as Keras makes them every epoch anyway)."""
    if passes < 0:
        raise ValueError(f"cannot skip {passes} passes")
    for _ in range(passes):
        iter(ds)


def without_autotune_thread() -> tf.data.Options:
    """Options that keep tf.data's autotuning thread out of a pipeline. Destroying an iterator (the end of
    a `fit`, of a Keras epoch over a finite dataset, or of a pass over the images) waits for that thread,
    which in TensorFlow 2.21 at times first sleeps out its optimisation period, up to a minute: cells of the
    efficient demo idled up to 20 s (once 59 s) at the end of `fit`, 2 minutes in all, as did batchsize's
    and batchnorm's. Without it, AUTOTUNE still means every core for the map and a self-sizing prefetch
    buffer, and the batches are the same (the seeded shuffle's order).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
