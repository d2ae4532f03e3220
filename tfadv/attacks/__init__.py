"""Attacks, each compiled whole into one `tf.function`: FGM and PGD (tfadv.attacks.gradient) on the shared
machinery of tfadv.attacks.base."""
from tfadv.attacks.base import Attack
from tfadv.attacks.gradient import FGM, PGD, _GradientAttack

__all__ = ["Attack", "FGM", "PGD"]
