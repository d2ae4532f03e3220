"""The batchnorm reproduction's data: MNIST-like digits, their upscaled standardised versions, CIFAR-10.

The paper profile reads MNIST, CIFAR-10, CIFAR-10.1 v6 and CIFAR-10-C through tensorflow-datasets
(`run.data_dir`); demo and smoke read scikit-learn's 8x8 digits (offline). --limit caps every set.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv.experiments.run import Run

#: The authors' CIFAR-10 normalisation (cifar_train.py / cifar_eval_advertorch.py); every CIFAR eps is in its units.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
#: The authors' PGD box in normalised units (advertorch clip_min, clip_max).
CIFAR_BOX = (-2.0, 2.0)


def one_per_kind(run: Run, kind: str, key: tuple, make):
    """run.cached, keeping one entry per kind: the paper's 112x112 MNIST alone holds 3 GB."""
    for old in [k for k in run.cache if isinstance(k, tuple) and k[0] == kind and k != (kind, *key)]:
        del run.cache[old]
    return run.cached((kind, *key), make)


def _tfds(name: str, split: str, run: Run) -> tuple[np.ndarray, np.ndarray]:
    from tfadv.datasets.tfds_data import load_tfds

    x, y = load_tfds(name, split, data_dir=run.data_dir)
    return np.asarray(x, np.float32) / 255.0, np.asarray(y, np.int64)


def capped(run: Run, x: np.ndarray, y: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first min(n, --limit) samples (all of them when both are None)."""
    n = run.capped(n)
    return (x, y) if n is None else (x[:n], y[:n])


def digits(run: Run, classes: tuple[int, ...] | None = None):
    """(x_train, y_train, x_test, y_test) in [0, 1] at base resolution (MNIST 28x28, digits 8x8), uncapped;
    `classes` keeps those digits relabelled 0..k-1 (Table 1's 3 vs 7)."""
    def load():
        if run.profile.data == "digits":
            from tfadv.datasets.digits import load_digits

            return load_digits(classes=classes)
        x_tr, y_tr = _tfds("mnist", "train", run)
        x_te, y_te = _tfds("mnist", "test", run)
        if classes is not None:
            relabel = np.full(10, -1)
            relabel[list(classes)] = np.arange(len(classes))
            keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
            x_tr, y_tr, x_te, y_te = x_tr[keep_tr], relabel[y_tr[keep_tr]], x_te[keep_te], relabel[y_te[keep_te]]
        return x_tr, y_tr, x_te, y_te

    return run.cached(("digits", classes), load)


def upscale(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size x size (the input-dimension experiment's larger images)."""
    if x.shape[1] == size:
        return x
    return np.clip(tf.image.resize(x, (size, size), method="bilinear").numpy(), 0.0, 1.0).astype(np.float32)


def standardised(run: Run, scale: int, eval_limit: int | None) -> dict:
    """Images upscaled `scale` times and standardised to zero mean, unit variance over the training set, so
    N(0, 1) noise has the images' first two moments (Section 5). Also the base-resolution test images (the
    noise is drawn on them, then resized) and the valid pixel range in these units."""
    def load():
        x_tr, y_tr, x_te, y_te = digits(run)
        x_tr, y_tr = capped(run, x_tr, y_tr)
        x_te, y_te = capped(run, x_te, y_te, eval_limit)
        size = x_tr.shape[1] * scale
        big = upscale(x_tr, size)
        mean, std = float(big.mean()), float(big.std())
        norm = lambda x: ((x - mean) / std).astype(np.float32)
        return dict(x_train=norm(big), y_train=y_tr, x_test=norm(upscale(x_te, size)), y_test=y_te,
                    x_test_base=norm(x_te), size=size, clip=((0.0 - mean) / std, (1.0 - mean) / std))

    return one_per_kind(run, "standardised", (scale, eval_limit), load)


def cifar_normalise(x: np.ndarray) -> np.ndarray:
    """The authors' transforms.Normalize; a one-channel stand-in (digits) uses CIFAR's first channel."""
    channels = x.shape[-1]
    mean = np.array(CIFAR_MEAN[:channels], np.float32)
    std = np.array(CIFAR_STD[:channels], np.float32)
    return ((x - mean) / std).astype(np.float32)


def cifar(run: Run) -> dict:
    """Normalised CIFAR-10 train / validation / test (plus CIFAR-10.1 v6 on the paper profile), or the digits
    stand-in upsampled to the profile's image size. Clean images are not clipped: the authors' code clips
    only the attacked images (to CIFAR_BOX)."""
    p = run.profile.cifar

    def load():
        tests = {}
        if run.profile.data == "digits":
            from tfadv.datasets.digits import load_digits

            x_tr, y_tr, x_te, y_te = load_digits(image_size=p.image_size)
        else:
            x_tr, y_tr = _tfds("cifar10", "train", run)
            x_te, y_te = _tfds("cifar10", "test", run)
            tests["cifar10_1_v6"] = capped(run, *_tfds("cifar10_1/v6", "test", run), p.eval_limit)
        x_tr, y_tr = capped(run, x_tr, y_tr, p.train_limit)
        n_val = max(1, min(p.validation, len(x_tr) // 10)) if p.validation else 0
        tests["test"] = capped(run, x_te, y_te, p.eval_limit)
        return dict(train=(cifar_normalise(x_tr[n_val:]), y_tr[n_val:]),
                    val=(cifar_normalise(x_tr[:n_val]), y_tr[:n_val]) if n_val else None,
                    tests={name: (cifar_normalise(x), y) for name, (x, y) in tests.items()})

    return run.cached(("cifar",), load)
