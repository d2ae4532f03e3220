"""What one cell asks of a GPU, for --plan (tfadv.experiments.plan): forward+backward passes of one sample
in training, in the per-epoch curves and in the final evaluation, forward-only passes, and device steps."""
from __future__ import annotations

import math

from tfadv.experiments import Run
from tfadv.experiments.plan import Cost

from reproduce.freefast import training
from reproduce.freefast.data import RESNET50_SIZE

#: Split sizes, so a plan needs no download: CIFAR-10 50,000 / 10,000; digits' stratified 75% / 25% of 1,797.
SPLITS = {"cifar10": (50_000, 10_000), "digits": (1_347, 450)}


def passes_per_sample(cell: dict, run: Run) -> int:
    """Forward+backward passes per training sample and epoch: Fast 2 (its first backward needs no weight
    gradients, counted whole), Free m (one per replay), PGD-k k + 1."""
    if cell["method"] == "free":
        return int(cell["replays"])
    return 2 if cell["method"] == "fast" else run.profile.pgd_train_steps + 1


def beyond_the_paper(cell: dict, run: Run, test: int) -> tuple[int, int]:
    """(passes, forwards) of AutoAttack and the masking checks (cells.beyond_the_paper), counted as if no point
    were broken: APGD-CE 1 and APGD-T / FAB-T about 1 and 2 per target and step, Square one forward per query;
    the checks run APGD-CE about 13 times (budgets, DLR, 4x steps, restarts) and Square once."""
    p, passes, forwards = run.profile, 0, 0
    if cell in [dict(c) for c in p.aa_cells]:
        n, steps = min(test, run.capped(p.aa_points) or test), run.capped(p.aa_steps)
        per_step = {"apgd-ce": 1, "apgd-dlr": 1, "apgd-t": p.aa_targets, "fab": 2, "fab-t": 2 * p.aa_targets}
        passes += n * steps * sum(per_step.get(a, 0) for a in p.aa_attacks) + n * max(p.eval_steps)
        forwards += n * run.capped(p.aa_queries) * ("square" in p.aa_attacks)
    if cell in [dict(c) for c in p.masking_cells]:
        n = min(test, run.capped(p.masking_points) or test)
        runs = len(p.masking_eps_factors) + 3 + 4 + p.masking_restarts
        passes += n * run.capped(p.masking_steps) * runs
        forwards += n * run.capped(p.masking_queries)
    return passes, forwards


def cost(cell: dict, run: Run) -> Cost:
    p = run.profile
    train, test = (run.capped(n if limit is None else min(n, limit))
                   for n, limit in zip(SPLITS[p.dataset], (p.train_points, p.eval_points)))
    curve = min(test, run.capped(p.curve_points) or test)
    epochs, per_sample = run.capped(int(cell["epochs"])), passes_per_sample(cell, run)
    beyond_passes, beyond_forwards = beyond_the_paper(cell, run, test)
    # PGD-k for every k of eval_steps is read off one run of the largest (evaluation.READ_OFF).
    attack_passes = epochs * curve * p.curve_steps + test * max(p.eval_steps) + beyond_passes
    batches = math.ceil(train / int(cell["batch_size"]))
    attack_steps = epochs * p.curve_steps * math.ceil(curve / p.eval_batch_size) + max(p.eval_steps) * math.ceil(
        test / p.eval_batch_size)
    size = RESNET50_SIZE if cell["architecture"] == "resnet50" else p.image_size
    shape = (size, size, p.channels)

    def build():
        import numpy as np

        from reproduce.freefast.data import Data

        empty = np.zeros((1, *shape), np.float32)
        return training.network(run, cell["architecture"], Data(empty, np.zeros(1, np.int64), empty, empty))

    return Cost(model=f"{cell['architecture']} {size}x{size}x{p.channels} width {p.width}", build=build,
                passes=train * epochs * per_sample + attack_passes,
                forwards=epochs * curve + test * 2 + beyond_forwards,
                steps=batches * epochs * per_sample + attack_steps, precision=p.dtype_policy)
