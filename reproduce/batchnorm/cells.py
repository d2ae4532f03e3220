"""The grid of the batchnorm reproduction: one cell is one trained model (or one pretrained ImageNet model),
so a killed run resumes model by model."""
from __future__ import annotations

import keras

from reproduce.batchnorm import cifar, imagenet, linear, mlp
from tfadv.experiments.run import Run

RUNNERS = {"toy": linear.run_toy, "tilting": linear.run_tilting, "dimension": mlp.run_dimension,
           "depth_batch": mlp.run_depth_batch, "cifar": cifar.run_cifar, "imagenet": imagenet.run_imagenet}


def experiments(run: Run) -> tuple[str, ...]:
    """The profile's experiments, or the --experiments selection (checked against what the profile can run)."""
    chosen = run.options["experiments"]  # the profile's when not given (Option.profile_field)
    if "imagenet" in chosen and run.profile.data != "tfds":
        raise SystemExit("batchnorm: the imagenet experiment needs pretrained weights and ImageNetV2: "
                         "use --profile paper")
    return chosen


def _seeds(run: Run, count: int) -> range:
    """The seeds of `count` repeats; one under --limit (a wiring check, not a measurement)."""
    return range(run.seed, run.seed + (count if run.limit is None else 1))


def _ends(run: Run, values: tuple) -> tuple:
    """All values, or under --limit the first and the last: every code path, the grid's extremes, few cells."""
    return tuple(values) if run.limit is None or not values else tuple(dict.fromkeys((values[0], values[-1])))


def _cifar_runs(run: Run) -> tuple[tuple[str, str], ...]:
    """The profile's (model, schedule) runs; under --limit the first of each family (VGG, WRN, ResNet): every
    builder and schedule kind (fixed LR, LR steps, slow biases) once, at full size."""
    if run.limit is None:
        return run.profile.cifar.runs
    first: dict[str, tuple[str, str]] = {}
    for model, schedule in run.profile.cifar.runs:
        first.setdefault(cifar.family(model), (model, schedule))
    return tuple(first.values())


def grid(run: Run) -> list[dict]:
    p = run.profile
    cells: list[dict] = []
    for name in experiments(run):
        if name == "toy":
            cells += [{"experiment": name, "variant": v, "seed": s} for s in _seeds(run, p.toy.seeds)
                      for v in ("gd", "bngd")]
        elif name == "tilting":
            widths = (None, *p.tilting.image_sizes)
            cells += [{"experiment": name, "variant": "nearest_centroid", "seed": run.seed, "image_size": w}
                      for w in widths]
            cells += [{"experiment": name, "variant": v, "seed": s, "image_size": w} for w in widths
                      for s in _seeds(run, p.tilting.seeds) for v in linear.TILT_VARIANTS]
        elif name == "dimension":
            q = p.dimension
            cells += [{"experiment": name, "model": m, "batchnorm": bn, "weight_decay": wd, "scale": k, "seed": s}
                      for k in _ends(run, q.scales) for s in _seeds(run, q.seeds) for m, bn in mlp.DIM_MODELS
                      for wd in (0.0, *q.decays, *(q.linear_decays if m == "linear" else ()))]
        elif name == "depth_batch":
            q = p.depth_batch
            cells += [{"experiment": name, "depth": d, "batch_size": b, "batchnorm": bn, "seed": s}
                      for s in _seeds(run, q.seeds) for d in _ends(run, q.depths) for b in _ends(run, q.batch_sizes)
                      for bn in (False, True)]
        elif name == "cifar":
            cells += [{"experiment": name, "model": m, "schedule": sched, "seed": s,
                       "normalization": n if n == "batchnorm" else cifar.UNNORMALISED[cifar.family(m)]}
                      for s in _seeds(run, p.cifar.seeds) for m, sched in _cifar_runs(run) for n in ("batchnorm", "none")]
        elif name == "imagenet":
            cells += [{"experiment": name, "model": m} for m in p.imagenet.models]
    return cells


def run_cell(cell: dict, run: Run):
    # Every cell builds its own models: free the previous cell's (a full-size WRN or VGG holds gigabytes).
    keras.backend.clear_session(free_memory=True)
    return RUNNERS[cell["experiment"]](cell, run)
