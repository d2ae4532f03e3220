"""The images and models every cell attacks: the digits CNN (demo, smoke) or the paper's ImageNet models.

The digits CNN is trained once per output folder in `prepare` and written as an artifact (atomically), so
every --jobs process and every resumed run attacks the very same weights. Images come in a fixed order with
stable indices (the key of each image's random start), as numpy batches of float32 RGB in [0, 255].
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator

import keras
import numpy as np

from reproduce.minibatch.profiles import DIGITS_MODEL, PRECISIONS, imagenet_images
from tfadv.experiments import Run, atomic
from tfadv.precision import dtype_policy
from tfadv.validation import TfadvWarning

DIGITS_WEIGHTS = "digits_cnn.weights.h5"
DIGITS_FACTS = "digits_cnn.json"
DIGITS_CLASSES, IMAGENET_CLASSES = 10, 1000
Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # x (b, S, S, 3) in [0, 255], labels, image indices


def prepare(run: Run) -> None:
    """Once per process: the digits CNN (trained here the first time), and the image count checked against
    the largest batch size before any attack runs."""
    if DIGITS_MODEL in run.profile.models and run.find_artifact(DIGITS_WEIGHTS) is None:
        train_digits(run)


def train_digits(run: Run) -> None:
    """Train and calibrate the digits CNN in float32, then write its weights and facts as artifacts."""
    from tfadv.models.digits_cnn import train_digits_cnn

    x_train, y_train, x_test, y_test = _digits_split(run)
    epochs = run.capped(run.profile.train_epochs)
    run.log(f"training the digits CNN ({epochs} epochs) once for this output folder")
    with dtype_policy("float32"):
        model, facts = train_digits_cnn(x_train, y_train, epochs=epochs, seed=run.seed)
    facts["test_accuracy"] = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    # Facts first: a weights file present means both are (prepare looks for the weights).
    atomic.write_text(run.artifact(DIGITS_FACTS), json.dumps(facts, indent=1))
    atomic.save_weights(model, run.artifact(DIGITS_WEIGHTS))


def digits_facts(run: Run) -> dict | None:
    path = run.find_artifact(DIGITS_FACTS)
    return json.loads(path.read_text()) if path else None


def classes(model_name: str) -> int:
    return DIGITS_CLASSES if model_name == DIGITS_MODEL else IMAGENET_CLASSES


# ------------------------------------------------------------------------------------------- models
def model(run: Run, name: str, precision: str, sharpness: float = 1.0) -> keras.Model:
    """The frozen classifier `name` built under `precision`'s dtype policy (once per process), its logits
    multiplied by `sharpness` (the regime search: same predictions, sharper softmax)."""
    def build():
        built = _build(run, name, PRECISIONS[precision][0])
        if sharpness != 1.0:
            if name != DIGITS_MODEL:
                raise ValueError(f"the logit scale is a knob of the digits demo, not of {name}")
            head = built.layers[-1]  # Dense(softmax): scaling kernel and bias scales the logits
            head.set_weights([w * sharpness for w in head.get_weights()])
        return built
    return run.cached(("model", name, precision, sharpness), build)


def _build(run: Run, name: str, policy: str) -> keras.Model:
    with dtype_policy(policy):
        if name == DIGITS_MODEL:
            from tfadv.models.digits_cnn import build_digits_cnn

            built = build_digits_cnn(run.profile.image_size)
            weights = run.find_artifact(DIGITS_WEIGHTS)
            if weights is None:
                raise FileNotFoundError(f"no trained digits CNN in {run.out}: prepare did not run")
            built.load_weights(weights)
            built.trainable = False
            return built
        from tfadv.models.imagenet import build_imagenet_model

        return build_imagenet_model(name, _weights(run, name), image_size=run.profile.image_size)


def _weights(run: Run, name: str) -> str:
    """An ImageNet model's weights: the official file in --weights-dir, else "imagenet" (Keras' cache)."""
    from tfadv.models.imagenet import ARCHITECTURES

    if run.options.get("weights_dir"):
        return os.path.join(run.options["weights_dir"], ARCHITECTURES[name].weights_file)
    return "imagenet"


def weights_provenance(run: Run, name: str) -> str:
    """Which weights a cell's model has (results.csv: weights): official, or another file named by its md5."""
    if name == DIGITS_MODEL:
        return "trained by this run"
    from tfadv.models.imagenet import ARCHITECTURES
    from tfadv.models.imagenet import weights_provenance as provenance

    return provenance(_weights(run, name), ARCHITECTURES[name].weights_md5)


# ------------------------------------------------------------------------------------------- images
def image_count(run: Run, model_name: str) -> int:
    """How many images the profile attacks (after --limit)."""
    if model_name == DIGITS_MODEL:
        return len(_digits_test(run)[0])
    return run.cached("imagenet_count", lambda: int(_imagenet_records(run).cardinality()))


def batches(run: Run, model_name: str, count: int, size: int) -> Iterator[Batch]:
    """The first `count` images in batches of `size` (the last one shorter if `size` does not divide it)."""
    if model_name == DIGITS_MODEL:
        x, y, ids = _digits_test(run)
        for start in range(0, count, size):
            stop = min(start + size, count)
            yield x[start:stop], y[start:stop], ids[start:stop]
        return
    from tfadv.datasets.imagenet_v2 import imagenet_v2_batches

    yield from imagenet_v2_batches(_imagenet_records(run).take(count), size, image_size=run.profile.image_size,
                                   drop_remainder=False)


def _digits_split(run: Run):
    from tfadv.datasets.digits import load_digits

    return run.cached("digits", lambda: load_digits(image_size=run.profile.image_size, channels=3,
                                                    value_range=(0.0, 255.0), seed=run.seed))


def _digits_test(run: Run) -> Batch:
    _, _, x_test, y_test = _digits_split(run)
    n = run.capped(run.profile.images)
    if n is not None and n > len(x_test):
        raise SystemExit(f"minibatch: the profile asks for {n} images but the digits test split has "
                         f"{len(x_test)}")
    n = len(x_test) if n is None else n
    return x_test[:n], y_test[:n], np.arange(n, dtype=np.int64)


def images_provenance(run: Run, model_name: str) -> str:
    """Which images a cell attacks (results.csv: data): the digits, or ImageNetV2 from tfds or a directory."""
    if model_name == DIGITS_MODEL:
        return "scikit-learn's digits"
    from tfadv.datasets.imagenet_v2 import source_provenance

    return run.cached("imagenet provenance", lambda: source_provenance(run.options.get("imagenet_dir") or "tfds"))


def _imagenet_records(run: Run):
    from tfadv.datasets.imagenet_v2 import imagenet_v2_records

    source = run.options.get("imagenet_dir") or "tfds"
    _warn_unless_the_paper_images(run)
    return imagenet_v2_records(source, data_dir=run.data_dir, limit=run.capped(run.profile.images))


def _warn_unless_the_paper_images(run: Run) -> None:
    """The report's warning (profiles.imagenet_images) when an --imagenet-dir is not ImageNetV2's 1000 x 10, given
    as the images are read, before hours of attacks on them: each cell records it (the folder is listed once)."""
    if run.profile.images is None and run.options.get("imagenet_dir"):
        warning = run.cached(("imagenet images",), lambda: imagenet_images(run)[1])
        if warning:
            warnings.warn(warning, TfadvWarning, stacklevel=3)
