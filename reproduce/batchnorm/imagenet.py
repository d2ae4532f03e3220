"""Table 5 (paper profile only): pretrained ImageNet models with and without BN, on ImageNetV2.

The paper compares torchvision's VGG11-19 with their "_bn" twins. keras.applications has no VGG with BN, so
tfadv compares the BN-free VGG16 / VGG19 with BN networks of similar clean accuracy (ResNet50, DenseNet121):
architecture differs as well as BN, so this can at best partly support the paper's claim (claims.py says so).
Each model takes RGB pixels in [0, 255] with its own preprocessing inside the graph and returns logits.
"""
from __future__ import annotations

import os

import keras
import numpy as np

from reproduce.batchnorm.training import rows
from tfadv.analysis import corruptions
from tfadv.attacks import PGD
from tfadv.experiments.run import Run
from tfadv.models import imagenet as applications

#: keras.applications models without BN, described as tfadv.models.imagenet describes the paper's four, so that
#: one builder checks their weights the same way: official file (Keras' cache name), URL and md5 (Keras' own
#: check of its download). include_top=True VGGs end in Flatten + Dense, so their official weights need 224.
BN_FREE = {
    "vgg16": applications.Architecture(
        keras.applications.VGG16, keras.applications.vgg16.preprocess_input, 32,
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        applications.WEIGHTS_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b"),
    "vgg19": applications.Architecture(
        keras.applications.VGG19, keras.applications.vgg19.preprocess_input, 32,
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        applications.WEIGHTS_URL + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "cbe5617147190e668d6c5d5026f83318"),
}
WITH_BN = ("resnet50", "densenet121")
BATCH = 32


def architecture(name: str) -> applications.Architecture:
    """A model's constructor, preprocessing and official weights (file, URL, md5)."""
    return BN_FREE[name] if name in BN_FREE else applications.ARCHITECTURES[name]


def official_file(name: str) -> str:
    """The file name of a model's official ImageNet weights in Keras' cache."""
    return architecture(name).weights_file


def official_md5(name: str) -> str:
    """The md5 of that file (Keras' own check of its download)."""
    return architecture(name).weights_md5


def weights_file(name: str, weights_dir: str | None) -> str:
    """The official weight file in --weights-dir DIR, else "imagenet" (Keras' cache or download)."""
    file = official_file(name)
    if weights_dir is None:
        return "imagenet"
    path = os.path.join(weights_dir, file)
    if not os.path.isfile(path):
        raise applications.WeightsUnavailableError(f"--weights-dir {weights_dir}: no {file} for {name} there")
    return path


def classifier(name: str, weights: str | None) -> keras.Model:
    """A frozen logits model on [0, 255] RGB at 224 x 224 (from_logits=True for every attack on it).

    Built by the builder of the paper's four models for VGGs too, so a cached file with the wrong md5 is
    reported (not deleted by Keras' re-download) and a bad local file is named with what is wrong with it.
    """
    return applications.build_application(name, architecture(name), weights, logits=True)


def images(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The first `images` of ImageNetV2 matched-frequency in its fixed order (tfds, or --imagenet-dir)."""
    from tfadv.datasets.imagenet_v2 import imagenet_v2_batches, imagenet_v2_records

    def load():
        records = imagenet_v2_records(run.options["imagenet_dir"] or "tfds", data_dir=run.data_dir,
                                      limit=run.capped(run.profile.imagenet.images))
        parts = list(imagenet_v2_batches(records, BATCH, drop_remainder=False))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return run.cached(("imagenet",), load)


def top_k(model: keras.Model, x: np.ndarray, y: np.ndarray, k: int) -> float:
    logits = np.concatenate([model(x[i:i + BATCH], training=False).numpy() for i in range(0, len(x), BATCH)])
    return float(np.mean(np.any(np.argsort(-logits, axis=1)[:, :k] == y[:, None], axis=1)))


def run_imagenet(cell: dict, run: Run) -> list[dict]:
    from tfadv.datasets.imagenet_v2 import source_provenance

    p = run.profile.imagenet
    x, y = images(run)
    weights = weights_file(cell["model"], run.options["weights_dir"])
    model = classifier(cell["model"], weights)
    noisy = corruptions.awgn(x, p.awgn_std, clip_min=0.0, clip_max=255.0, seed=0)
    attack = PGD(model, eps=p.pgd_eps, norm="inf", steps=run.capped(p.pgd_steps), step_size=p.pgd_eps / 4,
                 rand_init=False, reduction="sum", from_logits=True, clip_min=0.0, clip_max=255.0)
    adversarial = np.concatenate([attack(x[i:i + BATCH], y[i:i + BATCH]).numpy() for i in range(0, len(x), BATCH)])
    metrics = {f"{name}_top{k}": top_k(model, images_, y, k)
               for name, images_ in (("clean", x), ("awgn", noisy), ("pgd_linf", adversarial)) for k in (1, 5)}
    source = run.cached("imagenet provenance", lambda: source_provenance(run.options["imagenet_dir"] or "tfds"))
    return rows(metrics, test_set="imagenet_v2", has_batchnorm=cell["model"] in WITH_BN, n_test=len(y), data=source,
                weights=applications.weights_provenance(weights, official_md5(cell["model"])))
