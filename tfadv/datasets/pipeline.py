"""The training input pipeline the papers share: shuffle every epoch, optional crop-and-flip, batch.

Augmentation is torchvision's RandomCrop(size, padding=4) with zero fill, then RandomHorizontalFlip, as in
the CIFAR-10 code of Wong et al., Shafahi et al., Kamath et al. and Galloway et al.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

PAD = 4


def crop_and_flip(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One image: a random crop of the zero-padded image (4 pixels each side), then a random flip."""
    height, width, channels = image.shape
    padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]])
    cropped = tf.image.random_crop(padded, [height, width, channels])
    return tf.image.random_flip_left_right(cropped), label


def training_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, augment: bool = False, seed: int = 0,
                     drop_remainder: bool = False) -> tf.data.Dataset:
    """(x, y) batches, reshuffled every epoch with `seed`; with `augment`, crop_and_flip each image."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if not 1 <= batch_size:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_remainder and batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} is larger than the {len(x)} samples: no full batch")
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment:
        ds = ds.map(crop_and_flip, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(without_autotune_thread())


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
