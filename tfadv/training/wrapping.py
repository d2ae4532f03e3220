"""Any Keras model in an adversarial-training model, and the checks made before its first compiled step.

`PGDAdversarialModel(model, ...)` accepts a Sequential, Functional or subclassed model as well as the
functional `(inputs, outputs)` pair. The model is called once on a `keras.Input`, which gives a
functional graph whose layers are the model's own: the trainer shares the model's weights (train through
the wrapper, predict with either), and Keras' compile/fit/evaluate/save/load and tf.distribute treat it as
any functional model.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.models import cloning  # clone_model's constructor call (model_being_cloned); no public equivalent

from tfadv import model_outputs

#: The names Keras' compile resolves to a cross-entropy chosen by the labels' shape (from_logits=False).
_CROSSENTROPY_ALIASES = ("crossentropy", "ce")


def functional_arguments(
    owner: str, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    """Turn `(model, input_shape=..., output_index=...)` into the `(inputs, outputs)` of a functional model.

    The functional form `(inputs, outputs)` passes through; it must have one output.
    """
    input_shape = kwargs.pop("input_shape", None)
    output_index = kwargs.pop("output_index", None)
    model = kwargs.pop("model", None)
    if model is None and len(args) == 1 and isinstance(args[0], keras.Model):
        model, args = args[0], ()
    if model is None:
        if input_shape is not None or output_index is not None:
            raise ValueError(f"{owner}: input_shape and output_index apply to a wrapped model: {owner}(model, ...)")
        outputs = kwargs.get("outputs", args[1] if len(args) > 1 else None)
        if isinstance(outputs, (list, tuple, dict)) and len(outputs) != 1:
            raise ValueError(
                f"{owner}: the model has {len(outputs)} outputs; pass one class-score output, or wrap the "
                f"whole model and pick one: {owner}(model, output_index=..., ...)"
            )
        return args, kwargs
    if args:
        raise TypeError(f"{owner}: pass the model alone, {owner}(model, eps=..., ...), or (inputs, outputs)")
    if not isinstance(model, keras.Model):
        raise TypeError(f"{owner}: model must be a keras.Model, got {type(model).__name__}")
    model_outputs.check_output_index(owner, model, output_index)
    inputs = keras.Input(_input_shape(owner, model, input_shape), name="adversarial_input")
    outputs = model_outputs.select_output(owner, model(inputs), output_index)
    return (inputs, outputs), kwargs


def _input_shape(owner: str, model: keras.Model, input_shape: Any) -> tuple:
    """The per-sample input shape: given, or read off the model's inputs (or its first build)."""
    if input_shape is not None:
        return tuple(input_shape)
    inputs = model_outputs.known_inputs(model)
    if inputs is not None:
        if len(inputs) != 1:
            raise ValueError(f"{owner}: the model has {len(inputs)} inputs; adversarial training needs one")
        return tuple(inputs[0].shape[1:])
    built = getattr(model, "_build_shapes_dict", None) or {}
    if len(built) == 1:
        return tuple(next(iter(built.values()))[1:])
    raise ValueError(
        f"{owner}: cannot tell the input shape of {type(model).__name__} (a subclassed model that has not "
        f"been called yet): pass input_shape=(height, width, channels) or call the model on a batch first"
    )


def compiled_from_logits(loss: Any) -> bool | None:
    """The compiled loss's `from_logits`, for every way Keras' compile accepts one loss: a Loss object, a
    loss function, a function or class name (`"sparse_categorical_crossentropy"`,
    `"SparseCategoricalCrossentropy"`, `"crossentropy"`), any of them alone in a list or dict. None when it
    cannot be told (a custom function, several losses, an unknown name)."""
    loss = _single_loss(loss)
    if isinstance(loss, str):
        if loss.lower() in _CROSSENTROPY_ALIASES:
            return False
        try:
            loss = keras.losses.get(loss)
        except (ValueError, TypeError):
            return None  # Keras' compile will say what is wrong with the name
    if isinstance(loss, keras.losses.Loss):
        value = getattr(loss, "from_logits", None)
        if value is None:
            value = getattr(loss, "_fn_kwargs", {}).get("from_logits")
        return None if value is None else bool(value)
    if callable(loss) and getattr(loss, "__module__", "").startswith("keras."):
        return _default_from_logits(loss)  # Keras calls a loss function without keyword arguments
    return None


def _single_loss(loss: Any) -> Any:
    """The loss of a one-element list, tuple or dict (Keras' forms for a one-output model), else `loss`."""
    while isinstance(loss, (list, tuple, dict)) and len(loss) == 1:
        loss = next(iter(loss.values())) if isinstance(loss, dict) else loss[0]
    return loss


def _default_from_logits(function: Any) -> bool | None:
    try:
        parameter = inspect.signature(function).parameters.get("from_logits")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return bool(parameter.default)


def _loss_name(loss: Any) -> str:
    loss = _single_loss(loss)
    if isinstance(loss, str):
        return repr(loss)
    if isinstance(loss, keras.losses.Loss):
        return type(loss).__name__
    return getattr(loss, "__name__", type(loss).__name__)


def check_output_kind(owner: str, model: keras.Model, clip_range: tuple[float | None, float | None]) -> None:
    """The class-score and output-kind checks of tfadv.attacks, against the compiled loss's from_logits: one
    eager forward pass in inference mode on a few random inputs drawn in the valid range."""
    low, high = clip_range
    low, high = (-1.0, 1.0) if low is None or high is None else (low, high)
    shape = [model_outputs.PROBE_SAMPLES] + list(model.inputs[0].shape[1:])
    y_pred = model(tf.random.stateless_uniform(shape, [0, 0], low, high), training=False)
    model_outputs.check_class_scores(owner, y_pred)
    loss = getattr(model, "loss", None)
    from_logits = compiled_from_logits(loss)
    if from_logits is None:
        return
    model_outputs.check_output_kind(
        owner, y_pred, from_logits,
        setting=f"the compiled loss ({_loss_name(loss)}) has from_logits={from_logits}, which",
        to_logits="compile with a loss built with from_logits=True "
        "(e.g. keras.losses.SparseCategoricalCrossentropy(from_logits=True))",
        to_probabilities="compile with from_logits=False",
    )
    if from_logits:
        model_outputs.check_not_squashed(
            owner, model, None, setting=f"the compiled loss ({_loss_name(loss)}) has from_logits=True, which")


#: The batch size Keras' fit and evaluate use for arrays when given none.
KERAS_DEFAULT_BATCH_SIZE = 32


def check_batch_size(owner: str, capacity: int, batch_size: Any, data: Any = None, *, fit_default: bool = False,
                     ) -> None:
    """Free and Stale keep per-row state for `capacity` rows: refuse a larger fit batch_size, or a dataset
    whose batches are statically larger, up front. fit_default: batch_size=None means Keras' default batch
    of 32 for array data (fit's own default; train_on_batch has none)."""
    fix = f"batch the data by at most {capacity}"
    if isinstance(data, tf.data.Dataset):
        spec = tf.nest.flatten(data.element_spec)[0]
        batch_size = spec.shape[0] if spec.shape.rank else None
        given = f"batches of {batch_size}"
    elif batch_size is None and fit_default and leading_size(data) is not None:
        batch_size = min(KERAS_DEFAULT_BATCH_SIZE, leading_size(data))
        given = f"no batch_size, so Keras batches the arrays by its default of {KERAS_DEFAULT_BATCH_SIZE}"
        fix = f"pass fit a batch_size of at most {capacity} (fit(..., batch_size={capacity}))"
    else:
        given = f"batch_size={batch_size}"
    if batch_size is not None and isinstance(batch_size, (int, np.integer)) and batch_size > capacity:
        raise ValueError(
            f"{owner} was built with batch_size={capacity}, but fit was given {given}: build the model with "
            f"batch_size={batch_size} (or more), or {fix}"
        )


def leading_size(data: Any) -> int | None:
    """The number of samples of array data (its first array's leading dimension), None for other data: the
    batch of train_on_batch's x, or the samples fit batches by its default batch size."""
    first = tf.nest.flatten(data)[0] if data is not None else None
    shape = getattr(first, "shape", None)
    if shape is None or not len(shape) or shape[0] is None:
        return None
    return int(shape[0])


def given_weights(x: Any, sample_weight: Any = None, class_weight: Any = None) -> str | None:
    """What of fit's or train_on_batch's arguments weighs the samples, in words (None: nothing): what a model
    that cannot weigh them refuses before anything is traced."""
    given = [name for name, value in (("sample_weight", sample_weight), ("class_weight", class_weight))
             if value is not None]
    spec = x.element_spec if isinstance(x, tf.data.Dataset) else None
    if isinstance(spec, tuple) and len(spec) == 3:  # Keras reads (x, y, sample_weight) batches
        given.append("a third (weight) element in the dataset's batches")
    return " and ".join(given) or None


def single_input(owner: str, x: Any, name: str) -> Any:
    """The one input of x: x itself, or the value of a one-entry dict keyed by the model's input `name` or of
    a one-element list (the forms Keras' functional models accept for one input)."""
    if isinstance(x, Mapping):
        if list(x) == [name]:
            return x[name]
        raise ValueError(
            f"{owner} takes one input: an array or tensor, or a one-entry dict keyed by the model's input name "
            f"{name!r}; got a dict with keys {sorted(map(str, x))}: pass x itself (or {{{name!r}: x}})"
        )
    if isinstance(x, (list, tuple)):
        if len(x) == 1:
            return x[0]
        raise ValueError(
            f"{owner} takes one input: an array or tensor, or a one-entry dict keyed by the model's input name "
            f"{name!r}; got a {type(x).__name__} of {len(x)}: pass x itself"
        )
    return x


def model_being_cloned(frame: Any) -> Any:
    """The model keras.models.clone_model is cloning, when `frame` is the one in which Keras constructs the
    clone (its `_clone_functional_model`), else None."""
    if frame is not None and frame.f_code is cloning._clone_functional_model.__code__:
        return frame.f_locals.get("model")
    return None


def fit_arguments(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a `keras.Model.fit(*args, **kwargs)` call by name, defaults filled in; {} when they do
    not fit its signature (fit itself then says why)."""
    try:
        bound = inspect.signature(keras.Model.fit).bind(None, *args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


def planned_fit_steps(given: dict[str, Any]) -> int | None:
    """The number of steps (batches) a fit call with these arguments (fit_arguments) will run, or None when it
    cannot be told before it runs (a generator, a dataset of unknown or infinite cardinality without
    steps_per_epoch)."""
    if not given:
        return None
    epochs = given["epochs"] - given["initial_epoch"]
    if given["steps_per_epoch"] is not None:
        return epochs * int(given["steps_per_epoch"])
    x = given["x"]
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        return epochs * cardinality if cardinality >= 0 else None
    first = tf.nest.flatten(x)[0] if x is not None else None
    if not hasattr(first, "shape") or not first.shape:
        return None
    samples = int(first.shape[0])
    if given["validation_split"] and given["validation_data"] is None:
        samples = int(samples * (1.0 - given["validation_split"]))
    return epochs * math.ceil(samples / (given["batch_size"] or 32))


def with_callback(method: Any, args: tuple, kwargs: dict[str, Any], callback: keras.callbacks.Callback,
                  ) -> tuple[tuple, dict[str, Any]]:
    """The arguments of a call of the Keras `method` (fit, evaluate) with `callback` added to its callbacks.
    A CallbackList (what fit hands its validation evaluate) gets it only if it holds none of its type yet."""
    try:
        bound = inspect.signature(method).bind(None, *args, **kwargs)
    except TypeError:
        return args, kwargs  # the call itself will say why
    callbacks = bound.arguments.get("callbacks")
    if isinstance(callbacks, keras.callbacks.CallbackList):
        if not any(isinstance(known, type(callback)) for known in callbacks.callbacks):
            callbacks.append(callback)
    else:
        bound.arguments["callbacks"] = list(callbacks or []) + [callback]
    return bound.args[1:], bound.kwargs
