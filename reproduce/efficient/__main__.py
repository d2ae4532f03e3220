from reproduce.efficient import EXPERIMENT
from tfadv.experiments import main

main(EXPERIMENT)
