"""The four ImageNet classifiers of Redgrave & Crum (2023), taking RGB pixels in [0, 255].

Each model is `keras.applications.<Arch>` with that architecture's own `preprocess_input` inside the graph,
as in the authors' code, so an attack works, projects and clips in pixel units and the eps values of the
paper's Table 1 (L-inf 8, L2 128) apply unchanged. The paper resizes every input to 224 x 224.

Weights: `"imagenet"` (Keras' download cache, `$KERAS_HOME/models/`, default `~/.keras/models/`), a path to
a local weights file (the official `.h5` files or a Keras `.weights.h5`), or None. Offline, Keras' own fetch
fails with a bare URL error (and deletes a cached file whose checksum does not match); `build_imagenet_model`
checks the cache and the network first and fails in seconds with instructions instead.
"""
from __future__ import annotations

import functools
import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Callable

import keras

IMAGE_SIZE = 224
WEIGHTS_HOST = "storage.googleapis.com"
_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Architecture:
    constructor: Callable[..., keras.Model]
    preprocess_input: Callable
    min_size: int
    weights_file: str  # file name in Keras' cache (include_top=True)
    weights_url: str
    weights_md5: str


ARCHITECTURES: dict[str, Architecture] = {
    "inception_v3": Architecture(
        keras.applications.InceptionV3,
        keras.applications.inception_v3.preprocess_input,
        75,
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        _WEIGHTS_URL + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "9a0d58056eeedaa3f26cb7ebd46da564",
    ),
    "xception": Architecture(
        keras.applications.Xception,
        keras.applications.xception.preprocess_input,
        71,
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        _WEIGHTS_URL + "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
        "0a58e3b7378bc2990ea3b43d5981f1f6",
    ),
    "resnet50": Architecture(
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        32,
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        _WEIGHTS_URL + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
    ),
    "densenet121": Architecture(
        keras.applications.DenseNet121,
        keras.applications.densenet.preprocess_input,
        32,
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        _WEIGHTS_URL + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        "9d60b8095a5708f2dcce2bca79d332c7",
    ),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither cached nor downloadable (offline machine)."""


def keras_cache_dir() -> str:
    """Where `keras.utils.get_file(..., cache_subdir="models")` looks: `$KERAS_HOME/models` or `~/.keras/models`."""
    try:
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:  # pragma: no cover - private accessor moved
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(os.path.expanduser(home), "models")


def can_reach(host: str = WEIGHTS_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """One quick TCP connection attempt (no retries), so an offline machine is detected in seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _md5_of_version(path: str, size: int, mtime_ns: int) -> str:
    return _md5(path)


def weights_provenance(weights: str | None, official_md5: str) -> str:
    """What a result rests on, in words for results.csv: the official weights (md5 checked), other weights
    (named by their md5, so that two runs on different files never look alike), or none."""
    if weights is None:
        return "NOT the official weights: none (random initialisation)"
    if weights == "imagenet":
        return f"official (Keras' cache or download, md5 {official_md5})"
    info = os.stat(weights)
    md5 = _md5_of_version(os.path.abspath(weights), info.st_size, info.st_mtime_ns)
    if md5 == official_md5:
        return f"official (local file, md5 {md5})"
    return f"NOT the official weights: {os.path.basename(weights)} has md5 {md5}, the official file {official_md5}"


def _how_to_supply(name: str, arch: Architecture, cached: str) -> str:
    return (
        f"To run offline, download {arch.weights_url} (md5 {arch.weights_md5}) on a machine with internet and "
        f"either copy it to {cached} (or to $KERAS_HOME/models/ with KERAS_HOME set before Python starts), "
        f"or pass its path: build_imagenet_model({name!r}, weights='/path/{arch.weights_file}') "
        f"(runner: --weights-dir DIR holding the official file names)."
    )


def check_imagenet_weights(name: str) -> None:
    """Fail fast, before Keras tries, if `weights="imagenet"` cannot be satisfied.

    A cached file with the wrong checksum is reported rather than handed to Keras, which would try to
    re-download it and delete the cached copy when that fails.
    """
    arch = ARCHITECTURES[name]
    cached = os.path.join(keras_cache_dir(), arch.weights_file)
    if os.path.exists(cached):
        if _md5(cached) == arch.weights_md5:
            return
        raise WeightsUnavailableError(
            f"The cached ImageNet weights {cached} for {name} are incomplete or outdated (md5 "
            f"{_md5(cached)}, expected {arch.weights_md5}); Keras would delete them and re-download. "
            + _how_to_supply(name, arch, cached)
        )
    if not can_reach():
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} are not in the Keras cache ({cached}) and {WEIGHTS_HOST} is "
            "unreachable (no internet). " + _how_to_supply(name, arch, cached)
        )


def build_imagenet_model(
    name: str,
    weights: str | None = "imagenet",
    *,
    image_size: int = IMAGE_SIZE,
    logits: bool = False,
) -> keras.Model:
    """A frozen ImageNet classifier taking float32 RGB in [0, 255], shape (N, image_size, image_size, 3).

    `name`: one of "inception_v3", "xception", "resnet50", "densenet121". `logits=True` drops the final
    softmax (`classifier_activation=None`); the default keeps it, as the paper's models do. The layers are
    built under the current `keras.mixed_precision` policy (set it before calling); the input stays float32,
    and under "mixed_float16" the output is float16, exactly as `keras.applications` gives it.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown ImageNet model {name!r}; choose from {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if image_size < arch.min_size:
        raise ValueError(f"{name} needs image_size >= {arch.min_size}, got {image_size}")
    if weights == "imagenet":
        check_imagenet_weights(name)
    elif weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file for {name} not found: {weights}")

    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name="rgb_0_255")
    # Through input_tensor (as the authors did): Keras accepts "imagenet" weights at 224 this way, because
    # its 299-only shape check looks at input_shape, and every top here is global pooling + Dense.
    model = arch.constructor(
        input_tensor=arch.preprocess_input(pixels),
        weights=weights,
        include_top=True,
        classifier_activation=None if logits else "softmax",
    )
    model.trainable = False
    return model
