from tfadv.experiments import main

from reproduce.freefast import EXPERIMENT

main(EXPERIMENT)
