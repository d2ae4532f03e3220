"""Kamath, Deshpande & Subrahmanyam 2019, "On Adversarial Robustness of Small vs Large Batch Training".

For each dataset x model x training setting x batch size x seed, train with SGD (fixed LR, LR/BS held
constant, or Yao et al.'s Benchmark; momentum sweeps) and measure test accuracy, FGSM and PGD accuracy
(L-inf) and the top eigenvalue λ1 of the loss Hessian. The figures are the paper's (a metric against the
batch size, a line per setting or momentum); report.md judges its qualitative claims with the noise over
seeds in view (reproduce.batchsize.claims). Profiles: `paper` (the paper's protocol as its reference code
HessianFlow ran it; a GPU), `demo` (digits, minutes on a CPU), `smoke` (seconds).

    python -m reproduce.batchsize --profile demo --out results/batchsize/demo
"""
from reproduce.batchsize import cells, claims, figures, profiles, sections
from tfadv.experiments import Experiment

EXPERIMENT = Experiment(
    key="batchsize",
    title="On Adversarial Robustness of Small vs Large Batch Training (Kamath et al. 2019)",
    profiles=profiles.PROFILES,
    grid=cells.grid,
    run_cell=cells.run_cell,
    judge=claims.judge_all,
    figures=figures.figures,
    sections=sections.sections,
    settings=profiles.settings,
    options=profiles.OPTIONS,
    cost=cells.cost,
    version=2,
    description=__doc__,
)
