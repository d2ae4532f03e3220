"""Dataset loaders: scikit-learn digits (the demo data) and tfds with a fast offline failure."""
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits as sklearn_digits

from tfadv.datasets import tfds_data
from tfadv.datasets.digits import load_digits
from tfadv.datasets.tfds_data import DatasetUnavailableError, check_connection, download_host, load_tfds


def test_digits_default_shapes_dtypes_range_and_stratified_split():
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == pytest.approx(0.25 * 1797, abs=1)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    test_share = np.bincount(y_test, minlength=10) / np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(test_share - 0.25) < 0.02)


def test_digits_split_is_deterministic_per_seed():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_digits_class_subset_is_relabelled_in_given_order():
    x_train, y_train, x_test, y_test = load_digits(classes=(7, 3), value_range=(0.0, 16.0))
    raw = sklearn_digits()
    assert set(np.unique(y_train)) == {0, 1}
    sevens = {img.tobytes() for img in raw.images[raw.target == 7].astype(np.float32)}
    labelled_zero = [img[..., 0].tobytes() for img in np.concatenate([x_train, x_test])[
        np.concatenate([y_train, y_test]) == 0]]
    assert len(labelled_zero) == len(sevens) and set(labelled_zero) <= sevens


def test_digits_upsampled_rgb_in_pixel_range():
    x_train, _, x_test, _ = load_digits(image_size=32, channels=3, value_range=(0.0, 255.0))
    assert x_train.shape[1:] == (32, 32, 3) and x_train.dtype == np.float32
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])
    assert x_train.min() >= 0.0 and x_train.max() <= 255.0 and x_train.max() > 200.0
    # Bilinear upsampling creates intermediate values, unlike nearest-neighbour repetition.
    assert len(np.unique(x_train[0])) > len(np.unique(load_digits()[0][0]))


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 4}, "image_size"), ({"channels": 2}, "channels"), ({"value_range": (1.0, 0.0)}, "value_range"),
    ({"classes": (3,)}, "classes"), ({"classes": (3, 3)}, "classes"), ({"classes": (3, 10)}, "classes"),
    ({"test_fraction": 1.0}, "test_fraction"),
])
def test_digits_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits(**kwargs)


def test_load_tfds_mock_data_returns_numpy_or_dataset(tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        x, y = load_tfds("cifar10", "test", data_dir=tmp_path)
        assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 255.0
        x, y = load_tfds("imagenet_v2/matched-frequency", "test", image_size=24, dtype="uint8")
        assert x.shape == (5, 24, 24, 3) and x.dtype == np.uint8
        with pytest.raises(ValueError, match="image_size"):
            load_tfds("imagenet_v2/matched-frequency", "test")
        ds = load_tfds("mnist", "test", as_numpy=False, batch_size=2)
        assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
        assert [len(b) for b, _ in ds] == [2, 2, 1]


def test_offline_download_fails_fast_with_instructions(tmp_path, monkeypatch):
    def unreachable(host, timeout=None):
        raise ConnectionError(f"cannot reach {host}: simulated offline")

    def must_not_download(self, *args, **kwargs):
        raise AssertionError("download_and_prepare must not run when the host is unreachable")

    monkeypatch.setattr(tfds_data, "check_connection", unreachable)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", must_not_download)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as info:
        load_tfds("cifar10", "test", data_dir=tmp_path / "empty", download=True)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "www.cs.toronto.edu" in message and str(tmp_path / "empty") in message and "data/README.md" in message


def test_download_false_on_empty_data_dir_names_it(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="not prepared.*data/README.md"):
        load_tfds("mnist", "test", data_dir=tmp_path, download=False)


class TinyDigits(tfds.core.GeneratorBasedBuilder):
    """A real (not mocked) tfds dataset, prepared in the test without any download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 1)),
                                                 "label": tfds.features.ClassLabel(num_classes=10)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples()}

    def _generate_examples(self):
        for i in range(6):
            yield i, {"image": np.full((8, 8, 1), 10 * i, np.uint8), "label": i}


def test_prepared_data_is_read_without_network_check(tmp_path, monkeypatch):
    TinyDigits(data_dir=str(tmp_path)).download_and_prepare()

    def no_network(host, timeout=None):
        raise AssertionError("prepared data must not trigger a network check")

    monkeypatch.setattr(tfds_data, "check_connection", no_network)
    x, y = load_tfds("tiny_digits", "test", data_dir=tmp_path, dtype="uint8")
    assert x.dtype == np.uint8 and x.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(np.sort(y), np.arange(6))
    np.testing.assert_array_equal(x[:, 0, 0, 0], 10 * y)


def test_check_connection_times_out_fast():
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="does-not-exist.invalid"):
        check_connection("does-not-exist.invalid", timeout=0.5)
    assert time.monotonic() - start < 5


def test_download_host_comes_from_builder_urls():
    assert download_host(tfds.builder("cifar10")) == "www.cs.toronto.edu"
    assert download_host(tfds.builder("imagenet_v2/matched-frequency")) == "huggingface.co"
