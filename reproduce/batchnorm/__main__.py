"""python -m reproduce.batchnorm --profile {paper,demo,smoke} [--out DIR] [--jobs N] [--experiments ...]"""
from reproduce.batchnorm import EXPERIMENT
from tfadv.experiments import main

main(EXPERIMENT)
