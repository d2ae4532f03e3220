"""ImageNetV2 loader on directories in the tarball layout that the tests write, and on tfds mock data."""
import numpy as np
import pytest
import tensorflow as tf

from tfadv.datasets import imagenet_v2
from tfadv.datasets.imagenet_v2 import CorruptImageError, imagenet_v2_batches, imagenet_v2_records


def _write_jpeg(path, height, width, value):
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return pixels


@pytest.fixture()
def image_dir(tmp_path):
    """Classes 3, 17 and 999 with images of different sizes, plus a non-image file that must be left out."""
    for label, count in ((3, 3), (17, 2), (999, 3)):
        (tmp_path / str(label)).mkdir()
        for k in range(count):
            _write_jpeg(tmp_path / str(label) / f"{k:04d}.jpeg", 20 + 7 * k, 31 - 3 * k, label * 10 + k)
    (tmp_path / "17" / "notes.txt").write_text("not an image")
    return tmp_path


def _all(records, batch_size, **kwargs):
    batches = list(imagenet_v2_batches(records, batch_size, **kwargs))
    return [np.concatenate(parts) for parts in zip(*batches)] if batches else [np.zeros(0)] * 3


def test_directory_layout_labels_size_range_and_order(image_dir):
    x, y, index = _all(imagenet_v2_records(image_dir), batch_size=1, image_size=32)
    paths, labels = imagenet_v2.list_image_dir(image_dir)
    assert len(paths) == 8 and x.shape == (8, 32, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0 and x.max() > 200.0
    np.testing.assert_array_equal(y, labels[index])  # labels come from the class directory names
    assert sorted(index.tolist()) == list(range(8)) and index.tolist() != list(range(8))  # shuffled
    # Fixed seed: the same order every time; another seed gives another order.
    again = _all(imagenet_v2_records(image_dir), batch_size=4, image_size=32)
    np.testing.assert_array_equal(again[2], index)
    np.testing.assert_allclose(again[0], x, atol=1e-4)
    other = _all(imagenet_v2_records(image_dir, seed=7), batch_size=1, image_size=32)
    assert other[2].tolist() != index.tolist()


def test_bilinear_resize_matches_tensorflow(image_dir):
    x, _, index = _all(imagenet_v2_records(image_dir, limit=1), batch_size=1)
    path = imagenet_v2.list_image_dir(image_dir)[0][index[0]]
    raw = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    expected = tf.image.resize(tf.cast(raw, tf.float32), (224, 224), method="bilinear").numpy()
    assert x.shape == (1, 224, 224, 3)
    np.testing.assert_allclose(x[0], expected, atol=1e-4)


def test_last_partial_batch_dropped_and_limit(image_dir):
    x, _, _ = _all(imagenet_v2_records(image_dir), batch_size=3, image_size=16)
    assert x.shape[0] == 6  # 8 images in batches of 3: the partial batch of 2 is dropped, as the authors did
    x, _, _ = _all(imagenet_v2_records(image_dir, limit=5), batch_size=2, image_size=16, drop_remainder=False)
    assert x.shape[0] == 5


def test_corrupt_file_is_named(image_dir):
    bad = image_dir / "17" / "0001.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(CorruptImageError, match=r"cannot read or decode image file \S*17/0001.jpeg"):
        for _ in imagenet_v2_batches(imagenet_v2_records(image_dir), 4, image_size=16):
            pass


def test_unreadable_file_is_named(image_dir):
    # A dangling symlink: listed like an image, but reading it fails.
    (image_dir / "3" / "0009.jpeg").symlink_to(image_dir / "missing.jpeg")
    with pytest.raises(CorruptImageError, match=r"cannot read or decode image file \S*3/0009.jpeg"):
        for _ in imagenet_v2_batches(imagenet_v2_records(image_dir), 1, image_size=16):
            pass


def _formats(folder):
    """One image in each format tf.io.decode_image reads besides JPEG, and a JPEG without a suffix (Pillow,
    which matplotlib installs, writes them; TensorFlow encodes only JPEG and PNG)."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (12, 9, 3), dtype=np.uint8)
    for name, fmt in (("a.bmp", "BMP"), ("b.webp", "WEBP"), ("c.gif", "GIF"), ("d.PNG", "PNG"), ("e", "JPEG")):
        Image.fromarray(pixels).save(folder / name, fmt)


def test_every_image_format_tensorflow_decodes_is_read_even_without_a_suffix(image_dir):
    """.bmp, .webp, .gif and a suffixless JPEG were left out without a word."""
    _formats(image_dir / "17")
    paths, _ = imagenet_v2.list_image_dir(image_dir)
    names = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in paths}
    assert {"17/a.bmp", "17/b.webp", "17/c.gif", "17/d.PNG", "17/e"} <= names and len(paths) == 13
    x, y, _ = _all(imagenet_v2_records(image_dir), batch_size=13, image_size=8)  # and each one decodes
    assert x.shape == (13, 8, 8, 3) and (y == 17).sum() == 7


def test_what_the_listing_leaves_out_is_counted_in_a_warning(image_dir):
    """A nested folder, files outside the class folders and an empty class folder were passed over silently."""
    from tfadv.validation import TfadvWarning

    (image_dir / "3" / "extra").mkdir()
    _write_jpeg(image_dir / "3" / "extra" / "b.jpeg", 8, 8, 0)
    _write_jpeg(image_dir / "3" / "extra" / "c.jpeg", 8, 8, 1)
    (image_dir / "README.txt").write_text("ImageNetV2")
    (image_dir / "500").mkdir()
    (image_dir / "17" / "BMW.txt").write_text("BM but no bitmap")  # BMP's two letters alone are not a BMP
    with pytest.warns(TfadvWarning) as caught:
        paths, _ = imagenet_v2.list_image_dir(image_dir)
    assert len(paths) == 8 and len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"ImageNetV2 directory {image_dir}: read 8 images in 3 class folders; left out ")
    assert "2 files in class folders that are not JPEG, PNG, BMP, GIF or WebP images" in message
    assert "(17/BMW.txt, 17/notes.txt)" in message
    assert "1 subfolder of class folders, holding 2 files (3/extra)" in message
    assert "1 file outside the class folders (README.txt)" in message
    assert "1 class folder without a single image (500)" in message


def test_a_clean_directory_lists_without_a_warning(image_dir):
    import warnings

    (image_dir / "17" / "notes.txt").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(imagenet_v2.list_image_dir(image_dir)[0]) == 8


def test_bad_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        imagenet_v2_records(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no images"):
        imagenet_v2_records(tmp_path)
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(ValueError, match="n01440764.*class id"):
        imagenet_v2_records(tmp_path)


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        records = imagenet_v2_records("tfds", download=False)
        x, y, index = _all(records, batch_size=2, image_size=24)
    assert x.shape == (6, 24, 24, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and ((0 <= y) & (y < 1000)).all()
    assert sorted(index.tolist()) == list(range(6))


def test_load_imagenet_v2_names_a_corrupt_file(image_dir):
    """The issue's probe: iterating load_imagenet_v2 over a corrupt file gave a bare InvalidArgumentError."""
    (image_dir / "17" / "0001.jpeg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(tf.errors.OpError, match=r"cannot read or decode image file \S*17/0001.jpeg"):
        for _ in imagenet_v2.load_imagenet_v2(image_dir, image_size=16):
            pass


def test_load_imagenet_v2_matches_the_batched_path(image_dir):
    x, y, _ = _all(imagenet_v2_records(image_dir), batch_size=1, image_size=16)
    images, labels = zip(*[(a.numpy(), b.numpy()) for a, b in imagenet_v2.load_imagenet_v2(image_dir, image_size=16)])
    np.testing.assert_allclose(np.stack(images), x, atol=1e-4)
    np.testing.assert_array_equal(labels, y)


def test_a_batch_larger_than_the_data_is_an_error_not_an_empty_loop(image_dir):
    with pytest.raises(ValueError, match=r"batch_size=64 with drop_remainder=True, but the records hold 8 images"):
        next(imagenet_v2_batches(imagenet_v2_records(image_dir), 64, image_size=16))
    x, _, _ = _all(imagenet_v2_records(image_dir), batch_size=64, image_size=16, drop_remainder=False)
    assert x.shape[0] == 8
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        next(imagenet_v2_batches(imagenet_v2_records(image_dir), "4", image_size=16))


def test_an_unknown_record_count_that_fills_no_batch_is_an_error_too(image_dir):
    unknown = imagenet_v2_records(image_dir).filter(lambda *record: True)  # cardinality unknown
    with pytest.raises(ValueError, match="fewer images than one batch"):
        list(imagenet_v2_batches(unknown, 64, image_size=16))


def test_a_directory_is_named_by_its_listing_so_another_copy_never_looks_alike(image_dir):
    said = imagenet_v2.source_provenance(image_dir)
    count = sum(1 for p in image_dir.rglob("*") if p.suffix == ".jpeg")
    assert said.startswith(f"directory of {count} images, listing sha256 ")
    assert imagenet_v2.source_provenance(str(image_dir)) == said  # a path, as str or Path
    extra = image_dir / "999" / "extra.jpeg"
    extra.parent.mkdir(exist_ok=True)
    _write_jpeg(extra, 8, 8, 1)
    assert imagenet_v2.source_provenance(image_dir) != said  # an image more
    extra.unlink()
    assert imagenet_v2.source_provenance(image_dir) == said
    first = sorted(image_dir.rglob("*.jpeg"))[0]
    first.write_bytes(first.read_bytes() + b"\0")  # same names, one file changed in size
    assert imagenet_v2.source_provenance(image_dir) != said
    assert imagenet_v2.source_provenance("tfds").startswith("tensorflow-datasets imagenet_v2/matched-frequency (tfds ")


def test_batches_are_read_without_the_autotune_thread(image_dir, monkeypatch):
    """Each cell's pass ends by destroying its iterator, which must not wait for tf.data's autotuning thread
    (tfadv.datasets.pipeline.without_autotune_thread)."""
    applied = []
    with_options = tf.data.Dataset.with_options

    def recording(dataset, options, name=None):
        applied.append(options.autotune.enabled)
        return with_options(dataset, options, name=name)

    monkeypatch.setattr(tf.data.Dataset, "with_options", recording)
    x, _, _ = _all(imagenet_v2_records(image_dir), batch_size=4, image_size=16)
    assert len(x) == 8 and False in applied
