"""Reproduce Bhat, Tsipras & Madry 2018, "Towards Efficient Methods for Training Robust Deep Neural Networks".

Four experiments on Madry et al.'s MNIST CNN, trained with Adam on PGD-kappa adversarial batches
(L-inf eps-ball, random start, step alpha = 2.5 eps / kappa):

1. attacker strength: one net per training kappa, its adversarial loss and accuracy logged against a panel
   of attackers during training (Figs 3-4), final test accuracy under mnist_challenge's PGD-40;
2. transfer matrix (Table 1): examples crafted on each source net with the target's kappa, evaluated on the
   target; the diagonal is white-box; gradient shattering is a white-box attack that fails where the same
   attack transferred succeeds;
3. staleness: training on batches from a queue of s batches (Figs 5 and 8), fresh vs stale accuracy;
4. asynchronous workers (Fig 9): tfadv.training.asynchronous on every device of the machine, and
   mnist_challenge's kappa = 40 recipe timed in the same harness.

Beyond the paper (reproduce.efficient.beyond): the strength nets under an AutoAttack-style cascade beside the
paper's PGD numbers, and tfadv's gradient-masking checks on the weakest and the strongest net.

    python -m reproduce.efficient --profile demo
"""
from reproduce.efficient import cells, claims, figures, plan, profiles, sections
from tfadv.experiments import Experiment

EXPERIMENT = Experiment(
    key="efficient",
    title="Towards Efficient Methods for Training Robust Deep Neural Networks (Bhat, Tsipras & Madry 2018)",
    profiles=profiles.PROFILES,
    grid=cells.grid,
    run_cell=cells.run_cell,
    judge=claims.judge_all,
    figures=figures.figures,
    sections=sections.sections,
    settings=profiles.settings,
    options=profiles.OPTIONS,
    prepare=cells.prepare,
    needs=cells.needs,
    whole_machine=cells.whole_machine,
    cost=plan.cost,
    description=__doc__,
)
