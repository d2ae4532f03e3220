"""The three profiles of the batchnorm reproduction, its options, and where every setting comes from.

paper: the paper's protocol where it says it, else the authors' released code (AngusG/bn-advex-zhang-fixup,
the Figure-2 blog post, the 2018 logistic code the paper cites), else tfadv's choice; MNIST / CIFAR-10 /
CIFAR-10.1 / CIFAR-10-C / ImageNetV2 through tensorflow-datasets, a GPU. demo: the same code on
scikit-learn's 8x8 digits, minutes on a CPU. smoke: tiny shapes and few steps, for
the tests.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from reproduce.batchnorm.beyond import Robustness
from reproduce.batchnorm.training import Schedule
from tfadv.experiments import Option

EXPERIMENTS = ("toy", "tilting", "dimension", "depth_batch", "cifar", "imagenet")


@dataclass(frozen=True)
class Toy:            # Figure 1
    samples_per_class: int
    epochs: int
    seeds: int


@dataclass(frozen=True)
class Tilting:        # Table 1
    seeds: int
    train_per_class: int | None  # None: every training image of the two classes
    epochs: int
    batch_size: int
    image_sizes: tuple[int, ...] = ()  # digits stand-in only: also run upscaled to these widths


@dataclass(frozen=True)
class Dimension:      # Tables 6-7, App. F
    scales: tuple[int, ...]          # multiples of the base width (MNIST 28, digits 8)
    seeds: int
    epochs: int
    lr: float
    batch_size: int
    bim_steps: int
    bim_step: float
    eval_limit: int | None = None
    #: Weight decays lambda each model is trained with (besides lambda = 0), the same at every width.
    decays: tuple[float, ...] = (0.01,)
    #: Further lambdas for the linear model only: the paper tunes its lambda per width (App. F).
    linear_decays: tuple[float, ...] = (0.1,)


@dataclass(frozen=True)
class DepthBatch:     # Figure 2
    depths: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    seeds: int
    epochs_bn: int
    epochs_plain: int
    lr_per_sample: float             # eta = lr_per_sample * B
    bim_steps: int
    bim_step: float
    eval_limit: int | None = None


@dataclass(frozen=True)
class Cifar:          # Tables 2-4, the authors' ResNet-110
    runs: tuple[tuple[str, str], ...]   # (model, schedule): vgg8..vgg19, wrn, resnet
    seeds: int
    schedules: Mapping[str, Schedule]
    width: float                        # VGG width multiplier
    wrn_depth: int
    wrn_width: int
    resnet_depth: int
    image_size: int                     # digits stand-in only (CIFAR is 32)
    train_limit: int | None
    validation: int                     # training images held out to pick the best epoch
    pgd_steps: int
    linf_eps: float                     # normalised units, as the authors' evaluation code
    awgn_std: float                     # normalised units
    eval_limit: int | None = None
    robustness: Robustness = field(default_factory=Robustness)  # beyond the paper: AutoAttack, masking checks


@dataclass(frozen=True)
class ImageNet:       # Table 5
    models: tuple[str, ...] = ()
    images: int = 0
    pgd_eps: float = 2.0                # [0, 255] pixel units
    pgd_steps: int = 10
    awgn_std: float = 25.5              # [0, 255] pixel units


@dataclass(frozen=True)
class Profile:
    data: str                           # "tfds" (MNIST, CIFAR-10, ...) or "digits"
    experiments: tuple[str, ...]
    toy: Toy
    tilting: Tilting
    dimension: Dimension
    depth_batch: DepthBatch
    cifar: Cifar
    imagenet: ImageNet = field(default_factory=ImageNet)


SMALL_LR = Schedule(lr=0.01, epochs=150, momentum=0.9, batch_size=128, weight_decay=5e-4, select="best_val",
                    augment=True)
LARGE_LR = dataclasses.replace(SMALL_LR, lr=0.1, epochs=350, boundaries=(150, 250))
REFERENCE = Schedule(lr=0.1, epochs=200, momentum=0.9, batch_size=128, boundaries=(100, 150), weight_decay=1e-4,
                     select="last", slow_lr_factor=0.1, augment=True)

PROFILES = {
    "paper": Profile(
        data="tfds", experiments=EXPERIMENTS,
        toy=Toy(samples_per_class=500, epochs=1000, seeds=5),
        tilting=Tilting(seeds=5, train_per_class=2500, epochs=50, batch_size=128),
        dimension=Dimension(scales=(1, 2, 3, 4), seeds=5, epochs=20, lr=0.1, batch_size=128, bim_steps=100,
                            bim_step=1e-3),
        depth_batch=DepthBatch(depths=(2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60),
                               batch_sizes=(8, 16, 32, 64, 128, 256, 512), seeds=3, epochs_bn=10, epochs_plain=40,
                               lr_per_sample=1e-5, bim_steps=100, bim_step=1e-3),
        cifar=Cifar(runs=(("vgg8", "small"), ("wrn", "small"), ("vgg11", "large"), ("vgg13", "large"),
                          ("vgg16", "large"), ("vgg19", "large"), ("resnet", "reference")),
                    seeds=5, schedules={"small": SMALL_LR, "large": LARGE_LR, "reference": REFERENCE}, width=1.0,
                    wrn_depth=28, wrn_width=10, resnet_depth=110, image_size=32, train_limit=None, validation=5000,
                    pgd_steps=20, linf_eps=0.03, awgn_std=0.25,
                    robustness=Robustness(points=1000, masking_points=500)),
        imagenet=ImageNet(models=("vgg16", "vgg19", "resnet50", "densenet121"), images=1000)),
    "demo": Profile(
        data="digits", experiments=("toy", "tilting", "dimension", "depth_batch", "cifar"),
        toy=Toy(samples_per_class=500, epochs=1000, seeds=3),
        tilting=Tilting(seeds=3, train_per_class=None, epochs=50, batch_size=32, image_sizes=(28,)),
        dimension=Dimension(scales=(1, 2, 4), seeds=3, epochs=15, lr=0.05, batch_size=32, bim_steps=100,
                            bim_step=1e-3),
        depth_batch=DepthBatch(depths=(2, 6), batch_sizes=(16, 256), seeds=3, epochs_bn=10, epochs_plain=40,
                               lr_per_sample=5e-4, bim_steps=20, bim_step=5e-3),
        cifar=Cifar(runs=(("vgg8", "small"), ("vgg8", "large")), seeds=3,
                    schedules={"small": dataclasses.replace(SMALL_LR, epochs=20, augment=False),
                               "large": dataclasses.replace(LARGE_LR, epochs=20, boundaries=(9, 14), augment=False)},
                    width=0.125, wrn_depth=10, wrn_width=1, resnet_depth=8, image_size=16, train_limit=None,
                    validation=135, pgd_steps=20, linf_eps=0.03, awgn_std=0.25,
                    robustness=Robustness(points=200, version="custom", attacks=("apgd-ce", "apgd-t"), steps=20,
                                          targets=3, masking_points=100, masking_steps=10, masking_queries=300,
                                          masking_restarts=2, masking_eps_factors=(0.5, 1.0, 2.0)))),
    "smoke": Profile(
        data="digits", experiments=("toy", "tilting", "dimension", "depth_batch", "cifar"),
        toy=Toy(samples_per_class=50, epochs=5, seeds=1),
        tilting=Tilting(seeds=1, train_per_class=None, epochs=1, batch_size=64),
        dimension=Dimension(scales=(1,), seeds=1, epochs=1, lr=0.05, batch_size=64, bim_steps=3, bim_step=0.05,
                            eval_limit=64, linear_decays=()),
        depth_batch=DepthBatch(depths=(2,), batch_sizes=(32,), seeds=1, epochs_bn=1, epochs_plain=1,
                               lr_per_sample=1e-4, bim_steps=3, bim_step=0.05, eval_limit=64),
        cifar=Cifar(runs=(("vgg8", "small"), ("wrn", "small")), seeds=1,
                    schedules={"small": dataclasses.replace(SMALL_LR, epochs=1, augment=False)}, width=0.0625,
                    wrn_depth=10, wrn_width=1, resnet_depth=8, image_size=16, train_limit=256, validation=32,
                    pgd_steps=2, linf_eps=0.1, awgn_std=0.5, eval_limit=64,
                    robustness=Robustness(points=32, version="custom", attacks=("apgd-ce",), steps=2, targets=1,
                                          masking_points=16, masking_steps=2, masking_queries=10,
                                          masking_restarts=2, masking_eps_factors=(1.0, 2.0)))),
}


def _experiments(text: str) -> tuple[str, ...]:
    chosen = tuple(e.strip() for e in text.split(",") if e.strip())
    unknown = sorted(set(chosen) - set(EXPERIMENTS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
    return chosen


OPTIONS = (
    Option("--experiments", f"comma-separated subset of {','.join(EXPERIMENTS)} (default: the profile's)",
           type=_experiments, role="selection", profile_field="experiments"),
    Option("--weights-dir", "folder holding the official keras.applications weight files (e.g. "
           "vgg16_weights_tf_dim_ordering_tf_kernels.h5); default: Keras' cache or download", role="location"),
    Option("--imagenet-dir", "ImageNetV2 in its tarball layout DIR/<class id>/<image>.jpeg (default: tfds "
           "imagenet_v2)", role="location"),
)
