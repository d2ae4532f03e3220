"""The paper's ImageNet models: preprocessing inside the graph, local weight files, offline failure, dtype policy."""
import os
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from tfadv.models import imagenet
from tfadv.models.imagenet import WeightsUnavailableError, build_imagenet_model

SIZE = 32  # ResNet50's minimum input size (tf_keras_facts.md §3): small and quick to build


@pytest.fixture(scope="module")
def resnet_and_weights(tmp_path_factory):
    model = build_imagenet_model("resnet50", weights=None, image_size=SIZE)
    path = str(tmp_path_factory.mktemp("weights") / "resnet50.weights.h5")
    model.save_weights(path)
    return model, path


def _pixels(n=2):
    return np.random.default_rng(0).uniform(0.0, 255.0, (n, SIZE, SIZE, 3)).astype("float32")


def test_weights_load_from_local_file(resnet_and_weights):
    model, path = resnet_and_weights
    loaded = build_imagenet_model("resnet50", weights=path, image_size=SIZE)
    x = _pixels()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert not loaded.trainable and loaded.inputs[0].dtype == "float32"
    fresh = build_imagenet_model("resnet50", weights=None, image_size=SIZE)
    assert np.abs(np.asarray(fresh(x)) - np.asarray(model(x))).max() > 0  # the file, not chance, made them equal


def test_weights_provenance_names_the_official_file_by_its_md5_and_any_other_as_not_official(tmp_path):
    path = tmp_path / imagenet.ARCHITECTURES["resnet50"].weights_file
    path.write_bytes(b"weights")
    md5 = "63f4f1e9b725370f459720575cd5f953"  # of b"weights"
    assert imagenet.weights_provenance(str(path), md5) == f"official (local file, md5 {md5})"
    official = imagenet.ARCHITECTURES["resnet50"].weights_md5
    assert imagenet.weights_provenance(str(path), official) == (
        f"NOT the official weights: {path.name} has md5 {md5}, the official file {official}")
    path.write_bytes(b"other weights")  # a file replaced in place is hashed again
    assert imagenet.weights_provenance(str(path), md5).startswith("NOT the official weights")
    assert imagenet.weights_provenance("imagenet", official) == f"official (Keras' cache or download, md5 {official})"
    assert imagenet.weights_provenance(None, official) == "NOT the official weights: none (random initialisation)"


def test_preprocess_input_is_inside_the_graph(resnet_and_weights):
    model, _ = resnet_and_weights
    plain = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3))
    plain.set_weights(model.get_weights())
    x = _pixels()
    expected = plain(keras.applications.resnet50.preprocess_input(x.copy()))  # caffe: RGB->BGR, minus mean
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.slow(seconds=15)
def test_logits_head_and_mixed_precision_policy(resnet_and_weights):
    _, path = resnet_and_weights
    logits = build_imagenet_model("resnet50", weights=path, image_size=SIZE, logits=True)
    out = np.asarray(logits(_pixels()))
    assert not np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = build_imagenet_model("resnet50", weights=path, image_size=SIZE)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert half.inputs[0].dtype == "float32" and half.outputs[0].dtype == "float16"


def test_offline_imagenet_weights_fail_before_keras_tries(monkeypatch, tmp_path):
    monkeypatch.setattr(imagenet, "keras_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(imagenet, "can_reach", lambda *a, **k: False)

    def must_not_build(*args, **kwargs):
        raise AssertionError("the model was built (and a download attempted) despite being offline")

    arch = imagenet.ARCHITECTURES["xception"]
    monkeypatch.setitem(imagenet.ARCHITECTURES, "xception",
                        imagenet.Architecture(must_not_build, *list(arch.__dict__.values())[1:]))
    with pytest.raises(WeightsUnavailableError) as error:
        build_imagenet_model("xception", weights="imagenet")
    message = str(error.value)
    assert "unreachable" in message and arch.weights_url in message and arch.weights_md5 in message
    assert os.path.join(str(tmp_path), arch.weights_file) in message and "KERAS_HOME" in message
    assert "weights=" in message


def test_corrupt_cached_weights_are_reported_not_deleted(monkeypatch, tmp_path):
    monkeypatch.setattr(imagenet, "keras_cache_dir", lambda: str(tmp_path))
    cached = tmp_path / imagenet.ARCHITECTURES["densenet121"].weights_file
    cached.write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailableError, match="incomplete or outdated"):
        build_imagenet_model("densenet121", weights="imagenet")
    assert cached.exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown ImageNet model"):
        build_imagenet_model("vgg16", weights=None)
    with pytest.raises(ValueError, match="at least|>= 75"):
        build_imagenet_model("inception_v3", weights=None, image_size=74)
    with pytest.raises(FileNotFoundError, match="no_such.h5"):
        build_imagenet_model("resnet50", weights="/no/where/no_such.h5", image_size=SIZE)


@pytest.fixture
def no_keras_download(monkeypatch):
    """Fail the test, rather than go online, if Keras' download helper is reached."""
    from keras.src.utils import file_utils

    def get_file(*args, **kwargs):
        raise AssertionError("Keras tried to fetch the weights (and deletes a cached file that fails its md5)")

    monkeypatch.setattr(file_utils, "get_file", get_file)


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_a_cached_file_with_the_wrong_md5_is_reported_and_kept_for_the_batchnorm_vggs_too(
        name, monkeypatch, tmp_path, no_keras_download):
    """The batchnorm paper's VGGs went to Keras, which deleted the cached file and failed with a URL error."""
    from reproduce.batchnorm import imagenet as batchnorm_imagenet

    monkeypatch.setattr(imagenet, "keras_cache_dir", lambda: str(tmp_path))
    cached = tmp_path / batchnorm_imagenet.official_file(name)
    cached.write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailableError) as error:
        batchnorm_imagenet.classifier(name, "imagenet")
    message = str(error.value)
    assert "incomplete or outdated" in message and str(cached) in message and "weights=" in message
    assert imagenet._md5(str(cached)) in message and batchnorm_imagenet.official_md5(name) in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/" in message and f"/{cached.name} " in message
    assert cached.read_bytes() == b"half a download"


def _legacy_save(model, path):
    """Weights in the format of Keras' official files (the legacy .h5 layout)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


def _bad_files(folder, resnet):
    """Each a file that once gave a bare h5py/Keras error, and a phrase the new error must hold."""
    from tfadv.models.digits_cnn import build_digits_cnn

    whole = _legacy_save(resnet, folder / "resnet50.h5")
    truncated = folder / "resnet50_truncated.h5"
    data = Path(whole).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    notop = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    other = build_digits_cnn(SIZE)
    other.save_weights(folder / "digits.weights.h5")
    return [(str(truncated), f"truncated, {len(data) // 2:,} of the {len(data):,} bytes"),
            (_legacy_save(notop, folder / "resnet50_notop.h5"), 'include_top=False ("notop")'),
            (_legacy_save(other, folder / "digits.h5"), "4 layers with weights"),
            (str(folder / "digits.weights.h5"), "Keras cannot load it")]


@pytest.mark.slow(seconds=25)
def test_a_bad_local_weights_file_is_named_with_what_is_wrong_and_its_md5(resnet_and_weights, tmp_path):
    model, _ = resnet_and_weights
    official = imagenet.ARCHITECTURES["resnet50"]
    for path, problem in _bad_files(tmp_path, model):
        with pytest.raises(WeightsUnavailableError) as error:  # the runners print it, not a traceback
            build_imagenet_model("resnet50", weights=path, image_size=SIZE)
        message = str(error.value)
        assert type(error.value).__name__ == "WeightsFileError"
        assert path in message and problem in message, message
        assert imagenet._md5(path) in message and official.weights_md5 in message and official.weights_url in message


def test_a_legacy_h5_file_of_the_same_architecture_loads_though_it_is_not_the_official_file(
        resnet_and_weights, tmp_path):
    model, _ = resnet_and_weights
    path = _legacy_save(model, tmp_path / imagenet.ARCHITECTURES["resnet50"].weights_file)
    loaded = build_imagenet_model("resnet50", weights=path, image_size=SIZE)
    np.testing.assert_array_equal(np.asarray(loaded(_pixels())), np.asarray(model(_pixels())))


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_the_first_call_on_a_tensor_raises_no_input_structure_warning(name):
    """keras.applications built on input_tensor take a one-element list: each call on a tensor warned."""
    if name in imagenet.ARCHITECTURES:
        model = build_imagenet_model(name, weights=None, image_size=SIZE)
    else:  # the batchnorm paper's VGG, by the same builder (at 32 px: the full-size VGG16 is 0.5 GB)
        from reproduce.batchnorm.imagenet import BN_FREE

        model = imagenet.build_application(name, BN_FREE[name], weights=None, image_size=SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model(_pixels(1))
    assert [str(w.message) for w in caught] == []
    assert out.shape == (1, 1000) and not isinstance(model.input, list)
