"""The images a profile trains and evaluates on: CIFAR-10 (paper) or scikit-learn's digits (demo, smoke).

Images are float32 in [0, 1] (the networks normalise inside), labels int64. --limit caps the number of
training and test images (run.capped).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfadv.experiments import Run

#: ResNet50's ImageNet stem needs 32x32 inputs: digits are upsampled for it.
RESNET50_SIZE = 32


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(run: Run, architecture: str) -> Data:
    """The profile's data for one network, loaded once per process."""
    profile = run.profile
    size = RESNET50_SIZE if architecture == "resnet50" else profile.image_size
    return run.cached(("data", profile.dataset, size), lambda: _load(run, size))


def _load(run: Run, size: int) -> Data:
    profile = run.profile
    if profile.dataset == "cifar10":
        from tfadv.datasets.tfds_data import load_tfds

        x_train, y_train = load_tfds("cifar10", "train", data_dir=run.data_dir)
        x_test, y_test = load_tfds("cifar10", "test", data_dir=run.data_dir)
        x_train, x_test = x_train / 255.0, x_test / 255.0
    elif profile.dataset == "digits":
        from tfadv.datasets.digits import load_digits

        x_train, y_train, x_test, y_test = load_digits(image_size=size, channels=profile.channels)
    else:
        raise ValueError(f"unknown dataset {profile.dataset!r}: expected 'cifar10' or 'digits'")
    train, test = run.capped(profile.train_points), run.capped(profile.eval_points)
    return Data(np.asarray(x_train[:train], np.float32), np.asarray(y_train[:train], np.int64),
                np.asarray(x_test[:test], np.float32), np.asarray(y_test[:test], np.int64))
