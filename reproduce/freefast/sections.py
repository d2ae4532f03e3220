"""The report's own sections: measured vs paper, the protocol in words, and notes on --limit."""
from __future__ import annotations

import pandas as pd

from tfadv.experiments import Run, markdown_table

from reproduce.freefast import paper, robustness, search
from reproduce.freefast.paper import NETWORK, label

ACCURACIES = ("natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy")


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


def measured_vs_paper(results: pd.DataFrame, run: Run) -> str:
    """Every configuration measured (mean ± s.d. over its seeds), beside the paper's row on CIFAR-10."""
    reference = paper.table()
    rows = []
    columns = [*paper.CONFIG_COLUMNS, "eps"]
    for keys, group in results.groupby(columns, dropna=False, sort=True):
        config = dict(zip(columns, keys))
        eps = config.pop("eps")
        name = f"{label(**config)}, {NETWORK[config['architecture']]}, bs {int(config['batch_size'])}, ε {eps:.3g}"
        rows.append([f"{name} (measured, {len(group)} seed{'s' * (len(group) > 1)})",
                     *(_mean_sd(group[c]) if c in group else "–" for c in ACCURACIES), int(config["epochs"]),
                     f"{group['train_minutes'].mean():.2f}", f"{group['avg_epoch_seconds'].mean():.2f}"])
        theirs = _paper_row(reference, config) if run.profile.dataset == "cifar10" and abs(eps - paper.CIFAR_EPS) < 1e-9 else None
        if theirs is not None:
            rows.append([f"{name} (paper)", *("–" if pd.isna(theirs[c]) else f"{theirs[c]:.3f}" for c in ACCURACIES),
                         int(theirs["epochs"]), f"{theirs['train_minutes']:g}", f"{theirs['avg_epoch_seconds']:g}"])
    columns = ["configuration", "natural", "PGD-10", "PGD-20", "PGD-50", "epochs", "train min", "s/epoch"]
    note = "" if run.profile.dataset == "cifar10" else (
        "\n\nThe paper's CIFAR-10 numbers are not repeated here: this profile trains on other data.")
    return markdown_table(columns, rows) + note


def _paper_row(reference: pd.DataFrame, config: dict) -> pd.Series | None:
    mask = pd.Series(True, index=reference.index)
    for column, value in config.items():
        mask &= reference[column].isna() if pd.isna(value) else reference[column] == value
    found = reference[mask]
    return None if found.empty else found.iloc[0]


def protocol(run: Run) -> str:
    """How epochs, training and evaluation are counted, in words (numbers from the profile)."""
    p = run.profile
    steps = "/".join(map(str, p.eval_steps))
    return (
        "An epoch is one pass over the training set. In a Free-m epoch each minibatch is replayed m times (the "
        "seed's convention: its cyclic schedule spans epochs × batches × m steps), so Free-m makes m times as many "
        "SGD steps as Fast in the same epochs; Shafahi et al. count N_ep/m passes instead. "
        f"Evaluation: L∞ PGD-{steps} at the cell's ε (the claims: ε = {p.eps:.4g}), step {p.eval_step_ratio:g}ε, "
        f"{p.restarts} random start(s) "
        "(a sample counts robust only if every start fails); a sample stops moving once misclassified (the seed's "
        "`attack_pgd`); model in inference mode and float32. Curves: natural and "
        f"PGD-{p.curve_steps} accuracy on the first {p.curve_points or 'all'} test points after every epoch. "
        "Train time sums the epochs' wall time and excludes all evaluation; the first epoch includes compiling.")


def autoattack(results: pd.DataFrame, run: Run) -> str | None:
    """AutoAttack beside PGD on the same points, per configuration (seeds pooled), with the paired gap and
    what it says (robustness.gap_reading)."""
    if "aa_robust_accuracy" not in results or results["aa_robust_accuracy"].isna().all():
        return None
    p, rows, readings = run.profile, [], {}
    measured = results.dropna(subset=["aa_robust_accuracy"])
    for keys, group in measured.groupby([*paper.CONFIG_COLUMNS], dropna=False, sort=True):
        config = dict(zip(paper.CONFIG_COLUMNS, keys))
        name = f"{label(**config)}, {NETWORK[config['architecture']]}, {int(config['epochs'])} ep"
        pooled = {**{k: group[k].sum() for k in ("aa_only_pgd_robust", "aa_only_aa_robust", "aa_points")},
                  **{k: group[k].mean() for k in ("aa_clean_accuracy", "aa_pgd_accuracy", "aa_robust_accuracy")}}
        gap, se = robustness.paired_gap(pooled)
        reading = robustness.gap_reading(pooled)
        readings.setdefault(reading.split(":")[0], []).append(name)
        rows.append([f"{name} ({len(group)} seed{'s' * (len(group) > 1)})", f"{pooled['aa_clean_accuracy']:.3f}",
                     f"{pooled['aa_pgd_accuracy']:.3f}", f"{pooled['aa_robust_accuracy']:.3f}",
                     f"{gap:+.3f} ± {se:.3f}", reading])
    steps = max(p.eval_steps)
    table = markdown_table(["model", "clean", f"PGD-{steps}", "AutoAttack", f"PGD-{steps} − AutoAttack",
                            "PGD overstated robustness?"], rows)
    targets = f", {p.aa_targets} target classes" if any(a.endswith("-t") for a in p.aa_attacks) else ""
    summary = {"yes": "PGD overstated robustness clearly", "no": "No clear overstatement",
               "cannot say": "The comparison cannot say"}
    warnings = sorted({w for w in measured["aa_warnings"].dropna() if w})
    return "\n\n".join([
        f"The paper measures robustness with PGD only. Beyond it, tfadv runs an AutoAttack-style cascade "
        f"({', '.join(p.aa_attacks)}; {p.aa_steps} iterations, {p.aa_queries} queries{targets}: a reduced budget, "
        f"see the settings) on the first {int(measured['aa_points'].iloc[0])} test points of each model listed "
        f"(ε = {p.eps:g}), and the final PGD-{steps} on the same points. The gap is paired (the same points), its "
        "standard error from the points only one attack left robust; seeds are pooled.", table,
        " ".join(f"{text} for: {', '.join(readings[k])}." for k, text in summary.items() if k in readings),
        *(f"AutoAttack warned: {w}" for w in warnings)])


def masking(table: pd.DataFrame, run: Run) -> str | None:
    """Which gradient-masking checks each model raised, and what the raised ones mean."""
    if table is None or "check" not in table:
        return None
    rows, explained = [], {}
    for keys, group in table.groupby([*paper.CONFIG_COLUMNS, "repeat"], dropna=False, sort=True):
        config = dict(zip(paper.CONFIG_COLUMNS, keys))
        raised = group[group["raised"].astype(bool)]
        rows.append([f"{label(**config)}, {NETWORK[config['architecture']]}, {int(config['epochs'])} ep",
                     f"{len(raised)} of {len(group)}", "; ".join(f"{r['check']}: {r['measured']}"
                                                                for _, r in raised.iterrows()) or "–"])
        explained.update({r["check"]: f"{r['meaning']} {r['advice']}" for _, r in raised.iterrows()})
    text = [f"tfadv.evaluation.check_gradient_masking on {int(table['masking_points'].iloc[0])} test points of "
            f"each model listed (APGD-CE with {run.profile.masking_steps} steps as the reference attack).",
            markdown_table(["model", "checks raised", "what was measured"], rows)]
    return "\n\n".join(text + [f"- **{name}**: {why}" for name, why in sorted(explained.items())])


def limit_note(run: Run) -> str | None:
    if run.limit is None:
        return None
    return (f"This run used --limit {run.limit}: images, training epochs, curve points and attack steps were "
            f"capped at {run.limit} (a column named PGD-50 holds PGD-{run.limit}). It checks that the {run.profile_name} profile's code path runs end to end; its numbers "
            "are not the profile's, and every verdict is inconclusive.")


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    found = [("Note", limit_note(run))] if run.limit is not None else []
    found += [("Measured vs paper", measured_vs_paper(tables["results"], run))]
    found += search.sections(tables, run)
    beyond = [("AutoAttack beside PGD (beyond the paper)", autoattack(tables["results"], run)),
              ("Gradient-masking checks (beyond the paper)", masking(tables.get("masking"), run))]
    return found + [(heading, text) for heading, text in beyond if text] + [("Protocol", protocol(run))]
