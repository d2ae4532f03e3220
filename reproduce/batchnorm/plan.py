"""What one cell asks of a device, for `--plan` (tfadv.experiments.plan): passes of one sample through the
cell's network, counted from the profile and the cell's coordinates without loading data or training anything.

Counted: every training epoch's samples (and, for the CIFAR runs, the validation images scored each epoch),
the clean, noisy and attacked evaluations (an attack step is one forward+backward pass of each image), the
AutoAttack cascade and the gradient-masking checks on the CIFAR models, CIFAR-10-C, and Table 5's PGD.

Approximated:
- Dataset sizes are the published ones (MNIST 60,000 / 10,000, its 3s and 7s 12,396 / 2,038, CIFAR-10 50,000 /
  10,000, CIFAR-10.1 v6 2,000, CIFAR-10-C 10,000 per corruption and severity, ImageNetV2 10,000; the digits'
  1,347 / 450 and their 3s and 7s 271 / 91), not read from the data.
- Attacks are counted as if no image were ever broken (the early exit of APGD, FAB and Square saves some);
  FAB-T counts two passes per step and target, Square one forward per query (as reproduce.efficient.beyond).
- One architecture per width and depth: with and without BN (or Fixup) share a row, their FLOPs counted on the
  BN variant (a BN layer adds a few FLOPs per unit, small beside the dense or convolutional layers).
- Cheap bookkeeping (the tilt angle, the toy's boundary, the nearest-centroid fit) is left out; device steps
  count training batches, validation batches of 32 (Keras' default) and evaluation batches of 256.
"""
from __future__ import annotations

from reproduce.batchnorm import beyond, cifar, imagenet
from reproduce.batchnorm.training import EVAL_BATCH
from tfadv.evaluation.autoattack import ATTACK_NAMES, VERSIONS
from tfadv.experiments import Run
from tfadv.experiments.plan import Cost

#: (train, test) images of MNIST (the digits stand in on demo and smoke), of its 3s and 7s (Table 1), of CIFAR-10.
MNIST = {"tfds": (60_000, 10_000), "digits": (1_347, 450)}
THREE_SEVEN = {"tfds": (12_396, 2_038), "digits": (271, 91)}
CIFAR10 = {"tfds": (50_000, 10_000), "digits": (1_347, 450)}
CIFAR10_1 = 2_000
CIFAR10_C = 10_000  # per corruption and severity
IMAGENET_V2 = 10_000
VALIDATION_BATCH = 32  # Keras' validation batch when fit reads a dataset


def _batches(n: int, size: int) -> int:
    return -(-n // size)


def _sum(*parts: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(map(sum, zip(*parts)))


def _fit(run: Run, n: int, epochs: int, batch: int, validation: int = 0) -> tuple[float, float, float]:
    """training.fit: every epoch's samples (steps per epoch and epochs under --limit) and its validation."""
    per_epoch, epochs = _batches(n, batch), run.capped(epochs)
    if per_epoch == 1 and not validation:  # full-batch gradient descent: one step an epoch
        return epochs * n, 0, epochs
    taken = run.capped(per_epoch)
    return (epochs * min(n, taken * batch), epochs * validation,
            epochs * (taken + _batches(validation, VALIDATION_BATCH)))


def _forwards(n: int) -> tuple[float, float, float]:
    return 0, n, _batches(n, EVAL_BATCH)


def _pgd(n: int, steps: int, batch: int = EVAL_BATCH) -> tuple[float, float, float]:
    """An attack of `steps` loss gradients on n images, with the clean and adversarial predictions."""
    return n * steps, 2 * n, _batches(n, batch) * (steps + 2)


def _autoattack(run: Run, n: int) -> tuple[float, float, float]:
    """beyond.autoattack_rows: the cascade's attacks on n images."""
    q = run.profile.cifar.robustness
    steps, queries, targets = run.capped(q.steps), run.capped(q.queries), run.capped(q.targets)
    per_step = {"apgd-ce": 1, "apgd-dlr": 1, "apgd-t": targets, "fab": 2, "fab-t": 2 * targets, "square": 0}
    names = q.attacks if q.version == "custom" else VERSIONS.get(q.version, ATTACK_NAMES)
    gradient = sum(per_step[a] for a in names)
    square = queries if "square" in names else 0
    return n * steps * gradient, n * (square + 2), _batches(n, EVAL_BATCH) * (steps * gradient + square)


def _masking(run: Run, n: int) -> tuple[float, float, float]:
    """beyond.masking_rows: APGD-CE at each radius and a large one, APGD-DLR, 4x the steps, the restarts,
    and Square's queries (tfadv.evaluation.check_gradient_masking)."""
    q = run.profile.cifar.robustness
    steps, queries = run.capped(q.masking_steps), run.capped(q.masking_queries)
    restarts, factors = (q.masking_restarts, q.masking_eps_factors) if run.limit is None else (2, (1.0,))
    runs = len({*factors, 1.0}) + 1 + 1 + 4 + restarts
    return n * steps * runs, n * (queries + runs + 2), _batches(n, EVAL_BATCH) * (steps * runs + queries)


def _cifar(cell: dict, run: Run) -> tuple[float, float, float]:
    p = run.profile.cifar
    schedule = p.schedules[cell["schedule"]]
    train, test = CIFAR10[run.profile.data]
    train = min(run.capped(p.train_limit) or train, train)
    n_val = max(1, min(p.validation, train // 10)) if p.validation else 0
    cap = lambda n: min(run.capped(p.eval_limit) or n, n)
    tests = {"test": cap(test), **({"cifar10_1_v6": cap(CIFAR10_1)} if run.profile.data == "tfds" else {})}
    parts = [_fit(run, train - n_val, schedule.epochs, schedule.batch_size, n_val), _forwards(train - n_val)]
    for n in tests.values():  # clean, AWGN, PGD-L-inf and PGD-L2
        parts += [_forwards(2 * n), _pgd(n, run.capped(p.pgd_steps)), _pgd(n, run.capped(p.pgd_steps))]
    if beyond.measured_on(cell, run):
        if p.robustness.points:
            parts.append(_autoattack(run, min(run.capped(p.robustness.points), tests["test"])))
        if p.robustness.masking_points and cell["seed"] == run.seed:
            parts.append(_masking(run, min(run.capped(p.robustness.masking_points), tests["test"])))
    if run.profile.data == "tfds":  # CIFAR-10-C: three noise corruptions x five severities (two under --limit)
        parts.append(_forwards((15 if run.limit is None else 2) * cap(CIFAR10_C)))
    return _sum(*parts)


def _mnist_eval(run: Run, train: int, test: int, bim_steps: int) -> tuple[float, float, float]:
    """mlp.evaluate: train and test clean accuracy, AWGN and BIM."""
    return _sum(_forwards(train + 2 * test), _pgd(test, run.capped(bim_steps)))


def _fc(cell: dict, run: Run) -> tuple[float, float, float]:
    """Tables 6-7 (dimension) and Figure 2 (depth_batch): MNIST, upscaled for the former."""
    train, test = MNIST[run.profile.data]
    train = run.capped(train)
    if cell["experiment"] == "dimension":
        q = run.profile.dimension
        epochs, batch = q.epochs, q.batch_size
    else:
        q = run.profile.depth_batch
        epochs, batch = (q.epochs_bn if cell["batchnorm"] else q.epochs_plain), cell["batch_size"]
    test = min(run.capped(q.eval_limit) or test, test)
    return _sum(_fit(run, train, epochs, batch), _mnist_eval(run, train, test, q.bim_steps))


def _linear(cell: dict, run: Run) -> tuple[float, float, float]:
    """Figure 1's toy (full-batch GD) and Table 1's linear models (two FGSM evaluations)."""
    if cell["experiment"] == "toy":
        p = run.profile.toy
        n = 2 * run.capped(p.samples_per_class)
        return _sum(_fit(run, n, p.epochs, n), _forwards(n))
    p = run.profile.tilting
    train, test = THREE_SEVEN[run.profile.data]
    test = run.capped(test)
    if p.train_per_class is not None:  # the per-class sample the model trains on and is scored on
        train = min(2 * run.capped(p.train_per_class), train)
    evaluation = _sum(_forwards(train + 2 * test), _pgd(test, 1), _pgd(test, 1))
    if cell["variant"] == "nearest_centroid":
        return evaluation
    return _sum(_fit(run, train, p.epochs, p.batch_size), evaluation)


def _imagenet(run: Run) -> tuple[float, float, float]:
    """Table 5: clean, AWGN and PGD-L-inf (batches of 32) on the first ImageNetV2 images, top-1 and top-5."""
    p = run.profile.imagenet
    n = run.capped(p.images) or IMAGENET_V2
    return _sum(_pgd(n, run.capped(p.pgd_steps), imagenet.BATCH), _forwards(2 * n))


def _network(cell: dict, run: Run) -> tuple[str, object]:
    """The cell's architecture (name, build): only its graph is counted, its weights are random."""
    from tfadv.models import batchnorm_nets as nets

    kind, data = cell["experiment"], run.profile.data
    base = 28 if data == "tfds" else 8
    if kind == "toy":
        return "linear 2-D (toy)", lambda: nets.linear_classifier((2,), 2, batchnorm="fixed")
    if kind == "tilting":
        w = cell["image_size"] or base
        return f"linear {w}x{w} (3 vs 7)", lambda: nets.linear_classifier((w, w, 1), 2, batchnorm="fixed")
    if kind == "dimension":
        w = base * cell["scale"]
        if cell["model"] == "linear":
            return f"linear {w}x{w}", lambda: nets.linear_classifier((w, w, 1), 10, init_stddev=None)
        return f"MLP {w}x{w}", lambda: nets.mlp((w, w, 1), 10, batchnorm_layer=0)
    if kind == "depth_batch":
        d = cell["depth"]
        return f"FC-384 depth {d}", lambda: nets.deep_fc((base, base, 1), 10, depth=d, batchnorm=True)
    if kind == "cifar":
        return _cifar_network(cell, run)
    name = cell["model"]
    return f"{name} 224px", lambda: imagenet.classifier(name, None)


def _cifar_network(cell: dict, run: Run) -> tuple[str, object]:
    p = run.profile.cifar
    size, channels = (32, 3) if run.profile.data == "tfds" else (p.image_size, 1)
    model = cell["model"]
    name = {"wrn": f"WRN-{p.wrn_depth}-{p.wrn_width}", "resnet": f"ResNet-{p.resnet_depth}"}.get(
        model, model.upper() + ("" if p.width == 1 else f" x{p.width:g}"))
    bn = {**cell, "normalization": "batchnorm"}
    return f"{name} {size}px", lambda: cifar.build(bn, run, (size, size, channels))


def cost(cell: dict, run: Run) -> Cost:
    kind = cell["experiment"]
    if kind in ("toy", "tilting"):
        passes, forwards, steps = _linear(cell, run)
    elif kind in ("dimension", "depth_batch"):
        passes, forwards, steps = _fc(cell, run)
    elif kind == "cifar":
        passes, forwards, steps = _cifar(cell, run)
    elif kind == "imagenet":
        passes, forwards, steps = _imagenet(run)
    else:
        raise ValueError(f"unknown experiment {kind!r} in cell {cell}")
    name, build = _network(cell, run)
    return Cost(model=name, build=build, passes=passes, forwards=forwards, steps=steps)

