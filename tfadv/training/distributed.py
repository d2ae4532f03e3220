"""A `strategy.run` training loop for strategies under which Keras 3 `fit` fails.

Keras 3's `fit` breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585: an eager
`strategy.reduce` on a PerReplica batch in `_maybe_symbolic_build`). This loop drives the *same*
`train_step` the models use under `fit` (the adversarial step, loss scaling, coupled weight decay,
metrics) through `strategy.run`, so one- and multi-host training share every line of numerics.

    strategy = tf.distribute.MultiWorkerMirroredStrategy()        # TF_CONFIG names the workers
    with strategy.scope():
        model = FastAdversarialModel(inputs, outputs, eps=8 / 255, alpha=10 / 255)
        model.compile(optimizer=..., loss=..., metrics=[...])
    history = train(model, dataset, epochs=15, steps_per_epoch=390)

`dataset` yields *global* batches (`strategy.experimental_distribute_dataset` splits them across
replicas and shards them across workers). Every worker must run the same number of steps, so
`steps_per_epoch` is required and the dataset must have at least that many batches per epoch (repeat it).
"""
from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tfadv import tracing


def mirrored_strategy(devices: tuple[str, ...] | None = None) -> tf.distribute.MirroredStrategy:
    """The process's MirroredStrategy over `devices` (default: every GPU, else every logical CPU).

    One per device set per process: a second MirroredStrategy over the same devices reuses the first one's
    collective instance keys, and their all-reduces then clash on shapes (seen with TF 2.21).
    """
    if devices is None:
        found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        devices = tuple(d.name for d in found)
    return _mirrored_strategy(tuple(devices))


@functools.lru_cache(maxsize=None)
def _mirrored_strategy(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    return tf.distribute.MirroredStrategy(list(devices))


def train(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    epochs: int,
    steps_per_epoch: int,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: bool = True,
) -> dict[str, list[float]]:
    """Train `model` (compiled under `strategy.scope()`) for `epochs` x `steps_per_epoch` steps.

    Returns the per-epoch logs like `fit().history`. Callbacks get the epoch hooks (`on_epoch_begin`,
    `on_epoch_end` with the logs) and `on_train_begin`/`on_train_end`; per-batch hooks are not called.
    """
    if model.optimizer is None:
        raise ValueError("compile the model (under strategy.scope()) before calling train()")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs} and {steps_per_epoch}")
    strategy = strategy or model.distribute_strategy
    if hasattr(model, "check_before_compute"):  # the output-kind check fit would make
        model.check_before_compute()
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        if hasattr(model, "build_adversarial_metrics"):  # metric variables cannot be made inside strategy.run
            model.build_adversarial_metrics(keras.utils.unpack_x_y_sample_weight(dataset.element_spec)[1])
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))

    run_step = tracing.compile_once(step)

    input_range = getattr(model, "input_range", None)  # the in-step count of out-of-range batches (fit's check)
    if input_range is not None:
        input_range.reset()
    history: dict[str, list[float]] = {}
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        for metric in model.metrics:
            metric.reset_state()
        progress = keras.utils.Progbar(steps_per_epoch, verbose=1 if verbose else 0)
        for step in range(steps_per_epoch):
            run_step(iterator)
            progress.update(step + 1)
        if input_range is not None:
            input_range.raise_if_any("the training data")
        results = model.training_logs() if hasattr(model, "training_logs") else model.get_metrics_result()
        logs = {name: float(value) for name, value in results.items()}
        callback_list.on_epoch_end(epoch, logs)
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history
