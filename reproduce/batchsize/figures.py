"""The paper's figures (a metric against the batch size, one line per setting or momentum, the spread over
seeds as error bars; λ1 as its claims compare it, by the mean and s.d. of log λ1) and the regime search's,
drawn from the merged table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce.batchsize.profiles import in_regime
from reproduce.batchsize.sections import searched
from tfadv.experiments.figures import save_figure, set_style

METRICS = {"test_accuracy": "test accuracy", "fgsm_accuracy": "FGSM accuracy", "pgd_accuracy": "PGD accuracy",
           "lambda1": "λ1 (top Hessian eigenvalue)"}


def _batch_axis(ax, batch_sizes) -> None:
    """Batch sizes on a log-2 axis, labelled as they are."""
    ticks = sorted(set(batch_sizes))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.minorticks_off()


def _lambda1_axis(ax) -> None:
    """An axis of log λ1 labelled in λ1's units: round values, fewer the more decades it spans."""
    low, high = np.exp(ax.get_ylim())
    span = np.log10(high / low)
    mantissas = (1, 2, 3, 5) if span < 1 else (1, 2, 5) if span < 2 else (1,)
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    ticks = [m * 10.0**d for d in decades for m in mantissas if low <= m * 10.0**d <= high]
    positions = np.log(ticks) if len(ticks) >= 2 else ax.get_yticks()
    ax.set_yticks(positions, [f"{np.exp(t):.3g}" for t in positions])


def _panels(df: pd.DataFrame, hue: str, title: str):
    import seaborn as sns

    geometric = bool((df["lambda1"].dropna() > 0).all())
    if geometric:  # λ1's claims compare ratios: the mean and s.d. of log λ1 (a geometric mean ×/÷ s.d.)
        df = df.assign(lambda1=np.log(df["lambda1"]))
    names = {**METRICS, "lambda1": "λ1 (geometric mean)" if geometric else METRICS["lambda1"]}
    long = df.melt(id_vars=["batch_size", hue], value_vars=list(METRICS), var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(names)
    g = sns.relplot(data=long, x="batch_size", y="value", hue=hue, col="metric", kind="line", marker="o",
                    errorbar="sd", err_style="bars", facet_kws={"sharey": False}, col_wrap=2, height=2.6,
                    aspect=1.3)
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        _batch_axis(ax, df["batch_size"])
        if "accuracy" in ax.get_title():  # one scale for all accuracies, so that "flat" looks flat
            ax.set_ylim(-0.02, 1.02)
        elif geometric:
            _lambda1_axis(ax)
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

    lines = searched(table, run.profile)
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
