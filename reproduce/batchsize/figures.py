"""The paper's figures (a metric against the batch size, one line per setting or momentum, the spread over
seeds as error bars) and the report's sections, all drawn from the merged table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchsize import search
from reproduce.batchsize.claims import CLASSES
from reproduce.batchsize.profiles import in_regime
from tfadv.experiments import markdown_table
from tfadv.experiments.figures import save_figure, set_style
from tfadv.experiments.tables import pct
from tfadv.experiments.verdicts import CHANCE_MARGIN

METRICS = {"test_accuracy": "test accuracy", "fgsm_accuracy": "FGSM accuracy", "pgd_accuracy": "PGD accuracy",
           "lambda1": "λ1 (top Hessian eigenvalue)"}
#: Final weights this far below the last epoch's running training accuracy: training ended on a loss spike.
SPIKE_GAP = 0.1


def _batch_axis(ax, batch_sizes) -> None:
    """Batch sizes on a log-2 axis, labelled as they are."""
    ticks = sorted(set(batch_sizes))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.minorticks_off()


def _panels(df: pd.DataFrame, hue: str, title: str):
    import seaborn as sns

    long = df.melt(id_vars=["batch_size", hue], value_vars=list(METRICS), var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRICS)
    g = sns.relplot(data=long, x="batch_size", y="value", hue=hue, col="metric", kind="line", marker="o",
                    errorbar="sd", err_style="bars", facet_kws={"sharey": False}, col_wrap=2, height=2.6,
                    aspect=1.3)
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        _batch_axis(ax, df["batch_size"])
        if "accuracy" in ax.get_title():  # one scale for all accuracies, so that "flat" looks flat
            ax.set_ylim(-0.02, 1.02)
        elif (df["lambda1"] > 0).all():  # λ1's claims are about ratios
            ax.set_yscale("log")
    g.set_axis_labels("batch size", "")
    g.figure.suptitle(title, y=1.03)
    return g


def figures(tables: dict[str, pd.DataFrame], run) -> list[str]:
    """Per study: the settings figure (Figs 1-10) and a figure per momentum sweep (Figs 11-22)."""
    set_style()
    table, names = in_regime(tables["results"], run.profile), []
    seeds = table["seed"].nunique()
    for (dataset, model), df in table.groupby(["dataset", "model"]):
        base = df[(df["momentum"] == 0) | (df["schedule"] == "Benchmark")]
        what = "LR and LR/BS without momentum" + (", and the Benchmark" if (df["schedule"] == "Benchmark").any()
                                                  else "")
        views = [("settings", base, "setting", what)]
        for schedule in ("LR", "LR/BS"):
            sweep = df[df["schedule"] == schedule]
            if sweep["momentum"].nunique() > 1:  # momentum as categories: one distinct colour each
                sweep = sweep.assign(momentum=[f"m={m:g}" for m in sweep["momentum"]])
                views.append((f"momentum_{schedule.replace('/', '')}", sweep, "momentum", f"{schedule}: momentum"))
        for view, data, hue, title in views:
            name = f"{dataset}_{model}_{view}.png".lower()
            caption = f"{model} on {dataset} ({run.profile_name}): {title}; mean and s.d. over {seeds} seed(s)"
            save_figure(_panels(data, hue, caption), run.out / name)
            names.append(name)
    return names + search_figure(tables["results"], run)


def search_figure(table: pd.DataFrame, run) -> list[str]:
    """Test accuracy against the batch size, one line per learning-rate scale, per searched line."""
    import seaborn as sns

    lines = search.searched(table, run.profile)
    if not lines:
        return []
    set_style()
    data = pd.concat([rows.assign(line=name) for name, rows in lines])
    data["regime"] = [f"x{s:g}, {e} epochs" for s, e in zip(data["lr_scale"], data["epochs"])]
    g = sns.relplot(data=data, x="batch_size", y="test_accuracy", hue="regime", col="line", kind="line",
                    marker="o", errorbar=None, height=2.8, aspect=1.3)
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        _batch_axis(ax, data["batch_size"])
        ax.set_ylim(-0.02, 1.02)
        ax.axvline(max(run.profile.batch_sizes), color="grey", linestyle=":", linewidth=1)
    g.set_axis_labels("batch size", "test accuracy")
    g.figure.suptitle("Regime search: LR/BS at other learning-rate scales, batch sizes and lengths (dotted: the "
                      "profile's largest batch)", y=1.04)
    name = "regime_search.png"
    save_figure(g, run.out / name)
    return [name]


# ------------------------------------------------------------------------------------------------ sections
def _mean_sd(values: pd.Series, percent: bool) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if percent:
        return pct(values.mean()) + ("" if len(values) < 2 else f" ± {100 * values.std(ddof=1):.1f}")
    return f"{values.mean():.3g}" + ("" if len(values) < 2 else f" ± {values.std(ddof=1):.2g}")


def measurements(table: pd.DataFrame) -> str:
    """One row per point: the mean ± s.d. over seeds of every metric."""
    rows = []
    keys = ["dataset", "model", "setting", "batch_size"]
    for (dataset, model, setting, b), runs in table.groupby(keys, sort=True):
        rows.append((dataset, model, setting, b, f"{runs['learning_rate'].iloc[0]:.4g}", len(runs),
                     _mean_sd(runs["test_accuracy"], True), _mean_sd(runs["fgsm_accuracy"], True),
                     _mean_sd(runs["pgd_accuracy"], True), _mean_sd(runs["lambda1"], False),
                     f"{int(runs['lambda1_converged'].sum())} of {len(runs)}"))
    return ("Mean ± standard deviation over seeds (each seed: its own initial weights and data order, shared by "
            "every setting and batch size).\n\n"
            + markdown_table(["dataset", "model", "setting", "batch", "learning rate", "seeds", "test", "FGSM",
                              "PGD", "λ1", "λ1 converged"], rows))


def unstable(table: pd.DataFrame) -> str | None:
    """Runs that did not train, diverged, or ended on a loss spike, or None if there are none."""
    chance = 1.0 / CLASSES + CHANCE_MARGIN
    spike = table["final_train_accuracy"] < table["train_accuracy"] - SPIKE_GAP
    bad = table[(table["test_accuracy"] <= chance) | spike | table["diverged"].astype(bool)]
    if bad.empty:
        return None
    rows = bad[["dataset", "model", "setting", "batch_size", "seed", "learning_rate", "train_loss",
                "train_accuracy", "final_train_accuracy", "test_accuracy"]]
    return (f"{len(bad)} of {len(table)} runs: test accuracy ≤ {chance:.0%} (did not train: the claims on their "
            f"study are inconclusive), a diverged loss, or final weights more than {SPIKE_GAP:g} below the last "
            "epoch's running training accuracy (training ended on a loss spike).\n\n"
            + markdown_table(rows.columns, rows.itertuples(index=False)))


def cpu_time(table: pd.DataFrame) -> str:
    by_batch = table.groupby("batch_size")["cpu_seconds"].sum()
    return (f"{table['cpu_seconds'].sum():.0f} CPU-seconds over {len(table)} cells (training and measurement, "
            "summed over processes; a loaded machine inflates them). By batch size: "
            + ", ".join(f"{b}: {s:.0f} s" for b, s in by_batch.items()) + ".")


def sections(tables: dict[str, pd.DataFrame], run) -> list[tuple[str, str]]:
    everything = tables["results"]
    if everything.empty:
        return []
    table = in_regime(everything, run.profile)
    found = [("Measurements", measurements(table))]
    if run.limit is not None:
        found.insert(0, ("Capped run", f"--limit {run.limit} capped the training images' updates per epoch, the "
                                      "epochs and the evaluated images: this run checks that the code path works "
                                      "end to end; its numbers are not the profile's."))
    bad = unstable(table)
    if bad:
        found.append(("Runs that did not train or ended on a loss spike", bad))
    regime = search.section(everything, run.profile)
    if regime:
        found.append(("Regime search", regime))
    found.append(("CPU time", cpu_time(everything)))
    return found
