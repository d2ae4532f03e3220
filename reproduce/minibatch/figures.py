"""Figures 2 and 3 of the paper (success against batch size, L2 and L∞) and the mechanism figure."""
from __future__ import annotations

import pandas as pd

from reproduce.minibatch.claims import main_regime
from reproduce.minibatch.profiles import NORM_NAMES
from tfadv.experiments import Run
from tfadv.experiments.figures import save_figure, set_style


def setting(row) -> str:
    """'mean · fp32', 'sum · fp16 + scaling', ...: one line style per loss and precision."""
    precision = {"float32": "fp32", "mixed_float16": "fp16", "mixed_float16+scaling": "fp16 + scaling"}
    return f"{row['loss']} · {precision.get(row['precision'], row['precision'])}"


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["setting"] = table.apply(setting, axis=1) if len(table) else []
    table["success %"] = 100.0 * table["success_rate"]
    return table


def figures(tables: dict[str, pd.DataFrame], run: Run) -> list[str]:
    import seaborn as sns

    set_style()
    table = labelled(main_regime(tables["results"]))
    order = sorted(table["setting"].unique())
    written = []
    for norm, name, number in (("l2", "fig2_success_l2.png", 2), ("linf", "fig3_success_linf.png", 3)):
        rows = table[table["norm"] == norm]
        if rows.empty:
            continue
        grid = sns.relplot(data=rows, x="batch_size", y="success %", col="model", hue="setting", hue_order=order,
                           style="attack", markers=True, kind="line", errorbar="sd",
                           col_wrap=min(4, rows["model"].nunique()), height=3.0, facet_kws={"sharey": False})
        _batch_axis(grid, rows)
        grid.figure.suptitle(f"Fig {number} ({NORM_NAMES[norm]}): attack success vs batch size", y=1.03)
        save_figure(grid, run.out / name)
        written.append(name)
    if not table.empty:
        written.append(mechanism_figure(table, order, run))
    return written


#: The y-axis units of the mechanism figure's rows, in the order of its metrics.
MECHANISM_UNITS = ("median ‖δ‖ (× eps, in its norm)", "% of images", "% of images")


def mechanism_figure(table: pd.DataFrame, order: list[str], run: Run) -> str:
    """The mean divides each sample's gradient by N: below ||g|| = 1e-6 the clamped L2 step is shortened,
    and in float16 the gradient underflows to zero. Perturbation size and both fractions against N."""
    import seaborn as sns

    own_norm = table["median_pert_l2"].where(table["norm"] == "l2", table["median_pert_linf"])
    # Fractions of images in %, as the report's mechanism table gives them.
    metrics = {"median ‖δ‖ / eps": own_norm / table["eps"],
               "floor-clamped (1st step)": 100.0 * table["floor_clamp_frac"],
               "zero gradient (1st step)": 100.0 * table["zero_grad_frac"]}
    long = pd.concat([table.assign(metric=m, value=v) for m, v in metrics.items()], ignore_index=True)
    long["panel"] = long["model"] + " · " + long["norm"].map(NORM_NAMES)
    grid = sns.relplot(data=long.dropna(subset=["value"]), x="batch_size", y="value", row="metric", col="panel",
                       hue="setting", hue_order=order, style="attack", markers=True, kind="line", errorbar=None,
                       height=2.6, facet_kws={"sharey": "row"})
    _batch_axis(grid, long)
    grid.set_titles("{row_name}\n{col_name}")
    for row, unit in zip(grid.axes, MECHANISM_UNITS):  # the y-axis of each metric, on its first panel
        row[0].set_ylabel(unit)
    grid.figure.suptitle("Mechanism: perturbation size and gradient diagnostics vs batch size", y=1.04)
    save_figure(grid, run.out / "fig_mechanism.png")
    return "fig_mechanism.png"


def _batch_axis(grid, data: pd.DataFrame) -> None:
    """Batch sizes on a log2 axis, labelled with the sizes themselves."""
    sizes = sorted(data["batch_size"].unique())
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
