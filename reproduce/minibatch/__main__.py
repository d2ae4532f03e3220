from tfadv.experiments import main

from reproduce.minibatch import EXPERIMENT

main(EXPERIMENT)
