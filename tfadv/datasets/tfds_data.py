"""tensorflow-datasets, failing in seconds (not after tfds' ~3.4 minutes of retries) when a download is impossible.

Prepared data in `data_dir` is used without touching the network. Otherwise, before downloading, the
dataset's download host is probed with a short timeout; if it is unreachable the error says how to supply
the data offline (see data/README.md).
"""
from __future__ import annotations

import os
import threading
import urllib.parse

import numpy as np

PROBE_TIMEOUT = 3.0  # seconds
FALLBACK_HOST = "storage.googleapis.com"  # where tfds itself looks first; used when a builder lists no URL


class DatasetUnavailableError(RuntimeError):
    """The dataset is neither prepared in data_dir nor downloadable from here."""


def download_host(builder) -> str:
    """Host of the builder's first download URL (from the checksums shipped with tfds), else FALLBACK_HOST."""
    try:
        urls = list(type(builder).url_infos or ())
    except Exception:  # missing or unreadable checksums file: fall back rather than fail the probe itself
        urls = []
    return urllib.parse.urlsplit(urls[0]).hostname if urls else FALLBACK_HOST


def check_connection(host: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise ConnectionError unless https://host answers within `timeout` seconds (honours proxy settings)."""
    import requests  # tfds downloads with requests, so probe the same way (same proxies, same DNS)

    outcome: dict[str, object] = {}

    def probe():
        try:
            requests.head(f"https://{host}/", timeout=timeout, allow_redirects=False)
            outcome["ok"] = True
        except requests.RequestException as e:
            outcome["error"] = e

    # DNS resolution has no timeout of its own; a daemon thread bounds the whole probe.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(2 * timeout)
    if "ok" not in outcome:
        reason = outcome.get("error", f"no answer within {2 * timeout:.0f} s")
        raise ConnectionError(f"cannot reach {host}: {reason}")


def _download_is_mocked() -> bool:
    # Under tfds.testing.mock_data, download_and_prepare is a no-op that touches no network.
    import tensorflow_datasets as tfds

    return tfds.core.DatasetBuilder.download_and_prepare.__name__ == "mock_download_and_prepare"


def _offline_help(name: str, data_dir: str | os.PathLike | None) -> str:
    root = os.fspath(data_dir) if data_dir is not None else os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    return (f"To run offline, prepare '{name}' on a machine with internet (`python data/prepare.py "
            f"--data-dir data/tfds`, or tfds.builder('{name}').download_and_prepare()), copy the prepared "
            f"{name.split('/')[0]}/ directory into {root} (runners: --data-dir), and it is read without any "
            "network access. See data/README.md.")


def load_builder(name: str, data_dir: str | os.PathLike | None = None, download: bool = True):
    """A tfds builder whose data is ready to read: prepared already, or downloaded now after a fast probe."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    where = os.path.abspath(builder.data_dir)
    if not download or builder.is_prepared() or _download_is_mocked():
        return builder
    host = download_host(builder)
    try:
        check_connection(host)
    except ConnectionError as e:
        raise DatasetUnavailableError(
            f"dataset '{name}' is not prepared in {where} and cannot be downloaded ({e}). "
            + _offline_help(name, data_dir)) from None
    builder.download_and_prepare()
    return builder


def load_tfds(name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = True,
              as_supervised: bool = True, batch_size: int | None = None, as_numpy: bool = True,
              dtype: str = "float32", image_size: int | tuple[int, int] | None = None, shuffle_files: bool = False):
    """Load a tfds split as numpy `(x, y)` (x in `dtype` with pixel values 0..255, y int64) or a tf.data.Dataset.

    `name` may carry a config ("cifar10_corrupted/gaussian_noise_5"); `split` may slice ("test[:1000]").
    data_dir=None is tfds' default ($TFDS_DATA_DIR or ~/tensorflow_datasets). image_size resizes bilinearly
    (needed to stack datasets of mixed image sizes such as imagenet_v2 into one array). With as_numpy=False
    the result is a Dataset of (x, y) pairs, batched when batch_size is given; with as_supervised=False it
    is tfds' Dataset of feature dicts, untouched.
    """
    import tensorflow as tf

    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    if as_numpy and not as_supervised:
        raise ValueError("as_numpy=True needs as_supervised=True (numpy arrays hold images and labels only)")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if image_size is not None:
        image_size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)

    builder = load_builder(name, data_dir, download)
    try:
        ds = builder.as_dataset(split=split, as_supervised=as_supervised, shuffle_files=shuffle_files)
    except AssertionError as e:  # tfds' way of saying the data is not in data_dir
        raise DatasetUnavailableError(f"dataset '{name}' is not prepared in {os.path.abspath(builder.data_dir)} "
                                      f"({e}). " + _offline_help(name, data_dir)) from e
    if not as_supervised:
        return ds

    def convert(x, y):
        x = tf.cast(x, tf.float32)
        if image_size is not None:
            x = tf.image.resize(x, image_size, method="bilinear")
        if dtype == "uint8":
            x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
        return x, tf.cast(y, tf.int64)

    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if not as_numpy:
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE) if batch_size else ds
    if None in ds.element_spec[0].shape[:2]:
        raise ValueError(f"images of '{name}' vary in size; pass image_size= to stack them into one array")
    xs, ys = [], []
    for x, y in ds.batch(batch_size or 256).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DatasetUnavailableError(f"split {split!r} of '{name}' is empty")
    return np.concatenate(xs), np.concatenate(ys)
