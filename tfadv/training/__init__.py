"""Adversarial training as Keras models: override `train_step`, keep `compile`/`fit`/`evaluate`/`save`.

- PGDAdversarialModel (Madry et al.), FastAdversarialModel (Wong et al.), FreeAdversarialModel (Shafahi et
  al.), StaleAdversarialModel (Bhat et al.), all built like a functional model: Model(inputs, outputs, ...).
- CyclicLearningRate: the triangular one-cycle schedule of fast_adversarial.
- CatastrophicOverfittingCallback: PGD accuracy on a held-out batch; restores the best weights on collapse.
- distributed.train: a `strategy.run` loop for MultiWorkerMirroredStrategy, where Keras 3 `fit` fails.

Resuming: `keras.callbacks.BackupAndRestore(backup_dir)` works with these models (weights, optimizer,
epoch and the random-start counters are restored; Free's delta and Stale's queue are scratch state that a
resumed run rebuilds).
"""
from tfadv.training.base import AdversarialModel
from tfadv.training.callbacks import CatastrophicOverfittingCallback
from tfadv.training.fast import FastAdversarialModel
from tfadv.training.free import FreeAdversarialModel
from tfadv.training.pgd import PGDAdversarialModel
from tfadv.training.schedules import CyclicLearningRate
from tfadv.training.stale import StaleAdversarialModel

__all__ = [
    "AdversarialModel",
    "CatastrophicOverfittingCallback",
    "CyclicLearningRate",
    "FastAdversarialModel",
    "FreeAdversarialModel",
    "PGDAdversarialModel",
    "StaleAdversarialModel",
]
