"""--plan: what a profile's grid asks of a GPU, before anyone books one.

A paper says what one cell costs (`Experiment.cost`): how many forward+backward passes of one sample
through which architecture, how many forward-only passes, how many device steps in sequence. The layer
counts each architecture's forward FLOPs from its own graph (TensorFlow's profiler), adds up the grid, and
turns it into GPU-hours at an *assumed* sustained throughput. The FLOPs are counted; the throughput is an
assumption, stated in the output; small models are bound by per-step latency, not FLOPs, hence the floor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

if TYPE_CHECKING:
    from tfadv.experiments.run import Run

#: Assumed sustained throughput of one modern data-centre GPU (A100 class) on CNN training: about a fifth
#: of its tensor-core peak in mixed precision, TF32 in float32. Not measured here (no GPU on the machine
#: that wrote this): scale the hours by your own GPU's measured images per second.
ASSUMED_FLOPS = {"mixed_float16": 40e12, "float32": 20e12}
#: Per device step (one compiled train or attack step): the launch and host latency floor of a GPU step.
STEP_FLOOR_SECONDS = 1e-3
#: A backward pass costs about twice the forward (gradients w.r.t. activations and weights).
BACKWARD_FACTOR = 2.0


@dataclass(frozen=True)
class Cost:
    """What one cell asks of the device: `passes` forward+backward passes of one sample (training and
    attack steps alike), `forwards` forward-only passes (clean evaluation, queries), `steps` compiled
    device steps in sequence, through `model` (built by `build`, weights random, to count its FLOPs)."""

    model: str
    build: Callable[[], object]
    passes: float
    forwards: float = 0.0
    steps: float = 0.0
    precision: str = "float32"


def forward_flops(model) -> float:
    """Forward FLOPs of one sample through a built Keras model (multiply and add counted separately)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # the v1 profiler's own deprecation notice, printed by every --jobs run
    try:
        return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
    finally:
        logger.setLevel(level)


def cell_estimates(run: "Run", cells: Sequence[dict]) -> pd.DataFrame:
    """One row per cell, in the order given: its architecture, passes, counted FLOPs and estimated GPU-hours."""
    costs = [run.experiment.cost(cell, run) for cell in cells]
    flops = {c.model: forward_flops(c.build()) for c in {c.model: c for c in costs}.values()}
    rows = []
    for cost in costs:
        total = flops[cost.model] * (cost.passes * (1 + BACKWARD_FACTOR) + cost.forwards)
        seconds = max(total / ASSUMED_FLOPS[cost.precision], cost.steps * STEP_FLOOR_SECONDS)
        rows.append({"model": cost.model, "precision": cost.precision, "cells": 1,
                     "forward GFLOPs per sample": flops[cost.model] / 1e9,
                     "passes (fwd+bwd)": cost.passes, "forward-only passes": cost.forwards,
                     "device steps": cost.steps, "PFLOPs": total / 1e15, "GPU-hours": seconds / 3600})
    return pd.DataFrame(rows)


def plan(run: "Run", cells: Sequence[dict]) -> pd.DataFrame:
    """One row per architecture: cells, passes, counted FLOPs and the estimated GPU-hours."""
    summed = ["cells", "passes (fwd+bwd)", "forward-only passes", "device steps", "PFLOPs", "GPU-hours"]
    table = cell_estimates(run, cells)
    return table.groupby(["model", "precision", "forward GFLOPs per sample"], as_index=False)[summed].sum()


def longest_first(run: "Run", cells: Sequence[dict]) -> list[dict]:
    """`cells` by counted work (FLOPs, then device steps), the most first, ties in the grid's order: handed
    out in this order, the processes of a --jobs run end together instead of one finishing a long cell while
    the others idle. FLOPs, not the GPU-hour estimate, whose step floor ranks small nets' cells by their
    steps alone. Only the order changes, never what a cell computes."""
    work = cell_estimates(run, cells)[["PFLOPs", "device steps"]].to_numpy()
    return [cells[i] for i in sorted(range(len(cells)), key=lambda i: (-work[i][0], -work[i][1]))]


def describe(table: pd.DataFrame, run: "Run") -> str:
    from tfadv.experiments.report import markdown_table

    hours = table["GPU-hours"].sum()
    assumed = ", ".join(f"{p} {v / 1e12:.0f} TFLOP/s" for p, v in ASSUMED_FLOPS.items())
    return "\n".join([
        f"Plan of `{run.experiment.key}` profile `{run.profile_name}`: {int(table['cells'].sum())} cells, "
        f"about {hours:.1f} GPU-hours on one GPU (an estimate: FLOPs counted from each architecture's graph, "
        f"throughput assumed at {assumed}, at least {STEP_FLOOR_SECONDS * 1e3:g} ms per device step).", "",
        markdown_table(table.columns, table.itertuples(index=False), float_format="{:.3g}")])
