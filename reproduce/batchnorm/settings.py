"""Every setting of a profile and where it comes from: the paper, the authors' released code, or tfadv.

Profile fields are listed by their path (cifar.schedules.small.lr); on the demo and smoke profiles a value
that differs from the paper profile's is tfadv's scaled-down choice, with the reason. Constants of the
experiments (eps, noise, learning rates the paper states) follow.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from reproduce.batchnorm import beyond, cifar, linear, mlp, profiles
from reproduce.batchnorm.data import CIFAR_BOX, CIFAR_MEAN, CIFAR_STD
from tfadv.evaluation import compaction
from tfadv.experiments import Setting
from tfadv.experiments.run import Run

PAPER = "paper"
FIXUP_CODE = "reference code: AngusG/bn-advex-zhang-fixup"
TRAIN_CODE = f"{FIXUP_CODE} cifar/cifar_train.py"
EVAL_CODE = f"{FIXUP_CODE} cifar/cifar_eval_advertorch.py"
BLOG = "reference code: the authors' blog, AngusG/angusg.github.io batch-norm-causes-vulnerability"
LOGISTIC = "reference code: uoguelph-mlrg/adversarial_training_vs_weight_decay logistic.py"
NOT_STATED = "tfadv: the paper does not say"

#: Source of each paper-profile field (a prefix covers the fields below it); the rest is NOT_STATED.
SOURCES = {
    "data": "paper: MNIST, CIFAR-10, CIFAR-10.1 v6, CIFAR-10-C (ImageNetV2 stands in for ImageNet: tfadv)",
    "experiments": "paper: its experiments (SVHN, the c sweep and the appendix-only analyses are left out: tfadv)",
    "toy.epochs": PAPER, "toy.seeds": "tfadv: as Table 1's five",
    "tilting.seeds": PAPER, "tilting.train_per_class": PAPER, "tilting.epochs": PAPER, "tilting.batch_size": LOGISTIC,
    "tilting.image_sizes": "tfadv: digits stand-in only (MNIST is 28 wide)",
    "dimension.scales": PAPER, "dimension.bim_steps": PAPER, "dimension.bim_step": PAPER,
    "dimension.seeds": "tfadv: as Table 1's five", "dimension.decays": "paper: Table 7's λ = 0.01",
    "dimension.linear_decays": "tfadv: the paper tunes the linear model's λ per width (App. F, Table 13 not available)",
    "depth_batch.seeds": BLOG, "depth_batch.epochs_bn": PAPER, "depth_batch.epochs_plain": PAPER,
    "depth_batch.lr_per_sample": PAPER, "depth_batch.depths": "paper: Figure 2's axis, up to 60",
    "cifar.runs": "paper: Table 2 (VGG8, WRN, small LR), Table 3 (VGGs of increasing depth, large LR); and "
                  f"{FIXUP_CODE} (ResNet-110, its own schedule)",
    "cifar.seeds": f"{FIXUP_CODE} README (five seeds)", "cifar.wrn_depth": PAPER, "cifar.wrn_width": PAPER,
    "cifar.resnet_depth": f"{FIXUP_CODE} README", "cifar.pgd_steps": EVAL_CODE, "cifar.linf_eps": EVAL_CODE,
    "cifar.awgn_std": EVAL_CODE, "cifar.image_size": PAPER,
    "cifar.schedules.small.lr": PAPER, "cifar.schedules.small.epochs": PAPER, "cifar.schedules.small.select": PAPER,
    "cifar.schedules.small.augment": PAPER, "cifar.schedules.large.lr": PAPER, "cifar.schedules.large.epochs": PAPER,
    "cifar.schedules.large.boundaries": PAPER, "cifar.schedules.large.augment": PAPER,
    "cifar.schedules.large.select": "tfadv: as Table 2 (best validation epoch)",
    "cifar.schedules.small.momentum": TRAIN_CODE, "cifar.schedules.small.batch_size": TRAIN_CODE,
    "cifar.schedules.small.weight_decay": f"{TRAIN_CODE} (default 5e-4)",
    "cifar.schedules.large.momentum": TRAIN_CODE, "cifar.schedules.large.batch_size": TRAIN_CODE,
    "cifar.schedules.large.weight_decay": f"{TRAIN_CODE} (default 5e-4)",
    "cifar.schedules.reference": TRAIN_CODE + " (README checkpoints: weight decay 1e-4)",
    "cifar.schedules.reference.select": "tfadv: the last epoch (the reference code keeps the best *test* epoch; "
                                        "tfadv never selects on the test set)",
    "cifar.validation": "tfadv: the paper picks the best validation epoch without saying how many images",
    "cifar.robustness": "tfadv: beyond the paper (an AutoAttack-style accuracy and the gradient-masking checks)",
    "cifar.robustness.version": "reference code: fra31/auto-attack, its standard version",
    "cifar.robustness.steps": "reference code: fra31/auto-attack, its standard version",
    "cifar.robustness.queries": "reference code: fra31/auto-attack, its standard version",
    "cifar.robustness.targets": "reference code: fra31/auto-attack, its standard version",
    "imagenet.models": "tfadv: keras.applications has no VGG with BN; BN-free VGG16/19 vs BN ResNet50/DenseNet121",
    "imagenet.images": "tfadv: the first 1,000 of ImageNetV2 matched-frequency (the paper: ImageNet validation)",
}
#: Why a demo / smoke value differs from the paper profile's, by path prefix.
SCALED = {
    "data": "scikit-learn's 8x8 digits: offline, minutes on a CPU",
    "toy.seeds": "three seeds, the fewest the verdicts trust", "tilting.seeds": "three seeds, the fewest the "
    "verdicts trust", "dimension.seeds": "three seeds", "depth_batch.seeds": "the paper's three",
    "tilting.train_per_class": "all 3s and 7s of the digits' training split (~270 images)",
    "tilting.batch_size": "fewer images: more steps per epoch",
    "tilting.image_sizes": "the digits also upscaled to MNIST's width 28: the paper's input dimension",
    "dimension.scales": "widths 8, 16, 32; 3x left out for time",
    "dimension.epochs": "15 epochs of 1,347 digits", "dimension.lr": "0.05 with batch 32 on 1,347 digits",
    "dimension.batch_size": "fewer images: more steps per epoch",
    "depth_batch.depths": "depths 2 and 6: the claim needs depths at which every net trains, and deeper nets "
                          "cost the most",
    "depth_batch.batch_sizes": "the two ends of a 16x range",
    "depth_batch.bim_steps": "20 steps of 5e-3 reach ε = 0.1 as the paper's 100 of 1e-3 do",
    "depth_batch.bim_step": "20 steps of 5e-3 reach ε = 0.1 as the paper's 100 of 1e-3 do",
    "cifar.runs": "VGG8 with the small LR (Table 2) and the large LR (Table 3's schedule, the learning-rate knob); "
                  "the WideResNet and the Fixup ResNet left out for time",
    "cifar.seeds": "three seeds",
    "cifar.schedules.small.epochs": "20 epochs", "cifar.schedules.large.epochs": "20 epochs",
    "cifar.schedules.large.boundaries": "the paper's 150 and 250 of 350 epochs, scaled to 20",
    "cifar.schedules.small.augment": "no crop-and-flip: flipped digits change their meaning",
    "cifar.schedules.large.augment": "no crop-and-flip: flipped digits change their meaning",
    "cifar.width": "1/8 of the widths", "cifar.validation": "10% of the digits' training split",
    "cifar.robustness": "a cheap cascade (APGD-CE, APGD-T with 3 targets, 20 steps) on 200 test images; the "
                        "masking checks (10 steps, 300 Square queries, 2 restarts, 3 radii) on 100",
    "depth_batch.lr_per_sample": "1,347 digits give ~45x fewer steps per epoch than MNIST's 60,000: η = 5e-4 B "
                                 "keeps η × steps about the paper's",
    "cifar.image_size": "digits upsampled, one channel",
}


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf field of a (nested) dataclass or mapping."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from leaves(getattr(value, f.name), f"{path}{f.name}.")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}{key}.")
    else:
        yield path.rstrip("."), value


def source(path: str, table: dict[str, str], default: str) -> str:
    """The entry of the longest prefix of `path` in `table`."""
    hits = [k for k in table if path == k or path.startswith(k + ".")]
    return table[max(hits, key=len)] if hits else default


def unused(path: str, profile: profiles.Profile) -> bool:
    """Fields this profile never reads (the WRN's size without a WRN, ImageNet's without ImageNet)."""
    models = {cifar.family(m) for m, _ in profile.cifar.runs}
    experiment = path.split(".")[0]
    return ((experiment in profiles.EXPERIMENTS and experiment not in profile.experiments)
            or (path.startswith("cifar.wrn_") and "wrn" not in models)
            or (path == "cifar.resnet_depth" and "resnet" not in models)
            or (path.startswith("cifar.robustness.") and beyond.unused_budget(path.split(".")[-1],
                                                                              profile.cifar.robustness)))


def profile_settings(run: Run) -> list[Setting]:
    paper = dict(leaves(profiles.PROFILES["paper"]))
    out = []
    for path, value in leaves(run.profile):
        if unused(path, run.profile):
            continue
        from_paper = source(path, SOURCES, NOT_STATED)
        if run.profile_name != "paper" and paper.get(path, object()) != value:
            reason = source(path, SCALED, "") if run.profile_name == "demo" else "seconds, for tests"
            from_paper = f"tfadv: {run.profile_name} scale" + (f" ({reason})" if reason else "")
        out.append(Setting(path, value, from_paper))
    return out


CONSTANTS = [
    ("Figure 1 toy: Σ, ν₀, ν₁", f"{linear.TOY_COV.tolist()}, {linear.TOY_MEANS[0].tolist()}, "
                                f"{linear.TOY_MEANS[1].tolist()}", PAPER),
    ("Figure 1 toy: LR (full-batch GD), BN affine", f"{linear.TOY_LR}, γ = 1, β = 0 fixed", PAPER),
    ("BN constant c (linear models, MLPs, Figure 2)", "1e-3, inside the square root (Keras' epsilon)",
     "paper: Figure 2's c (where c sits: the authors' blog)"),
    ("Table 1: LR, WD λ, AWGN σ, FGSM ε", f"{linear.TILT_LR}, {linear.TILT_WEIGHT_DECAY}, {linear.TILT_AWGN_STD}, "
                                          f"{linear.TILT_FGSM_EPS} (pixels in [0, 1])", PAPER),
    ("Table 1: weight init, learned affine init", "truncated normal σ 0.1; γ ~ U(0, 1), β = 0",
     f"{LOGISTIC}; tfadv (PyTorch < 1.2's BN init, the paper's 'randomly initialized')"),
    ("Nearest-centroid FGSM ε", linear.NEAREST_CENTROID_FGSM_EPS, PAPER),
    ("Tables 6-7: BIM ε, AWGN σ, λ", f"{mlp.DIM_EPS}, {mlp.DIM_AWGN_STD} (standardised units), "
                                     f"{mlp.DIM_WEIGHT_DECAY}", PAPER),
    ("Tables 6-7: where the noise is drawn", "at the base width, then resized (bilinear)", "paper: footnote 6"),
    ("weight decay", "loss + (λ/2)‖w‖² (PyTorch's weight_decay)", "tfadv"),
    ("CIFAR normalisation (mean, std)", f"{CIFAR_MEAN}, {CIFAR_STD}", TRAIN_CODE),
    ("CIFAR PGD", f"no random start, summed CE, step ε × {cifar.PGD_STEP_FRACTION}, ℓ2 ε = ℓ∞ ε × √d, box {CIFAR_BOX} "
                  "(attacks start from clean images clipped to it)", EVAL_CODE),
    ("CIFAR AWGN and clean inputs", "unclipped", EVAL_CODE),
    ("CIFAR-10-C", "gaussian, shot and impulse noise, mean of severities 1-5", "paper: Table 4"),
    ("Fixup / BN ResNet details", "option-A shortcuts, zero-init last BN γ / branch conv, biases and scales at "
                                  "LR / 10, weight decay on every parameter", FIXUP_CODE),
    ("VGG8", "5 conv (64-128-256-512-512) + 3 FC, BN ε 1e-5", "tfadv: the paper's VGG8 is not defined"),
    ("ImageNet attack", "PGD-ℓ∞, no random start, step ε/4, from logits; AWGN clipped to [0, 255]", NOT_STATED),
    (*compaction.REPORT_SETTING, "tfadv"),
]


def settings(run: Run) -> list[Setting]:
    return profile_settings(run) + [Setting(name, value, src) for name, value, src in CONSTANTS]
