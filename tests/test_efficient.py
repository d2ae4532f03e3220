"""The `efficient` runner (Bhat, Tsipras & Madry 2018): transfer matrix, shattering flag, grid, smoke run."""

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce import efficient
from tfadv.attacks import PGD
from tfadv.experiments.runner import cell_key, select_shard


def _tiny_classifier(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _attack(model, kappa):
    return PGD(model, eps=0.3, steps=kappa, step_size=efficient.step_size(0.3, kappa), from_logits=True,
               clip_min=0.0, clip_max=1.0, seed=7)


def test_step_size_is_the_papers_alpha():
    assert efficient.step_size(0.3, 1) == pytest.approx(0.75)
    assert efficient.step_size(0.3, 8) == pytest.approx(0.09375)


def test_paper_profile_grid_is_the_papers():
    p = efficient.PROFILES["paper"]
    assert p.kappas == (1, 2, 4, 8, 16, 32, 64, 128) and p.eval_kappas == (1, 4, 8, 128)
    assert p.staleness_values == tuple(2**i for i in range(11))
    assert (p.eps, p.batch_size, p.train_steps, p.refresh_every) == (0.3, 128, 60_000, 100)
    cells = efficient.grid(p)
    assert len(cells) == 8 + 11 + len(p.async_workers) + 1
    keys = [cell_key(c) for c in cells]
    shards = [select_shard(keys, (i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(keys) and not set(shards[0]) & set(shards[1])


def test_transfer_matrix_shape_and_diagonal_is_white_box():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 3, 24)
    models = {1: _tiny_classifier(1), 4: _tiny_classifier(2)}
    matrix = efficient.transfer_matrix(models, x, y, _attack, batch_size=10)
    assert len(matrix) == 4
    assert set(zip(matrix["target_kappa"], matrix["source_kappa"])) == {(t, s) for t in models for s in models}
    assert (matrix["attack_kappa"] == matrix["target_kappa"]).all()
    assert (matrix["white_box"] == (matrix["target_kappa"] == matrix["source_kappa"])).all()
    for kappa, model in models.items():
        row = matrix[(matrix["target_kappa"] == kappa) & matrix["white_box"]]
        x_adv = efficient.craft(_attack(model, kappa), x, y, batch_size=10)
        white_box = np.mean(np.argmax(model(x_adv), -1) == y)
        assert row["accuracy"].item() == pytest.approx(white_box)
        clean = np.mean(np.argmax(model(x), -1) == y)
        assert row["accuracy"].item() <= clean
    source = matrix[(matrix["target_kappa"] == 1) & (matrix["source_kappa"] == 4)]["accuracy"].item()
    x_adv = efficient.craft(_attack(models[4], 1), x, y, batch_size=10)
    assert source == pytest.approx(np.mean(np.argmax(models[1](x_adv), -1) == y))


def test_gradient_shattering_flags_weak_white_box_beaten_by_transfer():
    # Table 1 of the paper, as fractions.
    paper = {1: [0.9855, 0.4863, 0.2716, 0.2836], 4: [0.5734, 0.9998, 0.5418, 0.6031],
             8: [0.9640, 0.9727, 0.9388, 0.9426], 128: [0.9628, 0.9669, 0.9392, 0.9170]}
    sources = [1, 4, 8, 128]
    matrix = pd.DataFrame([{"target_kappa": t, "source_kappa": s, "white_box": s == t, "accuracy": a}
                           for t, row in paper.items() for s, a in zip(sources, row)])
    flags = efficient.gradient_shattering(matrix, gap=0.10).set_index("target_kappa")
    assert list(flags["shattered"]) == [True, True, False, False]
    assert flags.loc[1, "best_transfer_accuracy"] == pytest.approx(0.2716)


def test_smoke_run_end_to_end_and_resume(tmp_path):
    out = tmp_path / "efficient"
    table = efficient.main(["--profile", "smoke", "--out", str(out), "--no-progress"])
    p = efficient.PROFILES["smoke"]
    assert (out / "results.csv").is_file() and (out / "report.md").is_file()
    for figure in ("fig3_strength_adversarial_loss.png", "fig4_strength_adversarial_accuracy.png",
                   "table1_transfer_matrix.png", "fig5_staleness_fresh_vs_stale.png",
                   "fig8_staleness_final_accuracy.png", "fig9_async_speedup.png"):
        assert (out / figure).stat().st_size > 0, figure
    assert set(table["cell"]) == {cell_key(c) for c in efficient.grid(p)} | {"experiment=transfer"}

    matrix = efficient.transfer_table(table)
    assert len(matrix) == len(p.transfer_kappas) ** 2
    # The diagonal is the white-box attack: it equals each model's own final PGD-kappa accuracy recomputed here.
    x_test, y_test = efficient.load_data(p, None, 0)[2:]
    x, y = x_test[: p.final_eval_samples], y_test[: p.final_eval_samples]
    for kappa in p.transfer_kappas:
        model = efficient.build_adversarial_model(p, kappa, None, 0, compile=False)
        model.load_weights(out / "models" / f"strength_kappa{kappa}.weights.h5")
        x_adv = efficient.craft(efficient.pgd(model, p, kappa, seed=3), x, y)
        diagonal = matrix[(matrix["target_kappa"] == kappa) & matrix["white_box"]]["accuracy"].item()
        assert diagonal == pytest.approx(np.mean(np.argmax(model(x_adv), -1) == y))

    # The stale queue: once full, the batch trained on at step t was crafted at step t - s.
    stale = table[(table["experiment"] == "staleness") & (table["metric"] == "measured_staleness")]
    last = stale.sort_values("step").groupby("staleness")["value"].last()
    assert all(last[s] == s for s in p.staleness_values if s < p.train_steps)

    asynchronous = table[(table["experiment"] == "async") & (table["metric"] == "staleness_max")]
    assert set(asynchronous["workers"]) == set(p.async_workers)
    assert (asynchronous[asynchronous["workers"] == 0]["value"] == 0).all()

    report = (out / "report.md").read_text()
    assert "gradient shattering" in report and "(smoke)" in report

    # A second run finds every cell finished and trains nothing.
    stamps = {f: f.stat().st_mtime_ns for f in (out / "cells").iterdir()}
    efficient.main(["--profile", "smoke", "--out", str(out), "--no-progress"])
    assert {f: f.stat().st_mtime_ns for f in (out / "cells").iterdir()} == stamps


def test_paper_profile_reads_mnist_through_tfds_in_unit_range():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        x_train, y_train, x_test, y_test = efficient.load_data(efficient.PROFILES["paper"], None, 0)
    assert x_train.shape == (6, 28, 28, 1) and x_test.shape == (6, 28, 28, 1)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and y_train.dtype.kind == "i"


class _Interrupted(Exception):
    pass


def test_a_killed_training_resumes_from_its_last_logged_point(tmp_path):
    p = efficient.PROFILES["smoke"]
    data = efficient.load_data(p, None, 0)

    class KillAfterFirstPoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Interrupted

    class CountSteps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            CountSteps.steps += 1

    kwargs = dict(kappa=1, staleness=None, attacker_kappas=(1,), progress=False)
    with pytest.raises(_Interrupted):
        efficient.train_and_log(p, "m", data, tmp_path, 0, callbacks=[KillAfterFirstPoint()], **kwargs)
    assert not (tmp_path / "models" / "m.weights.h5").exists()
    _, rows = efficient.train_and_log(p, "m", data, tmp_path, 0, callbacks=[CountSteps()], **kwargs)
    assert CountSteps.steps == p.train_steps - p.log_every  # only the unfinished part ran again
    logged = sorted({(r["epoch"], r["step"]) for r in rows if r["metric"] == "accuracy"})
    assert logged == [(0, p.log_every), (1, 2 * p.log_every)]
    assert (tmp_path / "models" / "m.weights.h5").is_file() and not (tmp_path / "train_state").exists()


def test_unknown_experiment_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        efficient.main(["--profile", "smoke", "--experiments", "strength,bogus"])
    assert "bogus" in capsys.readouterr().err
