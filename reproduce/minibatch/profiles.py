"""The three profiles of the `minibatch` runner, its options, and where every setting comes from.

paper: the reference code's protocol (AdvCVPR23/Adversarial-Mini-Batching, run_experiments.py and
attack_model.py): four Keras ImageNet classifiers on ImageNetV2 at 224 px, L-inf eps 8 and L2 eps 128 in
pixel units, 32 PGD steps of 2 eps / 32, batch sizes 1..128, five PGD runs.
demo: the same code on a temperature-calibrated CNN trained on scikit-learn's digits (offline, minutes).
smoke: tiny shapes and few steps, for the tests.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from tfadv.experiments import Option, Run, Setting

IMAGENET_MODELS = ("inception_v3", "xception", "resnet50", "densenet121")
DIGITS_MODEL = "digits_cnn"
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
NORMS = ("l2", "linf")  # stored as words: pandas would read "2" and "inf" back as numbers
NORM_NAMES = {"l2": "L2", "linf": "L∞"}
ATTACKS = ("FGM", "PGD")
#: The paper's baseline (eq. 1, the mean over the batch) and batch correction (eq. 5, the sum).
LOSSES = {"mean": "sum_over_batch_size", "sum": "sum"}
#: Precision settings: (Keras dtype policy, the engine's loss_scale). The paper's two, then tfadv's
#: per-sample loss scaling under mixed_float16 (beyond the paper).
PRECISIONS = {"float32": ("float32", None), "mixed_float16": ("mixed_float16", None),
              "mixed_float16+scaling": ("mixed_float16", "per_sample")}
BATCHING = ("real", "emulated")


@dataclass(frozen=True)
class Profile:
    models: tuple[str, ...]
    eps: dict  # norm -> eps in pixel units (inputs are RGB in [0, 255])
    images: int | None  # None: every image of the data set
    runs: int  # PGD repeats (FGM is deterministic: one run)
    batching: str  # default of --batching
    l2_rand_init: str  # default of --l2-rand-init
    steps: int = 32
    step_factor: float = 2.0  # PGD step size = step_factor * eps / steps
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    craft_batch: int = 128  # emulated batching crafts in batches of this size
    check_images: int = 8  # emulated batching: images also crafted in real batches of each size
    image_size: int = 224
    train_epochs: int = 30  # the digits CNN (demo, smoke)
    #: The regime search (demo): logit scales k (the calibrated model's logits times k: the same predictions,
    #: k times the confidence margin, so exponentially smaller input gradients) tried at the smallest and the
    #: largest batch, float32, mean loss, PGD. The claims are judged at k = 1, the calibrated model.
    search_sharpness: tuple[float, ...] = ()


#: ImageNetV2 as the paper uses it (§3.3): "10,000 images consisting of 10 sample images for each of the 1000
#: different classes".
IMAGENET_V2_CLASSES, IMAGENET_V2_PER_CLASS = 1000, 10

PAPER_EPS = {"linf": 8.0, "l2": 128.0}  # Table 1: 8/256 and 128/256 of [0, 1], in pixel units
#: Demo eps: the digits CNN is far more robust than an ImageNet model at the paper's eps (PGD at batch 1
#: fools ~19% at L-inf 8 and ~6% at L2 128, measured), so the demo uses eps at which PGD at batch 1
#: succeeds on most images, as in the paper.
DEMO_EPS = {"linf": 32.0, "l2": 1024.0}

PROFILES = {
    "paper": Profile(IMAGENET_MODELS, PAPER_EPS, images=None, runs=5, batching="real", l2_rand_init="batch_radius"),
    # uniform_ball: each image draws its own start, so emulated batching reproduces real batches (the
    # reference code's batch_radius shares one radius per real batch, which a larger batch cannot emulate).
    "demo": Profile((DIGITS_MODEL,), DEMO_EPS, images=256, runs=1, batching="emulated", l2_rand_init="uniform_ball",
                    image_size=32, search_sharpness=(4.0, 16.0)),
    "smoke": Profile((DIGITS_MODEL,), DEMO_EPS, images=8, runs=1, batching="emulated", l2_rand_init="uniform_ball",
                     steps=2, batch_sizes=(1, 4), craft_batch=4, check_images=2, image_size=16, train_epochs=2,
                     search_sharpness=(4.0,)),
}


def _choices(allowed, aliases=None):
    """An argparse type: a comma-separated subset of `allowed` (a bad entry is an error naming the choices)."""
    def parse(text: str) -> tuple:
        values = tuple((aliases or {}).get(v.strip(), v.strip()) for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {', '.join(allowed)}")
        return values
    return parse


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be whole numbers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


OPTIONS = (
    Option("--batching", "real: craft each batch size in real batches (the reference code); emulated: craft "
           "every image in batches of the profile's craft_batch with per-sample reduction weights 1/B, exact "
           "and much faster, checked against real batches on a few images (default: the profile's)",
           choices=BATCHING, profile_field="batching"),
    Option("--l2-normalization", "clamped: the reference code's L2 step g / sqrt(max(1e-12, ||g||^2)); exact: "
           "tfadv's scale-free step", default="clamped", choices=("clamped", "exact")),
    Option("--l2-rand-init", "PGD-L2 random start: batch_radius, the reference code's one U(0,1) radius per "
           "batch; uniform_ball, uniform in each sample's ball (default: the profile's)",
           choices=("batch_radius", "uniform_ball"), profile_field="l2_rand_init"),
    Option("--models", f"comma-separated subset of the profile's models ({', '.join(IMAGENET_MODELS)} or "
           f"{DIGITS_MODEL})", type=_choices((*IMAGENET_MODELS, DIGITS_MODEL)), role="selection"),
    Option("--norms", "comma-separated subset of l2, linf (2 and inf also accepted)",
           type=_choices(NORMS, {"2": "l2", "inf": "linf"}), role="selection"),
    Option("--attacks", "comma-separated subset of FGM, PGD", type=_choices(ATTACKS), role="selection"),
    Option("--losses", "mean (the baseline, eq. 1) and/or sum (the batch correction, eq. 5)",
           type=_choices(tuple(LOSSES)), role="selection"),
    Option("--precisions", f"comma-separated subset of {', '.join(PRECISIONS)}", type=_choices(tuple(PRECISIONS)),
           role="selection"),
    Option("--batch-sizes", "comma-separated batch sizes (default: the profile's)", type=_batch_sizes,
           role="selection"),
    Option("--imagenet-dir", "ImageNetV2 in the tarball layout DIR/<class id>/<image>.jpeg (default: tfds "
           "imagenet_v2 in --data-dir)", role="location"),
    Option("--weights-dir", "folder of the official Keras weight files (e.g. resnet50_weights_tf_dim_ordering_"
           "tf_kernels.h5) instead of Keras' download cache", role="location"),
)


def batching(run: Run) -> str:
    return run.options["batching"]


def l2_rand_init(run: Run) -> str:
    return run.options["l2_rand_init"]


def steps(run: Run, attack: str) -> int:
    return 1 if attack == "FGM" else run.capped(run.profile.steps)


def settings(run: Run) -> list[Setting]:
    """Every setting of the profile with its source; the sources differ between the paper and the demo."""
    p, paper = run.profile, run.profile_name == "paper"
    ref = "reference code: run_experiments.py"
    demo = "tfadv: a scaled-down demo value"
    eps = ", ".join(f"{NORM_NAMES[n]} {p.eps[n]:g}" for n in NORMS)
    rows = [
        Setting("models", ", ".join(p.models), "paper" if paper else "tfadv: a CNN on scikit-learn's digits, "
                "RGB in [0, 255], softmax output, calibrated by temperature scaling (offline)"),
        Setting("data", "ImageNetV2 matched-frequency, resized bilinearly to 224 x 224" if paper else
                f"digits test split, upsampled to {p.image_size} x {p.image_size} x 3", "paper" if paper else demo),
        Setting("images", imagenet_images(run)[0] if p.images is None else f"{run.capped(p.images)}",
                ref if paper else demo),
        Setting("image order", "sorted file list shuffled with seed 42, the same in every run", "tfadv: the "
                "reference code shuffles with seed 42 after an unseeded list_files, so its order varied"),
        Setting("eps (pixel units)", eps, "paper: Table 1, as the reference code" if paper else
                "tfadv: the paper's eps fool few digits; these let PGD at batch 1 succeed on most images"),
        Setting("PGD steps, step size", f"{run.capped(p.steps)}, {p.step_factor:g} eps / steps",
                "paper: Table 1, as the reference code" if p.steps == 32 else demo),
        Setting("FGM", "one step of eps, no random start; one run (it is deterministic)",
                "tfadv: one run (the paper and the reference code repeat it with each PGD run)"),
        Setting("PGD random start", f"on; L2: {l2_rand_init(run)}", "reference code: attack_model.py"
                if l2_rand_init(run) == "batch_radius" else "tfadv: each image draws its own start (uniform in "
                "its ball), so emulated batching can reproduce real batches; the reference code shares one radius "
                "per batch"),
        Setting("random starts keyed on", f"(seed {run.seed}, image index, run)", "tfadv: stateless, so a "
                "sample's start does not depend on its batch; the reference code uses the global RNG"),
        Setting("L2 step normalisation", run.options["l2_normalization"], "reference code: attack_model.py"
                if run.options["l2_normalization"] == "clamped" else "tfadv: --l2-normalization"),
        Setting("loss", "Keras CategoricalCrossentropy on the softmax output (from_logits=False), one-hot "
                "labels; mean (eq. 1) or sum (eq. 5)", "reference code: run_experiments.py"),
        Setting("precisions", ", ".join(PRECISIONS), "paper: float32 and mixed_float16; "
                "mixed_float16+scaling (per-sample loss scaling) is tfadv's, beyond the paper"),
        Setting("batch sizes", ", ".join(map(str, p.batch_sizes)), "paper" if p.batch_sizes == BATCH_SIZES
                else demo),
        Setting("PGD runs", str(run.capped(p.runs)), "paper" if paper else "tfadv: one run (the spread over random "
                "starts is small after 32 steps); the claims use binomial standard errors over the images"),
        Setting("success", "fraction of all images misclassified after the attack", ref),
        Setting("clip range", "[0, 255]", "reference code: attack_model.py"),
        Setting("batching", _batching_text(run), ref if batching(run) == "real" else "tfadv: --batching"),
    ]
    if p.search_sharpness:
        rows.append(Setting("regime search: logit scales k", ", ".join(f"{k:g}" for k in (1.0, *p.search_sharpness)),
                            "tfadv: the confidence of the model sets the size of its input gradients, which the "
                            "paper's mechanism (vanishing gradients) acts on"))
    if not paper:
        rows.append(Setting("digits CNN training", f"{run.capped(p.train_epochs)} epochs, Adam 1e-3, batch 32, "
                            "temperature scaling on 20% held out", "tfadv"))
    return rows


def imagenet_images(run: Run) -> tuple[str, str | None]:
    """(the images the ImageNet models attack, in words; a warning when they are not the paper's ImageNetV2 of
    IMAGENET_V2_CLASSES x IMAGENET_V2_PER_CLASS). tfds checks its own download; a directory is listed here."""
    read = "" if run.limit is None else f"; --limit {run.limit}: the first {run.limit} of them"
    source = run.options.get("imagenet_dir")
    if not source:
        return f"all of tfds imagenet_v2 (10,000: 1000 classes x 10); a last partial batch is dropped{read}", None
    from tfadv.datasets.imagenet_v2 import list_image_dir

    try:
        _, labels = list_image_dir(source)
    except (OSError, ValueError) as error:
        return f"--imagenet-dir {source}: cannot be listed now", f"--imagenet-dir {source} cannot be listed now " \
               f"({error}), so the report cannot say which images the cells attacked"
    counts = np.bincount(labels, minlength=IMAGENET_V2_CLASSES)
    present = counts[counts > 0]
    shown = (f"{len(labels):,} in --imagenet-dir, {len(present)} of {IMAGENET_V2_CLASSES} classes, "
             f"{present.min()}-{present.max()} per class")
    if len(present) == IMAGENET_V2_CLASSES and (counts == IMAGENET_V2_PER_CLASS).all():
        return f"all {shown}; a last partial batch is dropped{read}", None
    return (f"{shown} (NOT ImageNetV2's 1000 x 10); a last partial batch is dropped{read}",
            f"--imagenet-dir {source} holds {shown}, not ImageNetV2's {IMAGENET_V2_CLASSES * IMAGENET_V2_PER_CLASS:,} "
            f"({IMAGENET_V2_CLASSES} classes x {IMAGENET_V2_PER_CLASS}, the paper §3.3): the verdicts rest on other "
            "images than the paper's; point --imagenet-dir at the whole matched-frequency set")


def _batching_text(run: Run) -> str:
    if batching(run) == "real":
        return "real batches of each size"
    p = run.profile
    return (f"emulated: crafted in batches of {p.craft_batch} with per-sample weights 1/B; the first "
            f"{p.check_images} images (at least one batch) also crafted in real batches of each size")
