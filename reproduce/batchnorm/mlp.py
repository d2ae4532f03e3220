"""Section 5 (Tables 6-7, App. F) and Figure 2: fully connected nets with and without BN.

Input dimension: MNIST upscaled from sqrt(d) = 28 to 56, 84, 112 pixels (standardised); a linear model and a
two-hidden-layer ReLU MLP (width d/2) with optionally one BN layer, with and without L2 weight decay;
BIM-L-inf (100 steps of 1e-3, eps = 0.1) and N(0, 1) noise drawn at 28x28 and resized.

Depth x batch (after Yang et al. 2019): width-384 ReLU nets of depth L, SGD with batch B and LR 1e-5 B, BN
nets trained 10 epochs and unnormalised ones 40; clean, noise and BIM accuracy.
"""
from __future__ import annotations

import keras

from reproduce.batchnorm import data
from reproduce.batchnorm.training import Schedule, attacked_accuracy, clean_accuracy, fit, noisy_accuracy, pgd, rows
from tfadv.experiments.run import Run
from tfadv.models import batchnorm_nets as nets

DIM_EPS = 0.1          # Tables 6-7: BIM-L-inf eps 0.1 (standardised units)
DIM_AWGN_STD = 1.0     # "zero mean and unit variance, the same first two moments as the clean images"
DIM_WEIGHT_DECAY = 0.01  # Table 7: "sufficient l2 regularization (lambda = 0.01)"
#: (model, one BN layer) of Tables 6-7 and App. F; each is trained without and with every weight decay of the profile.
DIM_MODELS = (("linear", False), ("mlp", False), ("mlp", True))


def evaluate(model: keras.Model, d: dict, *, seed: int, bim_steps: int, bim_step: float, run: Run,
             resize_noise: bool) -> dict[str, float]:
    """Train, clean, AWGN and BIM accuracy on the standardised set `d` (clipped to its valid pixel range)."""
    x, y, clip = d["x_test"], d["y_test"], d["clip"]
    noisy = (noisy_accuracy(model, d["x_test_base"], y, DIM_AWGN_STD, clip=clip, seed=seed, resize_to=d["size"])
             if resize_noise else noisy_accuracy(model, x, y, DIM_AWGN_STD, clip=clip, seed=seed))
    attack = pgd(model, eps=DIM_EPS, steps=run.capped(bim_steps), step_size=bim_step, clip=clip)
    return {"train": clean_accuracy(model, d["x_train"], d["y_train"]), "clean": clean_accuracy(model, x, y),
            "awgn": noisy, "bim": attacked_accuracy(model, attack, x, y)}


def run_dimension(cell: dict, run: Run) -> list[dict]:
    """One model of Tables 6-7 at one image width."""
    p = run.profile.dimension
    d = data.standardised(run, cell["scale"], p.eval_limit)
    keras.utils.set_random_seed(cell["seed"])
    shape = d["x_train"].shape[1:]
    if cell["model"] == "linear":
        model = nets.linear_classifier(shape, 10, weight_decay=cell["weight_decay"], init_stddev=None)
    else:
        model = nets.mlp(shape, 10, batchnorm_layer=0 if cell["batchnorm"] else None,
                         weight_decay=cell["weight_decay"])
    fit(model, d["x_train"], d["y_train"], Schedule(lr=p.lr, epochs=p.epochs, batch_size=p.batch_size),
        run=run, cell=cell, seed=cell["seed"])
    metrics = evaluate(model, d, seed=cell["seed"], bim_steps=p.bim_steps, bim_step=p.bim_step, run=run,
                       resize_noise=True)
    return rows(metrics, test_set="test", image_width=d["size"], n_test=len(d["y_test"]))


def run_depth_batch(cell: dict, run: Run) -> list[dict]:
    """One net of Figure 2: depth L, batch B, LR = lr_per_sample * B, BN or not."""
    p = run.profile.depth_batch
    d = data.standardised(run, 1, p.eval_limit)
    keras.utils.set_random_seed(cell["seed"])
    model = nets.deep_fc(d["x_train"].shape[1:], 10, depth=cell["depth"], batchnorm=cell["batchnorm"])
    epochs = p.epochs_bn if cell["batchnorm"] else p.epochs_plain
    schedule = Schedule(lr=p.lr_per_sample * cell["batch_size"], epochs=epochs, batch_size=cell["batch_size"])
    fit(model, d["x_train"], d["y_train"], schedule, run=run, cell=cell, seed=cell["seed"])
    metrics = evaluate(model, d, seed=cell["seed"], bim_steps=p.bim_steps, bim_step=p.bim_step, run=run,
                       resize_noise=False)
    return rows(metrics, test_set="test", epochs=epochs, n_test=len(d["y_test"]))
