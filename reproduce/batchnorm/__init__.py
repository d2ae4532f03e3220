"""Reproduce Galloway et al. 2019, "Batch normalization increases adversarial vulnerability" (ICLR 2020 submission).

    python -m reproduce.batchnorm --profile {paper,demo,smoke} [--out DIR] [--jobs N] [--experiments a,b]

Experiments (one grid cell = one trained model, so a killed run resumes model by model):
  toy          Figure 1: two 2-D Gaussians, GD vs batch-normalised GD, the boundary's tilt.
  tilting      Table 1: linear models on MNIST 3 vs 7 (GD, GD + weight decay, BNGD with affine fixed or learned)
               and the nearest-centroid classifier they are measured against.
  dimension    Tables 6-7, App. F: MNIST upscaled 1-4x; a linear model and a two-hidden-layer MLP with and
               without one BN layer and weight decay; BIM-ℓ∞ and Gaussian noise.
  depth_batch  Figure 2: width-384 ReLU nets of depth L, batch B, LR 1e-5 B, with and without BN.
  cifar        Tables 2-4: VGG and WideResNet with BN or without (Fixup for the WRN), small and large LR, and the
               authors' released ResNet-110 BN-vs-Fixup protocol; clean, noise, PGD-ℓ∞/ℓ2 as their evaluation
               code, CIFAR-10.1 v6 and CIFAR-10-C.
  imagenet     Table 5 (paper profile only): keras.applications VGG16/19 (no BN) vs ResNet50/DenseNet121 (BN).

`paper` reads MNIST / CIFAR-10 / CIFAR-10.1 / CIFAR-10-C / ImageNetV2 through tensorflow-datasets; `demo` and
`smoke` run on scikit-learn's digits. The claims are judged by with-minus-without-BN differences over seeds
(claims.py, claims_cifar.py, rules.py).
"""
from reproduce.batchnorm import cells, claims, figures, plan, profiles, sections, settings
from tfadv.experiments import Experiment

EXPERIMENT = Experiment(
    key="batchnorm", title="Batch normalization increases adversarial vulnerability (Galloway et al. 2019)",
    profiles=profiles.PROFILES, grid=cells.grid, run_cell=cells.run_cell, judge=claims.judge_all,
    figures=figures.figures, sections=sections.sections, settings=settings.settings, options=profiles.OPTIONS,
    cost=plan.cost,
    description=__doc__,
)
