from reproduce.batchsize import EXPERIMENT
from tfadv.experiments import main

if __name__ == "__main__":
    main(EXPERIMENT)
