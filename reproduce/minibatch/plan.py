"""What one cell asks of a device, for `--plan` (tfadv.experiments.plan): passes of one image through the
cell's ImageNet classifier (or the digits CNN), counted from the profile without loading data or weights."""
from __future__ import annotations

from reproduce.minibatch.cells import batch_sizes, checked_images, emulated_craft_size, emulates
from reproduce.minibatch.profiles import DIGITS_MODEL, PRECISIONS, steps
from tfadv.experiments import Run
from tfadv.experiments import grid as grids
from tfadv.experiments.plan import Cost

#: ImageNetV2 (every variant) has 10,000 test images; the digits demo attacks at most its 450 test images.
IMAGES = {"imagenet": 10_000, DIGITS_MODEL: 450}


def cost(cell: dict, run: Run) -> Cost:
    p = run.profile
    total = run.capped(p.images) or IMAGES["imagenet" if cell["model"] != DIGITS_MODEL else DIGITS_MODEL]
    size = cell["batch_size"]
    images = total // size * size  # the reference code drops a partial batch
    count = steps(run, cell["attack"])
    emulated = emulates(run, cell)
    batch = emulated_craft_size(run, size) if emulated else size
    checked = checked_images(run, images, size) if batch != size else 0  # re-crafted in real batches
    if emulated and cell["loss"] == "sum" and _shares_craft(run, cell, total):
        images = 0  # the smallest batch size crafting in batches of this size computes the setting's sum-loss craft
    passes = (images + checked) * count
    device_steps = (-(-images // batch) + -(-checked // size)) * count
    return Cost(model=f"{cell['model']} {p.image_size}px", build=lambda: _network(run, cell["model"]),
                passes=passes, forwards=images + checked, steps=device_steps,
                precision="float32" if PRECISIONS[cell["precision"]][0] == "float32" else "mixed_float16")


def _shares_craft(run: Run, cell: dict, total: int) -> bool:
    """Does a smaller batch size that crafts in the same batches, attacks as many of the `total` images and
    is kept by --only compute this sum-loss cell's craft (cells.sum_loss_craft)?"""
    size = cell["batch_size"]
    smaller = [{**cell, "batch_size": b} for b in batch_sizes(run)
               if b < size and emulated_craft_size(run, b) == emulated_craft_size(run, size)
               and total // b * b == total // size * size]
    kept = grids.select_only([*smaller, cell], run.only, run.needs)  # `cell` is kept: never an empty selection
    return len(kept) > 1


def _network(run: Run, name: str):
    """The architecture with random weights: only its graph is counted."""
    if name == DIGITS_MODEL:
        from tfadv.models.digits_cnn import build_digits_cnn

        return build_digits_cnn(run.profile.image_size)
    from tfadv.models.imagenet import build_imagenet_model

    return build_imagenet_model(name, None, image_size=run.profile.image_size)
