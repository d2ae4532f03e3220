"""Clean accuracy and loss, in inference mode (BatchNorm moving statistics, no dropout)."""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfadv import labels, model_outputs, validation
from tfadv.evaluation.data import evaluation_arrays


def predict_labels(
    model: keras.Model, x: np.ndarray, batch_size: int = 256, output_index: model_outputs.OutputIndex = None
) -> np.ndarray:
    """Arg-max predictions in inference mode, of the `output_index` output of a multi-output model."""
    return _predictions(model, x, batch_size, output_index)[0]


def accuracy(model: keras.Model, x: Any, y: Any = None, batch_size: int = 256,
             output_index: model_outputs.OutputIndex = None) -> float:
    """Fraction of samples whose arg-max prediction is the label (y: class ids or exactly one-hot rows); `x`
    may be a batched tf.data.Dataset of (x, y) with `y` left out. No samples at all is refused."""
    x, y = evaluation_arrays("accuracy", x, y)
    x = np.asarray(x)
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    labels.check(y, name="accuracy")  # their dtype and shape before any compute; their range needs the class count
    predicted, classes = _predictions(model, x, batch_size, output_index, owner="accuracy")
    return float(np.mean(predicted == labels.class_ids(y, classes, name="accuracy")))


def _predictions(model: keras.Model, x: np.ndarray, batch_size: int, output_index: model_outputs.OutputIndex,
                 owner: str = "predict_labels") -> tuple[np.ndarray, int | None]:
    """Arg-max predictions (model_outputs.NO_CLASS for a non-finite output row, said in a warning) and the number
    of class scores (None for no samples)."""
    out, classes = [], None
    for i in range(0, len(x), batch_size):
        scores = model_outputs.select_output(owner, model(x[i : i + batch_size], training=False), output_index)
        model_outputs.check_class_scores(owner, scores)
        out.append(model_outputs.predicted_classes(scores).numpy())
        classes = int(scores.shape[-1])
    predicted = np.concatenate(out) if out else np.zeros([0], np.int64)
    broken = int(np.sum(predicted == model_outputs.NO_CLASS))
    if broken:
        validation.warn_caller(f"{owner}: the model output NaN or Inf for {broken} of {len(x)} samples; they count as "
                               "misclassified (no class), so an accuracy or a robust accuracy over them is the "
                               "model's failure to compute, not a measured prediction", validation.EvaluationWarning)
    return predicted, classes
