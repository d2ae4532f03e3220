"""The `minibatch` runner end to end: the smoke profile, refusals before any compute, the emulated batching
against real batches, and (slow) the paper profile's own code path on local stand-ins."""
import dataclasses
import shutil
import types
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from reproduce.minibatch import EXPERIMENT, cells, profiles, sections
from tfadv.datasets import imagenet_v2
from tfadv.experiments import cli, main
from tfadv.experiments.verdicts import INCONCLUSIVE
from tfadv.validation import TfadvWarning


def run(*argv):
    return main(EXPERIMENT, ["--no-progress", "--jobs", "1", *argv])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    return out, run("--profile", "smoke", "--out", str(out))["results"]


@pytest.mark.slow(seconds=300)
def test_smoke_end_to_end_holds_the_grid(smoke):
    out, table = smoke
    assert keras.config.dtype_policy().name == "float32"  # restored after the float16 cells
    p = profiles.PROFILES["smoke"]
    per_setting = len(p.batch_sizes) * (1 + p.runs)  # FGM once, PGD `runs` times, at each batch size
    search = len(p.search_sharpness) * 2 * 2  # logit scales x norms x (smallest, largest batch)
    assert len(table) == len(profiles.PRECISIONS) * 2 * 2 * per_setting + search and table["cell"].is_unique
    assert (table["sharpness"] == 1.0).sum() == len(table) - search
    on_disk = pd.read_csv(out / "results.csv")
    assert len(on_disk) == len(table)
    for name in ("fig2_success_l2.png", "fig3_success_linf.png", "fig_mechanism.png", "report.md"):
        assert (out / name).stat().st_size > 1000, name
    for column in ("success_rate", "clean_error", "zero_grad_frac", "floor_clamp_frac"):
        assert on_disk[column].between(0, 1).all(), column
    assert (on_disk["images"] == p.images).all()
    # Keras' loss path: the float32 softmax is bypassed via its logits; the float16 output is clipped.
    paths = on_disk.groupby("precision")["loss_path"].unique()
    assert list(paths["float32"]) == ["softmax_logits_shortcut"]
    assert list(paths["mixed_float16"]) == ["clipped_probabilities"]
    l2 = on_disk[on_disk["norm"] == "l2"]
    assert (l2["median_pert_l2"] <= l2["eps"] * (1 + 1e-4)).all()  # never outside the eps ball


@pytest.mark.slow(seconds=285)  # 280 s of it: the module's smoke run, if this check is the first to need it
def test_smoke_report_is_honest(smoke):
    out, table = smoke
    report = (out / "report.md").read_text()
    assert "94.54%" in report and "not measured in this profile" in report
    verdicts = EXPERIMENT.judge({"results": table}, None)
    assert all(v.outcome == INCONCLUSIVE for v in verdicts), verdicts  # 8 images: saturated or noise
    assert "The emulation is trusted" in report and "fig2_success_l2.png" in report and "regime search" in report
    for setting in ("eps (pixel units)", "batching", "PGD random start", "L2 step normalisation"):
        assert f"| {setting} |" in report


@pytest.mark.slow(seconds=285)  # 280 s of it: the module's smoke run, if this check is the first to need it
def test_emulated_batching_matches_real_batches(smoke):
    """Every emulated cell crafted its first images in real batches too: same success, same x_adv."""
    _, table = smoke
    emulated = table[table["batching"] == "emulated"]
    assert len(emulated) > 0 and (emulated["check_images"] > 0).all()
    assert (emulated["check_success_mismatches"] == 0).all()
    assert (emulated["check_max_rel_diff"] <= sections.ROUNDING).all(), emulated["check_max_rel_diff"].max()
    assert (emulated["check_grad_rel_diff"] <= sections.GRADIENT_ROUNDING).all(), emulated["check_grad_rel_diff"].max()
    text = sections.batching_text(table, "emulated")
    assert "The examples agree to float rounding" in text and "The emulation is trusted" in text


@pytest.mark.slow(seconds=325)  # 280 s of it: the module's smoke run, if this check is the first to need it
def test_emulated_and_real_give_the_same_success(smoke, tmp_path):
    _, emulated = smoke
    real = run("--profile", "smoke", "--out", str(tmp_path), "--batching", "real", "--precisions", "float32",
               "--attacks", "FGM")["results"]
    keys = ["precision", "attack", "norm", "loss", "batch_size", "sharpness"]
    both = real.merge(emulated, on=keys)
    assert len(both) == len(real) and (real["batching"] == "real").all()
    np.testing.assert_array_equal(both["success_rate_x"], both["success_rate_y"])


@pytest.mark.slow(seconds=90)
def test_sum_loss_cells_share_one_craft_and_each_emulated_one_is_checked(tmp_path):
    """Sum-loss cells of one setting at different emulated batch sizes, and the real batches of the craft size
    (here 4), reuse one craft (recorded per row); each emulated one still matches its own real batches."""
    out = run("--profile", "smoke", "--out", str(tmp_path), "--batch-sizes", "1,2,4", "--precisions", "float32",
              "--norms", "l2")
    table = out["results"]
    table = table[table["sharpness"] == 1.0]
    shared = table[table["craft_shared"]]
    assert set(shared["loss"]) == {"sum"} and set(shared["batch_size"]) == {2, 4}
    assert len(shared) == len(table[(table["loss"] == "sum") & (table["batch_size"] > 1)])
    assert set(shared.loc[shared["batch_size"] == 4, "batching"]) == {"real"}
    emulated = shared[shared["batching"] == "emulated"]
    assert (emulated["check_images"] > 0).all() and (emulated["check_success_mismatches"] == 0).all()
    assert (emulated["check_max_rel_diff"] <= sections.ROUNDING).all()
    assert "craft_shared" in (tmp_path / "report.md").read_text()


@pytest.mark.slow(seconds=60)
def test_a_sum_loss_craft_reaches_the_other_processes_of_a_jobs_run(tmp_path, monkeypatch):
    """--jobs children take a setting's cells in no fixed order (longest first): the one that crafts leaves the
    craft in the folder's scratch space, another (here: this process with its caches emptied) reads it instead
    of crafting again, bit for bit, and the setting's last sharing cell removes it. A craft computed on other
    kernels, or a damaged file, is not read."""
    r = cli.open_run(EXPERIMENT, cli.parser(EXPERIMENT).parse_args(
        ["--profile", "smoke", "--out", str(tmp_path), "--batch-sizes", "1,2,4", "--no-progress"]))
    r.prepare()
    cell = dict(model=profiles.DIGITS_MODEL, precision="float32", norm="l2", loss="sum", attack="PGD",
                batch_size=1, run=0, sharpness=1.0)
    first, shared = cells.sum_loss_craft(r, cell, 8, 4)
    path = cells.shared_craft_file(r, cell, 8, 4)
    assert not shared and path.exists()

    with monkeypatch.context() as m:
        m.setattr(cells.machine, "kernels", lambda: "CPU: another one")
        assert cells._read_shared_craft(path) is None
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cells._read_shared_craft(damaged) is None and cells._read_shared_craft(tmp_path / "absent.npz") is None

    r.cache.clear()
    monkeypatch.setattr(cells, "craft", lambda *args, **kwargs: pytest.fail("crafted again"))
    monkeypatch.setattr(r, "finished", lambda c: c["batch_size"] != 2)  # batch 2 is the last sharing cell
    second, shared = cells.sum_loss_craft(r, {**cell, "batch_size": 2}, 8, 4)
    assert shared and not path.exists()
    assert second.keys() == first.keys() and second["x_adv"].shape[0] > 0
    for name in first:
        np.testing.assert_array_equal(second[name], first[name], err_msg=name)


def test_a_sum_loss_craft_is_shared_only_with_cells_the_run_keeps(tmp_path):
    """Under --only, a sharing cell the selection leaves out never reads the craft, so none is kept for it
    (it would outlive the run in the folder's scratch space), and --plan prices the cell that crafts."""
    from reproduce.minibatch import plan

    def opened(*argv):
        return cli.open_run(EXPERIMENT, cli.parser(EXPERIMENT).parse_args(
            ["--profile", "smoke", "--out", str(tmp_path), "--batch-sizes", "1,2,4", "--no-progress", *argv]))

    cell = dict(model=profiles.DIGITS_MODEL, precision="float32", norm="l2", loss="sum", attack="PGD",
                batch_size=1, run=0, sharpness=1.0)
    sharing = lambda r: sorted(c["batch_size"] for c in cells.sharing_cells(r, cell, 8))  # noqa: E731
    every, kept, alone = opened(), opened("--only", "batch_size=1,4"), opened("--only", "batch_size=2,4")
    assert sharing(every) == [1, 2, 4] and sharing(kept) == [1, 4] and sharing(opened("--only", "batch_size=1")) == [1]
    at_2 = {**cell, "batch_size": 2}  # free while batch 1 crafts for it; priced when --only leaves batch 1 out
    assert plan.cost(at_2, every).passes < plan.cost(at_2, alone).passes


@pytest.mark.slow(seconds=290)  # 280 s of it: the module's smoke run, if this check is the first to need it
def test_another_profile_in_the_same_folder_is_refused_before_any_compute(smoke):
    """Issue 11: a demo run then a smoke run into one folder reused cells and crashed with KeyError 'sum'."""
    out, _ = smoke
    before = sorted(p.name for p in (out / "cells").iterdir())
    with pytest.raises(SystemExit, match="profile"):
        run("--profile", "demo", "--out", str(out))
    assert sorted(p.name for p in (out / "cells").iterdir()) == before


@pytest.mark.slow(seconds=290)  # 280 s of it: the module's smoke run, if this check is the first to need it
def test_new_identity_options_are_refused_in_an_old_folder(smoke):
    """Issue 11: --l2-normalization exact --seed 7 skipped every cell and kept the old numbers."""
    out, _ = smoke
    with pytest.raises(SystemExit) as e:
        run("--profile", "smoke", "--out", str(out), "--l2-normalization", "exact", "--seed", "7")
    assert "options.l2_normalization" in str(e.value) and "seed" in str(e.value)
    with pytest.raises(SystemExit, match="options.batching"):
        run("--profile", "smoke", "--out", str(out), "--batching", "real")


def test_a_batch_larger_than_the_data_is_an_error_before_any_compute(tmp_path):
    with pytest.raises(SystemExit, match="batch size 16 is larger than the 8 images"):
        run("--profile", "smoke", "--out", str(tmp_path), "--batch-sizes", "1,16")
    assert not list((tmp_path / "cells").glob("*"))  # no cell computed (the folder is not even claimed)


@pytest.mark.parametrize("argv, says", [
    (["--norms", "1"], "choose from l2, linf"),
    (["--precisions", "float8"], "choose from float32"),
    (["--batch-sizes", "0,2"], ">= 1"),
])
def test_bad_options_are_refused_with_the_choices(tmp_path, capsys, argv, says):
    with pytest.raises(SystemExit):
        run("--profile", "smoke", "--out", str(tmp_path), *argv)
    assert says in capsys.readouterr().err


def test_a_model_of_another_profile_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a model of the smoke profile"):
        run("--profile", "smoke", "--out", str(tmp_path), "--models", "resnet50")


def test_temperature_scaling_recovers_a_known_temperature():
    from tfadv.models.digits_cnn import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 4.0, (4000, 10))
    p = np.exp(logits / 2.5)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.15 * 2.5


def test_digits_cnn_refuses_to_train_under_mixed_precision():
    from tfadv.models.digits_cnn import train_digits_cnn
    from tfadv.precision import dtype_policy

    with dtype_policy("mixed_float16"), pytest.raises(RuntimeError, match="float32"):
        train_digits_cnn(np.zeros((4, 16, 16, 3), "float32"), np.arange(4))


def write_imagenet_v2(root: Path, classes=(1, 500, 999)) -> None:
    import tensorflow as tf

    for label in classes:
        (root / str(label)).mkdir(parents=True)
        pixels = np.random.default_rng(label).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        (root / str(label) / "a.jpeg").write_bytes(tf.io.encode_jpeg(pixels).numpy())


def paper_run(imagenet_dir: Path, limit=None):
    """What the paper profile's settings and report read of a run that attacked `imagenet_dir`."""
    return types.SimpleNamespace(
        profile=profiles.PROFILES["paper"], profile_name="paper", limit=limit, seed=0,
        options={"imagenet_dir": str(imagenet_dir), "batching": "real", "l2_rand_init": "batch_radius",
                 "l2_normalization": "clamped"},
        capped=lambda value: value if limit is None else limit if value is None else min(value, limit))


def images_setting(run_) -> str:
    return {s.name: s.value for s in profiles.settings(run_)}["images"]


def test_the_report_says_which_imagenet_images_it_read_and_warns_unless_1000_classes_of_10(tmp_path):
    """A folder of 3 images gave the paper's verdicts under "images | all (10,000)" without a word."""
    write_imagenet_v2(tmp_path / "small")  # 3 classes, 1 image each
    small = paper_run(tmp_path / "small")
    assert images_setting(small).startswith("3 in --imagenet-dir, 3 of 1000 classes, 1-1 per class (NOT ImageNetV2")
    with pytest.warns(TfadvWarning, match="holds 3 in --imagenet-dir"):
        text = sections.images_warning(small)
    assert text.startswith("> **Warning.**") and "not ImageNetV2's 10,000 (1000 classes x 10" in text
    full = tmp_path / "full"
    for label in range(1000):  # listed, never decoded: empty files stand in for the images
        (full / str(label)).mkdir(parents=True)
        for i in range(10):
            (full / str(label) / f"{i}.jpeg").touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sections.images_warning(paper_run(full)) is None
    assert images_setting(paper_run(full, limit=2)) == ("all 10,000 in --imagenet-dir, 1000 of 1000 classes, 10-10 "
                                                        "per class; a last partial batch is dropped; --limit 2: the "
                                                        "first 2 of them")
    shutil.rmtree(full / "7")  # a class missing: 9,990 images
    with pytest.warns(TfadvWarning, match="holds 9,990 in --imagenet-dir, 999 of 1000 classes"):
        sections.images_warning(paper_run(full))


def test_a_paper_run_warns_as_it_reads_an_imagenet_folder_that_is_not_1000_classes_of_10(tmp_path):
    from reproduce.minibatch import data

    write_imagenet_v2(tmp_path / "small")
    run_ = paper_run(tmp_path / "small")
    run_.data_dir, cache = None, {}
    run_.cached = lambda key, make: cache[key] if key in cache else cache.setdefault(key, make())
    with pytest.warns(TfadvWarning, match="holds 3 in --imagenet-dir"):
        assert data.image_count(run_, "resnet50") == 3


def write_random_weights(folder: Path, size: int, models) -> None:
    """The paper models `models` with random weights, saved under their official file names in the legacy
    .h5 format."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from tfadv.models.imagenet import ARCHITECTURES, build_imagenet_model

    folder.mkdir()
    for name in models:
        with h5py.File(folder / ARCHITECTURES[name].weights_file, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, build_imagenet_model(name, None, image_size=size))
        keras.backend.clear_session()


@pytest.mark.parametrize("models", [
    ("inception_v3", "resnet50"),
    # the same builder and weight loading: tracing the two under float16 is 40 s that CI leaves to test-all
    pytest.param(("xception", "densenet121"), marks=pytest.mark.heavy),
], ids="+".join)
@pytest.mark.slow(seconds=95)
def test_paper_profile_runs_on_local_stand_ins(tmp_path, monkeypatch, models):
    """The paper profile's own code path, offline: ImageNetV2's tarball layout, the models with random
    weights under their official file names, --limit 1 (one image, one PGD step, batch 1), at 75 px
    (InceptionV3 and Xception need >= 75), mixed_float16 (the path most likely to break on a GPU)."""
    monkeypatch.setitem(profiles.PROFILES, "paper", dataclasses.replace(profiles.PROFILES["paper"], image_size=75))
    write_imagenet_v2(tmp_path / "imagenetv2")
    write_random_weights(tmp_path / "weights", 75, models)
    out = tmp_path / "out"
    table = run("--profile", "paper", "--out", str(out), "--limit", "1", "--imagenet-dir",
                str(tmp_path / "imagenetv2"), "--weights-dir", str(tmp_path / "weights"), "--norms", "l2",
                "--losses", "mean", "--attacks", "PGD", "--precisions", "mixed_float16",
                "--models", ",".join(models))["results"]
    assert set(table["model"]) == set(models) and set(table["batch_size"]) == {1}
    assert len(table) == len(models) and (table["steps"] == 1).all() and (table["images"] == 1).all()
    assert (table["classes"] == 1000).all() and (table["batching"] == "real").all()
    assert (out / "fig2_success_l2.png").is_file() and (out / "results.csv").is_file()
    verdicts = EXPERIMENT.judge({"results": table}, None)
    assert all(v.outcome == INCONCLUSIVE for v in verdicts)
    assert any("did not train" in v.why for v in verdicts)  # random weights: accuracy at chance
    report = (out / "report.md").read_text()
    assert "did not train" in report
    assert table["weights"].str.startswith("NOT the official weights: ").all()  # random, under official names
    assert (table["data"] == imagenet_v2.source_provenance(tmp_path / "imagenetv2")).all()
    assert f"**Warning.** pretrained weights: {len(models)} of {len(models)} cells attacked" in report


@pytest.mark.heavy  # builds the four ImageNet architectures to count their FLOPs
def test_every_paper_cell_says_what_it_costs(tmp_path):
    """--plan on the paper profile counts every cell's attack passes: PGD's 32 steps per image, batch 1
    taking one device step per image and step, and a mixed-precision cell priced as such."""
    from reproduce.minibatch import plan

    out = run("--profile", "paper", "--out", str(tmp_path / "paper"), "--plan")["plan"]
    assert out["cells"].sum() == 4 * 3 * 2 * 2 * 8 * (1 + 5) and (out["GPU-hours"] > 0).all()

    class Run:
        profile, options, limit = profiles.PROFILES["paper"], {"batching": "real", "l2_rand_init": "batch_radius"}, None
        capped = staticmethod(lambda value: value)

    cell = dict(model="resnet50", precision="mixed_float16", norm="linf", loss="mean", attack="PGD", batch_size=1,
                run=0, sharpness=1.0)
    cost = plan.cost(cell, Run)
    assert (cost.passes, cost.steps, cost.precision) == (10_000 * 32, 10_000 * 32, "mixed_float16")
