"""The paper's figures from the merged tables: per-epoch accuracy curves (Figs 1-8) and final accuracies.

Where cells were repeated over seeds, a curve is the mean over seeds and the band seaborn's 95% interval; a
final-accuracy bar is the mean over seeds and its whisker ± 2 s.e. (measures.estimate: the claims' noise).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tfadv.experiments import Run
from tfadv.experiments.figures import save_figure, set_style

from reproduce.freefast import measures as m
from reproduce.freefast.paper import NETWORK, label

MEASURES = {"train_adv_accuracy": "train (adversarial batches)", "val_natural_accuracy": "validation (natural)",
            "val_pgd_accuracy": "validation (PGD)"}


def long_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, epoch, measure) with readable configuration and network names."""
    named = curves.assign(config=[label(**r) for r in curves.to_dict("records")],
                          network=curves["architecture"].map(NETWORK))
    present = [c for c in MEASURES if c in named]
    ids = ["config", "network", "method", "epochs", "eps", "epoch", "replays", "alpha_ratio", "repeat", "batch_size"]
    long = named.melt(id_vars=[c for c in ids if c in named], value_vars=present, var_name="measure",
                      value_name="accuracy")
    return long.assign(measure=long["measure"].map(MEASURES))


def two_panels(data: pd.DataFrame, hue: str, title: str, path, pgd_label: str, first: list[str]) -> str:
    """(a) the `first` measures, (b) PGD validation accuracy, per epoch; saved atomically."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, measures, panel in ((axes[0], first, "(a) train / validation accuracy"),
                                (axes[1], [MEASURES["val_pgd_accuracy"]], f"(b) {pgd_label} validation accuracy")):
        part = data[data["measure"].isin(measures)]
        sns.lineplot(part, x="epoch", y="accuracy", hue=hue, style="measure" if len(measures) > 1 else None, ax=ax)
        ax.set_title(panel)
        ax.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    save_figure(fig, path)
    return path.name


def paper_figures(long: pd.DataFrame, run: Run) -> list[str]:
    """Figs 1-8 at the claims' budget: per method and network, Free vs Fast, and the two networks."""
    names, pgd = [], f"PGD-{run.profile.curve_steps}"
    both = [MEASURES["train_adv_accuracy"], MEASURES["val_natural_accuracy"]]
    for (network, method, epochs), group in long.groupby(["network", "method", "epochs"]):
        names.append(two_panels(group, "config", f"{method.capitalize()} training, {network}, {epochs} epochs",
                                run.out / f"curves_{method}_{network.lower()}_{epochs}ep.png", pgd, both))
    headline = long[(long["replays"] == 8) | (long["alpha_ratio"] == 1.25)]
    for network, group in headline.groupby("network"):
        group = group[group["epochs"] == group["epochs"].max()]
        if group["method"].nunique() == 2:
            names.append(two_panels(group, "config", f"Free vs Fast, {network}, {group['epochs'].max()} epochs",
                                    run.out / f"free_vs_fast_{network.lower()}.png", pgd,
                                    [MEASURES["val_natural_accuracy"]]))
    for method, group in headline.groupby("method"):
        if group["network"].nunique() == 2:
            epochs = group.groupby("network")["epochs"].max().min()
            names.append(two_panels(group[group["epochs"] == epochs], "network",
                                    f"PreActResNet18 vs ResNet50, {method.capitalize()}, {epochs} epochs",
                                    run.out / f"preact_vs_resnet50_{method}.png", pgd,
                                    [MEASURES["val_natural_accuracy"]]))
    return names


def search_figure(long: pd.DataFrame, run: Run) -> list[str]:
    """The catastrophic-overfitting search: PGD accuracy per epoch of every Fast (and PGD) run, one panel per
    budget eps (mean over seeds, 95% band)."""
    runs = long[long["method"].isin(["fast", "pgd"]) & (long["measure"] == MEASURES["val_pgd_accuracy"])]
    if runs["eps"].nunique() < 2:
        return []
    runs = runs.assign(run=runs["config"] + ", " + runs["epochs"].astype(int).astype(str) + " ep")
    grid = sns.relplot(runs, kind="line", x="epoch", y="accuracy", hue="run", col="eps", height=3.2, aspect=1.1)
    grid.set(ylim=(-0.02, 1.02), ylabel=f"PGD-{run.profile.curve_steps} accuracy (curve points)")
    grid.figure.suptitle("Catastrophic overfitting search: Fast's PGD accuracy per epoch", y=1.04)
    save_figure(grid, run.out / "overfitting_search.png")
    return ["overfitting_search.png"]


def figures(tables: dict[str, pd.DataFrame], run: Run) -> list[str]:
    """Figs 1-8 as far as the grid ran, the search, and the final accuracies; PNG names written in run.out."""
    set_style()
    curves, results = tables.get("curves", pd.DataFrame()), tables["results"]
    if curves.empty or "epoch" not in curves:
        return []
    long = long_curves(curves)
    main = long[np.isclose(long["eps"], run.profile.eps)] if "eps" in long else long
    return paper_figures(main, run) + search_figure(long, run) + [final_accuracy(results, run)]


FINAL_CAPTION = (f"Bars: mean over seeds. Whiskers: ± {m.Z:g} s.e., the noise the claims use (the s.d. over seeds "
                 "/ √seeds combined with the binomial s.e. on the test points; one seed: the binomial s.e. alone).")


def final_accuracy(results: pd.DataFrame, run: Run) -> str:
    """Bars: natural and PGD-k accuracy of every configuration, mean over seeds ± Z s.e. (FINAL_CAPTION)."""
    columns = {"natural_accuracy": "natural", **{f"pgd{k}_accuracy": f"PGD-{k}" for k in run.profile.eval_steps}}
    named = results.assign(config=[f"{label(**r)}, {NETWORK[r['architecture']]}, bs {int(r['batch_size'])}, "
                                   f"{int(r['epochs'])} ep, ε {r['eps']:.3g}" for r in results.to_dict("records")])
    groups = sorted(named.groupby("config"), key=lambda kv: kv[0])
    names = [f"{config} ({len(g)} seed{'s' * (len(g) > 1)})" for config, g in groups]
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(groups) + 1.8))
    height = 0.8 / len(columns)
    for j, (column, shown) in enumerate(columns.items()):
        estimates = [m.estimate(g, column) for _, g in groups]
        offset = (j - (len(columns) - 1) / 2) * height
        ax.barh(np.arange(len(groups)) + offset, [e.mean for e in estimates], height,
                xerr=[m.Z * e.se for e in estimates], capsize=2, label=shown, error_kw={"elinewidth": 0.8})
    ax.set_yticks(np.arange(len(groups)), names)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set(xlim=(0, 1), xlabel="accuracy on the test points",
           title=f"Final test accuracy ({run.profile_name} profile), mean ± {m.Z:g} s.e.")
    ax.legend(title="evaluation", loc="lower right")
    fig.text(0.01, 0.005, FINAL_CAPTION, fontsize=8, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save_figure(fig, run.out / "final_accuracy.png")
    return "final_accuracy.png"
