"""Evaluation of a model under attack: robust accuracy (tfadv.evaluation.robust)."""
from tfadv.evaluation.robust import predict_labels, robust_accuracy, robust_mask

__all__ = ["predict_labels", "robust_accuracy", "robust_mask"]
