"""The paper's figures from the merged tables (seaborn), each drawn only when its cells are finished."""
from __future__ import annotations

import pandas as pd

from reproduce.efficient import readings
from reproduce.efficient.cells import STALENESS, STRENGTH
from reproduce.efficient.training import PANEL
from tfadv.experiments import Run
from tfadv.experiments.figures import save_figure, set_style
from tfadv.experiments.spec import Tables
from tfadv.experiments.tables import select


def _strength_curves(tables: Tables, run: Run) -> list[str]:
    import seaborn as sns

    logged = select(readings.curves(tables, STRENGTH), attack=PANEL, steps=run.profile.train_steps,
                    kappa=list(run.profile.transfer_kappas))
    if logged.empty:
        return []
    logged = logged.astype({"kappa": int, "attack_kappa": int})
    names = []
    loss = select(logged, split="test", metric="loss")
    g = sns.relplot(loss, x="step", y="value", hue="attack_kappa", col="kappa", kind="line", palette="viridis",
                    height=2.6, facet_kws={"sharey": False}, errorbar="sd")
    g.set_axis_labels("training step", "test adversarial loss").set_titles("trained with PGD-{col_name}")
    g.legend.set_title("attacker kappa")
    names.append(save_figure(g, run.out / "fig3_adversarial_loss.png").name)
    accuracy = select(logged, metric="accuracy")
    g = sns.relplot(accuracy, x="step", y="value", hue="attack_kappa", col="kappa", row="split", kind="line",
                    palette="viridis", height=2.6, errorbar="sd")
    g.set_axis_labels("training step", "adversarial accuracy").set_titles("{row_name}, trained with PGD-{col_name}")
    g.legend.set_title("attacker kappa")
    names.append(save_figure(g, run.out / "fig4_adversarial_accuracy.png").name)
    return names


def _final_accuracy(wide: pd.DataFrame, by: str, xlabel: str, path) -> str:
    import seaborn as sns

    long = wide.melt(id_vars=[by, "seed"], value_vars=["natural", "adversarial"], var_name="test accuracy")
    g = sns.relplot(long, x=by, y="value", hue="test accuracy", kind="line", marker="o", height=3, errorbar="sd")
    g.ax.set_xscale("log", base=2)
    g.set_axis_labels(xlabel, "final test accuracy (adversarial: strongest attack)")
    return save_figure(g, path).name


def _transfer(tables: Tables, run: Run) -> list[str]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    matrix = readings.transfer(tables, run.profile.train_steps)
    if matrix.empty:
        return []
    mean = matrix.groupby(["target_kappa", "source_kappa"])["accuracy"].mean().unstack()
    fig, ax = plt.subplots(figsize=(4.4, 3.6))
    sns.heatmap(100 * mean, annot=True, fmt=".1f", cmap="mako", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "test accuracy (%), mean over seeds"})
    ax.set(xlabel="source net kappa", ylabel="target net kappa (= attack kappa)",
           title="Table 1: transfer (diagonal = white-box)")
    return [save_figure(fig, run.out / "table1_transfer.png").name]


def _staleness(tables: Tables, run: Run) -> list[str]:
    import seaborn as sns

    logged = select(readings.curves(tables, STALENESS), split="train", metric="accuracy")
    if logged.empty:
        return []
    shown = logged.assign(examples=logged["attack"].map({PANEL: "fresh", "stale": "stale"}),
                          staleness=logged["staleness"].astype(int))  # merged tables hold it as float
    g = sns.relplot(shown, x="step", y="value", hue="examples", col="staleness", col_wrap=4, kind="line", height=2.4,
                    errorbar="sd")
    g.set_axis_labels("training step", "train adversarial accuracy").set_titles("s = {col_name}")
    names = [save_figure(g, run.out / "fig5_fresh_vs_stale.png").name]
    wide = readings.finals(tables, STALENESS, "staleness")
    names.append(_final_accuracy(wide, "staleness", "staleness s", run.out / "fig8_staleness.png"))
    return names


def _speedup(tables: Tables, run: Run) -> list[str]:
    import matplotlib.pyplot as plt

    runs = readings.async_runs(tables)
    if runs.empty or "speedup" not in runs:
        return []
    runs = runs[runs["experiment"] == "async"].sort_values("workers")
    fig, ax = plt.subplots(figsize=(4, 3))
    used = runs["workers"] + 1
    ax.plot(used, runs["speedup"], "o-", label="measured")
    ax.plot(used, used, "--", label="ideal (linear)")
    ax.set(xlabel="devices (trainer + workers)", ylabel="speedup over synchronous", title="Fig 9")
    ax.legend()
    return [save_figure(fig, run.out / "fig9_speedup.png").name]


def figures(tables: Tables, run: Run) -> list[str]:
    set_style()
    names = _strength_curves(tables, run)
    wide = readings.finals(tables, STRENGTH, "kappa", run.profile.train_steps)
    if not wide.empty:
        names.append(_final_accuracy(wide, "kappa", "training attacker kappa", run.out / "strength_final.png"))
    return names + _transfer(tables, run) + _staleness(tables, run) + _speedup(tables, run)
