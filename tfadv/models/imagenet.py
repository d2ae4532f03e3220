"""The four ImageNet classifiers of Redgrave & Crum (2023), taking RGB pixels in [0, 255].

Each model is `keras.applications.<Arch>` with that architecture's own `preprocess_input` inside the graph,
as in the authors' code, so an attack works, projects and clips in pixel units and the eps values of the
paper's Table 1 (L-inf 8, L2 128) apply unchanged. The paper resizes every input to 224 x 224.

Weights: `"imagenet"` (Keras' download cache, `$KERAS_HOME/models/`, default `~/.keras/models/`), a path to
a local weights file (the official `.h5` files or a Keras `.weights.h5`), or None. Offline, Keras' own fetch
fails with a bare URL error (and deletes a cached file whose checksum does not match); `build_imagenet_model`
checks the cache and the network first and fails in seconds with instructions instead. A local file that is
truncated, an include_top=False ("notop") file or another architecture's is named with what is wrong, its md5
and the official one (`WeightsFileError`), not left to h5py's or Keras' bare error; any file of the same
architecture loads, official or not. `build_application` does all this for any `keras.applications` model
with an `Architecture` entry (the batchnorm paper's VGGs).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from typing import Callable

import h5py
import keras

IMAGE_SIZE = 224
WEIGHTS_HOST = "storage.googleapis.com"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


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
        WEIGHTS_URL + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "9a0d58056eeedaa3f26cb7ebd46da564",
    ),
    "xception": Architecture(
        keras.applications.Xception,
        keras.applications.xception.preprocess_input,
        71,
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        WEIGHTS_URL + "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
        "0a58e3b7378bc2990ea3b43d5981f1f6",
    ),
    "resnet50": Architecture(
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        32,
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        WEIGHTS_URL + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
    ),
    "densenet121": Architecture(
        keras.applications.DenseNet121,
        keras.applications.densenet.preprocess_input,
        32,
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        WEIGHTS_URL + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        "9d60b8095a5708f2dcce2bca79d332c7",
    ),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither cached nor downloadable (offline machine)."""


class WeightsFileError(WeightsUnavailableError):
    """A local weights file that cannot be this model's weights (truncated, notop, another architecture's)."""


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


def _how_to_supply(arch: Architecture, cached: str) -> str:
    return (
        f"To run offline, download {arch.weights_url} (md5 {arch.weights_md5}) on a machine with internet and "
        f"either copy it to {cached} (or to $KERAS_HOME/models/ with KERAS_HOME set before Python starts), "
        f"or pass its path as the weights argument (weights='/path/{arch.weights_file}'; "
        f"runner: --weights-dir DIR holding the official file names)."
    )


def check_cached_weights(name: str, arch: Architecture) -> None:
    """Fail fast, before Keras tries, if `weights="imagenet"` cannot be satisfied for `arch`.

    A cached file with the wrong checksum is reported rather than handed to Keras, which would try to
    re-download it and delete the cached copy when that fails.
    """
    cached = os.path.join(keras_cache_dir(), arch.weights_file)
    if os.path.exists(cached):
        md5 = _md5(cached)
        if md5 == arch.weights_md5:
            return
        raise WeightsUnavailableError(
            f"The cached ImageNet weights {cached} for {name} are incomplete or outdated (md5 "
            f"{md5}, expected {arch.weights_md5}); Keras would delete them and re-download. "
            + _how_to_supply(arch, cached)
        )
    if not can_reach():
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} are not in the Keras cache ({cached}) and {WEIGHTS_HOST} is "
            "unreachable (no internet). " + _how_to_supply(arch, cached)
        )


def check_imagenet_weights(name: str) -> None:
    """`check_cached_weights` for one of the four paper models."""
    check_cached_weights(name, ARCHITECTURES[name])


def load_weights_file(model: keras.Model, path: str, name: str, arch: Architecture) -> None:
    """Load a local weights file into `model` (built by `build_application`), or raise `WeightsFileError`
    saying what the file is: h5py and Keras name neither the file nor the likely cause."""
    problem = _legacy_file_problem(model, path, name)
    if problem is None:
        try:
            model.load_weights(path)
            return
        except (ValueError, OSError, KeyError) as error:  # e.g. a Keras 3 .weights.h5 of another model
            problem = (f"Keras cannot load it ({_keras_reason(error)}): probably another architecture's "
                       "weights, or those of a model built differently")
    raise WeightsFileError(_bad_file_message(path, name, arch, problem))


def _legacy_file_problem(model: keras.Model, path: str, name: str) -> str | None:
    """What makes `path` unloadable into `model`, found before Keras tries: an unreadable (truncated) HDF5
    file, or a legacy .h5 file (the official format) holding another number of layers. None: try loading."""
    try:
        with h5py.File(path, "r") as handle:
            # As Keras' loader: a whole saved model keeps its weights in a "model_weights" group.
            group = handle if _legacy_names(handle) or "model_weights" not in handle else handle["model_weights"]
            saved = _legacy_names(group)
            if saved is None or path.endswith(".weights.h5"):
                return None  # the Keras 3 format, which Keras reads by another loader; its error is wrapped
            saved = [layer for layer in saved if _legacy_names(group[layer], "weight_names")]
    except (OSError, KeyError) as error:  # KeyError: a layer listed in the file but absent from it
        return _unreadable(error)
    # Keras' legacy loader matches layers by order, not by name, so only the count (and the top) is checked.
    expected = [layer.name for layer in model.layers if layer.weights]
    if len(saved) == len(expected):
        return None
    if "predictions" in expected and "predictions" not in saved:
        return (f"it holds {len(saved)} layers with weights and no classifier ('predictions'), where {name} has "
                f"{len(expected)}: an include_top=False (\"notop\") file, without the layer the model ends in")
    return (f"it holds {len(saved)} layers with weights (the first {', '.join(saved[:3])}), where {name} has "
            f"{len(expected)} (the first {', '.join(expected[:3])}): probably another architecture's file")


def _legacy_names(group: h5py.Group, attribute: str = "layer_names") -> list[str] | None:
    """A legacy .h5 name list; Keras splits a long one into `<attribute>0`, `<attribute>1`, ... attributes."""
    if attribute in group.attrs:
        values = list(group.attrs[attribute])
    elif f"{attribute}0" in group.attrs:
        values, chunk = [], 0
        while f"{attribute}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{attribute}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _unreadable(error: Exception) -> str:
    text = _first_line(error)
    sizes = re.search(r"eof = (\d+).*stored_eof = (\d+)", text)
    if sizes:
        return (f"it is truncated, {int(sizes[1]):,} of the {int(sizes[2]):,} bytes its header announces, "
                "as an interrupted download or copy leaves it")
    return f"it is not a readable HDF5 weights file ({text})"


def _bad_file_message(path: str, name: str, arch: Architecture, problem: str) -> str:
    md5 = _md5(path)
    official = f"the official {arch.weights_file} has md5 {arch.weights_md5}"
    return (
        f"The weights file {path} cannot be loaded into {name}: {problem}. Its md5 is {md5}; {official}. "
        f"Download {arch.weights_url} (and check its md5) and pass its path (runner: put it in --weights-dir), "
        f"or weights saved from {name} itself (include_top=True, e.g. by save_weights of a model tfadv built)."
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _keras_reason(error: Exception, limit: int = 300) -> str:
    """Keras' message on one line: its first line alone can end in "for object <Conv2D ...>:" and say nothing."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


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
    return build_application(name, ARCHITECTURES[name], weights, image_size=image_size, logits=logits)


def build_application(
    name: str,
    arch: Architecture,
    weights: str | None = "imagenet",
    *,
    image_size: int = IMAGE_SIZE,
    logits: bool = False,
) -> keras.Model:
    """`build_imagenet_model` for any `keras.applications` classifier described by `arch` (named `name` in
    messages): the same weight checks, preprocessing in the graph and a single-tensor input."""
    if image_size < arch.min_size:
        raise ValueError(f"{name} needs image_size >= {arch.min_size}, got {image_size}")
    if weights == "imagenet":
        check_cached_weights(name, arch)
    elif weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file for {name} not found: {weights}")

    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name="rgb_0_255")
    # Through input_tensor (as the authors did): Keras accepts "imagenet" weights at 224 this way, because
    # its 299-only shape check (InceptionV3, Xception) looks at input_shape, and their tops are global
    # pooling + Dense. A local file is loaded afterwards by load_weights_file, which names what is wrong.
    application = arch.constructor(
        input_tensor=arch.preprocess_input(pixels),
        weights="imagenet" if weights == "imagenet" else None,
        include_top=True,
        classifier_activation=None if logits else "softmax",
    )
    # keras.applications built on input_tensor take their input as a one-element list, so every call on a
    # tensor warned that the structure does not match; the same layers, on the tensor itself, do not.
    model = keras.Model(pixels, application.outputs[0], name=application.name)
    if weights not in (None, "imagenet"):
        load_weights_file(model, weights, name, arch)
    model.trainable = False
    return model
