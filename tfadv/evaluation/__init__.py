"""Evaluation of a model: clean accuracy (tfadv.evaluation.clean) and robust accuracy under an attack
(tfadv.evaluation.robust)."""
from tfadv.evaluation.clean import accuracy, predict_labels
from tfadv.evaluation.robust import robust_accuracy, robust_mask

__all__ = ["accuracy", "predict_labels", "robust_accuracy", "robust_mask"]
