"""Evaluation of a model under attack: robust accuracy (tfadv.evaluation.robust), the AutoAttack cascade
(tfadv.evaluation.autoattack) and the gradient-masking checks (tfadv.evaluation.masking, .checks)."""
from tfadv.evaluation.robust import predict_labels, robust_accuracy, robust_mask
from tfadv.evaluation.autoattack import AutoAttackResult, auto_attack
from tfadv.evaluation.checks import Flag, MaskingReport
from tfadv.evaluation.masking import check_gradient_masking

__all__ = [
    "AutoAttackResult", "Flag", "MaskingReport", "auto_attack", "check_gradient_masking", "predict_labels",
    "robust_accuracy", "robust_mask",
]
