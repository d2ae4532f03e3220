"""The grid and what one cell computes: one attack on every image at one batch size.

A cell is (model, precision, norm, loss, attack, batch size, run). It attacks the first floor(n / B) * B
images (the reference code drops a last partial batch) and records success = the fraction of them
misclassified after the attack (the reference code's metric, over all images), the clean error, and the
engine's first-step diagnostics that explain the mechanism (floor-clamped and zero gradients).

Batching: "real" crafts in batches of B, as the reference code. "emulated" crafts in batches of the
profile's craft_batch with per-sample reduction weights 1/B (the mean over a batch of B, eq. 1, gives each
sample's loss the weight 1/B), which is the same arithmetic; each such cell also crafts its first images in
real batches of B and records the largest difference it finds. Under the sum loss those weights are all 1, so
a setting's cells crafted in batches of one size share one craft (sum_loss_craft).
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

from reproduce.minibatch import data
from reproduce.minibatch.profiles import (
    ATTACKS,
    LOSSES,
    NORMS,
    PRECISIONS,
    batching,
    l2_rand_init,
    steps,
)
from tfadv.attacks import FGM, PGD
from tfadv.experiments import Run, atomic, grid as grids, identity, locks, machine
from tfadv.precision import dtype_policy

#: A cell with at least this many batches shows a progress bar (the paper's batch-1 cells: 10,000 calls).
PROGRESS_MIN_BATCHES = 200
_ENGINE_NORMS = {"l2": "2", "linf": "inf"}


def selected(run: Run, name: str, default):
    return run.options.get(name) or default


def batch_sizes(run: Run) -> tuple[int, ...]:
    """The selected batch sizes; under --limit those above the capped image count are left out (a wiring
    check), otherwise a batch size larger than the data is an error before any compute."""
    sizes = tuple(sorted(set(selected(run, "batch_sizes", run.profile.batch_sizes))))
    known = run.capped(run.profile.images)
    if run.limit is not None and known is not None:
        kept = tuple(b for b in sizes if b <= known)
        if kept != sizes:
            run.log(f"--limit {run.limit}: batch sizes {[b for b in sizes if b > known]} left out "
                    f"(larger than the {known} images)")
        return kept
    if known is not None and max(sizes) > known:
        raise SystemExit(_too_large(max(sizes), known))
    return sizes


def _too_large(size: int, images: int) -> str:
    return (f"minibatch: batch size {size} is larger than the {images} images attacked: it would attack no "
            "image at all. Choose --batch-sizes up to the number of images.")


def grid(run: Run) -> list[dict]:
    """Cells ordered by model and precision, so that a process builds each model once."""
    models = selected(run, "models", run.profile.models)
    foreign = [m for m in models if m not in run.profile.models]
    if foreign:
        raise SystemExit(f"minibatch: --models {','.join(foreign)}: not a model of the {run.profile_name} "
                         f"profile ({', '.join(run.profile.models)})")
    cells = []
    for model in models:
        for precision in selected(run, "precisions", tuple(PRECISIONS)):
            for norm in selected(run, "norms", NORMS):
                for loss in selected(run, "losses", tuple(LOSSES)):
                    for attack in selected(run, "attacks", ATTACKS):
                        for size in batch_sizes(run):
                            for repeat in range(1 if attack == "FGM" else run.capped(run.profile.runs)):
                                cells.append(dict(model=model, precision=precision, norm=norm, loss=loss,
                                                  attack=attack, batch_size=size, run=repeat, sharpness=1.0))
    return cells + search_cells(run, models)


def search_cells(run: Run, models) -> list[dict]:
    """The regime search: PGD, mean loss, float32, smallest and largest batch, each logit scale k (only
    when the selections keep that setting)."""
    if not all(wanted in selected(run, name, every) for name, wanted, every in (
            ("attacks", "PGD", ATTACKS), ("losses", "mean", LOSSES), ("precisions", "float32", PRECISIONS))):
        return []
    sizes = batch_sizes(run)
    return [dict(model=model, precision="float32", norm=norm, loss="mean", attack="PGD", batch_size=size, run=0,
                 sharpness=k) for model in models for k in run.profile.search_sharpness
            for norm in selected(run, "norms", NORMS) for size in sorted({sizes[0], sizes[-1]})]


def prepare(run: Run) -> None:
    """Train (or find) the digits CNN; check every batch size against the images before any attack."""
    data.prepare(run)
    largest = max(batch_sizes(run))
    for model in selected(run, "models", run.profile.models):
        count = data.image_count(run, model)
        if largest > count:
            raise SystemExit(_too_large(largest, count))


def attack_for(run: Run, cell: dict):
    """The compiled attack of a cell's configuration (once per process; batch sizes and batching share it)."""
    key = ("attack", *(cell[k] for k in ("model", "precision", "norm", "loss", "attack", "sharpness")))

    def build():
        model = data.model(run, cell["model"], cell["precision"], cell["sharpness"])
        eps = run.profile.eps[cell["norm"]]
        common = dict(norm=_ENGINE_NORMS[cell["norm"]], reduction=LOSSES[cell["loss"]], from_logits=False,
                      clip_min=0.0, clip_max=255.0, l2_normalization=run.options["l2_normalization"],
                      loss_scale=PRECISIONS[cell["precision"]][1])
        if cell["attack"] == "FGM":
            return FGM(model, eps=eps, **common)
        count = steps(run, "PGD")
        return PGD(model, eps=eps, steps=count, step_size=run.profile.step_factor * eps / count, rand_init=True,
                   seed=run.seed, l2_rand_init=l2_rand_init(run), **common)

    return run.cached(key, build)


def craft(run: Run, cell: dict, count: int, size: int, emulate: int | None, keep: int = 0) -> dict[str, np.ndarray]:
    """Attack the first `count` images in batches of `size`: per-image clean error and statistics, and the
    adversarial examples of the first `keep` images (all of them would not fit in memory at 224 px).

    `emulate`: craft as if in batches of that size (per-sample weights 1/emulate), or None for real batches.
    """
    attack = attack_for(run, cell)
    model = data.model(run, cell["model"], cell["precision"], cell["sharpness"])
    total = -(-count // size)
    bar = run.progress_bar(total, "batch") if total >= PROGRESS_MIN_BATCHES else None
    parts: dict[str, list] = {}
    with dtype_policy(PRECISIONS[cell["precision"]][0]):
        for i, (x, y, ids) in enumerate(data.batches(run, cell["model"], count, size)):
            x_adv, stats = attack(x, y, sample_ids=ids, restart=cell["run"], emulated_batch_size=emulate,
                                  return_stats=True)
            stats.pop("loss_path")
            stats["clean_wrong"] = np.argmax(model(x, training=False), -1) != y
            if i * size < keep:
                stats["x_adv"] = np.asarray(x_adv)
            for name, value in stats.items():
                parts.setdefault(name, []).append(np.asarray(value))
            if bar is not None:
                bar.update(i + 1)
    out = {name: np.concatenate(values) for name, values in parts.items()}
    out["x_adv"] = out.get("x_adv", np.zeros((0,)))[:keep]
    out["loss_path"] = attack.loss_path
    return out


def run_cell(cell: dict, run: Run) -> dict:
    started = time.monotonic()
    size = cell["batch_size"]
    count = data.image_count(run, cell["model"]) // size * size  # the reference code drops a partial batch
    craft_size = emulated_craft_size(run, size)
    mode = "emulated" if emulates(run, cell) and craft_size != size else "real"
    checked = checked_images(run, count, size) if mode == "emulated" else 0
    shared = False
    if emulates(run, cell) and cell["loss"] == "sum":
        found, shared = sum_loss_craft(run, cell, count, craft_size)
    elif mode == "emulated":
        found = craft(run, cell, count, craft_size, emulate=size, keep=checked)
    else:
        found = craft(run, cell, count, size, emulate=None)
    if mode == "emulated":
        check = emulation_check(run, cell, found, checked, size)
    else:
        check = dict(check_images=0, check_max_abs_diff=np.nan, check_max_rel_diff=np.nan, check_grad_rel_diff=np.nan,
                     check_success_mismatches=0)
    return dict(**summary(run, cell, found), batching=mode, craft_shared=shared, **check,
                data=data.images_provenance(run, cell["model"]), weights=data.weights_provenance(run, cell["model"]),
                seconds=round(time.monotonic() - started, 3))


def sum_loss_craft(run: Run, cell: dict, count: int, craft_size: int) -> tuple[dict, bool]:
    """A sum-loss cell's craft, and whether another cell computed it.

    Under the sum loss (eq. 5) every sample's weight is 1 whatever B is, so a setting's emulated crafts at
    every batch size, and its real batches of the craft size, are one computation (tests/test_emulation.py
    checks that they are bit-identical): it runs once and the setting's other sharing_cells reuse it
    (results.csv: craft_shared). Each emulated cell still checks it against its own real batches. The craft
    waits in the output folder's scratch space, for this process and for the other processes of a --jobs run
    (which take the setting's cells in no fixed order), until the setting's other cells have it
    (shared_craft_file); a cell that finds no file (one that began just as the file was removed) crafts it
    again, the same numbers.
    """
    size = cell["batch_size"]
    sharing = sharing_cells(run, cell, data.image_count(run, cell["model"]))
    keep = max(checked_images(run, count, c["batch_size"]) if c["batch_size"] != craft_size else 0 for c in sharing)
    emulate = None if size == craft_size else size
    if len(sharing) == 1:  # no other cell would read it
        return craft(run, cell, count, craft_size, emulate=emulate, keep=keep), False
    path = shared_craft_file(run, cell, count, craft_size)
    found = _read_shared_craft(path)
    shared = found is not None
    if not shared:
        found = craft(run, cell, count, craft_size, emulate=emulate, keep=keep)
        _write_shared_craft(path, found)
    # Once every other cell of the setting is finished or being computed (it read the file as it began), none
    # will read it: removed, so that at 224 px no craft outlives its setting.
    others = [c for c in sharing if c["batch_size"] != size]
    if all(run.finished(c) or locks.held_elsewhere(run.work_root, run.cell_id(c)) for c in others):
        path.unlink(missing_ok=True)
    return found, shared


def shared_craft_file(run: Run, cell: dict, count: int, craft_size: int) -> Path:
    """Where a setting's sum-loss craft waits for the setting's other cells: named by the configuration's
    fingerprint too, so that a folder taken over by another configuration never hands it out."""
    key = identity.cell_key({**{k: cell[k] for k in ("model", "precision", "norm", "attack", "sharpness", "run")},
                             "images": count, "craft_batch": craft_size})
    return run.work_root / "shared-crafts" / f"{identity.cell_id(run.store.fingerprint, key)}.npz"


def sharing_cells(run: Run, cell: dict, images: int) -> list[dict]:
    """The cells of this run whose sum-loss craft is `cell`'s, of `images` images before the partial batch is
    dropped: its setting's at every batch size crafted in batches of the same size (emulated, or real at the
    craft size) that attacks as many images, and that --only keeps (a craft kept for a cell that will not run
    would outlive the run in its scratch space). Counted from `images` alone, so --plan prices with it."""
    size = cell["batch_size"]
    same = [{**cell, "batch_size": b} for b in batch_sizes(run)
            if emulated_craft_size(run, b) == emulated_craft_size(run, size) and images // b * b == images // size * size]
    return grids.select_only(same, run.only, run.needs)


def _write_shared_craft(path: Path, found: dict) -> None:
    # A craft is the same on other kernels only to rounding: the kernels that computed it go with it.
    with atomic.atomic_path(path) as tmp:
        np.savez(tmp, **found, kernels=machine.kernels(), threads=machine.threads_in_effect())


def _read_shared_craft(path: Path) -> dict | None:
    """The craft another process wrote on the kernels and thread count of this one, else None."""
    try:
        with np.load(path) as stored:
            found = {name: stored[name] for name in stored.files}
        kernels, threads = str(found.pop("kernels")), int(found.pop("threads"))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # absent, removed while read, damaged
        return None
    if kernels != machine.kernels() or threads != machine.threads_in_effect():
        return None
    found["loss_path"] = str(found["loss_path"])
    return found


def emulated_craft_size(run: Run, size: int) -> int:
    """The batch an emulated cell of batch size `size` crafts in: a multiple of it, so groups never
    straddle calls."""
    return size * max(1, run.profile.craft_batch // size)


def checked_images(run: Run, count: int, size: int) -> int:
    """How many of `count` images an emulated cell re-crafts in real batches of `size` (whole batches)."""
    return min(count, size * -(-run.profile.check_images // size))


def emulates(run: Run, cell: dict) -> bool:
    """Does the cell craft with per-sample reduction weights (--batching emulated) where emulation is exact?"""
    return batching(run) == "emulated" and not shares_start(run, cell)


def shares_start(run: Run, cell: dict) -> bool:
    """PGD-L2 with the reference code's start shares one random radius per real batch: no emulation can
    reproduce that, so such cells are crafted in real batches."""
    return cell["attack"] == "PGD" and cell["norm"] == "l2" and l2_rand_init(run) == "batch_radius"


def emulation_check(run: Run, cell: dict, emulated: dict, checked: int, size: int) -> dict:
    """Craft the first `checked` images again in real batches of `size`: the largest differences found in
    success, in x_adv (relative to eps) and in the first step's gradient norm (which carries the 1/B of the
    mean, so a wrong weight shows even where the step itself is scale-free)."""
    real = craft(run, cell, checked, size, emulate=None, keep=checked)
    diff = np.abs(real["x_adv"] - emulated["x_adv"][:checked])
    g_real, g_emulated = real["grad_l2_first"], emulated["grad_l2_first"][:checked]
    grad = np.abs(g_emulated - g_real) / np.maximum(g_real, np.finfo(np.float32).tiny)
    return dict(check_images=checked, check_max_abs_diff=float(diff.max()),
                check_max_rel_diff=float(diff.max()) / run.profile.eps[cell["norm"]],
                check_grad_rel_diff=float(grad.max()),
                check_success_mismatches=int(np.sum(real["success"] != emulated["success"][:checked])))


def summary(run: Run, cell: dict, found: dict) -> dict:
    """One row of results.csv from the per-image outcomes of a cell."""
    success, correct = found["success"], ~found["clean_wrong"]
    return dict(
        images=len(success), classes=data.classes(cell["model"]), eps=run.profile.eps[cell["norm"]],
        steps=steps(run, cell["attack"]),
        clean_error=float(found["clean_wrong"].mean()),
        success_rate=float(success.mean()),  # the reference code's metric: over all images
        fooled_of_correct=float(success[correct].mean()) if correct.any() else np.nan,
        zero_grad_frac=float(found["grad_zero_first"].mean()),
        floor_clamp_frac=float(found["floor_clamped_first"].mean()),
        nonfinite_grad_frac=float(found["nonfinite_grad_first"].mean()),
        median_grad_l2_first=float(np.median(found["grad_l2_first"])),
        median_pert_l2=float(np.median(found["perturbation_l2"])),
        median_pert_linf=float(np.median(found["perturbation_linf"])),
        loss_path=found["loss_path"],
    )
