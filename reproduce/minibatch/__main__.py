from reproduce.minibatch import EXPERIMENT
from tfadv.experiments import main

main(EXPERIMENT)
