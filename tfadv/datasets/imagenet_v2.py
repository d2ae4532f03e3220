"""ImageNetV2 (Recht et al. 2019), matched-frequency: 10,000 images, 10 per ImageNet class.

Two sources, one pipeline:
- `"tfds"`: tensorflow-datasets `imagenet_v2/<config>` (split "test"), prepared in `data_dir` or downloaded
  after a fast connectivity probe (`tfadv.datasets.tfds_data.load_builder`);
- a directory in the original tarball layout, `<root>/<class id>/<image>.jpeg`, class ids 0..999 (what the
  Redgrave & Crum loader reads).
Images are decoded to RGB, resized bilinearly to 224 x 224 (as the paper) and returned as float32 in [0, 255].
The order is a fixed shuffle (seed 42, as the authors' `shuffle(10000, seed=42)`) of the sorted file list,
so every process and every shard sees the same images in the same batches. The authors' `list_files` also
shuffled the list without a seed, so their order changed from run to run; tfadv's does not.
A file that cannot be read or decoded raises `CorruptImageError` naming it. The listing reads every file of a
class folder that `tf.io.decode_image` can decode (JPEG, PNG, BMP, GIF, WebP, by suffix or, without one of
their suffixes, by content) and warns (TfadvWarning) with counts of what it leaves out and why: other files,
subfolders of class folders, files outside them, and empty class folders.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from tfadv.datasets.pipeline import without_autotune_thread
from tfadv.validation import TfadvWarning

IMAGE_SIZE = 224
NUM_CLASSES = 1000
SHUFFLE_SEED = 42
TFDS_NAME = "imagenet_v2"
#: The formats tf.io.decode_image reads (it goes by content, not by name).
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp")
_FORMATS = "JPEG, PNG, BMP, GIF or WebP"


class CorruptImageError(ValueError):
    """An image file that cannot be read or decoded."""


def list_image_dir(root: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Sorted image paths under `<root>/<class id>/` and their int64 labels (the directory names).

    Warns (TfadvWarning) with counts of what is left out and why, as nothing in a results table would show it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNetV2 directory not found: {root}")
    paths, labels, left_out = [], [], _LeftOut()
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            left_out.outside.append(entry.name)
            continue
        images = _class_images(entry, left_out)
        paths.extend(images)
        labels.extend([int(entry.name)] * len(images))
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}/<class id>/{left_out.summary()}")
    if left_out:
        classes = _count(len(set(labels)), "class folder")
        warnings.warn(f"ImageNetV2 directory {root}: read {_count(len(paths), 'image')} in {classes}"
                      f"{left_out.summary()}", TfadvWarning, stacklevel=2)
    return paths, np.asarray(labels, np.int64)


@dataclass
class _LeftOut:
    """What a listing did not read, relative to its root, to say so in one warning."""

    not_images: list[str] = field(default_factory=list)
    subfolders: list[str] = field(default_factory=list)
    subfolder_files: int = 0
    outside: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.not_images or self.subfolders or self.outside or self.empty_classes)

    def summary(self) -> str:
        parts = []
        if self.not_images:
            parts.append(f"{_count(len(self.not_images), 'file')} in class folders that "
                         f"{'is' if len(self.not_images) == 1 else 'are'} not {_FORMATS} images by suffix or "
                         f"content ({_examples(self.not_images)})")
        if self.subfolders:
            parts.append(f"{_count(len(self.subfolders), 'subfolder')} of class folders, holding "
                         f"{_count(self.subfolder_files, 'file')} ({_examples(self.subfolders)}): the layout is "
                         "<root>/<class id>/<image>, one level deep")
        if self.outside:
            parts.append(f"{_count(len(self.outside), 'file')} outside the class folders ({_examples(self.outside)})")
        said = f"; left out {', '.join(parts)}" if parts else ""
        if self.empty_classes:
            said += (f"; {_count(len(self.empty_classes), 'class folder')} without a single image "
                     f"({_examples(self.empty_classes)}): ImageNetV2 has 10 images in each of its 1000 classes")
        return said


def _class_images(class_dir: Path, left_out: _LeftOut) -> list[str]:
    """The images of one class folder, sorted; what else it holds goes to `left_out`."""
    if not class_dir.name.isdigit() or not 0 <= int(class_dir.name) < NUM_CLASSES:
        raise ValueError(
            f"{class_dir}: ImageNetV2 class directories must be named by class id 0..{NUM_CLASSES - 1} "
            "(the layout of imagenetv2-matched-frequency.tar.gz)"
        )
    images = []
    for entry in sorted(class_dir.iterdir()):
        name = f"{class_dir.name}/{entry.name}"
        if entry.is_dir():
            left_out.subfolders.append(name)
            left_out.subfolder_files += sum(1 for f in entry.rglob("*") if f.is_file())
        elif _is_image(entry):
            images.append(str(entry))
        else:
            left_out.not_images.append(name)
    if not images:
        left_out.empty_classes.append(class_dir.name)
    return images


def _is_image(path: Path) -> bool:
    """By suffix (a listing opens no image file), else by the first bytes: a JPEG saved without a suffix is
    still a JPEG to tf.io.decode_image."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return _image_signature(handle.read(32))
    except OSError:  # e.g. a dangling symlink without an image suffix: not an image either way
        return False


def _image_signature(head: bytes) -> bool:
    """Whether `head` starts a file in one of the formats tf.io.decode_image reads."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    # BMP: "BM", then a DIB header of one of its versions' sizes (the two letters alone could start a text).
    return head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _examples(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def source_provenance(source: str | os.PathLike = "tfds", config: str = "matched-frequency") -> str:
    """Which images a result rests on, in words for results.csv: tensorflow-datasets' prepared set (tfds
    checks its download against registered checksums), or a directory named by a hash of its listing
    (relative paths and sizes), so that results from two different directories never look alike."""
    if str(source) == "tfds":
        import tensorflow_datasets as tfds

        return f"tensorflow-datasets {TFDS_NAME}/{config} (tfds {tfds.__version__})"
    paths, _ = list_image_dir(source)
    listing = hashlib.sha256()
    for path in paths:
        listing.update(f"{Path(path).relative_to(source)}\t{os.path.getsize(path)}\n".encode())
    return f"directory of {len(paths)} images, listing sha256 {listing.hexdigest()[:16]} (relative paths and sizes)"


def imagenet_v2_records(
    source: str | os.PathLike = "tfds",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    config: str = "matched-frequency",
    seed: int = SHUFFLE_SEED,
    limit: int | None = None,
) -> tf.data.Dataset:
    """Undecoded examples in the fixed evaluation order: (name, encoded bytes, label, index).

    `source` is "tfds" or a directory path; for a directory, name is the file's path and the bytes are
    left empty (read when decoding, so a listing never fails on a bad file). `index` is the example's position in the sorted file list (the
    tfds order for "tfds"): a stable id, e.g. to key an attack's random start. `limit` keeps the first
    `limit` examples of the shuffled order.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images or None, got {limit!r}")
    if str(source) == "tfds":
        records, size = _tfds_records(config, data_dir, download)
    else:
        paths, labels = list_image_dir(source)
        size = len(paths)
        records = tf.data.Dataset.from_tensor_slices(
            (paths, [b""] * size, labels, np.arange(size, dtype=np.int64))
        )
    # One full-size shuffle buffer: the order depends only on the seed, as the authors' shuffle(10000, seed=42).
    records = records.shuffle(size, seed=seed, reshuffle_each_iteration=False)
    if limit is not None:
        records = records.take(limit)
    return records


def _tfds_records(config: str, data_dir, download: bool) -> tuple[tf.data.Dataset, int]:
    import tensorflow_datasets as tfds

    from tfadv.datasets.tfds_data import load_builder

    builder = load_builder(f"{TFDS_NAME}/{config}", data_dir, download)
    ds = builder.as_dataset(split="test", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    size = int(ds.cardinality())
    if size < 1:  # unknown cardinality (mock data): count once
        size = int(ds.reduce(0, lambda n, _: n + 1))
    ds = ds.enumerate().map(lambda i, ex: (ex["file_name"], ex["image"], ex["label"], i))
    return ds, size


def decode_image(encoded: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """JPEG/PNG bytes -> float32 RGB (image_size, image_size, 3) in [0, 255], bilinear resize (no antialias)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")
    return tf.ensure_shape(image, (image_size, image_size, 3))


def decode_record(name: tf.Tensor, data: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Decode one record of `imagenet_v2_records`, reading the file first for a directory source."""
    data = tf.cond(tf.strings.length(data) > 0, lambda: data, lambda: tf.io.read_file(name))
    return decode_image(data, image_size)


def load_imagenet_v2(source: str | os.PathLike = "tfds", *, image_size: int = IMAGE_SIZE, **kwargs) -> tf.data.Dataset:
    """A Dataset of (image float32 [0, 255], label int64) in the fixed order; kwargs as `imagenet_v2_records`.

    A file that cannot be read or decoded stops the iteration with an error naming it (CorruptImageError's
    message inside TensorFlow's error): the bytes are decoded in a py_function, since a graph decode
    error does not say which element failed. `imagenet_v2_batches` is the faster, graph-decoding path.
    """
    records = imagenet_v2_records(source, **kwargs)
    return records.map(
        lambda name, data, label, index: (_decode_naming_file(name, data, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _decode_naming_file(name: tf.Tensor, data: tf.Tensor, image_size: int) -> tf.Tensor:
    def decode(name: tf.Tensor, data: tf.Tensor) -> tf.Tensor:
        path = name.numpy().decode()
        try:
            encoded = data if len(data.numpy()) else tf.io.read_file(name)
            return tf.io.decode_image(encoded, channels=3, expand_animations=False)
        except tf.errors.OpError as error:
            raise CorruptImageError(f"cannot read or decode image file {path}: {_first_line(error)}") from None

    image = tf.py_function(decode, [name, data], tf.uint8)
    image.set_shape((None, None, 3))
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")
    return tf.ensure_shape(image, (image_size, image_size, 3))


def imagenet_v2_batches(
    records: tf.data.Dataset, batch_size: int, *, image_size: int = IMAGE_SIZE, drop_remainder: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decoded numpy batches (x float32 (b, S, S, 3) in [0, 255], labels int64, indices int64).

    `drop_remainder=True` drops a last partial batch, as the authors' loop did, so every batch has
    exactly `batch_size` images; fewer images than one batch is an error, not an empty loop. Decoding
    runs in parallel and keeps the order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"imagenet_v2_batches: batch_size must be an integer >= 1, got {batch_size!r}")
    known = int(records.cardinality())
    if drop_remainder and 0 <= known < batch_size:
        raise ValueError(_too_few(known, batch_size))
    decoded = records.map(
        lambda name, data, label, index: (decode_record(name, data, image_size), label, index),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    # One pass per minibatch cell: its iterator must end without tf.data's wait (pipeline.without_autotune_thread).
    batches = decoded.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    batches = batches.with_options(without_autotune_thread())
    position = 0
    iterator = iter(batches)
    while True:
        try:
            x, y, index = next(iterator)
        except StopIteration:
            if drop_remainder and position == 0:  # unknown cardinality: found out by reading
                raise ValueError(_too_few(None, batch_size)) from None
            return
        except tf.errors.OpError as error:
            _raise_naming_culprit(records, position, batch_size, image_size, error)
        position += batch_size
        yield x.numpy(), y.numpy(), index.numpy()


def _raise_naming_culprit(records, start: int, count: int, image_size: int, error: Exception):
    """Decode the failed batch's files one by one to find and name the bad one."""
    names = []
    for name, data, _, _ in records.skip(start).take(count):
        names.append(name.numpy().decode())
        try:
            decode_record(name, data, image_size)
        except tf.errors.OpError as bad:
            raise CorruptImageError(f"cannot read or decode image file {names[-1]}: {_first_line(bad)}") from error
    raise CorruptImageError(
        f"decoding ImageNetV2 images {start}..{start + count - 1} (files {names}) failed: {_first_line(error)}"
    ) from error


def _too_few(count: int | None, batch_size: int) -> str:
    have = "fewer images" if count is None else f"{count} images"
    return (
        f"imagenet_v2_batches: batch_size={batch_size} with drop_remainder=True, but the records hold {have} "
        "than one batch, so there would be no batch at all: lower batch_size, raise `limit`, or pass "
        "drop_remainder=False"
    )


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
