"""What a classifier outputs: which of its outputs holds the class scores, and whether they are logits or
probabilities.

A Keras cross-entropy with the wrong `from_logits` runs without complaint and computes something else:
on logits with from_logits=False it re-normalises and clips them (most input gradients become exactly
zero), on probabilities with from_logits=True it takes a softmax of a softmax (gradients shrink by the
class count). One eager forward pass on a few samples tells the two apart: probability rows lie on the
simplex, logit rows essentially never do.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: Samples in the forward pass that checks the output kind.
PROBE_SAMPLES = 8

#: How far a probability row may sit off the simplex (negative entries, sum away from 1), by output
#: dtype: Keras applications under mixed_float16 sum to 1 +- 6e-4 (measured); bfloat16 keeps 8 bits.
SIMPLEX_TOLERANCE = {"float64": 1e-6, "float32": 1e-3, "float16": 1e-2, "bfloat16": 5e-2}

OutputIndex = int | str | None


def known_outputs(model: keras.Model) -> list[Any] | None:
    """The symbolic outputs of a functional/Sequential model, or None when unknown before a call."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    return list(outputs) if outputs else None


def known_inputs(model: keras.Model) -> list[Any] | None:
    """The symbolic inputs of a functional/Sequential model, or None when unknown before a call."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return list(inputs) if inputs else None


def check_output_index(owner: str, model: keras.Model, output_index: OutputIndex) -> OutputIndex:
    """Refuse a missing or impossible output_index for models whose outputs are known symbolically."""
    if output_index is not None and (isinstance(output_index, bool) or not isinstance(output_index, (int, str))):
        raise TypeError(f"{owner}: output_index must be None, an int or an output name, got {output_index!r}")
    outputs = known_outputs(model)
    if outputs is not None and len(outputs) > 1:
        structure = getattr(model, "_outputs_struct", outputs)
        select_output(owner, structure if isinstance(structure, dict) else outputs, output_index)
    return output_index


def select_output(owner: str, outputs: Any, output_index: OutputIndex) -> tf.Tensor:
    """The class-score tensor of a model's output structure (a tensor, a list/tuple or a dict)."""
    if isinstance(outputs, (list, tuple, dict)):
        names = list(outputs.keys()) if isinstance(outputs, dict) else list(range(len(outputs)))
        if len(outputs) == 1 and output_index is None:
            return outputs[names[0]]
        if output_index is None:
            raise ValueError(
                f"{owner}: the model has {len(outputs)} outputs (keys {names}); pass output_index= to say "
                "which one holds the class scores"
            )
        if output_index not in names:
            raise ValueError(f"{owner}: output_index={output_index!r} is not one of the model's outputs {names}")
        return outputs[output_index]
    if output_index not in (None, 0):
        raise ValueError(f"{owner}: the model has a single output; output_index must be None or 0, got {output_index!r}")
    return outputs


#: The class of an output row holding a NaN or an infinite score: none. It equals no label, so a broken output
#: counts as misclassified (the arg-max of a NaN row is class 0 on a CPU: a correct class-0 prediction).
NO_CLASS = -1


def predicted_classes(y_pred: Any) -> tf.Tensor:
    """The arg-max class of each row (int64), NO_CLASS for a row with a non-finite score: the one prediction
    rule of the attacks' success tests, the evaluation's accuracies and the training wrappers' metrics."""
    finite = tf.reduce_all(tf.math.is_finite(y_pred), axis=-1)
    return tf.where(finite, tf.argmax(y_pred, axis=-1), tf.constant(NO_CLASS, tf.int64))


def check_class_scores(owner: str, y_pred: Any) -> None:
    """Refuse an output of one score per sample (a binary classifier's sigmoid or single logit): its arg-max
    is class 0 for every sample, so an accuracy would count the label-0 samples and no attack could succeed."""
    shape = tuple(y_pred.shape)
    if len(shape) >= 2 and shape[-1] == 1:
        raise ValueError(
            f"{owner}: the model outputs one score per sample (shape {shape}), as a binary classifier's sigmoid "
            "or single logit does, but tfadv takes the arg-max over one score per class, which over one score "
            "is class 0 for every sample. Give the model two class scores: after a single logit z, "
            "keras.layers.Lambda(lambda z: keras.ops.concatenate([keras.ops.zeros_like(z), z], axis=-1)) "
            "(logits whose softmax is [1 - sigmoid(z), sigmoid(z)]; use from_logits=True); after a sigmoid p, "
            "the same with [1 - p, p] (probabilities)"
        )


#: Final activations that squash each class score into a bounded range (here: the range). Read as logits, a
#: softmax over them never becomes confident, so the cross-entropy and its input gradients flatten, and a
#: saturated unit passes no gradient at all; their rows are no probability vectors either.
SQUASHING_ACTIVATIONS = {"sigmoid": "(0, 1)", "hard_sigmoid": "[0, 1]", "tanh": "(-1, 1)"}


def final_layer(model: keras.Model, output_index: OutputIndex = None) -> Any | None:
    """The layer that computes a functional or Sequential model's class scores, looking inside nested models;
    None when the model does not say (a subclassed model)."""
    outputs = known_outputs(model)
    if outputs is None:
        return None
    structure = getattr(model, "_outputs_struct", outputs)
    try:
        tensor = select_output("", structure if isinstance(structure, dict) else outputs, output_index)
    except ValueError:
        return None
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None)
    if isinstance(layer, keras.Model):
        inner = known_outputs(layer)
        return final_layer(layer, history.tensor_index if inner and len(inner) > 1 else None)
    return layer


def check_not_squashed(owner: str, model: keras.Model, output_index: OutputIndex, *, setting: str) -> None:
    """Raise if scores declared logits (`setting`, e.g. "from_logits=True") come out of a sigmoid, hard sigmoid
    or tanh: the output-kind check cannot see these, as their rows are off the simplex like logits."""
    layer = final_layer(model, output_index)
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if name in SQUASHING_ACTIVATIONS:
        raise ValueError(
            f"{owner}: {setting} says the model outputs logits, but its class scores come out of a {name} (layer "
            f"{layer.name!r}), which squashes each score into {SQUASHING_ACTIVATIONS[name]}: a softmax over them "
            f"never becomes confident, so the cross-entropy and its input gradients flatten, and a saturated "
            f"{name} passes no gradient at all. Remove the {name} (activation=None) so the model outputs the "
            "logits before it. check_output_kind=False skips this check for a deliberately unusual head."
        )


def check_output_kind(
    owner: str, y_pred: Any, from_logits: bool, *, setting: str, to_logits: str, to_probabilities: str
) -> None:
    """Raise if `from_logits` contradicts what the model output (an eager batch of rows).

    For the message: `setting` says where from_logits came from (e.g. "from_logits=False"); `to_logits` and
    `to_probabilities` say how the user declares logits or probabilities (e.g. "pass from_logits=True").
    """
    tolerance = SIMPLEX_TOLERANCE.get(tf.as_dtype(y_pred.dtype).name, 1e-3)
    rows = np.asarray(tf.cast(y_pred, tf.float32)).reshape(len(y_pred), -1)
    low, sums = rows.min(axis=1), rows.sum(axis=1)
    on_simplex = (low >= -tolerance) & (np.abs(sums - 1.0) <= tolerance)
    seen = (
        f"on {len(rows)} probe samples its outputs have smallest entry {low.min():.3g} and row sums "
        f"in [{sums.min():.4g}, {sums.max():.4g}]"
    )
    opt_out = "check_output_kind=False skips this check for a deliberately unusual head"
    if not from_logits and not on_simplex.all():
        raise ValueError(
            f"{owner}: {setting} says the model outputs probabilities, but {seen}, so they are not "
            f"probabilities (Keras' cross-entropy would re-normalise and clip them, zeroing most input "
            f"gradients). Either {to_logits} if the model outputs logits, or end the model with a softmax "
            f"(keras.layers.Softmax()). {opt_out}."
        )
    if from_logits and on_simplex.all():
        raise ValueError(
            f"{owner}: {setting} says the model outputs logits, but {seen}: every row is a probability "
            f"vector, i.e. a softmax output (a softmax of it would flatten the gradients). Either "
            f"{to_probabilities}, or remove the final softmax. {opt_out}."
        )
