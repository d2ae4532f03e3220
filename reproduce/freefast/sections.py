"""The report's own sections: measured vs paper, the protocol in words, and notes on --limit."""
from __future__ import annotations

import pandas as pd

from tfadv.experiments import Run, markdown_table

from reproduce.freefast import paper, search
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


def limit_note(run: Run) -> str | None:
    if run.limit is None:
        return None
    return (f"This run used --limit {run.limit}: images, training epochs, curve points and attack steps were "
            f"capped at {run.limit} (a column named PGD-50 holds PGD-{run.limit}). It checks that the {run.profile_name} profile's code path runs end to end; its numbers "
            "are not the profile's, and every verdict is inconclusive.")


def sections(tables: dict[str, pd.DataFrame], run: Run) -> list[tuple[str, str]]:
    found = [("Note", limit_note(run))] if run.limit is not None else []
    found += [("Measured vs paper", measured_vs_paper(tables["results"], run))]
    return found + search.sections(tables, run) + [("Protocol", protocol(run))]
