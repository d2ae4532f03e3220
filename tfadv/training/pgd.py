"""PGD adversarial training (Madry et al. 2018): K projected steps per batch, then the weight update."""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfadv import validation
from tfadv.training.base import AdversarialModel


@keras.saving.register_keras_serializable(package="tfadv")
class PGDAdversarialModel(AdversarialModel):
    """min_theta E max_{||delta|| <= eps} l(f(x + delta), y), the inner max by K-step PGD:

        delta_{k+1} = Proj_eps(delta_k + step_size * steepest_ascent(grad_x l(f(x + delta_k), y)))

    from a uniform random start in the ball (rand_init=True) or from zero. K + 1 forward/backward passes
    per batch. Madry's CIFAR code: eps 8/255, steps 7, step_size 2/255; MNIST: eps 0.3, steps 40, 0.01.
    """

    _adversarial_keys = AdversarialModel._adversarial_keys + ("steps", "step_size", "rand_init")

    def __init__(
        self, *args: Any, eps: float, steps: int, step_size: float, rand_init: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, eps=eps, **kwargs)
        owner = type(self).__name__
        self.steps = validation.integer(owner, "steps", steps, minimum=1)
        self.step_size = validation.real(owner, "step_size", step_size, positive=True)
        self.rand_init = validation.flag(owner, "rand_init", rand_init)
        validation.warn_if_short_reach(f"{owner} (its training attack)", self.eps, self.steps, self.step_size)

    def craft(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """The training attack with the current weights: x + delta."""
        start = self.random_start(x) if self.rand_init else x
        return self.perturb(x, y, start, steps=self.steps, step_size=self.step_size, training=self.attack_training_mode)

    def train_step(self, data):
        x, y, sample_weight = self.unpack(data)
        return self.fit_on_batch(self.craft(x, y), y, sample_weight)
