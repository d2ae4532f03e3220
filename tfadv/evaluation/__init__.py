"""Evaluation of a model: clean accuracy (tfadv.evaluation.clean), robust accuracy under an attack
(tfadv.evaluation.robust), the AutoAttack cascade (tfadv.evaluation.autoattack) and the gradient-masking
checks (tfadv.evaluation.masking, .checks), and the sampling noise of a number measured on n test points
(tfadv.evaluation.uncertainty)."""
from tfadv.evaluation.autoattack import AutoAttackResult, auto_attack
from tfadv.evaluation.checks import Flag, MaskingReport
from tfadv.evaluation.clean import accuracy, predict_labels
from tfadv.evaluation.masking import check_gradient_masking
from tfadv.evaluation.robust import robust_accuracy, robust_mask
from tfadv.evaluation.uncertainty import wilson_interval

__all__ = [
    "AutoAttackResult", "Flag", "MaskingReport", "accuracy", "auto_attack", "check_gradient_masking",
    "predict_labels", "robust_accuracy", "robust_mask", "wilson_interval",
]
