"""The batchnorm reproduction's figures: Figure 1's toy boundaries, Tables 6-7 against the input width,
Figure 2's depth x batch heat maps, and Tables 2-4's CIFAR bars. Each is drawn only from finished cells."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from reproduce.batchnorm import linear
from reproduce.batchnorm.claims import data_used, part
from reproduce.batchnorm.stats import summary
from tfadv.experiments.figures import save_figure, set_style
from tfadv.experiments.run import Run
from tfadv.models.batchnorm_nets import DEFAULT_EPSILON, bn_max_trainable_depth


def classes(ax, x: np.ndarray, y: np.ndarray) -> None:
    """The toy's points, one labelled colour per class (with the class mean ν_j the paper gives)."""
    for label, (colour, mean) in enumerate(zip(("tab:blue", "tab:red"), linear.TOY_MEANS)):
        ax.scatter(x[y == label, 0], x[y == label, 1], color=colour, s=6, alpha=0.6,
                   label=f"class {label} (ν{'₀₁'[label]} = [{mean[0]:g}, {mean[1]:g}])")


def toy(table: pd.DataFrame, run: Run) -> str | None:
    t = part(table, "toy")
    if t.empty:
        return None
    seed = int(t["seed"].min())
    x, y = linear.toy_data(run.profile.toy.samples_per_class, seed=seed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    classes(ax, x, y)
    x1 = np.linspace(x[:, 0].min(), x[:, 0].max(), 50)
    for variant, style in (("gd", "k-"), ("bngd", "g--")):
        row = t[(t["variant"] == variant) & (t["seed"] == seed)].set_index("metric")["value"]
        if row.empty:
            continue
        w0, w1, b = row["w0"], row["w1"], row["b"]  # the boundary w0 x1 + w1 x2 + b = 0
        label = f"{variant.upper()}, θ = {row['tilt_deg']:.1f}°"
        if abs(w1) > 1e-9 * abs(w0):
            ax.plot(x1, -(w0 * x1 + b) / w1, style, label=label)
        else:
            ax.axvline(-b / w0, color=style[0], linestyle=style[1:], label=label)
    ax.set_ylim(x[:, 1].min() - 0.1, x[:, 1].max() + 0.1)
    ax.set(title=f"Figure 1 toy (seed {seed}): boundaries", xlabel="x1 (task-relevant)", ylabel="x2 (low variance)")
    ax.legend(loc="lower right", fontsize=7)
    z = (x - x.mean(0)) / np.sqrt(x.var(0) + DEFAULT_EPSILON)
    classes(axes[1], z, y)
    axes[1].set(title="The data BNGD sees (batch-normalised)", xlabel="x1 normalised", ylabel="x2 normalised")
    axes[1].legend(loc="lower right", fontsize=7, markerscale=2)
    save_figure(fig, run.out / "fig1_toy.png")
    return "fig1_toy.png"


def dimension(table: pd.DataFrame, run: Run) -> str | None:
    t = part(table, "dimension")
    t = t[t["metric"].isin(["clean", "awgn", "bim"])] if not t.empty else t
    if t.empty:
        return None
    t = t.assign(variant=[f"{m}{' + BN' if bn == True else ''}{f' + λ {wd:g}' if wd > 0 else ''}" for m, bn, wd in
                          zip(t["model"], t["batchnorm"], t["weight_decay"])])
    grid = sns.relplot(data=t, x="image_width", y="value", hue="variant", col="metric", kind="line", marker="o",
                       errorbar="sd", height=3, aspect=1.1)
    grid.set_axis_labels("image width √d (pixels)", "accuracy (mean ± s.d. over seeds)")
    save_figure(grid, run.out / "tables6_7_dimension.png")
    return "tables6_7_dimension.png"


def depth_batch(table: pd.DataFrame, run: Run) -> str | None:
    t = part(table, "depth_batch")
    if t.empty:
        return None
    s = summary(t, ["depth", "batch_size", "batchnorm", "metric"]).astype({"depth": int, "batch_size": int})
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), squeeze=False, constrained_layout=True)
    for r, bn in enumerate((True, False)):
        for c, metric in enumerate(("clean", "awgn", "bim")):
            cells = s[(s["batchnorm"] == bn) & (s["metric"] == metric)]
            heat = cells.pivot(index="batch_size", columns="depth", values="mean").sort_index(ascending=False)
            ax = axes[r, c]
            sns.heatmap(heat, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=heat.shape[1] <= 8, fmt=".2f", cbar=c == 2)
            if bn and not heat.empty:
                # Yang et al.'s maximum trainable depth, as x positions on the heat map's depth axis.
                depths, ys = list(heat.columns), np.arange(len(heat.index)) + 0.5
                xs = [np.interp(bn_max_trainable_depth(int(b)), depths, np.arange(len(depths)) + 0.5,
                                right=len(depths)) if b >= 4 else np.nan for b in heat.index]
                ax.plot(xs, ys, "w--", lw=1.5)
            ax.set(title=f"{'BN' if bn else 'no BN'}: {metric} accuracy", xlabel="depth L", ylabel="batch size B")
    fig.suptitle("Figure 2: width-384 ReLU nets (mean over seeds); white dashes: BN's maximum trainable depth "
                 "(Yang et al. 2019; at the right edge when beyond the largest L)", fontsize=9)
    save_figure(fig, run.out / "fig2_depth_batch.png")
    return "fig2_depth_batch.png"


def cifar(table: pd.DataFrame, run: Run) -> str | None:
    t = part(table, "cifar")
    t = t[t["metric"].isin(["clean", "awgn", "pgd_linf", "pgd_l2"])] if not t.empty else t
    if t.empty:
        return None
    t = t.assign(model=t["model"] + " (" + t["schedule"] + " LR)", BN=t["normalization"] == "batchnorm")
    grid = sns.catplot(data=t, x="metric", y="value", hue="BN", col="model", row="test_set", kind="bar",
                       errorbar="sd", height=3, aspect=1.2)
    grid.set_axis_labels("", "accuracy (mean ± s.d. over seeds)")
    grid.figure.suptitle(f"Tables 2-4 on {data_used(run, 'cifar')}", fontsize=9, y=1.02)
    save_figure(grid, run.out / "table2_cifar.png")
    return "table2_cifar.png"


def figures(tables: dict[str, pd.DataFrame], run: Run) -> list[str]:
    set_style()
    table = tables["results"]
    return [name for draw in (toy, dimension, depth_batch, cifar) if (name := draw(table, run))]
