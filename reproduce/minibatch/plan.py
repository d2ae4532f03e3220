"""What one cell asks of a device, for `--plan` (tfadv.experiments.plan): passes of one image through the
cell's ImageNet classifier (or the digits CNN), counted from the profile without loading data or weights."""
from __future__ import annotations

from reproduce.minibatch.cells import checked_images, emulated_craft_size, emulates, sharing_cells
from reproduce.minibatch.profiles import DIGITS_MODEL, PRECISIONS, steps
from tfadv.experiments import Run
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
    """Does a smaller batch size compute this sum-loss cell's craft (cells.sum_loss_craft)?"""
    return any(c["batch_size"] < cell["batch_size"] for c in sharing_cells(run, cell, total))


def _network(run: Run, name: str):
    """The architecture with random weights: only its graph is counted."""
    if name == DIGITS_MODEL:
        from tfadv.models.digits_cnn import build_digits_cnn

        return build_digits_cnn(run.profile.image_size)
    from tfadv.models.imagenet import build_imagenet_model

    return build_imagenet_model(name, None, image_size=run.profile.image_size)
