"""What one cell asks of a device, for `--plan` (tfadv.experiments.plan): passes of one sample through the
Madry CNN, counted from the profile without loading data or training anything."""
from __future__ import annotations

from reproduce.efficient import beyond
from reproduce.efficient.cells import (ASYNC, AUTOATTACK, BASELINE, MASKING, STALENESS, STRENGTH, TRANSFER,
                                       transfer_nets)
from reproduce.efficient.profiles import Profile
from tfadv.experiments import Run
from tfadv.experiments.plan import Cost

#: (train, test) images of each dataset, to count passes without loading it.
SIZES = {"mnist": (60_000, 10_000), "digits": (1_347, 450)}


def _attack_passes(p: Profile, kappas, images: int) -> float:
    """Crafting one set of `images` with each panel kappa and mnist_challenge's PGD-40 (a loss pass each step)."""
    return images * (sum(kappas) + p.eval_steps)


def _trained(p: Profile, run: Run, kappa: int, steps: int, panel) -> tuple[float, float, float]:
    test = run.capped(p.test_images) or SIZES[p.dataset][1]
    logged = run.capped(p.log_images) * 2 * sum(panel) * (steps // min(p.log_every, steps))
    passes = steps * run.capped(p.batch_size) * (kappa + 1) + logged + _attack_passes(p, {*panel, kappa}, test)
    return passes, 2 * test, steps  # one compiled train step runs its kappa attack steps inside


def cost(cell: dict, run: Run) -> Cost:
    from tfadv.models.mnist import madry_cnn

    p: Profile = run.profile
    kind, test = cell["experiment"], run.capped(p.test_images) or SIZES[p.dataset][1]
    if kind == STRENGTH:
        passes, forwards, steps = _trained(p, run, cell["kappa"], run.capped(cell["steps"]), p.panel_kappas)
    elif kind == STALENESS:
        passes, forwards, steps = _trained(p, run, cell["kappa"], run.capped(p.train_steps), (cell["kappa"],))
    elif kind == TRANSFER:  # the strength cells crafted the examples: forward passes only
        targets, sources = transfer_nets(p, cell["steps"])
        pairs = len(targets) * len(set(targets + sources))
        passes, forwards, steps = 0.0, test * pairs, pairs
    elif kind == AUTOATTACK:
        passes, forwards, steps = beyond.attack_passes(p, run.capped(p.aa_images) or test)
    elif kind == MASKING:
        passes, forwards, steps = beyond.masking_passes(p, min(run.capped(p.masking_images) or test, test))
    elif kind in (ASYNC, BASELINE):
        baseline = kind == BASELINE
        steps = run.capped(p.baseline_steps if baseline else p.async_steps)
        batch = run.capped(p.baseline_batch_size if baseline else p.batch_size)
        passes = steps * batch * (cell["kappa"] + 1) + _attack_passes(p, (), test)
        forwards = 2 * test
    else:
        raise ValueError(f"unknown experiment {kind!r} in cell {cell}")
    name = f"Madry CNN {'x'.join(map(str, p.input_shape[:2]))}"
    return Cost(model=name, build=lambda: madry_cnn(p.input_shape, init=p.init), passes=passes, forwards=forwards,
                steps=steps)
