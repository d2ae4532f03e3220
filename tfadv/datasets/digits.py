"""scikit-learn's handwritten digits (1,797 real 8x8 images, shipped inside the package): offline demo data."""
from __future__ import annotations

from typing import Sequence

import numpy as np

_RAW_MAX = 16.0  # digits pixels are counts 0..16


def load_digits(image_size: int = 8, channels: int = 1, value_range: tuple[float, float] = (0.0, 1.0),
                classes: Sequence[int] | None = None, test_fraction: float = 0.25,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test): float32 NHWC images in `value_range`, int64 labels.

    image_size > 8 upsamples bilinearly; channels=3 replicates the grey channel (for RGB models);
    classes=(3, 7) keeps those digits, relabelled 0..k-1 in the order given. The split is stratified and
    depends only on `seed`.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8 (the digits are 8x8), got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (grey replicated to RGB), got {channels!r}")
    low, high = (float(v) for v in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"value_range must be (low, high) with finite low < high, got {value_range!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")

    data = sklearn_digits()
    x, y = data.images.astype(np.float32) / _RAW_MAX, data.target.astype(np.int64)
    if classes is not None:
        classes = [int(c) for c in classes]
        if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
            raise ValueError(f"classes must list at least two distinct digits in 0..9, got {classes!r}")
        keep = np.isin(y, classes)
        relabel = {digit: new for new, digit in enumerate(classes)}
        x, y = x[keep], np.array([relabel[label] for label in y[keep]], dtype=np.int64)

    x = x[..., None]  # NHWC, one channel
    if image_size > 8:
        import tensorflow as tf

        x = tf.image.resize(x, (image_size, image_size), method="bilinear").numpy()
    x = np.clip(x, 0.0, 1.0) * (high - low) + low
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    x = x.astype(np.float32)

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return x_train, y_train, x_test, y_test
