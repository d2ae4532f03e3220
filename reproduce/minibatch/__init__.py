"""Reproduce Redgrave & Crum (2023), "Generating adversarial samples in mini-batches may be detrimental to
adversarial robustness".

The paper crafts FGM and PGD examples (L2 and L∞) against four ImageNet classifiers on ImageNetV2 in
mini-batches of 1 to 128 and finds that with Keras' mean loss (eq. 1) larger batches give weaker attacks,
that the summed loss (eq. 5) removes this, and that mixed_float16 weakens attacks further. The grid is
model x precision {float32, mixed_float16, and tfadv's mixed_float16 with per-sample loss scaling} x norm x
loss {mean, sum} x attack x batch size x run; each cell records the success rate on the same images and the
first-step gradient diagnostics (floor-clamped and zero gradients) that explain the mechanism.

    python -m reproduce.minibatch --profile demo            # digits CNN, minutes on a CPU, offline
    python -m reproduce.minibatch --profile paper --weights-dir W --imagenet-dir D
"""
from reproduce.minibatch import cells, claims, figures, profiles, sections
from tfadv.experiments import Experiment

EXPERIMENT = Experiment(
    key="minibatch",
    title="Mini-batch attack generation (Redgrave & Crum 2023)",
    description=__doc__,
    profiles=profiles.PROFILES,
    options=profiles.OPTIONS,
    settings=profiles.settings,
    grid=cells.grid,
    prepare=cells.prepare,
    run_cell=cells.run_cell,
    judge=claims.judge_all,
    figures=figures.figures,
    sections=sections.sections,
    version=2,
)
