"""Beyond the paper: the strength nets checked with tfadv's evaluation tools (seed 0, main length).

autoattack (kappa): an AutoAttack-style cascade (tfadv.evaluation.auto_attack) on the test images, beside the
PGD attacks the strength cell ran on the same images: per image, whether each attack broke it, so the gap
PGD - AutoAttack is measured on paired images (claims.autoattack_gaps reads it).
masking (kappa): tfadv.evaluation.check_gradient_masking, every flag with what it measured.
"""
from __future__ import annotations

import numpy as np

from reproduce.efficient.cells import EVAL_SEED, load_data, load_examples, load_net, seed_of, strength_cell
from tfadv.experiments import Run

#: The standard version's attacks (fra31/auto-attack), run by name under version="custom" at a smaller budget.
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
#: The images' value range and the threat model of the paper (L-inf ball, logits model).
BOUNDS = dict(norm="inf", from_logits=True, clip_min=0.0, clip_max=1.0)


def _net_and_images(run: Run, cell: dict, images: int | None):
    source = strength_cell(cell["kappa"], cell["seed"], cell["steps"])
    x, y = load_data(run)["test"]
    n = min(run.capped(images) or len(x), len(x))
    return source, load_net(run, source), x[:n], y[:n]


def _row(metric: str, value, n: int, attack: str = "", attack_kappa: int = 0) -> dict:
    return {"split": "test", "metric": metric, "value": value, "n": n, "attack": attack, "attack_kappa": attack_kappa}


def autoattack(run: Run, cell: dict) -> dict:
    """The cascade's robust accuracy and, for each PGD attack of the strength cell, the images it broke that
    the cascade did not and the other way round."""
    from tfadv.evaluation import auto_attack, predict_labels

    p = run.profile
    source, model, x, y = _net_and_images(run, cell, p.aa_images)
    steps, queries, targets = p.aa_budget
    result = auto_attack(model, x, y, eps=p.eps, **BOUNDS, version=p.aa_version,
                         attacks=list(STANDARD_ATTACKS) if p.aa_version == "custom" else None,
                         seed=seed_of(run, cell["seed"]) + EVAL_SEED, steps=steps, queries=queries,
                         n_target_classes=targets, state_path=str(run.work_dir(cell) / "autoattack_state.npz"),
                         verbose=run.show_progress)
    n = len(x)
    rows = [_row("autoattack_accuracy", result.robust_accuracy, n, "autoattack"),
            _row("autoattack_clean_accuracy", result.clean_accuracy, n, "autoattack")]
    robust = result.robust
    for key, x_adv in load_examples(run, source).items():
        name, kappa = key.rsplit("_", 1)
        held = predict_labels(model, x_adv[:n]) == y  # the PGD numbers count accuracy on the examples
        rows += [_row("pgd_accuracy", float(np.mean(held)), n, name, int(kappa)),
                 _row("pgd_only_broken", int(np.sum(~held & robust)), n, name, int(kappa)),
                 _row("autoattack_only_broken", int(np.sum(held & ~robust)), n, name, int(kappa))]
    stages = [{"stage": r["attack"], "attacked": r["attacked"], "broken": r["broken"],
               "robust_accuracy": r["robust_accuracy"]} for r in result.summary]
    return {"results": rows, "autoattack_stages": stages,
            "autoattack_notes": [{"note": note} for note in result.warnings]}


def masking(run: Run, cell: dict) -> dict:
    """Every flag of check_gradient_masking: raised or not, what it measured, what it means, what to do."""
    from tfadv.evaluation import check_gradient_masking

    p = run.profile
    _, model, x, y = _net_and_images(run, cell, p.masking_images)
    steps, queries, restarts = p.masking_budget
    report = check_gradient_masking(model, x, y, eps=p.eps, **BOUNDS, seed=seed_of(run, cell["seed"]) + EVAL_SEED,
                                    steps=steps, queries=queries, restarts=restarts, verbose=run.show_progress)
    flags = [{"flag": f.name, "raised": bool(f.raised), "measured": f.measured, "meaning": f.meaning,
              "advice": f.advice} for f in report.flags]
    return {"results": [_row("masking_flags_raised", len(report.raised), len(x), "masking"),
                        _row("masking_flags_checked", len(report.flags), len(x), "masking")],
            "masking_flags": flags}


def attack_passes(p, images: int) -> tuple[float, float, float]:
    """(passes, forwards, steps) of the cascade on `images` images, counted as if no image were broken."""
    steps, queries, targets = p.aa_budget
    passes = images * steps * (1 + targets + 2 * targets)  # APGD-CE, APGD-T per target, FAB-T ~2 per step
    return passes, images * queries, steps * (1 + 2 * targets) + queries


def masking_passes(p, images: int) -> tuple[float, float, float]:
    """(passes, forwards, steps) of check_gradient_masking: APGD-CE at 5 eps and a large one, APGD-DLR, 4x the
    steps, the restarts, and Square's queries."""
    steps, queries, restarts = p.masking_budget
    runs = 5 + 1 + 1 + 4 + restarts
    return images * steps * runs, images * queries, steps * runs + queries
