"""Reproduce Galloway et al. 2019, "Batch normalization increases adversarial vulnerability".

    python -m reproduce.batchnorm --profile {paper,demo,smoke} [--out DIR] [--shard i/n] [--experiments ...]

Experiments (one grid cell = one trained model, so a killed run resumes model by model):
  toy          Figure 1: 2-D Gaussians, GD vs batch-normalised GD, tilting angle.
  tilting      Table 1: linear models on 3 vs 7 (GD, GD + weight decay, BNGD with affine fixed / learned),
               plus the untrained nearest-centroid classifier as the reference point.
  cifar        Tables 2 and 4: VGG and WideResNet with BN vs without (Fixup for WRN): clean, AWGN,
               PGD-L-inf, PGD-L2 on CIFAR-10 and CIFAR-10.1, and CIFAR-10-C noise corruptions.
  imagenet     Table 5 (paper profile only): keras.applications VGG16/19 (no BN) vs ResNet50/DenseNet121 (BN).
  dimension    Tables 6-7 and App. F: images upscaled by 1..4x, linear model and a two-hidden-layer MLP with
               and without one BN layer and weight decay; BIM-L-inf and AWGN.
  depth_batch  Figure 2: width-384 ReLU nets of depth L, batch B, LR 1e-5 * B, with and without BN.

`paper` reads MNIST / CIFAR-10 / CIFAR-10.1 / CIFAR-10-C / ImageNetV2 through tensorflow-datasets;
`demo` and `smoke` run on scikit-learn's digits (digits 3 vs 7 for the linear models).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfadv.analysis import corruptions as noise, tilting
from tfadv.attacks import FGM, PGD
from tfadv.evaluation import predict_labels, robust_accuracy
from tfadv.models import batchnorm_nets as nets
from tfadv.experiments.report import Claim, markdown_table, write_report
from tfadv.experiments.store import atomic_write_csv, cell_file_name
from tfadv.experiments.runner import build_parser, cell_key, run_grid

KEY = "batchnorm"
TITLE = "Batch normalization increases adversarial vulnerability (Galloway et al. 2019)"
EXPERIMENTS = ("toy", "tilting", "dimension", "depth_batch", "cifar", "imagenet")

# Table 1 variants: (batchnorm affine or None, weight decay lambda).
TILT_VARIANTS = {"gd": (None, 0.0), "wd": (None, 0.1), "bngd_fixed": ("fixed", 0.0),
                 "bngd_learned": ("learned", 0.0)}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class Profile:
    """Everything that differs between the paper's protocol and the small offline profiles."""

    data: str                      # "tfds" (MNIST, CIFAR-10, ...) or "digits"
    experiments: tuple[str, ...]
    # Figure 1 toy
    toy_samples: int               # per class
    toy_epochs: int
    # Table 1
    tilt_seeds: int
    tilt_train_per_class: int | None   # None: all available
    tilt_epochs: int
    tilt_batch: int
    # Tables 6-7
    dim_scales: tuple[int, ...]    # multiples of the base image width (28 for MNIST, 8 for digits)
    dim_seeds: int
    dim_epochs: int
    dim_lr: float
    dim_batch: int
    bim_steps: int
    bim_step: float
    # Figure 2
    db_depths: tuple[int, ...]
    db_batches: tuple[int, ...]
    db_seeds: int
    db_epochs_bn: int
    db_epochs_plain: int
    db_lr_per_sample: float        # eta = this * B
    db_bim_steps: int
    db_bim_step: float
    # Tables 2-4
    cifar_models: tuple[str, ...]  # "vgg8", "vgg11", ..., "wrn"
    cifar_seeds: int
    cifar_epochs: int
    cifar_width: float             # VGG width multiplier
    wrn_depth: int
    wrn_width: int
    cifar_image_size: int
    cifar_train_limit: int | None
    cifar_augment: bool
    cifar_pgd_steps: int
    cifar_linf_eps: float          # in normalised units, as the authors' evaluation code
    cifar_awgn_std: float          # in normalised units
    eval_limit: int | None         # test samples per evaluation (None: all)
    imagenet_models: tuple[str, ...] = ()
    imagenet_limit: int = 1000


PROFILES = {
    "paper": Profile(
        data="tfds", experiments=EXPERIMENTS,
        toy_samples=500, toy_epochs=1000,
        tilt_seeds=5, tilt_train_per_class=2500, tilt_epochs=50, tilt_batch=128,
        dim_scales=(1, 2, 3, 4), dim_seeds=5, dim_epochs=20, dim_lr=0.1, dim_batch=128,
        bim_steps=100, bim_step=1e-3,
        db_depths=(2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60), db_batches=(8, 16, 32, 64, 128, 256, 512),
        db_seeds=3, db_epochs_bn=10, db_epochs_plain=40, db_lr_per_sample=1e-5, db_bim_steps=100, db_bim_step=1e-3,
        cifar_models=("vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "wrn"), cifar_seeds=3, cifar_epochs=150,
        cifar_width=1.0, wrn_depth=28, wrn_width=10, cifar_image_size=32, cifar_train_limit=None, cifar_augment=True,
        cifar_pgd_steps=20, cifar_linf_eps=0.03, cifar_awgn_std=0.25, eval_limit=None,
        imagenet_models=("vgg16", "vgg19", "resnet50", "densenet121"), imagenet_limit=1000),
    "demo": Profile(
        data="digits", experiments=("toy", "tilting", "dimension", "depth_batch", "cifar"),
        toy_samples=500, toy_epochs=1000,
        tilt_seeds=5, tilt_train_per_class=None, tilt_epochs=50, tilt_batch=32,
        dim_scales=(1, 2, 3, 4), dim_seeds=2, dim_epochs=15, dim_lr=0.05, dim_batch=32,
        bim_steps=100, bim_step=1e-3,
        db_depths=(2, 6, 12, 24), db_batches=(16, 64, 256), db_seeds=1, db_epochs_bn=10, db_epochs_plain=40,
        db_lr_per_sample=5e-4, db_bim_steps=20, db_bim_step=5e-3,
        cifar_models=("vgg8", "wrn"), cifar_seeds=2, cifar_epochs=20, cifar_width=0.125, wrn_depth=10,
        wrn_width=1, cifar_image_size=16, cifar_train_limit=None, cifar_augment=False, cifar_pgd_steps=20,
        cifar_linf_eps=0.03, cifar_awgn_std=0.25, eval_limit=None),
    "smoke": Profile(
        data="digits", experiments=("toy", "tilting", "dimension", "depth_batch", "cifar"),
        toy_samples=50, toy_epochs=5,
        tilt_seeds=1, tilt_train_per_class=None, tilt_epochs=1, tilt_batch=64,
        dim_scales=(1,), dim_seeds=1, dim_epochs=1, dim_lr=0.05, dim_batch=64, bim_steps=3, bim_step=0.05,
        db_depths=(2,), db_batches=(32,), db_seeds=1, db_epochs_bn=1, db_epochs_plain=1, db_lr_per_sample=1e-4,
        db_bim_steps=3, db_bim_step=0.05,
        cifar_models=("vgg8", "wrn"), cifar_seeds=1, cifar_epochs=1, cifar_width=0.0625, wrn_depth=10, wrn_width=1,
        cifar_image_size=16, cifar_train_limit=256, cifar_augment=False, cifar_pgd_steps=2, cifar_linf_eps=0.1, cifar_awgn_std=0.5,
        eval_limit=64),
}

# Evaluation settings that the paper states (Table 1, Tables 6-7) or that the authors' released code uses (CIFAR).
TILT_FGSM_EPS = 0.1          # Table 1: FGSM eps = 1/10 (pixels in [0, 1])
TILT_AWGN_STD = 1.0          # Table 1: AWGN N(0, 1)
NEAREST_CENTROID_FGSM_EPS = 0.25
TILT_LR = 0.1
DIM_EPS = 0.1                # Tables 6-7: BIM-L-inf eps 0.1
DIM_AWGN_STD = 1.0           # zero mean, unit variance: the moments of the standardised images
DIM_WEIGHT_DECAY = 0.01      # Table 7's lambda
TOY_LR = 0.1


# ------------------------------------------------------------------------------------------------- data
_cache: dict[tuple, object] = {}


def _cached(key: tuple, make):
    """Keep loaded data for the next cell; only one entry per kind (the paper's 112x112 MNIST alone is 3 GB)."""
    if key not in _cache:
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = make()
    return _cache[key]


def _tfds(name: str, split: str, data_dir: str):
    from tfadv.datasets.tfds_data import load_tfds

    x, y = load_tfds(name, split, data_dir=data_dir)
    return np.asarray(x, np.float32) / 255.0, np.asarray(y, np.int64)


def mnist_like(profile: Profile, data_dir: str, classes: tuple[int, ...] | None = None):
    """(x_train, y_train, x_test, y_test) in [0, 1] at the base resolution (28 MNIST, 8 digits)."""
    def load():
        if profile.data == "digits":
            from tfadv.datasets.digits import load_digits

            return load_digits(classes=classes)
        x_tr, y_tr = _tfds("mnist", "train", data_dir)
        x_te, y_te = _tfds("mnist", "test", data_dir)
        if classes is not None:
            relabel = np.full(10, -1)
            relabel[list(classes)] = np.arange(len(classes))
            keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
            x_tr, y_tr, x_te, y_te = x_tr[keep_tr], relabel[y_tr[keep_tr]], x_te[keep_te], relabel[y_te[keep_te]]
        return x_tr, y_tr, x_te, y_te

    return _cached(("mnist_like", profile.data, classes), load)


def standardise(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)


def upscale(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size x size (the input-dimension experiment's larger images)."""
    if x.shape[1] == size:
        return x
    return np.clip(tf.image.resize(x, (size, size), method="bilinear").numpy(), 0.0, 1.0).astype(np.float32)


def limit(x: np.ndarray, y: np.ndarray, n: int | None):
    return (x, y) if n is None else (x[:n], y[:n])


# -------------------------------------------------------------------------------------- train / evaluate
def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
        momentum: float = 0.0, seed: int = 0, validation: tuple | None = None,
        dataset: tf.data.Dataset | None = None) -> None:
    """Plain SGD on the mean cross-entropy (plus the model's weight-decay terms), reshuffled every epoch.

    With `validation`, the weights of the epoch with the best validation accuracy are kept (Table 2).
    Without it, all epochs run as one Keras epoch: the toy's 1,000 full-batch epochs would otherwise
    spend most of their time in Keras' per-epoch bookkeeping.
    """
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    if validation is not None:
        best = keras.callbacks.EarlyStopping("val_accuracy", patience=epochs + 1, mode="max",
                                             restore_best_weights=True)
        data = dict(x=dataset, shuffle=False) if dataset is not None else dict(x=x, y=y, batch_size=batch_size)
        model.fit(**data, epochs=epochs, validation_data=validation, callbacks=[best], verbose=0)
        return
    if dataset is None:
        dataset = (tf.data.Dataset.from_tensor_slices((x, y))
                   .shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    model.fit(dataset.repeat(epochs).prefetch(tf.data.AUTOTUNE), epochs=1, shuffle=False, verbose=0)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict_labels(model, x, 256) == y))


def noisy_accuracy(model, x, y, std, clip, seed, resize_to: int | None = None) -> float:
    """Accuracy on AWGN images; with `resize_to`, the noise is drawn at x's resolution and then resized,
    as the paper does for the upscaled MNIST images."""
    x_noisy = noise.awgn(x, std, clip_min=clip[0], clip_max=clip[1], seed=seed)
    if resize_to is not None and resize_to != x.shape[1]:
        x_noisy = tf.image.resize(x_noisy, (resize_to, resize_to), method="bilinear").numpy()
    return accuracy(model, x_noisy, y)


def attack_accuracy(model, attack, x, y) -> float:
    return robust_accuracy(model, attack, x, y, batch_size=256)


def bim(model, eps, steps, step, clip) -> PGD:
    """BIM = PGD without random start (Kurakin et al.), summed loss so each sample's step is its own."""
    return PGD(model, eps=eps, norm="inf", steps=steps, step_size=step, rand_init=False, reduction="sum",
               from_logits=True, clip_min=clip[0], clip_max=clip[1])


def rows_of(metrics: dict[str, float], **common) -> list[dict]:
    return [{**common, "metric": name, "value": float(value)} for name, value in metrics.items()]


# ---------------------------------------------------------------------------------- experiment: toy (Fig 1)
TOY_COV = np.array([[1.0, 0.05], [0.05, 0.01]])
TOY_MEANS = (np.array([-5.0, 0.0]), np.array([5.0, 0.0]))


def toy_data(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.multivariate_normal(m, TOY_COV, n_per_class) for m in TOY_MEANS]).astype(np.float32)
    y = np.repeat([0, 1], n_per_class).astype(np.int64)
    order = rng.permutation(len(y))
    return x[order], y[order]


def run_toy(cell: dict, profile: Profile, args) -> list[dict]:
    x, y = toy_data(profile.toy_samples, seed=cell["seed"])
    keras.utils.set_random_seed(cell["seed"])
    model = nets.linear_classifier((2,), 2, batchnorm="fixed" if cell["variant"] == "bngd" else None)
    fit(model, x, y, epochs=profile.toy_epochs, batch_size=len(x), lr=TOY_LR, seed=cell["seed"])
    w = tilting.input_space_weights(model, (2,))
    b = float(model(np.zeros((1, 2), np.float32), training=False).numpy()[0] @ np.array([-1.0, 1.0]))
    theta = tilting.angle_degrees(w, TOY_MEANS[1] - TOY_MEANS[0])
    return rows_of({"tilt_deg": theta, "clean": accuracy(model, x, y), "w0": w[0], "w1": w[1], "b": b},
                   test_set="toy_train")


# ---------------------------------------------------------------------------------- experiment: Table 1
def tilting_data(profile: Profile, data_dir: str, seed: int):
    """3 vs 7 (labels 3 -> 0, 7 -> 1): a per-class sample of the training set, the test set, and the full
    training set (the nearest-centroid reference)."""
    x_tr, y_tr, x_te, y_te = mnist_like(profile, data_dir, classes=(3, 7))
    if profile.tilt_train_per_class is None:
        return x_tr, y_tr, x_te, y_te, x_tr, y_tr
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(y_tr == c), profile.tilt_train_per_class, replace=False)
                            for c in (0, 1)])
    rng.shuffle(picks)
    return x_tr[picks], y_tr[picks], x_te, y_te, x_tr, y_tr


def nearest_centroid_model(x_ref: np.ndarray, y_ref: np.ndarray) -> keras.Model:
    """The linear classifier w* = avg 7 - avg 3 with its boundary half way between the centroids."""
    w = tilting.nearest_centroid_direction(x_ref, y_ref, 1)
    mid = 0.5 * (x_ref[y_ref == 1].reshape(-1, w.size).mean(0) + x_ref[y_ref == 0].reshape(-1, w.size).mean(0))
    model = nets.linear_classifier(x_ref.shape[1:], 2, init_stddev=None)
    model.get_layer("linear").set_weights([w[:, None].astype(np.float32), np.array([-w @ mid], np.float32)])
    return model


def run_tilting(cell: dict, profile: Profile, args) -> list[dict]:
    x_tr, y_tr, x_te, y_te, x_ref, y_ref = tilting_data(profile, args.data_dir, cell["seed"])
    x_te, y_te = limit(x_te, y_te, profile.eval_limit)
    keras.utils.set_random_seed(cell["seed"])
    if cell["variant"] == "nearest_centroid":
        model = nearest_centroid_model(x_ref, y_ref)
    else:
        affine, decay = TILT_VARIANTS[cell["variant"]]
        model = nets.linear_classifier(x_tr.shape[1:], 2, batchnorm=affine, weight_decay=decay)
        fit(model, x_tr, y_tr, epochs=profile.tilt_epochs, batch_size=profile.tilt_batch, lr=TILT_LR,
            seed=cell["seed"])
    fgsm = lambda eps: FGM(model, eps=eps, norm="inf", reduction="sum", from_logits=True, clip_min=0.0,
                           clip_max=1.0)
    metrics = {
        "tilt_deg": tilting.tilting_angle(model, x_ref, y_ref),
        "train": accuracy(model, x_tr, y_tr),
        "clean": accuracy(model, x_te, y_te),
        "awgn": noisy_accuracy(model, x_te, y_te, TILT_AWGN_STD, (0.0, 1.0), seed=cell["seed"]),
        "fgsm": attack_accuracy(model, fgsm(TILT_FGSM_EPS), x_te, y_te),
        "fgsm_eps0.25": attack_accuracy(model, fgsm(NEAREST_CENTROID_FGSM_EPS), x_te, y_te),
    }
    return rows_of(metrics, test_set="3vs7_test")


# ------------------------------------------------------------------------------ experiment: Tables 6-7
def dimension_data(profile: Profile, data_dir: str, scale: int):
    """Standardised images upscaled `scale` times: zero mean and unit variance over the training set, so
    N(0, 1) noise has the images' first two moments (Section 5)."""
    def load():
        x_tr, y_tr, x_te, y_te = mnist_like(profile, data_dir)
        size = x_tr.shape[1] * scale
        x_tr_big = upscale(x_tr, size)
        mean, std = float(x_tr_big.mean()), float(x_tr_big.std())
        x_te_lim, y_te_lim = limit(x_te, y_te, profile.eval_limit)
        return dict(x_train=standardise(x_tr_big, mean, std), y_train=y_tr,
                    x_test=standardise(upscale(x_te_lim, size), mean, std), y_test=y_te_lim,
                    x_test_base=standardise(x_te_lim, mean, std), mean=mean, std=std, size=size,
                    clip=((0.0 - mean) / std, (1.0 - mean) / std))

    return _cached(("dimension", profile.data, scale, profile.eval_limit), load)


def run_dimension(cell: dict, profile: Profile, args) -> list[dict]:
    d = dimension_data(profile, args.data_dir, cell["scale"])
    keras.utils.set_random_seed(cell["seed"])
    shape = d["x_train"].shape[1:]
    if cell["model"] == "linear":
        model = nets.linear_classifier(shape, 10, weight_decay=cell["weight_decay"], init_stddev=None)
    else:
        model = nets.mlp(shape, 10, batchnorm_layer=0 if cell["batchnorm"] else None,
                         weight_decay=cell["weight_decay"])
    fit(model, d["x_train"], d["y_train"], epochs=profile.dim_epochs, batch_size=profile.dim_batch,
        lr=profile.dim_lr, seed=cell["seed"])
    x, y, clip = d["x_test"], d["y_test"], d["clip"]
    metrics = {
        "train": accuracy(model, d["x_train"], d["y_train"]),
        "clean": accuracy(model, x, y),
        "awgn": noisy_accuracy(model, d["x_test_base"], y, DIM_AWGN_STD, clip, seed=cell["seed"],
                               resize_to=d["size"]),
        "bim": attack_accuracy(model, bim(model, DIM_EPS, profile.bim_steps, profile.bim_step, clip), x, y),
    }
    return rows_of(metrics, test_set="test", image_width=d["size"])


# ------------------------------------------------------------------------------ experiment: Figure 2
def run_depth_batch(cell: dict, profile: Profile, args) -> list[dict]:
    d = dimension_data(profile, args.data_dir, 1)
    keras.utils.set_random_seed(cell["seed"])
    model = nets.deep_fc(d["x_train"].shape[1:], 10, depth=cell["depth"], batchnorm=cell["batchnorm"])
    epochs = profile.db_epochs_bn if cell["batchnorm"] else profile.db_epochs_plain
    fit(model, d["x_train"], d["y_train"], epochs=epochs, batch_size=cell["batch_size"],
        lr=profile.db_lr_per_sample * cell["batch_size"], seed=cell["seed"])
    x, y, clip = d["x_test"], d["y_test"], d["clip"]
    metrics = {
        "train": accuracy(model, d["x_train"], d["y_train"]),
        "clean": accuracy(model, x, y),
        "awgn": noisy_accuracy(model, x, y, DIM_AWGN_STD, clip, seed=cell["seed"]),
        "bim": attack_accuracy(model, bim(model, DIM_EPS, profile.db_bim_steps, profile.db_bim_step, clip), x, y),
    }
    return rows_of(metrics, test_set="test", epochs=epochs)


# ------------------------------------------------------------------------------ experiment: Tables 2-4
def cifar_normalise(x: np.ndarray, channels: int) -> np.ndarray:
    mean = np.array(CIFAR_MEAN[:channels] if channels == 3 else CIFAR_MEAN[:1], np.float32)
    std = np.array(CIFAR_STD[:channels] if channels == 3 else CIFAR_STD[:1], np.float32)
    # The authors' evaluation clips to [-2, 2] in normalised space, which also clips a few clean pixels;
    # tfadv clips every evaluated image the same way so clean and attacked inputs share one box.
    return np.clip((x - mean) / std, -2.0, 2.0).astype(np.float32)


def cifar_data(profile: Profile, data_dir: str):
    """Normalised train / validation / test sets, plus CIFAR-10.1 v6 (paper profile)."""
    def load():
        sets = {}
        if profile.data == "digits":
            from tfadv.datasets.digits import load_digits

            x_tr, y_tr, x_te, y_te = load_digits(image_size=profile.cifar_image_size)
        else:
            x_tr, y_tr = _tfds("cifar10", "train", data_dir)
            x_te, y_te = _tfds("cifar10", "test", data_dir)
            sets["cifar10_1_v6"] = limit(*_tfds("cifar10_1/v6", "test", data_dir), profile.eval_limit)
        x_tr, y_tr = limit(x_tr, y_tr, profile.cifar_train_limit)
        n_val = max(1, len(x_tr) // 10)
        channels = x_tr.shape[-1]
        norm = lambda x: cifar_normalise(x, channels)
        sets = {name: (norm(x), y) for name, (x, y) in sets.items()}
        sets["test"] = (norm(limit(x_te, y_te, profile.eval_limit)[0]), limit(x_te, y_te, profile.eval_limit)[1])
        return dict(train=(norm(x_tr[n_val:]), y_tr[n_val:]), val=(norm(x_tr[:n_val]), y_tr[:n_val]),
                    tests=sets, channels=channels)

    return _cached(("cifar", profile.data, profile.eval_limit), load)


def augmented(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Random 32x32 crops of the 4-pixel zero-padded image and horizontal flips (Section 4)."""
    def augment(image, label):
        image = tf.image.pad_to_bounding_box(image, 4, 4, image.shape[0] + 8, image.shape[1] + 8)
        image = tf.image.random_crop(image, tf.shape(x)[1:])
        return tf.image.random_flip_left_right(image), label

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def cifar_model(cell: dict, profile: Profile, input_shape) -> keras.Model:
    if cell["model"] == "wrn":
        return nets.wide_resnet(profile.wrn_depth, profile.wrn_width, input_shape=input_shape,
                                normalization="batchnorm" if cell["normalization"] == "batchnorm" else "fixup",
                                weight_decay=CIFAR_WEIGHT_DECAY)
    return nets.vgg(cell["model"], batchnorm=cell["normalization"] == "batchnorm", input_shape=input_shape,
                    width=profile.cifar_width, weight_decay=CIFAR_WEIGHT_DECAY)


CIFAR_LR, CIFAR_MOMENTUM, CIFAR_BATCH, CIFAR_WEIGHT_DECAY = 1e-2, 0.9, 128, 5e-4


def run_cifar(cell: dict, profile: Profile, args) -> list[dict]:
    d = cifar_data(profile, args.data_dir)
    x_tr, y_tr = d["train"]
    keras.utils.set_random_seed(cell["seed"])
    model = cifar_model(cell, profile, x_tr.shape[1:])
    weights = Path(args.out) / "models" / (Path(cell_file_name(cell_key(cell))).stem + ".weights.h5")
    if weights.is_file():  # trained before an evaluation failed (e.g. CIFAR-10-C missing): evaluate only
        model.load_weights(weights)
    else:
        dataset = augmented(x_tr, y_tr, CIFAR_BATCH, cell["seed"]) if profile.cifar_augment else None
        fit(model, x_tr, y_tr, epochs=profile.cifar_epochs, batch_size=CIFAR_BATCH, lr=CIFAR_LR,
            momentum=CIFAR_MOMENTUM, seed=cell["seed"], validation=d["val"], dataset=dataset)
        weights.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(weights)
    dims = int(np.prod(x_tr.shape[1:]))
    eps_inf, steps = profile.cifar_linf_eps, profile.cifar_pgd_steps
    eps_2 = eps_inf * math.sqrt(dims)  # the authors' L2 budget: the L-inf one times sqrt(d)
    attacks = {
        "pgd_linf": PGD(model, eps=eps_inf, norm="inf", steps=steps, step_size=eps_inf / 10, rand_init=False,
                        reduction="sum", from_logits=True, clip_min=-2.0, clip_max=2.0),
        "pgd_l2": PGD(model, eps=eps_2, norm="2", steps=steps, step_size=eps_2 / 10, rand_init=False,
                      reduction="sum", from_logits=True, clip_min=-2.0, clip_max=2.0),
    }
    rows = rows_of({"train": accuracy(model, x_tr, y_tr)}, test_set="train")
    for name, (x, y) in d["tests"].items():
        metrics = {"clean": accuracy(model, x, y),
                   "awgn": noisy_accuracy(model, x, y, profile.cifar_awgn_std, (-2.0, 2.0), seed=cell["seed"])}
        metrics.update({k: attack_accuracy(model, a, x, y) for k, a in attacks.items()})
        rows += rows_of(metrics, test_set=name)
    if profile.data == "tfds":
        for corruption in noise.CIFAR10C_NOISE_CORRUPTIONS:
            per_severity = noise.accuracy_over_severities(
                lambda x, y: accuracy(model, cifar_normalise(x, d["channels"]), y), corruption,
                data_dir=args.data_dir, limit=profile.eval_limit)
            rows += [{"test_set": "cifar10_c", "metric": f"{corruption}_s{s}", "value": v}
                     for s, v in per_severity.items()]
            rows.append({"test_set": "cifar10_c", "metric": corruption, "value": float(np.mean(list(per_severity.values())))})
    return rows


# ------------------------------------------------------------------------------ experiment: Table 5
IMAGENET_PGD_EPS, IMAGENET_PGD_STEPS, IMAGENET_AWGN_STD = 2.0, 10, 0.1 * 255  # [0, 255] pixels; tfadv's


def imagenet_classifier(name: str, weights: str) -> keras.Model:
    """A keras.applications model taking [0, 255] RGB images and returning logits (preprocessing inside)."""
    apps = keras.applications
    ctor, prep = {"vgg16": (apps.VGG16, apps.vgg16.preprocess_input),
                  "vgg19": (apps.VGG19, apps.vgg19.preprocess_input),
                  "resnet50": (apps.ResNet50, apps.resnet50.preprocess_input),
                  "densenet121": (apps.DenseNet121, apps.densenet.preprocess_input)}[name]
    net = ctor(weights=weights, classifier_activation=None)
    inputs = keras.Input((224, 224, 3))
    return keras.Model(inputs, net(prep(inputs)), name=name)


def run_imagenet(cell: dict, profile: Profile, args) -> list[dict]:
    x, y = _cached(("imagenet", profile.imagenet_limit), lambda: _imagenet_v2(profile, args.data_dir))
    weights = args.imagenet_weights.get(cell["model"], "imagenet")
    model = imagenet_classifier(cell["model"], weights)

    def top_k(images, k):
        logits = np.concatenate([model(images[i:i + 32], training=False).numpy() for i in range(0, len(images), 32)])
        return float(np.mean(np.any(np.argsort(-logits, axis=1)[:, :k] == y[:, None], axis=1)))

    noisy = noise.awgn(x, IMAGENET_AWGN_STD, clip_min=0.0, clip_max=255.0, seed=0)
    attack = PGD(model, eps=IMAGENET_PGD_EPS, norm="inf", steps=IMAGENET_PGD_STEPS,
                 step_size=IMAGENET_PGD_EPS / 4, rand_init=False, reduction="sum", from_logits=True,
                 clip_min=0.0, clip_max=255.0)
    adversarial = np.concatenate([attack(x[i:i + 32], y[i:i + 32]).numpy() for i in range(0, len(x), 32)])
    metrics = {f"{name}_top{k}": top_k(images, k) for name, images in
               (("clean", x), ("awgn", noisy), ("pgd_linf", adversarial)) for k in (1, 5)}
    return rows_of(metrics, test_set="imagenet_v2", has_batchnorm=cell["model"] in ("resnet50", "densenet121"))


def _imagenet_v2(profile: Profile, data_dir: str):
    from tfadv.datasets.tfds_data import load_tfds

    x, y = load_tfds("imagenet_v2/matched-frequency", f"test[:{profile.imagenet_limit}]", data_dir=data_dir,
                     image_size=224)
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


# --------------------------------------------------------------------------------------------- the grid
def grid(profile: Profile, experiments: tuple[str, ...], base_seed: int) -> list[dict]:
    cells: list[dict] = []
    for exp in experiments:
        if exp == "toy":
            cells += [{"experiment": "toy", "variant": v, "seed": base_seed} for v in ("gd", "bngd")]
        elif exp == "tilting":
            cells.append({"experiment": "tilting", "variant": "nearest_centroid", "seed": base_seed})
            cells += [{"experiment": "tilting", "variant": v, "seed": base_seed + s}
                      for s in range(profile.tilt_seeds) for v in TILT_VARIANTS]
        elif exp == "dimension":
            models = [("linear", False, 0.0), ("linear", False, DIM_WEIGHT_DECAY)] + [
                ("mlp", bn, wd) for bn in (False, True) for wd in (0.0, DIM_WEIGHT_DECAY)]
            cells += [{"experiment": "dimension", "model": m, "batchnorm": bn, "weight_decay": wd, "scale": k,
                       "seed": base_seed + s}
                      for k in profile.dim_scales for s in range(profile.dim_seeds) for m, bn, wd in models]
        elif exp == "depth_batch":
            cells += [{"experiment": "depth_batch", "depth": L, "batch_size": B, "batchnorm": bn,
                       "seed": base_seed + s}
                      for s in range(profile.db_seeds) for L in profile.db_depths for B in profile.db_batches
                      for bn in (False, True)]
        elif exp == "cifar":
            cells += [{"experiment": "cifar", "model": m,
                       "normalization": n if m != "wrn" or n == "batchnorm" else "fixup", "seed": base_seed + s}
                      for s in range(profile.cifar_seeds) for m in profile.cifar_models
                      for n in ("batchnorm", "none")]
        elif exp == "imagenet":
            cells += [{"experiment": "imagenet", "model": m} for m in profile.imagenet_models]
    return cells


RUNNERS = {"toy": run_toy, "tilting": run_tilting, "dimension": run_dimension, "depth_batch": run_depth_batch,
           "cifar": run_cifar, "imagenet": run_imagenet}


# ------------------------------------------------------------------------------------------- summaries
def summarise(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, standard error over seeds and count of `value` per group."""
    grouped = table.groupby(by, dropna=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["sem"] = out["std"].fillna(0.0) / np.sqrt(out["n"])
    return out.drop(columns="std")


def _pick(summary: pd.DataFrame, **where) -> tuple[float, float, int] | None:
    mask = np.ones(len(summary), bool)
    for column, value in where.items():
        mask &= (summary[column] == value).to_numpy()
    if not mask.any():
        return None
    row = summary[mask].iloc[0]
    return float(row["mean"]), float(row["sem"]), int(row["n"])


def _pct(stat) -> str:
    return "n/a" if stat is None else f"{100 * stat[0]:.1f} ± {100 * stat[1]:.1f}"


def delta(a, b) -> tuple[float, float] | None:
    """a - b in percentage points with the standard error of the difference of two independent means
    (NaN when either side has a single seed: no error estimate)."""
    if a is None or b is None:
        return None
    se = 100 * math.hypot(a[1], b[1]) if min(a[2], b[2]) >= 2 else float("nan")
    return 100 * (a[0] - b[0]), se


def delta_verdict(measured: tuple[float, float] | None, paper: float) -> str:
    """Judged by the delta: same sign and within a factor of 2 of the paper's -> reproduced; same sign
    only -> partly; otherwise not. A measured delta inside two standard errors of zero has no sign; with a
    single seed (no standard error) the verdict is at most partly."""
    if measured is None:
        return "not measured"
    value, se = measured
    if np.sign(value) != np.sign(paper) or (np.isfinite(se) and abs(value) <= 2 * se):
        return "not reproduced"
    return "reproduced" if np.isfinite(se) and 0.5 <= value / paper <= 2.0 else "partly reproduced"


def _fmt_delta(d) -> str:
    if d is None:
        return "n/a"
    return f"{d[0]:+.1f} ± {d[1]:.1f} pts" if np.isfinite(d[1]) else f"{d[0]:+.1f} pts (one seed)"


# ---------------------------------------------------------------------------------------------- figures
def figure_toy(profile: Profile, table: pd.DataFrame, out: Path) -> None:
    import matplotlib.pyplot as plt

    from tfadv.experiments import figures as plots

    toy = table[table["experiment"] == "toy"]
    if toy.empty:
        return
    plots.set_style()
    x, y = toy_data(profile.toy_samples, seed=int(toy["seed"].iloc[0]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=6, alpha=0.6)
    x1 = np.linspace(x[:, 0].min(), x[:, 0].max(), 50)
    for variant, style in (("gd", "k-"), ("bngd", "g--")):
        row = toy[toy["variant"] == variant].set_index("metric")["value"]
        if row.empty:
            continue
        w0, w1, b = row["w0"], row["w1"], row["b"]  # boundary: w0 x1 + w1 x2 + b = 0
        label = f"{variant.upper()} boundary, θ = {row['tilt_deg']:.1f}°"
        if abs(w1) > 1e-9 * abs(w0):
            ax.plot(x1, -(w0 * x1 + b) / w1, style, label=label)
        else:
            ax.axvline(-b / w0, color=style[0], linestyle=style[1:], label=label)
    ax.set_ylim(x[:, 1].min() - 0.1, x[:, 1].max() + 0.1)
    ax.set(title="Input space (Figure 1 toy)", xlabel="x1 (task-relevant)", ylabel="x2 (low variance)")
    ax.legend(loc="lower right", fontsize=7)
    z = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    axes[1].scatter(z[:, 0], z[:, 1], c=y, cmap="coolwarm", s=6, alpha=0.6)
    axes[1].set(title="The data BNGD sees (batch-normalised)", xlabel="x1 normalised", ylabel="x2 normalised")
    plots.save_figure(fig, out / "fig1_toy.png")


def figure_dimension(summary: pd.DataFrame, out: Path) -> None:
    import seaborn as sns

    from tfadv.experiments import figures as plots

    if summary.empty:
        return
    plots.set_style()
    s = summary[summary["metric"].isin(["clean", "awgn", "bim"])].copy()
    s["variant"] = [f"{m}{' + BN' if bn else ''}{' + WD' if wd > 0 else ''}"
                    for m, bn, wd in zip(s["model"], s["batchnorm"], s["weight_decay"])]
    grid_ = sns.relplot(data=s, x="image_width", y="mean", hue="variant", col="metric", kind="line", marker="o",
                        height=3, aspect=1.1)
    grid_.set_axis_labels("image width √d (pixels)", "accuracy")
    plots.save_figure(grid_, out / "tables6_7_dimension.png")


def figure_depth_batch(summary: pd.DataFrame, out: Path) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from tfadv.experiments import figures as plots

    if summary.empty:
        return
    plots.set_style()
    metrics = ["clean", "awgn", "bim"]
    summary = summary.astype({"depth": int, "batch_size": int})
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), squeeze=False, constrained_layout=True)
    for r, bn in enumerate((True, False)):
        for c, metric in enumerate(metrics):
            part = summary[(summary["batchnorm"] == bn) & (summary["metric"] == metric)]
            heat = part.pivot(index="batch_size", columns="depth", values="mean").sort_index(ascending=False)
            ax = axes[r, c]
            sns.heatmap(heat, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=heat.shape[1] <= 8, fmt=".2f",
                        cbar=c == 2)
            if bn and not heat.empty:
                # Yang et al.'s maximum trainable depth as x positions on the heat map's depth axis.
                depths = list(heat.columns)
                ys = np.arange(len(heat.index)) + 0.5
                xs = [np.interp(nets.bn_max_trainable_depth(int(b)), depths, np.arange(len(depths)) + 0.5,
                                right=len(depths)) if b >= 4 else np.nan for b in heat.index]
                ax.plot(xs, ys, "w--", lw=1.5)
            ax.set(title=f"{'BN' if bn else 'no BN'}: {metric} accuracy", xlabel="depth L", ylabel="batch size B")
    fig.suptitle("Figure 2: width-384 ReLU nets; white dashes: BN's maximum trainable depth (Yang et al. 2019; "
                 "drawn at the right edge when beyond the largest L)", fontsize=9)
    plots.save_figure(fig, out / "fig2_depth_batch.png")


def figure_cifar(summary: pd.DataFrame, out: Path) -> None:
    import seaborn as sns

    from tfadv.experiments import figures as plots

    s = summary[summary["metric"].isin(["clean", "awgn", "pgd_linf", "pgd_l2"]) & (summary["test_set"] != "train")]
    if s.empty:
        return
    plots.set_style()
    g = sns.catplot(data=s, x="metric", y="mean", hue="normalization", col="model", row="test_set", kind="bar",
                    height=3, aspect=1.2)
    g.set_axis_labels("", "accuracy")
    plots.save_figure(g, out / "table2_cifar.png")


# ----------------------------------------------------------------------------------------------- report
def claims_and_sections(table: pd.DataFrame, profile_name: str) -> tuple[list[Claim], list[tuple[str, str]]]:
    claims: list[Claim] = []
    sections: list[tuple[str, str]] = []
    experiments = set(table.get("experiment", pd.Series(dtype=str)).dropna())

    # Figure 1
    if "toy" in experiments:
        toy = table[table["experiment"] == "toy"]
        theta = {v: float(toy[(toy["variant"] == v) & (toy["metric"] == "tilt_deg")]["value"].iloc[0])
                 for v in ("gd", "bngd") if ((toy["variant"] == v) & (toy["metric"] == "tilt_deg")).any()}
        if len(theta) == 2:
            holds = theta["gd"] < 10 and abs(theta["bngd"] - 66.7) <= 10
            partly = theta["bngd"] - theta["gd"] > 20
            claims.append(Claim("Fig. 1 toy: BNGD tilts the boundary, GD does not", "θ_BNGD = 66.7°, θ_GD ≈ 0°",
                                f"θ_BNGD = {theta['bngd']:.1f}°, θ_GD = {theta['gd']:.1f}°",
                                "reproduced" if holds else "partly reproduced" if partly else "not reproduced",
                                "reproduced: θ_GD < 10° and θ_BNGD within 10° of 66.7°"))
    else:
        claims.append(Claim("Fig. 1 toy: BNGD tilts the boundary", "θ = 66.7° vs ≈ 0°", "-", "not measured"))

    # Table 1
    if "tilting" in experiments:
        t = summarise(table[table["experiment"] == "tilting"], ["variant", "metric"])
        th = {v: _pick(t, variant=v, metric="tilt_deg") for v in list(TILT_VARIANTS) + ["nearest_centroid"]}
        if all(th[v] is not None for v in TILT_VARIANTS):
            gd = th["gd"][0]
            tilted = all(th[v][0] > gd + 10 for v in ("bngd_fixed", "bngd_learned"))
            same = abs(th["bngd_fixed"][0] - th["bngd_learned"][0]) < 10
            claims.append(Claim(
                "Table 1: BNGD tilts the boundary w.r.t. the nearest-centroid classifier, affine fixed or learned",
                "tilt shown for F and T (values not available)",
                "θ: " + ", ".join(f"{v} {th[v][0]:.1f} ± {th[v][1]:.1f}°" for v in TILT_VARIANTS),
                "reproduced" if tilted and same else "partly reproduced" if tilted else "not reproduced",
                "reproduced: both BNGD θ exceed GD's by > 10° and differ from each other by < 10°"))
        rows = [[v, f"{th[v][0]:.1f} ± {th[v][1]:.1f}"] + [_pct(_pick(t, variant=v, metric=m)) for m in
                                                           ("train", "clean", "awgn", "fgsm", "fgsm_eps0.25")]
                for v in ["nearest_centroid"] + list(TILT_VARIANTS) if th.get(v) is not None]
        columns = ["variant", "θ (deg)", "train", "clean", "AWGN N(0,1)", "FGSM ε=0.1", "FGSM ε=0.25"]
        sections.append(("Table 1: boundary tilting on 3 vs 7 (mean ± s.e. over seeds, accuracies in %)",
                         markdown_table(columns, rows) + "\n\nThe paper's Table 1 values could not be retrieved; only its claim is checked."))
        nc, gd_fgsm = _pick(t, variant="nearest_centroid", metric="fgsm_eps0.25"), _pick(t, variant="gd", metric="fgsm_eps0.25")
        if nc is not None and gd_fgsm is not None:
            claims.append(Claim("Nearest-centroid classifier is much more robust to FGSM ε = 1/4 than a trained linear model",
                                "≈ 40% vs ≈ 0% (2018 code: 39.60%)", f"{_pct(nc)}% vs {_pct(gd_fgsm)}% (GD)",
                                "reproduced" if nc[0] - gd_fgsm[0] > 0.2 else
                                "partly reproduced" if nc[0] > gd_fgsm[0] else "not reproduced",
                                "reproduced: a gap of more than 20 points"))

    # Tables 6-7
    if "dimension" in experiments:
        s = summarise(table[table["experiment"] == "dimension"],
                      ["model", "batchnorm", "weight_decay", "scale", "image_width", "metric"])
        base = min(s["scale"])
        mlp = lambda bn, wd, m, k=base: _pick(s, model="mlp", batchnorm=bn, weight_decay=wd, metric=m, scale=k)
        for metric, paper in (("awgn", -16.4), ("bim", -43.8)):
            d = delta(mlp(True, 0.0, metric), mlp(False, 0.0, metric))
            claims.append(Claim(f"Table 6: one BN layer lowers the MLP's {metric.upper()} accuracy (smallest images)",
                                f"{paper:+.1f} pts", _fmt_delta(d), delta_verdict(d, paper)))
        d = delta(mlp(False, DIM_WEIGHT_DECAY, "bim"), mlp(False, 0.0, "bim"))
        claims.append(Claim("Table 7: weight decay λ = 0.01 raises the no-BN MLP's BIM accuracy", "+21.7 ± 0.4 pts",
                            _fmt_delta(d), delta_verdict(d, 21.7)))
        for k, paper in ((2, -79.3), (3, -81.2)):
            d = delta(mlp(True, 0.0, "bim", k), mlp(True, DIM_WEIGHT_DECAY, "bim", k))
            claims.append(Claim(f"Table 7: with BN, dropping weight decay (λ 0.01 → 0) lowers BIM accuracy at {k}x width",
                                f"{paper:+.1f} pts", _fmt_delta(d), delta_verdict(d, paper),
                                "tfadv's reading: BN λ=0 minus BN λ=0.01"))
        lin = lambda k, wd, m: _pick(s, model="linear", batchnorm=False, weight_decay=wd, metric=m, scale=k)
        ratios = {k: (lin(k, DIM_WEIGHT_DECAY, "bim"), lin(base, DIM_WEIGHT_DECAY, "bim")) for k in sorted(set(s["scale"])) if k != base}
        ratios = {k: a[0] / b[0] for k, (a, b) in ratios.items() if a is not None and b is not None and b[0] > 0}
        if ratios:
            claims.append(Claim("App. F: with weight decay the linear model's adversarial accuracy does not fall with √d",
                                "ratios 0.98 / 0.96 / 1.00 at 2x / 3x / 4x",
                                " / ".join(f"{r:.2f} ({k}x)" for k, r in ratios.items()),
                                "reproduced" if all(0.9 <= r <= 1.1 for r in ratios.values()) else "not reproduced",
                                "reproduced: every ratio within [0.9, 1.1]; λ = 0.01 at every size (tfadv's)"))
        rows = [[m, bn, wd, int(w)] + [_pct(_pick(s, model=m, batchnorm=bn, weight_decay=wd, image_width=w, metric=x))
                                       for x in ("clean", "awgn", "bim")]
                for (m, bn, wd, w), _ in s.groupby(["model", "batchnorm", "weight_decay", "image_width"])]
        sections.append(("Tables 6-7: input dimension (accuracy %, mean ± s.e.)",
                         markdown_table(["model", "BN", "λ", "width", "clean", "AWGN", "BIM"], rows, float_format="{}")))

    # Figure 2
    if "depth_batch" in experiments:
        s = summarise(table[table["experiment"] == "depth_batch"], ["depth", "batch_size", "batchnorm", "metric"])
        b_lo, b_hi = int(min(s["batch_size"])), int(max(s["batch_size"]))
        trends = {}
        for bn in (True, False):
            diffs = []
            for depth in sorted(set(s["depth"])):
                ends = [{m: _pick(s, depth=depth, batch_size=b, batchnorm=bn, metric=m) for m in ("clean", "bim")}
                        for b in (b_lo, b_hi)]
                # "for depths that maintain a reasonable test accuracy, at around 25 or fewer layers"
                if depth > 25 or any(e["clean"] is None or e["bim"] is None or e["clean"][0] < 0.8 for e in ends):
                    continue
                diffs.append(100 * (ends[1]["bim"][0] - ends[0]["bim"][0]))
            trends[bn] = float(np.mean(diffs)) if diffs else None
        if b_lo != b_hi and trends[True] is not None and trends[False] is not None:
            holds = trends[True] < -2 and trends[True] < trends[False]
            claims.append(Claim("Fig. 2: with BN, BIM accuracy falls as the batch grows (depth ≤ 25); not without BN",
                                "qualitative (heat maps)",
                                f"BIM(B={b_hi}) − BIM(B={b_lo}), mean over depths ≤ 25 with clean accuracy ≥ 80% at "
                                f"both batch sizes: BN {trends[True]:+.1f} pts, no BN {trends[False]:+.1f} pts",
                                "reproduced" if holds else "partly reproduced" if trends[True] < trends[False]
                                else "not reproduced",
                                "reproduced: BN's change < −2 pts and below the no-BN change; nets that did not "
                                "train (clean < 80%) are left out, as the paper's 'reasonable test accuracy'"))
    # Tables 2-4
    if "cifar" in experiments:
        s = summarise(table[table["experiment"] == "cifar"], ["model", "normalization", "test_set", "metric"])
        paper_vgg = {("test", "awgn"): -6.0, ("test", "pgd_linf"): -17.3, ("test", "pgd_l2"): -5.9,
                     ("cifar10_1_v6", "clean"): 2.0, ("cifar10_1_v6", "awgn"): -6.0,
                     ("cifar10_1_v6", "pgd_linf"): -15.0, ("cifar10_1_v6", "pgd_l2"): -3.4}
        vggs = sorted(m for m in set(s["model"]) if m.startswith("vgg"))
        for model in vggs:
            for (test_set, metric), paper in paper_vgg.items():
                d = delta(_pick(s, model=model, normalization="batchnorm", test_set=test_set, metric=metric),
                          _pick(s, model=model, normalization="none", test_set=test_set, metric=metric))
                if d is None and test_set != "test":
                    continue
                claims.append(Claim(f"Table 2: BN effect on {model} {metric} ({test_set})", f"{paper:+.1f} pts (VGG)",
                                    _fmt_delta(d), delta_verdict(d, paper)))
            gap = lambda n: (None if _pick(s, model=model, normalization=n, test_set="train", metric="train") is None
                             else (_pick(s, model=model, normalization=n, test_set="train", metric="train")[0]
                                   - _pick(s, model=model, normalization=n, test_set="test", metric="clean")[0], 0.0))
            g_bn, g_none = gap("batchnorm"), gap("none")
            if g_bn is not None and g_none is not None:
                d = (100 * (g_bn[0] - g_none[0]), float("nan"))
                claims.append(Claim(f"Table 2: BN changes {model}'s clean generalisation gap", "−1.1 ± 0.2 pts",
                                    f"{d[0]:+.1f} pts", "reproduced" if d[0] < 0 else "not reproduced",
                                    "sign only (one gap per run)"))
        if "wrn" in set(s["model"]):
            anchor = {"clean": -0.5, "awgn": -17.2, "pgd_linf": -29.6, "pgd_l2": -17.1}
            for metric, paper in anchor.items():
                d = delta(_pick(s, model="wrn", normalization="batchnorm", test_set="test", metric=metric),
                          _pick(s, model="wrn", normalization="fixup", test_set="test", metric=metric))
                claims.append(Claim(f"BN vs Fixup (WRN here): {metric} on the test set",
                                    f"{paper:+.1f} pts (authors' released ResNet-110 BN vs Fixup)",
                                    _fmt_delta(d), delta_verdict(d, paper) if metric != "clean" else
                                    ("reproduced" if d is not None and abs(d[0]) < 3 else "not reproduced" if d else "not measured"),
                                    "Table 2's WRN numbers were not retrievable; anchor is the authors' ResNet-110 README"
                                    + ("; clean: reproduced if |Δ| < 3 pts" if metric == "clean" else "")))
        c10c = s[s["test_set"] == "cifar10_c"]
        if not c10c.empty:
            for model in sorted(set(c10c["model"])):
                other = "fixup" if model == "wrn" else "none"
                for corruption in noise.CIFAR10C_NOISE_CORRUPTIONS:
                    d = delta(_pick(s, model=model, normalization="batchnorm", test_set="cifar10_c", metric=corruption),
                              _pick(s, model=model, normalization=other, test_set="cifar10_c", metric=corruption))
                    claims.append(Claim(f"Table 4: BN lowers {model} accuracy on CIFAR-10-C {corruption} (mean of 5 severities)",
                                        "lower with BN (values not available)", _fmt_delta(d),
                                        "not measured" if d is None else
                                        "reproduced" if d[0] < -2 * d[1] else "not reproduced"))
        else:
            claims.append(Claim("Table 4: BN lowers accuracy on CIFAR-10-C noise corruptions", "values not available",
                                "-", "not measured", "needs CIFAR-10-C (paper profile)"))
        rows = [(r["model"], r["normalization"], r["test_set"], r["metric"],
                 f"{100 * r['mean']:.1f} ± {100 * r['sem']:.1f} (n={r['n']})")
                for _, r in s[~s["metric"].str.contains("_s[1-5]$", regex=True)].iterrows()]
        sections.append(("Tables 2-4: CIFAR-10 with and without BN",
                         markdown_table(["model", "normalization", "test set", "metric", "accuracy %"], rows)))
    else:
        claims.append(Claim("Table 2: BN lowers VGG's AWGN / PGD accuracy on CIFAR-10", "−6 / −17.3 / −5.9 pts", "-",
                            "not measured"))

    # Table 5
    if "imagenet" in experiments:
        s = summarise(table[table["experiment"] == "imagenet"], ["has_batchnorm", "metric"])
        for k, paper in ((5, "−8.54 to −11.00"), (1, "−2.38 to −4.17")):
            d = delta(_pick(s, has_batchnorm=True, metric=f"pgd_linf_top{k}"),
                      _pick(s, has_batchnorm=False, metric=f"pgd_linf_top{k}"))
            claims.append(Claim(f"Table 5: BN lowers ImageNet top-{k} PGD accuracy", f"{paper} pts (VGG vs VGG_bn)",
                                _fmt_delta(d), "not measured" if d is None else
                                "partly reproduced" if d[0] < 0 else "not reproduced",
                                "keras.applications has no VGG_bn: BN nets (ResNet50, DenseNet121) vs BN-free VGG16/19 "
                                "differ in architecture too, so at best 'partly'"))
    else:
        claims.append(Claim("Table 5: BN lowers ImageNet PGD accuracy (VGG vs VGG_bn)", "−8.54 to −11.00 pts top-5",
                            "-", "not measured", "paper profile only (pretrained weights, ImageNetV2)"))
    return claims, sections


def settings_chosen(profile_name: str, profile: Profile) -> dict[str, object]:
    p = dataclasses.asdict(profile)
    return {
        "profile values": ", ".join(f"{k}={v}" for k, v in p.items()),
        "data (demo/smoke)": "scikit-learn digits 8x8 in [0, 1] (3 vs 7 for Table 1; 10 classes elsewhere); "
                             f"for the CIFAR experiment upsampled to {profile.cifar_image_size}x"
                             f"{profile.cifar_image_size}, one channel",
        "Table 1 optimiser": f"plain SGD, LR {TILT_LR}, mini-batches of {profile.tilt_batch} (the authors' 2018 logistic "
                             "code uses 128), weights from a truncated normal with std 0.1 (as that code), bias learned",
        "Table 1 learned affine": "γ ~ U(0, 1), β = 0 (PyTorch's BN initialisation before v1.2: the paper's 'randomly initialized')",
        "Table 1 AWGN / FGSM": "pixels in [0, 1]; noisy images clipped to [0, 1]; FGSM clipped to [0, 1]",
        "weight decay": "loss + (λ/2)‖w‖² on kernels (PyTorch weight_decay / tf.nn.l2_loss convention)",
        "Tables 6-7 input scaling": "images standardised to zero mean, unit variance over the training set (so N(0,1) "
                                    "noise has their moments); BIM ε = 0.1 and AWGN σ = 1 in those units; the noise "
                                    "drawn at base resolution, clipped to the valid range, then resized",
        "Tables 6-7 training": f"SGD LR {profile.dim_lr}, batch {profile.dim_batch}, {profile.dim_epochs} epochs; BN on "
                               f"the first hidden layer; linear model with λ = {DIM_WEIGHT_DECAY} at every size",
        "Figure 2": "depth L = number of hidden Dense-384 layers; plain SGD (no momentum); Keras BN moving "
                    "averages (momentum 0.99) for inference; inputs and BIM/AWGN as Tables 6-7"
                    + (f"; η = {profile.db_lr_per_sample}·B in this profile: 1,347 digits give ~45x fewer steps per "
                       "epoch than MNIST's 60,000, so the paper's 1e-5·B would leave the nets untrained; "
                       f"{profile.db_lr_per_sample}·B keeps η × steps about the paper's"
                       if profile.db_lr_per_sample != 1e-5 else ""),
        "BIM": f"PGD without random start, summed loss; Tables 6-7: {profile.bim_steps} steps of {profile.bim_step}; "
               f"Figure 2: {profile.db_bim_steps} steps of {profile.db_bim_step}",
        "CIFAR training": f"SGD LR {CIFAR_LR} (Table 2's small fixed LR), momentum {CIFAR_MOMENTUM}, batch {CIFAR_BATCH}, "
                          f"weight decay {CIFAR_WEIGHT_DECAY}, 10% of the training set held out for picking the "
                          "best-validation epoch; VGG8 = 5 conv + 3 FC (tfadv's reading); BN ε = 1e-5",
        "CIFAR evaluation": f"the authors' released settings in normalised units: PGD-L∞ ε = {profile.cifar_linf_eps}, "
                            f"{profile.cifar_pgd_steps} steps of ε/10, no random start, summed loss, box [−2, 2]; PGD-L2 "
                            f"ε·√d, steps of ε·√d/10; AWGN σ = {profile.cifar_awgn_std}; every evaluated image clipped "
                            "to [−2, 2]; the digits stand-in uses CIFAR-10's channel-0 mean and std",
        "Fixup WRN": "scalar biases and multiplier, zero-initialised last branch conv and classifier, first branch "
                     "conv He × L^(-1/2); no separate LR for the scalars",
        "ImageNet (Table 5)": f"keras.applications VGG16/19 (no BN) vs ResNet50/DenseNet121 (BN) on ImageNetV2 "
                              f"matched-frequency, first {profile.imagenet_limit} images resized to 224; PGD-L∞ ε = "
                              f"{IMAGENET_PGD_EPS}/255, {IMAGENET_PGD_STEPS} steps of ε/4, no random start; AWGN σ = {IMAGENET_AWGN_STD:.1f} "
                              "on the 0-255 scale, clipped",
    }


def write_outputs(table: pd.DataFrame, profile_name: str, profile: Profile, out: Path, elapsed: float) -> None:
    if table.empty or "experiment" not in table:
        return
    for exp in sorted(set(table["experiment"].dropna())):
        part = table[table["experiment"] == exp].dropna(axis=1, how="all")
        atomic_write_csv(part, out / f"{exp}.csv")
    if "dimension" in set(table["experiment"]):
        figure_dimension(summarise(table[table["experiment"] == "dimension"],
                                   ["model", "batchnorm", "weight_decay", "image_width", "metric"]), out)
    if "depth_batch" in set(table["experiment"]):
        figure_depth_batch(summarise(table[table["experiment"] == "depth_batch"],
                                     ["depth", "batch_size", "batchnorm", "metric"]), out)
    if "cifar" in set(table["experiment"]):
        figure_cifar(summarise(table[table["experiment"] == "cifar"], ["model", "normalization", "test_set", "metric"]),
                     out)
    figure_toy(profile, table, out)
    claims, sections = claims_and_sections(table, profile_name)
    sections.append(("How verdicts are decided",
                     "Judged by the with/without-BN deltas (the paper's absolute values are mostly unavailable): "
                     "a delta is **reproduced** when it has the paper's sign, lies more than two standard errors "
                     "from zero and within a factor of two of the paper's delta; **partly reproduced** when only the "
                     "sign agrees; **not reproduced** otherwise. Standard errors are over seeds (independent means); "
                     "with a single seed there is none, and the verdict is at most partly reproduced."))
    cell_minutes = (table.groupby("cell")["cell_seconds"].first().sum() / 60) if "cell_seconds" in table else float("nan")
    sections.append(("Run", f"{table['cell'].nunique()} trained models (cells); their summed wall time "
                     f"{cell_minutes:.1f} min (as measured when each cell ran); this invocation {elapsed / 60:.1f} min. "
                     "Figures: " + ", ".join(sorted(p.name for p in out.glob('*.png')))))
    write_report(out / "report.md", TITLE, KEY, profile_name, claims, sections, settings_chosen(profile_name, profile))


# ------------------------------------------------------------------------------------------------- main
def timed(run_one, cell: dict, profile: Profile, args) -> list[dict]:
    """The cell's rows, each with the cell's wall time (training + evaluation) in `cell_seconds`."""
    start = time.monotonic()
    rows = run_one(cell, profile, args)
    return [{**row, "cell_seconds": round(time.monotonic() - start, 2)} for row in rows]


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser(KEY, TITLE)
    parser.add_argument("--experiments", default=None,
                        help=f"comma-separated subset of {','.join(EXPERIMENTS)} (default: the profile's)")
    parser.add_argument("--imagenet-weights", default="", metavar="NAME=PATH,...",
                        help="local keras.applications weight files, e.g. vgg16=/w/vgg16.h5 (default: download)")
    args = parser.parse_args(argv)
    args.imagenet_weights = dict(item.split("=", 1) for item in args.imagenet_weights.split(",") if item)
    return args


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    experiments = profile.experiments if args.experiments is None else tuple(
        e.strip() for e in args.experiments.split(",") if e.strip())
    unknown = set(experiments) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiments {sorted(unknown)}; choose from {EXPERIMENTS}")
    if "imagenet" in experiments and profile.data != "tfds":
        raise SystemExit("the imagenet experiment needs pretrained weights and ImageNetV2: use --profile paper")
    out = Path(args.out)
    cells = grid(profile, experiments, args.seed)
    start = time.monotonic()
    table = run_grid(args, cells, lambda cell: timed(RUNNERS[cell["experiment"]], cell, profile, args),
                     desc=f"batchnorm[{args.profile}]")
    write_outputs(table, args.profile, profile, out, time.monotonic() - start)
    print(f"wrote {out / 'results.csv'} and {out / 'report.md'}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
