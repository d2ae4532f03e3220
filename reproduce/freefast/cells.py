"""The grid and what one cell computes: train one model (resumably), then evaluate it as the seed does.

A cell returns two tables: "results" (one row: the final accuracies, train time, the protocol's numbers)
and "curves" (one row per epoch: time, training metrics, natural and PGD accuracy on the curve points).
The trained float32 weights are kept as an artifact (OUT/artifacts/models/<cell id>.weights.h5, written
atomically): a run killed during the final evaluation does not train again.
"""
from __future__ import annotations

import contextlib
import time
import keras
import numpy as np
import tensorflow as tf

from tfadv.experiments import Run, atomic, identity, machine

from reproduce.freefast import data as datasets
from reproduce.freefast import robustness, training
from reproduce.freefast.evaluation import evaluator


def grid(run: Run) -> list[dict]:
    """The profile's cells; with --seeds N, each of their settings also with repeats 1..N-1 (the claims that
    compare single runs need a spread over seeds: reproduce.freefast.measures.single_run_spread)."""
    cells = [dict(c) for c in run.profile.cells]
    listed = {identity.cell_key(c) for c in cells}
    for base in [c for c in cells if c["repeat"] == 0]:
        for repeat in range(1, run.options.get("seeds") or 1):
            extra = {**base, "repeat": repeat}
            if identity.cell_key(extra) not in listed:
                listed.add(identity.cell_key(extra))
                cells.append(extra)
    return cells


def evaluation_network(run: Run, architecture: str, data: datasets.Data) -> keras.Model:
    """The float32 network a cell's weights are evaluated in (the seed evaluates a float32 copy): one per
    process and network, so cells reuse its compiled attacks (their graphs read the variables, not values)."""
    return run.cached(("evaluation network", architecture, data.x_test.shape[1:]),
                      lambda: training.network(run, architecture, data))


def measure(run: Run, net: keras.Model, eps: float, steps: tuple[int, ...], final: bool):
    """The evaluator of `net` at `eps`, one per process. Its seed is the run's, not the cell's: every model
    meets the same random starts, and cells share the compiled attacks."""
    seed = 1000 * run.seed + int(final)
    return run.cached(("evaluator", id(net), eps, steps, seed), lambda: evaluator(net, run, eps, steps, seed))


def run_cell(cell: dict, run: Run) -> dict:
    """Train (or reload) the cell's model, evaluate it; returns {"results": [row], "curves": rows}."""
    started, profile = time.process_time(), run.profile
    data, eps = datasets.load(run, cell["architecture"]), float(cell["eps"])
    net = evaluation_network(run, cell["architecture"], data)
    curve_x, curve_y = (a[:run.capped(profile.curve_points)] for a in (data.x_test, data.y_test))
    measure_curve = measure(run, net, eps, (profile.curve_steps,), final=False)

    def curve_point() -> dict:
        measured = measure_curve(curve_x, curve_y)
        return {"val_natural_accuracy": measured["natural_accuracy"],
                "val_pgd_accuracy": measured[f"pgd{profile.curve_steps}_accuracy"]}

    weights = run.artifact(f"models/{identity.cell_id(run.store.fingerprint, identity.cell_key(cell))}.weights.h5")
    epochs = run.capped(int(cell["epochs"]))
    with contextlib.ExitStack() as restore:
        restore.callback(tf.config.run_functions_eagerly, tf.config.functions_run_eagerly())
        tf.config.run_functions_eagerly(profile.eager)  # smoke: tracing would cost more than it saves
        if weights.is_file():  # trained before a kill during the evaluation
            net.load_weights(weights)
            curve = training.read_curve(run.work_dir(cell) / training.CURVE_FILE, epochs)
        else:
            curve = training.train(cell, run, data, net, curve_point)
            atomic.save_weights(net, weights)
        final = measure(run, net, eps, profile.eval_steps, final=True)(data.x_test, data.y_test, masks=True)
        robust = {k: final.pop(f"pgd{k}_robust") for k in profile.eval_steps}
        beyond, masking = beyond_the_paper(cell, run, net, data, robust[max(profile.eval_steps)])
    steps_per_epoch = -(-len(data.x_train) // int(cell["batch_size"]))
    row = {**final, "train_minutes": curve["epoch_seconds"].sum() / 60, "avg_epoch_seconds": curve["epoch_seconds"].mean(),
           "train_cpu_minutes": curve["epoch_cpu_seconds"].sum() / 60, "trained_epochs": epochs,
           "sgd_steps": training.optimizer_steps(cell, epochs, steps_per_epoch),
           "alpha": None if cell["alpha_ratio"] is None else cell["alpha_ratio"] * eps,
           "eval_points": len(data.x_test), "curve_points": len(curve_x), "curve_steps": profile.curve_steps,
           "training_seed": training.training_seed(cell, run), "device": "gpu" if machine.gpus() else "cpu",
           **beyond, "cell_cpu_seconds": time.process_time() - started}
    return {"results": [row], "curves": curve.to_dict("records"), "masking": masking}


def beyond_the_paper(cell: dict, run: Run, net: keras.Model, data: datasets.Data,
                     pgd_robust: np.ndarray) -> tuple[dict, list[dict]]:
    """AutoAttack beside PGD (`pgd_robust`: the final evaluation's strongest PGD, per test point) and the
    gradient-masking checks, each on the profile's cells for it (all at the claims' eps)."""
    p, eps = run.profile, float(cell["eps"])
    row, masking = {}, []
    if cell in [dict(c) for c in p.aa_cells]:
        started, n = time.process_time(), run.capped(p.aa_points)
        row = robustness.autoattack_row(run, net, eps, data.x_test[:n], data.y_test[:n], pgd_robust[:n],
                                        state_path=str(run.work_dir(cell) / "autoattack_state.npz"))
        row["aa_cpu_seconds"] = time.process_time() - started
    if cell in [dict(c) for c in p.masking_cells]:
        started, n = time.process_time(), run.capped(p.masking_points)
        masking = robustness.masking_rows(run, net, eps, data.x_test[:n], data.y_test[:n])
        row["masking_cpu_seconds"] = time.process_time() - started
    return row, masking
