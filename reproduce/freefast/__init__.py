"""Reproduce Capaldi & Capozzi 2020, "Free vs Fast adversarial training" (`make reproduce-freefast`).

    python -m reproduce.freefast --profile paper|demo|smoke [--out DIR] [--jobs N] [--only method=fast ...]

The paper compares Free-m adversarial training (Shafahi et al. 2019; m in 2, 4, 8, 10) with Fast, FGSM from
a random start (Wong et al. 2020; alpha = 10/255 or 16/255, batch 128 or 256), at eps = 8/255 on CIFAR-10:
PreActResNet18 for 45 epochs, then Free m=8 vs Fast alpha=10/255 for 90 epochs on PreActResNet18 and on
the seed's ResNet50; cyclic learning rate, mixed precision; evaluation with PGD-10/20/50 (step 2/255, one
random restart). Its claims: Fast at alpha = 16/255 overfits catastrophically; Free's natural accuracy
falls and its robustness rises with m up to m = 8; Free-8 is more robust than Fast but Fast is ~4x faster;
PreActResNet18 beats ResNet50 (reproduce.freefast.claims).

Modules: profiles (settings and their sources), data, training (one resumable run), evaluation (the
seed's PGD protocol), cells (grid and run_cell), measures and claims (verdicts), figures and sections
(the report). Each cell is resumable twice over: finished cells are skipped, and a cell killed
mid-training resumes from its last checkpoint (tfadv.training.TimedBackupAndRestore: at most a minute old).
"""
from tfadv.experiments import Experiment

from reproduce.freefast import cells, claims, cost, figures, profiles, sections

EXPERIMENT = Experiment(
    key="freefast", title="Free vs Fast adversarial training (Capaldi & Capozzi 2020)", profiles=profiles.PROFILES,
    grid=cells.grid, run_cell=cells.run_cell, judge=claims.judge_run, figures=figures.figures,
    sections=sections.sections, settings=profiles.settings, options=profiles.OPTIONS, cost=cost.cost, version=2,
    description=__doc__)
