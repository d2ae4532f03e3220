"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a random start, two passes per batch."""
from __future__ import annotations

from typing import Any

import keras

from tfadv import validation
from tfadv.training.base import AdversarialModel


@keras.saving.register_keras_serializable(package="tfadv")
class FastAdversarialModel(AdversarialModel):
    """FGSM-RS training: delta0 ~ U(-eps, eps) (clipped to the valid range), one step of size `alpha`,
    projection onto the eps ball, then the weight update on x + delta:

        delta = Proj_eps(delta0 + alpha * sign(grad_x l(f(x + delta0), y)));  theta -= lr * grad_theta l(f(x + delta), y)

    alpha = 1.25 eps (10/255 at 8/255) is Wong et al.'s choice; alpha = 2 eps overfits catastrophically.
    The input-gradient pass needs no weight gradients, so an epoch costs less than two clean epochs.
    """

    _adversarial_keys = AdversarialModel._adversarial_keys + ("alpha",)

    def __init__(self, *args: Any, eps: float, alpha: float, **kwargs: Any) -> None:
        super().__init__(*args, eps=eps, **kwargs)
        self.alpha = validation.real(type(self).__name__, "alpha", alpha, positive=True)

    def train_step(self, data):
        x, y, sample_weight = self.unpack(data)
        x_adv = self.perturb(
            x, y, self.random_start(x), steps=1, step_size=self.alpha, training=self.attack_training_mode
        )
        return self.fit_on_batch(x_adv, y, sample_weight)
