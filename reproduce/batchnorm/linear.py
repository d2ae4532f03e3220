"""Section 3, boundary tilting: the toy of Figure 1 and the linear models of Table 1 (MNIST 3 vs 7).

A linear classifier w.x + b trained by gradient descent on separable data converges to the max-margin
boundary, here the nearest-centroid one (tilt theta ~ 0). Batch-normalising its input (BNGD, h = x in
eq. 1) divides each input direction by its batch standard deviation, so in input space the weight is
w_i / sqrt(sigma_i^2 + c): directions of low variance get large weights, the boundary tilts towards them
and small perturbations along them cross it.
"""
from __future__ import annotations

import keras
import numpy as np

from reproduce.batchnorm import data
from reproduce.batchnorm.training import Schedule, clean_accuracy, fit, noisy_accuracy, rows
from tfadv.analysis import tilting
from tfadv.attacks import FGM
from tfadv.evaluation import robust_accuracy
from tfadv.experiments.run import Run
from tfadv.models import batchnorm_nets as nets

# Figure 1: Sigma_11 = 1, Sigma_22 = 0.01, Sigma_12 = Sigma_21 = 0.05, nu_0 = [-5, 0], nu_1 = [5, 0].
TOY_COV = np.array([[1.0, 0.05], [0.05, 0.01]])
TOY_MEANS = (np.array([-5.0, 0.0]), np.array([5.0, 0.0]))
TOY_LR = 0.1  # "we use a value of 0.1 for 1000 epochs"
# Table 1: learning rate 0.1 for 50 epochs; WD lambda = 0.1; AWGN N(0, 1); FGSM eps = 1/10.
TILT_LR = 0.1
TILT_WEIGHT_DECAY = 0.1
TILT_AWGN_STD = 1.0
TILT_FGSM_EPS = 0.1
# "the nearest-centroid classifier ... achieving 40% accuracy for FGSM at eps = 1/4 vs. ~0%"
NEAREST_CENTROID_FGSM_EPS = 0.25
#: Table 1's variants: BN affine ("fixed": gamma = 1, beta = 0; "learned") or None, and weight decay.
TILT_VARIANTS = {"gd": (None, 0.0), "wd": (None, TILT_WEIGHT_DECAY), "bngd_fixed": ("fixed", 0.0),
                 "bngd_learned": ("learned", 0.0)}


def toy_data(samples_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussians N(nu_j, Sigma), labels 0 and 1, shuffled."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.multivariate_normal(m, TOY_COV, samples_per_class) for m in TOY_MEANS])
    y = np.repeat([0, 1], samples_per_class)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def run_toy(cell: dict, run: Run) -> list[dict]:
    """GD or BNGD (BN with gamma = 1, beta = 0 on the input) by full-batch GD; theta w.r.t. nu_1 - nu_0."""
    p = run.profile.toy
    x, y = toy_data(run.capped(p.samples_per_class), seed=cell["seed"])
    keras.utils.set_random_seed(cell["seed"])
    model = nets.linear_classifier((2,), 2, batchnorm="fixed" if cell["variant"] == "bngd" else None)
    fit(model, x, y, Schedule(lr=TOY_LR, epochs=p.epochs, batch_size=len(x)), run=run, cell=cell, seed=cell["seed"])
    w = tilting.input_space_weights(model, (2,))
    b = float(model(np.zeros((1, 2), np.float32), training=False).numpy()[0] @ np.array([-1.0, 1.0]))
    theta = tilting.angle_degrees(w, TOY_MEANS[1] - TOY_MEANS[0])
    return rows({"tilt_deg": theta, "clean": clean_accuracy(model, x, y), "w0": w[0], "w1": w[1], "b": b},
                test_set="toy_train", n_test=len(y))


def tilting_data(run: Run, seed: int, image_size: int | None = None):
    """3 vs 7 (3 -> 0, 7 -> 1): a per-class sample of the training set, the test set, and the full training
    set (the nearest-centroid reference: "average 7" minus "average 3" of the full training set); with
    `image_size`, upscaled to that width (the digits stand-in at MNIST's input dimension)."""
    x_tr, y_tr, x_te, y_te = data.digits(run, classes=(3, 7))
    if image_size is not None:
        x_tr, x_te = data.upscale(x_tr, image_size), data.upscale(x_te, image_size)
    x_te, y_te = data.capped(run, x_te, y_te)
    rng = np.random.default_rng(seed)
    picks = []
    for label in (0, 1):
        found = np.flatnonzero(y_tr == label)
        if not len(found):
            raise ValueError(f"Table 1 needs training images of digit {(3, 7)[label]}; the training set has none")
        wanted = run.capped(run.profile.tilting.train_per_class) or len(found)
        picks.append(rng.choice(found, min(wanted, len(found)), replace=False))
    picks = rng.permutation(np.concatenate(picks))
    return x_tr[picks], y_tr[picks], x_te, y_te, x_tr, y_tr


def nearest_centroid_model(x_ref: np.ndarray, y_ref: np.ndarray) -> keras.Model:
    """w* = avg 7 - avg 3, with the boundary half way between the two centroids."""
    w = tilting.nearest_centroid_direction(x_ref, y_ref, 1)
    flat = x_ref.reshape(len(x_ref), -1)
    mid = 0.5 * (flat[y_ref == 1].mean(0) + flat[y_ref == 0].mean(0))
    model = nets.linear_classifier(x_ref.shape[1:], 2, init_stddev=None)
    model.get_layer("linear").set_weights([w[:, None].astype(np.float32), np.array([-w @ mid], np.float32)])
    return model


def run_tilting(cell: dict, run: Run) -> list[dict]:
    """One Table-1 model (or the untrained nearest-centroid classifier): theta, clean, AWGN and FGSM accuracy."""
    p = run.profile.tilting
    x_tr, y_tr, x_te, y_te, x_ref, y_ref = tilting_data(run, cell["seed"], cell["image_size"])
    keras.utils.set_random_seed(cell["seed"])
    if cell["variant"] == "nearest_centroid":
        model = nearest_centroid_model(x_ref, y_ref)
    else:
        affine, decay = TILT_VARIANTS[cell["variant"]]
        model = nets.linear_classifier(x_tr.shape[1:], 2, batchnorm=affine, weight_decay=decay)
        fit(model, x_tr, y_tr, Schedule(lr=TILT_LR, epochs=p.epochs, batch_size=p.batch_size), run=run, cell=cell,
            seed=cell["seed"])

    def fgsm(eps: float) -> float:
        attack = FGM(model, eps=eps, norm="inf", reduction="sum", from_logits=True, clip_min=0.0, clip_max=1.0)
        return robust_accuracy(model, attack, x_te, y_te, batch_size=256)

    metrics = {"tilt_deg": tilting.tilting_angle(model, x_ref, y_ref), "train": clean_accuracy(model, x_tr, y_tr),
               "clean": clean_accuracy(model, x_te, y_te),
               "awgn": noisy_accuracy(model, x_te, y_te, TILT_AWGN_STD, clip=(0.0, 1.0), seed=cell["seed"]),
               "fgsm": fgsm(TILT_FGSM_EPS), "fgsm_eps0.25": fgsm(NEAREST_CENTROID_FGSM_EPS)}
    return rows(metrics, test_set="3vs7_test", n_test=len(x_te), width=x_te.shape[1])
