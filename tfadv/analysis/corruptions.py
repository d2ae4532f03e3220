"""Random input corruptions: additive white Gaussian noise (AWGN) and CIFAR-10-C's noise corruptions.

AWGN is the paper's "additive noise" robustness test: x + N(0, sigma^2) per pixel, clipped back to the
valid input range so the noisy image is still an image. CIFAR-10-C (Hendrycks & Dietterich 2019) is read
from tensorflow-datasets' `cifar10_corrupted/<corruption>_<severity>` configurations.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np

#: Hendrycks & Dietterich's "noise" category; speckle_noise is one of their extra corruptions.
CIFAR10C_NOISE_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise")
CIFAR10C_EXTRA_NOISE = ("speckle_noise",)
CIFAR10C_SEVERITIES = (1, 2, 3, 4, 5)


def awgn(x: np.ndarray, stddev: float, *, clip_min: float | None = 0.0, clip_max: float | None = 1.0,
         seed: int | np.random.Generator = 0) -> np.ndarray:
    """x + N(0, stddev^2) i.i.d. per entry, clipped to [clip_min, clip_max] (None on both: unclipped).

    x must lie in [clip_min, clip_max] (default [0, 1]): pass your data's range, e.g. clip_max=255.
    Seeded, so every model of a comparison sees the same noise draw.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    if not (math.isfinite(stddev) and stddev >= 0):
        raise ValueError(f"stddev must be a finite number >= 0, got {stddev!r}")
    if (clip_min is None) != (clip_max is None):
        raise ValueError("give both clip_min and clip_max, or neither")
    if clip_min is not None and not clip_min < clip_max:
        raise ValueError(f"clip_min must be < clip_max, got {clip_min} and {clip_max}")
    if clip_min is not None:
        _check_in_range(x, clip_min, clip_max)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, stddev, size=x.shape).astype(x.dtype)
    if clip_min is not None:
        noisy = np.clip(noisy, clip_min, clip_max)
    return noisy.astype(x.dtype)


def _check_in_range(x: np.ndarray, clip_min: float, clip_max: float) -> None:
    """Refuse x outside the clip range: clipping would not add noise but move the data into the range
    (images in [0, 255] would come back as a nearly all-ones image)."""
    if x.size == 0:
        return
    low, high = float(np.min(x)), float(np.max(x))
    tolerance = 1e-5 * (clip_max - clip_min)  # float rounding of data scaled into the range
    if low < clip_min - tolerance or high > clip_max + tolerance:
        raise ValueError(
            f"awgn: x lies in [{low:g}, {high:g}], outside [clip_min, clip_max] = [{clip_min:g}, {clip_max:g}]: "
            "pass your data's range as clip_min and clip_max (e.g. clip_max=255 for images in [0, 255]; "
            "stddev is in the same units), or clip_min=None, clip_max=None for unclipped noise"
        )


def cifar10c_config(corruption: str, severity: int) -> str:
    """The tfds name of one CIFAR-10-C corruption at one severity, e.g. "cifar10_corrupted/shot_noise_3"."""
    known = CIFAR10C_NOISE_CORRUPTIONS + CIFAR10C_EXTRA_NOISE
    if corruption not in known:
        raise ValueError(f"corruption must be one of the noise corruptions {known}, got {corruption!r}")
    if severity not in CIFAR10C_SEVERITIES:
        raise ValueError(f"severity must be one of {CIFAR10C_SEVERITIES}, got {severity!r}")
    return f"cifar10_corrupted/{corruption}_{severity}"


def load_cifar10c(corruption: str, severity: int, data_dir: str | os.PathLike | None = None,
                  download: bool = True, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x in [0, 1] float32 NHWC, y int64) of one corruption and severity (the 10,000 test images)."""
    from tfadv.datasets.tfds_data import load_tfds

    split = "test" if limit is None else f"test[:{int(limit)}]"
    x, y = load_tfds(cifar10c_config(corruption, severity), split, data_dir=data_dir, download=download)
    return (np.asarray(x, np.float32) / 255.0), np.asarray(y, np.int64)


def accuracy_over_severities(accuracy: Callable[[np.ndarray, np.ndarray], float], corruption: str,
                             severities: Sequence[int] = CIFAR10C_SEVERITIES,
                             data_dir: str | os.PathLike | None = None, download: bool = True,
                             limit: int | None = None) -> dict[int, float]:
    """accuracy(x, y) on each severity of `corruption`; the paper's Table 4 reports their mean."""
    return {s: float(accuracy(*load_cifar10c(corruption, s, data_dir, download, limit))) for s in severities}
