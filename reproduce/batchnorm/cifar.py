"""Tables 2-4 and the authors' released ResNet-110 comparison: CIFAR-10 models with and without BN.

Each cell trains one model (VGG with or without BN, WideResNet or the authors' CIFAR ResNet with BN or with
Fixup initialisation and no normalisation) under one learning-rate schedule, saves its weights atomically,
and evaluates them as the authors' cifar_eval_advertorch.py does: clean, AWGN (sigma 0.25, unclipped) and
20-step PGD-L-inf / PGD-L2 without random start in the normalised input space, boxed to [-2, 2]; on the
paper profile also CIFAR-10.1 v6 and CIFAR-10-C's noise corruptions (mean over the five severities).
"""
from __future__ import annotations

import math

import keras
import numpy as np

from reproduce.batchnorm import beyond, data
from reproduce.batchnorm.training import attacked_mask, clean_accuracy, fit, noisy_accuracy, pgd, rows
from tfadv.analysis import corruptions
from tfadv.experiments import atomic, identity
from tfadv.experiments.run import Run
from tfadv.models import batchnorm_nets as nets

#: The authors' L-inf step: eps / 10 (eps_iter = 0.003 for eps = 0.03); their L2 budget is the L-inf one x sqrt(d).
PGD_STEP_FRACTION = 0.1
#: What "without BN" means per family: no normalisation (VGG) or Fixup initialisation (residual nets).
UNNORMALISED = {"vgg": "none", "wrn": "fixup", "resnet": "fixup"}


def family(model: str) -> str:
    return "vgg" if model.startswith("vgg") else model


def build(cell: dict, run: Run, input_shape: tuple[int, ...]) -> keras.Model:
    p, schedule = run.profile.cifar, run.profile.cifar.schedules[cell["schedule"]]
    with_bn = cell["normalization"] == "batchnorm"
    kind = "batchnorm" if with_bn else "fixup"
    if cell["model"] == "wrn":
        return nets.wide_resnet(p.wrn_depth, p.wrn_width, normalization=kind, input_shape=input_shape,
                                weight_decay=schedule.weight_decay)
    if cell["model"] == "resnet":
        return nets.cifar_resnet(p.resnet_depth, normalization=kind, input_shape=input_shape,
                                 weight_decay=schedule.weight_decay)
    return nets.vgg(cell["model"], batchnorm=with_bn, input_shape=input_shape, width=p.width,
                    weight_decay=schedule.weight_decay)


def trained(cell: dict, run: Run, d: dict) -> keras.Model:
    """The cell's model, trained now or read back from its weights (an evaluation that failed after
    training, e.g. CIFAR-10-C missing, does not train again)."""
    x_tr, y_tr = d["train"]
    keras.utils.set_random_seed(cell["seed"])
    model = build(cell, run, x_tr.shape[1:])
    name = identity.cell_id(run.store.fingerprint, identity.cell_key(cell))
    found = run.find_artifact(f"cifar/{name}.weights.h5")
    if found is not None:
        model.load_weights(found)
        return model
    fit(model, x_tr, y_tr, run.profile.cifar.schedules[cell["schedule"]], run=run, cell=cell, seed=cell["seed"],
        validation=d["val"])
    atomic.save_weights(model, run.artifact(f"cifar/{name}.weights.h5"))
    return model


def attacks(model: keras.Model, run: Run, dims: int) -> dict:
    p = run.profile.cifar
    steps, eps_2 = run.capped(p.pgd_steps), p.linf_eps * math.sqrt(dims)
    return {"pgd_linf": pgd(model, eps=p.linf_eps, steps=steps, step_size=p.linf_eps * PGD_STEP_FRACTION,
                            clip=data.CIFAR_BOX),
            "pgd_l2": pgd(model, eps=eps_2, steps=steps, step_size=eps_2 * PGD_STEP_FRACTION, norm="2",
                          clip=data.CIFAR_BOX)}


def corrupted(model: keras.Model, run: Run) -> list[dict]:
    """CIFAR-10-C noise corruptions: accuracy per severity and their mean (Table 4). Under --limit only the
    first corruption at the lowest and highest severity (the same code path, 2 of the 15 sets)."""
    out = []
    names, severities = corruptions.CIFAR10C_NOISE_CORRUPTIONS, corruptions.CIFAR10C_SEVERITIES
    if run.limit is not None:
        names, severities = names[:1], (severities[0], severities[-1])
    for corruption in names:
        per_severity = corruptions.accuracy_over_severities(
            lambda x, y: clean_accuracy(model, data.cifar_normalise(x), y), corruption, severities,
            data_dir=run.data_dir, limit=run.capped(run.profile.cifar.eval_limit))
        out += [{"test_set": "cifar10_c", "metric": f"{corruption}_s{s}", "value": v} for s, v in per_severity.items()]
        out.append({"test_set": "cifar10_c", "metric": corruption, "value": float(np.mean(list(per_severity.values())))})
    return out


def run_cifar(cell: dict, run: Run) -> dict[str, list[dict]]:
    p = run.profile.cifar
    d = data.cifar(run)
    model = trained(cell, run, d)
    x_tr, y_tr = d["train"]
    out = rows({"train": clean_accuracy(model, x_tr, y_tr)}, test_set="train", n_test=len(y_tr))
    threats = attacks(model, run, x_tr[0].size)  # built once: each new attack object traces its graph again
    tables = {}
    for name, (x, y) in d["tests"].items():
        # advertorch clips x + delta to the box, so its first step already clips the clean pixels outside it;
        # tfadv's attacks refuse inputs outside their box, so the attacked images start from the clipped ones.
        boxed = np.clip(x, *data.CIFAR_BOX)
        masks = {k: attacked_mask(model, a, boxed, y) for k, a in threats.items()}
        out += rows({"clean": clean_accuracy(model, x, y),
                     "awgn": noisy_accuracy(model, x, y, p.awgn_std, seed=cell["seed"]),
                     **{k: float(np.mean(m)) for k, m in masks.items()}}, test_set=name, n_test=len(y))
        if name != "test" or not beyond.measured_on(cell, run):
            continue
        if p.robustness.points:
            out += beyond.autoattack_rows(model, run, boxed, y, masks["pgd_linf"], cell["seed"],
                                          state_path=str(run.work_dir(cell) / "autoattack_state.npz"))
        if p.robustness.masking_points and cell["seed"] == run.seed:
            tables["masking"] = beyond.masking_rows(model, run, boxed, y, cell["seed"])
    if run.profile.data == "tfds":
        out += corrupted(model, run)
    return {"results": out, **tables}
