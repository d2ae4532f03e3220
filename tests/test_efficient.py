"""The `efficient` runner (Bhat, Tsipras & Madry 2018): the paper profile is mnist_challenge's recipe, a smoke run
end to end (tables, figures, report, resume), the Table 1 diagonal, the stale queue, identities, resume."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import keras
from reproduce.efficient import EXPERIMENT, cells, claims, profiles, training
from tfadv.evaluation import compaction
from tfadv.experiments import cli, identity
from tfadv.experiments.tables import select
from tfadv.models.mnist import madry_cnn
from tfadv.training import backup


def run_efficient(*argv):
    return cli.main(EXPERIMENT, ["--no-progress", "--jobs", "1", *argv])


def test_step_size_is_the_papers_alpha():
    assert training.step_size(0.3, 1) == pytest.approx(0.75)
    assert training.step_size(0.3, 8) == pytest.approx(0.09375)


def test_paper_profile_is_the_paper_where_it_speaks_and_mnist_challenge_where_it_does_not():
    p = profiles.PAPER
    assert p.kappas == (1, 2, 4, 8, 16, 32, 64, 128) and p.panel_kappas == (1, 4, 8, 128)
    assert p.staleness_values == tuple(2**i for i in range(11)) and p.async_workers == tuple(range(8))
    assert (p.eps, p.batch_size, p.train_steps, p.train_images, p.refresh_every) == (0.3, 128, 60_000, 55_000, 100)
    # mnist_challenge: config.json, model.py, train.py
    assert (p.learning_rate, p.adam_epsilon, p.loss_reduction, p.init) == (1e-4, 1e-8, "sum", "mnist_challenge")
    assert (p.eval_steps, p.eval_step_size) == (40, 0.01)
    assert (p.baseline_kappa, p.baseline_step_size, p.baseline_steps, p.baseline_batch_size) == (40, 0.01, 100_000, 50)
    model = training.compile_model(training.base_model(p, 0), p)
    assert model.optimizer.epsilon == 1e-8 and model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)
    assert model.loss.reduction == "sum"


def test_reference_init_is_truncated_normal_with_biases_of_a_tenth():
    model = madry_cnn((28, 28, 1), init="mnist_challenge")
    kernels = [v.numpy() for v in model.trainable_variables if v.path.endswith("kernel")]
    biases = [v.numpy() for v in model.trainable_variables if v.path.endswith("bias")]
    assert len(kernels) == len(biases) == 4
    assert all(np.allclose(b, 0.1) for b in biases)
    big = kernels[2]  # 3136 x 1024: std 0.1 truncated at two standard deviations (std ~0.088)
    assert np.abs(big).max() <= 0.2 and 0.085 < big.std() < 0.091
    with pytest.raises(ValueError, match="init must be one of"):
        madry_cnn(init="xavier")


def _mnist_challenge_step(model, x, y, *, eps, steps, a, optimizer):
    """train.py + pgd_attack.py of mnist_challenge (no random start), written out in TF2."""
    x_adv = tf.identity(x)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            xent = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv)))
        x_adv = x_adv + a * tf.sign(tape.gradient(xent, x_adv))
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)
    with tf.GradientTape() as tape:
        xent = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv)))
    grads = tape.gradient(xent, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)


def test_paper_profiles_training_step_is_mnist_challenges_to_float_rounding():
    from tfadv import training as tfadv_training

    p = profiles.PAPER
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16)
    reference = madry_cnn((8, 8, 1), init="mnist_challenge")
    ours = madry_cnn((8, 8, 1), init="mnist_challenge")
    ours.set_weights(reference.get_weights())
    before = [w.copy() for w in reference.get_weights()]
    model = tfadv_training.PGDAdversarialModel(ours.inputs[0], ours.outputs[0], eps=p.eps, steps=5,
                                               step_size=p.eval_step_size, rand_init=False, eval_steps=0)
    training.compile_model(model, p)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    optimizer = keras.optimizers.Adam(1e-4, epsilon=1e-8)
    for _ in range(2):
        _mnist_challenge_step(reference, x, tf.constant(y), eps=p.eps, steps=5, a=p.eval_step_size,
                              optimizer=optimizer)
    assert len(model.trainable_weights) == len(reference.trainable_weights) == len(before) == 8
    # Compare the updates (~1e-4), not the weights (~0.1). A gradient entry within rounding of zero can flip
    # its sign in one of the two computations, which moves a few updates: allow 1% of the entries to differ.
    for mine, theirs, start in zip(model.trainable_weights, reference.trainable_weights, before):
        ours_update, their_update = mine.numpy() - start, theirs.numpy() - start
        off = ~np.isclose(ours_update, their_update, rtol=1e-3, atol=1e-9)
        assert off.mean() <= 1e-2


def test_demo_and_limited_paper_runs_never_share_a_cell():
    cell = identity.cell_key({"experiment": "strength", "kappa": 8, "seed": 0, "steps": 400})
    demo = identity.fingerprint(cli.configuration(EXPERIMENT, "demo", {}, 0))
    paper = identity.fingerprint(cli.configuration(EXPERIMENT, "paper", {}, 0, limit=400))
    assert identity.cell_id(demo, cell) != identity.cell_id(paper, cell)


def test_grids_and_needs():
    class Run:
        profile, seed, options = profiles.DEMO, 0, {"seeds": profiles.DEMO.seeds}

    grid = cells.grid(Run)
    assert len({identity.cell_key(c) for c in grid}) == len(grid)
    transfers = [c for c in grid if c["experiment"] == cells.TRANSFER]
    assert len(transfers) == profiles.DEMO.seeds + profiles.DEMO.search_seeds * len(profiles.DEMO.search_steps)
    needed = cells.needs(transfers[0], Run)
    assert {c["kappa"] for c in needed} == set(profiles.DEMO.transfer_kappas) and all(c in grid for c in needed)
    assert cells.whole_machine({"experiment": cells.ASYNC}, Run) and not cells.whole_machine(transfers[0], Run)


def test_more_seeds_add_cells_and_keep_the_others():
    def grid(seeds):
        run = type("Run", (), {"profile": profiles.PAPER, "seed": 0, "options": {"seeds": seeds}})
        return {identity.cell_key(c) for c in cells.grid(run)}

    one, three = grid(1), grid(3)
    assert one < three
    added = {k for k in three - one if "seed=1" in k.split(",") or "seed=2" in k.split(",")}
    assert added == three - one and len(added) == 2 * (len(profiles.PAPER.kappas) + len(
        profiles.PAPER.staleness_values) + 1)  # strength and staleness nets, and their transfer matrix
    assert identity.fingerprint(cli.configuration(EXPERIMENT, "paper", {}, 0)) == identity.fingerprint(
        cli.configuration(EXPERIMENT, "paper", {"seeds": 3}, 0))  # a selection: the same configuration


def test_every_paper_cell_says_what_it_costs():
    from reproduce.efficient import plan

    class Run:
        profile, seed, capped = profiles.PAPER, 0, staticmethod(lambda value: value)
        options = {"seeds": profiles.PAPER.seeds}

    costs = {identity.cell_key(c): plan.cost(c, Run) for c in cells.grid(Run)}
    assert all(c.passes + c.forwards > 0 and c.steps > 0 for c in costs.values())
    strength_8 = costs[identity.cell_key({"experiment": "strength", "kappa": 8, "seed": 0, "steps": 60_000})]
    assert strength_8.passes > 60_000 * 128 * 9  # training alone; the logged panel and the evaluation add to it


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("efficient") / "smoke"
    return out, run_efficient("--profile", "smoke", "--out", str(out))


@pytest.mark.slow(seconds=130)
def test_smoke_run_writes_tables_figures_and_an_inconclusive_report(smoke):
    out, tables = smoke
    for name in ("results.csv", "curves.csv", "report.md", "fig3_adversarial_loss.png", "fig4_adversarial_accuracy.png",
                 "table1_transfer.png", "fig5_fresh_vs_stale.png", "fig8_staleness.png", "fig9_speedup.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "gradient" in report and "| dataset | digits | tfadv" in report
    # 4 training steps: nothing trained, so no claim may be reproduced or refuted.
    assert "**reproduced**" not in report and "**not reproduced**" not in report and "**partly" not in report
    # Beyond the paper: the cascade beside PGD (a section with its verdict, outside the paper's tally), and every
    # masking flag.
    assert f"{len(claims.CLAIMS)} claims: " in report and "| Beyond the paper: the PGD robust accuracy" not in report
    assert "Verdict, outside the paper's tally: \"Beyond the paper: the PGD robust accuracy" in report
    assert "## Beyond the paper: PGD beside AutoAttack" in report and "No reading of the gaps: model did not" in report
    assert all(name in report for name in tables["masking_flags"]["flag"])
    assert "| aa_budget | (2, 10, 2) | tfadv" in report
    assert "| {} | {} | tfadv |".format(*compaction.REPORT_SETTING) in report  # the shortcut the cascade took


@pytest.mark.slow(seconds=130)  # 120 s of it: the module's smoke run, if this check is the first to need it
def test_table_1_off_the_diagonal_is_the_attack_crafted_on_the_source(smoke):
    """Table 1 reads the examples the strength cells kept: crafting each pair afresh gives the same accuracy."""
    from tfadv.evaluation import accuracy

    out, tables = smoke
    run = cli.open_run(EXPERIMENT, cli.parser(EXPERIMENT).parse_args(["--profile", "smoke", "--out", str(out)]))
    x, y = cells.load_data(run)["test"]
    nets = {k: cells.load_net(run, cells.strength_cell(k, 0, profiles.SMOKE.train_steps)) for k in (1, 2)}
    seed = cells.seed_of(run, 0) + cells.EVAL_SEED
    for target, source in ((1, 2), (2, 1)):
        attack = training.pgd(nets[source], run.profile, target, training.step_size(run.profile.eps, target), seed)
        fresh = accuracy(nets[target], training.craft(attack, x, y), y)
        stored = select(tables["results"], experiment="transfer", target_kappa=target, source_kappa=source)
        assert stored["value"].item() == pytest.approx(fresh)


@pytest.mark.slow(seconds=130)  # 120 s of it: the module's smoke run, if this check is the first to need it
def test_autoattack_cells_count_the_images_each_attack_alone_broke(smoke):
    """For every PGD attack: its accuracy minus the cascade's is (broken by the cascade alone - by PGD alone) / n."""
    _, tables = smoke
    rows = select(tables["results"], experiment="autoattack")
    assert set(rows["kappa"]) == set(profiles.SMOKE.aa_kappas)
    for kappa, net in rows.groupby("kappa"):
        aa = select(net, metric="autoattack_accuracy")["value"].item()
        pgd = select(net, metric="pgd_accuracy")
        assert set(zip(pgd["attack"], pgd["attack_kappa"])) == {("panel", 1), ("panel", 2), ("reference", 3)}
        for r in pgd.itertuples():
            at = dict(attack=r.attack, attack_kappa=r.attack_kappa)
            b = select(net, metric="pgd_only_broken", **at)["value"].item()
            c = select(net, metric="autoattack_only_broken", **at)["value"].item()
            assert r.value - aa == pytest.approx((c - b) / r.n)


@pytest.mark.slow(seconds=130)  # 120 s of it: the module's smoke run, if this check is the first to need it
def test_table_1_diagonal_is_each_nets_own_white_box_accuracy(smoke):
    _, tables = smoke
    results = tables["results"]
    for kappa in profiles.SMOKE.transfer_kappas:
        diagonal = select(results, experiment="transfer", target_kappa=kappa, source_kappa=kappa)["value"].item()
        own = select(results, experiment="strength", kappa=kappa, split="test", metric="accuracy", attack="panel",
                     attack_kappa=kappa)["value"].item()
        assert diagonal == pytest.approx(own)


@pytest.mark.slow(seconds=130)  # 120 s of it: the module's smoke run, if this check is the first to need it
def test_the_stale_queue_trains_on_batches_s_steps_old(smoke):
    _, tables = smoke
    ages = select(tables["curves"], experiment="staleness", metric="measured_staleness")
    last = ages.sort_values("step").groupby("staleness")["value"].last()
    assert all(last[s] == s for s in profiles.SMOKE.staleness_values if s < profiles.SMOKE.train_steps)
    sync = select(tables["results"], experiment="async", workers=0, metric="staleness_max")
    assert sync["value"].item() == 0


@pytest.mark.slow(seconds=135)  # 120 s of it: the module's smoke run, if this check is the first to need it
def test_a_second_run_trains_nothing(smoke):
    out, _ = smoke
    stamps = {f: f.stat().st_mtime_ns for f in (out / "cells").iterdir()}
    run_efficient("--profile", "smoke", "--out", str(out))
    assert {f: f.stat().st_mtime_ns for f in (out / "cells").iterdir()} == stamps


@pytest.mark.slow(seconds=35)
def test_the_attacked_copy_attacks_each_cells_own_weights(tmp_path):
    """Two cells' nets (a fresh and a stale-queue trainer) through the one cached copy: each panel and
    reference attack gives exactly the examples of the same attack built on the net itself, and was traced
    once for both."""
    args = cli.parser(EXPERIMENT).parse_args(["--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    run = cli.open_run(EXPERIMENT, args)
    x, y = cells.load_data(run)["test"]
    ids = np.arange(len(x))
    for weights_seed, staleness in ((1, None), (2, 2)):
        net, made = training.attacked_copy(run, (1, 2), seed=5)
        model = training.adversarial_model(run.profile, 1, weights_seed, staleness=staleness, batch_size=32)
        training.copy_weights(model, net)
        own = training.attacks(model, run.profile, (1, 2), seed=5)
        assert made.keys() == own.keys()
        for key, attack in made.items():
            np.testing.assert_array_equal(attack(x, y, sample_ids=ids), own[key](x, y, sample_ids=ids))
    assert all(attack.tracing_count() == 1 for attack in made.values())


class _Interrupted(Exception):
    pass


def test_a_killed_training_resumes_from_its_last_logged_point(tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "EVERY_SECONDS", 0.0)  # a checkpoint at every logged point, as on a long run
    args = cli.parser(EXPERIMENT).parse_args(["--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    run = cli.open_run(EXPERIMENT, args)
    cell = {"experiment": "strength", "kappa": 1, "seed": 0, "steps": 4}
    data = cells.load_data(run)

    class KillAfterFirstPoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Interrupted

    class CountSteps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            CountSteps.steps += 1

    def train(callback):
        model = training.adversarial_model(run.profile, 1, 0, batch_size=32)
        logged = training.attacks(model, run.profile, (1,), seed=0, reference=False)
        return training.train_and_log(run, cell, data, model=model, steps=4, log_every=2, logged=logged,
                                      batch_size=32, seed=0, callbacks=[callback])

    with pytest.raises(_Interrupted):
        train(KillAfterFirstPoint())
    _, rows, _ = train(CountSteps())
    assert CountSteps.steps == 2  # only the unfinished half ran again
    assert sorted({r["step"] for r in rows}) == [2, 4]


@pytest.mark.slow(seconds=240)
def test_paper_profile_runs_end_to_end_on_stand_ins(tmp_path, monkeypatch):
    """The paper profile's own code path (MNIST through tfds, 28x28 Madry CNN, every experiment, 8 async
    workers on the logical CPU devices) under --limit 2, with tensorflow-datasets' mock MNIST. Its grid axes
    are cut to their ends and the kappas Table 1 and the panel need (every cell kind and extreme once; the
    full axes took half of this test's three minutes); the masking checks run on kappa 128 only (the same code
    on every kappa: the second took 12 of this test's 90 seconds)."""
    import tensorflow_datasets as tfds

    fewer = dict(kappas=(1, 4, 8, 128), staleness_values=(1, 1024), async_workers=(0, 1, 7), aa_kappas=(1, 128),
                 masking_kappas=(128,))
    monkeypatch.setitem(profiles.PROFILES, "paper", dataclasses.replace(profiles.PAPER, **fewer))
    out = tmp_path / "paper"
    with tfds.testing.mock_data(num_examples=8):
        tables = run_efficient("--profile", "paper", "--limit", "2", "--out", str(out))
    results = tables["results"]
    assert set(results["experiment"]) == {"strength", "transfer", "staleness", "async", "baseline", "autoattack",
                                          "masking"}
    assert set(select(results, experiment="strength")["kappa"]) == set(fewer["kappas"])
    assert set(select(results, experiment="async")["workers"]) == set(fewer["async_workers"])
    assert (select(results, split="test", metric="accuracy")["n"] == 2).all()
    report = (out / "report.md").read_text()
    assert "**reproduced**" not in report and "**not reproduced**" not in report and "**partly" not in report
    assert "| --limit | 2" in report and "reference code: mnist_challenge" in report
    assert (out / "table1_transfer.png").is_file() and (out / "fig9_speedup.png").is_file()
