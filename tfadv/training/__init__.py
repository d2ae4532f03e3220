"""Adversarial training as Keras models: override `train_step`, keep `compile`/`fit`/`evaluate`/`save`.

- PGDAdversarialModel (Madry et al.), FastAdversarialModel (Wong et al.), FreeAdversarialModel (Shafahi et
  al.), StaleAdversarialModel (Bhat et al.). Wrap any Keras model, `PGDAdversarialModel(model, eps=...,
  steps=..., step_size=...)` (Sequential, Functional or subclassed; the trainer shares its weights), or build
  functional-style from `(inputs, outputs)`.
- CyclicLearningRate: the triangular one-cycle schedule of fast_adversarial.
- CatastrophicOverfittingCallback: PGD accuracy on a held-out batch; restores the best weights on collapse.
- TimedBackupAndRestore: Keras' BackupAndRestore with at most one checkpoint per minute (short epochs).
- distributed.train: a `strategy.run` loop for MultiWorkerMirroredStrategy, where Keras 3 `fit` fails.

Metric names say which inputs a number was computed on: `adv_` prefix = adversarial inputs, no prefix =
clean inputs, the same in fit, evaluate and callbacks. fit logs `adv_loss` (the training objective) and
`adv_accuracy`; evaluate logs `loss`, `accuracy` and the compiled metrics on clean inputs and
`adv_loss`/`adv_accuracy` under its PGD attack, the same numbers on every call; with validation data,
Keras adds its `val_` prefix (`val_accuracy` clean, `val_adv_accuracy` adversarial). As in Keras, sample and
class weights weigh the loss and `weighted_metrics` only; callbacks with mode="auto" know which way each
metric improves.

The logits/probabilities rule: the compiled loss's `from_logits` must say what the model outputs; fit,
evaluate, train_on_batch and test_on_batch check it on one forward pass before the first step after each
compile (`check_output_kind=False` opts out). Inputs outside [clip_min, clip_max] are refused, under XLA too.

Free and Stale keep per-row state for `batch_size` rows: a short last batch uses the first rows, a larger
batch (Keras' default of 32 too, when fit is given no batch_size) is refused when fit starts, naming the
setting to change. Free trains on fast_adversarial's inputs by default (the first replay of each batch can
leave the valid range by up to eps); clip_inputs=True clips them, as Shafahi et al.'s code does. A refused
call can be corrected and made again; keras.models.clone_model clones a wrapper with its settings.

Resuming: TimedBackupAndRestore resumes these models where the uninterrupted run would be: weights,
optimizer, epoch, the random-start counters, Dropout's generators, Free's delta and Stale's queue (each
replica's). Keras' own BackupAndRestore leaves the last three out: a run it resumes starts them anew.
Random starts are keyed draws, the same for the same seed and step within one compilation mode: XLA
(jit_compile=True, or Keras' default jit_compile="auto" on a GPU) draws other numbers than TensorFlow's graph
and eager kernels, so a run resumed with and without XLA, or compared across the two, draws differently.
"""
from tfadv.training.base import AdversarialModel
from tfadv.training.backup import TimedBackupAndRestore
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
    "TimedBackupAndRestore",
]
