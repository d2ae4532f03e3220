"""Attacks, each compiled whole into one `tf.function`: FGM and PGD (tfadv.attacks.gradient), APGD
(tfadv.attacks.apgd), Square (tfadv.attacks.square) and FAB (tfadv.attacks.fab), on the shared machinery of
tfadv.attacks.base."""
from tfadv.attacks.apgd import APGD
from tfadv.attacks.base import Attack
from tfadv.attacks.fab import FAB
from tfadv.attacks.gradient import FGM, PGD, _GradientAttack
from tfadv.attacks.square import Square

__all__ = ["APGD", "FAB", "Attack", "FGM", "PGD", "Square"]
