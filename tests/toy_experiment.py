"""A tiny experiment on tfadv.experiments for the layer's tests: no TensorFlow work, numbers from the seed.

`python -m toy_experiment` (with tests/ on PYTHONPATH) runs it, as --jobs does for a paper's runner.
Environment: TOY_SLEEP (seconds per cell), TOY_FAIL_CELL (a cell's `x` that raises), TOY_WEIGHTS (what the
point cells record as their model's pretrained weights), TOY_WARN (the `x`s, comma-separated, of point cells
that raise a tfadv warning twice and a plain UserWarning), TOY_TIMED (set: point cells record what their
computation took, as the runners do: a `train_seconds` column, and a long row `metric=wall_seconds` of their
trace, values that differ between two honest runs of a cell).
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings

import numpy as np

from tfadv import validation
from tfadv.experiments import Claim, Experiment, Option, Setting, judge, main, store, verdicts
from tfadv.experiments.plan import Cost


@dataclasses.dataclass(frozen=True)
class Profile:
    points: int
    xs: tuple[int, ...]
    noise: float = 0.01


PROFILES = {"paper": Profile(100, (1, 2, 3, 4)), "demo": Profile(10, (1, 2, 3)), "smoke": Profile(4, (1, 2))}
GROWS = Claim("y grows with x", "y = x * scale")


def grid(run):
    """The points at --xs (default: the profile's), then the summary."""
    xs = run.options["xs"]
    return [{"x": x, "kind": "point"} for x in xs] + [{"x": 0, "kind": "summary"}]


def needs(cell, run):
    return [c for c in grid(run) if c["kind"] == "point"] if cell["kind"] == "summary" else []


def run_cell(cell, run):
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    if str(cell["x"]) in os.environ.get("TOY_WARN", "").split(","):
        for _ in range(2):  # recorded once
            warnings.warn(f"robust_accuracy: of the {10 * cell['x']} samples counted robust, {cell['x']} have an "
                          "all-zero input gradient", validation.EvaluationWarning)
        warnings.warn("not tfadv's: not recorded", UserWarning)
    if str(cell["x"]) == os.environ.get("TOY_FAIL_CELL") and cell["kind"] == "point":
        raise RuntimeError(f"cell x={cell['x']} fails on purpose")
    if cell["kind"] == "summary":
        found = [run.find_artifact(f"point-{c['x']}.txt") for c in grid(run) if c["kind"] == "point"]
        return {"y": float(sum(float(p.read_text()) for p in found))}
    rng = np.random.default_rng([run.seed, cell["x"]])
    y = cell["x"] * run.options["scale"] + run.options["noise"] * float(rng.standard_normal())
    run.artifact(f"point-{cell['x']}.txt").write_text(repr(y))
    row = {"y": y, "points": run.profile.points}
    trace = [{"step": i} for i in range(2)]
    if os.environ.get("TOY_WEIGHTS"):
        row[store.WEIGHTS_COLUMN] = os.environ["TOY_WEIGHTS"]
    if os.environ.get("TOY_TIMED"):
        row["train_seconds"] = time.perf_counter()
        trace.append({"step": 2, "metric": "wall_seconds", "value": time.perf_counter()})
    return {"results": [row], "trace": trace}


def judge_all(tables, run):
    points = tables["results"][tables["results"]["kind"] == "point"].sort_values("x")
    ys = points["y"].to_numpy()
    return [judge(GROWS, measured=" → ".join(f"{v:.2f}" for v in ys), holds=bool(np.all(np.diff(ys) > 0)),
                  rule="strictly increasing", unless=[verdicts.missing(ys, "no points"),
                                                      verdicts.too_few(len(ys), 2, "points")])]


def tiny_model():
    import keras

    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def cost(cell, run):
    """A point trains `points` samples for x steps; the summary reads files only."""
    passes = run.profile.points * cell["x"]
    return Cost(model="dense 4-3", build=tiny_model, passes=passes, steps=cell["x"])


EXPERIMENT = Experiment(
    key="toy", title="Toy experiment", profiles=PROFILES, grid=grid, run_cell=run_cell, judge=judge_all,
    settings=lambda run: [Setting("scale", run.options["scale"], "tfadv")],
    options=(Option("--scale", "slope of y", default=1.0, type=float),
             Option("--xs", "the points' x (default: the profile's), a selection", role="selection",
                    type=lambda text: tuple(int(v) for v in text.split(",")), profile_field="xs"),
             Option("--noise", "noise of y (default: the profile's)", type=float, profile_field="noise")),
    needs=needs, cost=cost, module="toy_experiment",
)

if __name__ == "__main__":
    main(EXPERIMENT)
