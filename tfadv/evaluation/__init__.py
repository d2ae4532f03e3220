"""Evaluation of a model: clean accuracy (tfadv.evaluation.clean), robust accuracy under an attack
(tfadv.evaluation.robust), the AutoAttack cascade (tfadv.evaluation.autoattack) and the gradient-masking
checks (tfadv.evaluation.masking, .checks)."""
from tfadv.evaluation.autoattack import AutoAttackResult, auto_attack
from tfadv.evaluation.checks import Flag, MaskingReport
from tfadv.evaluation.clean import accuracy, predict_labels
from tfadv.evaluation.masking import check_gradient_masking
from tfadv.evaluation.robust import robust_accuracy, robust_mask

__all__ = [
    "AutoAttackResult", "Flag", "MaskingReport", "accuracy", "auto_attack", "check_gradient_masking",
    "predict_labels", "robust_accuracy", "robust_mask",
]
