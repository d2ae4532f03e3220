"""Issue 12 for training: every Keras model style in every training variant, metric names, evaluate
determinism, the output-kind check, multi-output models, batch handling and numeric arguments."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_training import EPS, MODELS, compile_, data
from test_training_distributed import two_cpus

from tfadv.precision import dtype_policy
from tfadv.training import (
    FreeAdversarialModel,
    PGDAdversarialModel,
    StaleAdversarialModel,
)
from tfadv.training.distributed import train


def sequential_network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.BatchNormalization(),
        keras.layers.Flatten(), keras.layers.Dense(3),
    ])


def functional_network():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h)))


@keras.saving.register_keras_serializable(package="tfadv_tests")
class SubclassedNetwork(keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.norm = keras.layers.BatchNormalization()
        self.flatten = keras.layers.Flatten()
        self.head = keras.layers.Dense(classes)

    def call(self, x, training=False):
        return self.head(self.flatten(self.norm(self.conv(x), training=training)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def subclassed_network():
    keras.utils.set_random_seed(0)
    return SubclassedNetwork()


STYLES = {"sequential": sequential_network, "functional": functional_network, "subclassed": subclassed_network}


def wrap(name, style, **overrides):
    cls, kwargs = MODELS[name]
    network = STYLES[style]()
    extra = {"input_shape": (8, 8, 1)} if style == "subclassed" else {}
    return compile_(cls(network, **{"eps": EPS, "seed": 3, **kwargs, **extra, **overrides}))


#: The pair of the quick suite; the other pairs are slow checks.
QUICK_STYLES = {("pgd", "functional")}


@pytest.mark.parametrize("name, style", [
    pytest.param(name, style, marks=() if (name, style) in QUICK_STYLES else pytest.mark.slow(seconds=15))
    for name in MODELS for style in STYLES])
def test_every_model_style_trains_evaluates_and_saves(name, style, tmp_path):
    model = wrap(name, style)
    x, y = data(40)  # batches of 16, 16 and a partial 8
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    extra = {"staleness"} if name == "stale" else set()
    assert set(history.history) == {"adv_loss", "adv_accuracy"} | extra
    assert np.isfinite(history.history["adv_loss"][0])
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "adv_loss", "adv_accuracy"}
    path = tmp_path / f"{name}-{style}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_the_wrapper_trains_the_wrapped_models_weights():
    network = sequential_network()
    model = compile_(PGDAdversarialModel(network, eps=EPS, steps=2, step_size=0.05))
    x, y = data(32)
    before = network.predict(x, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after = network.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model.predict(x, verbose=0), atol=1e-6)


def test_subclassed_model_needs_an_input_shape_until_it_has_been_called():
    with pytest.raises(ValueError, match=r"PGDAdversarialModel: cannot tell the input shape.*input_shape="):
        PGDAdversarialModel(SubclassedNetwork(), eps=EPS, steps=2, step_size=0.05)
    network = SubclassedNetwork()
    network(np.zeros((1, 8, 8, 1), "float32"))
    assert PGDAdversarialModel(network, eps=EPS, steps=2, step_size=0.05).inputs[0].shape[1:] == (8, 8, 1)


@pytest.mark.parametrize("style", ["sequential", pytest.param("subclassed", marks=pytest.mark.slow(seconds=15))])
def test_wrapped_models_train_under_a_mirrored_strategy(style):
    strategy = two_cpus()
    with strategy.scope():
        model = wrap("stale", style)
    assert model.distribute_strategy.num_replicas_in_sync == 2
    history = model.fit(*data(40), batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0]) and history.history["staleness"][-1] == 2


@pytest.mark.slow(seconds=15)
def test_wrapped_subclassed_model_under_mixed_float16():
    with dtype_policy("mixed_float16"):
        model = wrap("pgd", "subclassed")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[1].compute_dtype == "float16"
    x, y = data(32)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert np.isfinite(history.history["adv_loss"][0]) and 0.0 <= logs["adv_accuracy"] <= logs["accuracy"]


# ---------------------------------------------------------------------------------------- metric names
@pytest.mark.slow(seconds=15)
def test_metric_names_say_clean_or_adversarial_in_fit_evaluate_and_validation():
    model = wrap("fast", "functional")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x, y = data(32)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"adv_loss", "adv_accuracy", "adv_top2", "val_loss", "val_accuracy", "val_top2",
                                    "val_adv_loss", "val_adv_accuracy", "val_adv_top2"}
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "top2", "adv_loss", "adv_accuracy", "adv_top2"}
    assert logs["adv_accuracy"] <= logs["accuracy"] + 1e-6
    clean = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    assert logs["accuracy"] == pytest.approx(clean, abs=1e-6)


def accuracy_twins():
    """Compiled metrics that must equal the wrapper's own accuracy: a plain one and a weighted one."""
    return dict(metrics=[keras.metrics.SparseCategoricalAccuracy(name="twin")],
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_twin")])


def weights_favouring_correct_rows(model, x, y):
    """Sample weights 3 on the rows the model classifies correctly, 1 elsewhere: with any accuracy strictly
    between 0 and 1, the weighted accuracy is strictly above the unweighted one."""
    correct = np.argmax(model.predict(x, verbose=0), -1) == y
    assert 0 < correct.mean() < 1
    return np.where(correct, 3.0, 1.0).astype("float32")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "pgd" else pytest.mark.slow(seconds=20))
                                  for n in MODELS])
def test_compiled_metrics_are_measured_again_on_the_adversarial_inputs(name):
    # A compiled accuracy under another name is the same number as the wrapper's own accuracy on the same
    # inputs: adv_twin equals adv_accuracy (adversarial) and twin equals accuracy (clean), in fit and evaluate.
    # Sample weights follow Keras: they weigh the loss and `weighted_metrics`, not `metrics`, so with weights
    # the unweighted twin still equals the wrapper's accuracy, and the weighted twin differs from it.
    model = wrap(name, "functional")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **accuracy_twins())
    x, y = data(48)
    weights = np.linspace(0.2, 2.0, len(x)).astype("float32")
    fit_weights = None if name == "stale" else weights  # Stale refuses sample weights
    history = model.fit(x, y, sample_weight=fit_weights, batch_size=16, epochs=2, verbose=0).history
    np.testing.assert_allclose(history["adv_twin"], history["adv_accuracy"], atol=1e-6)
    weights = weights_favouring_correct_rows(model, x, y)
    logs = model.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
    assert logs["adv_accuracy"] < logs["accuracy"]  # the attack changes predictions, so a clean twin would differ
    assert logs["adv_twin"] == pytest.approx(logs["adv_accuracy"], abs=1e-6)
    assert logs["twin"] == pytest.approx(logs["accuracy"], abs=1e-6)
    assert logs["weighted_twin"] > logs["accuracy"] + 1e-3
    unweighted = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert unweighted["adv_twin"] == pytest.approx(unweighted["adv_accuracy"], abs=1e-6)
    assert unweighted["twin"] == pytest.approx(unweighted["accuracy"], abs=1e-6)
    assert unweighted["accuracy"] == pytest.approx(logs["accuracy"], abs=1e-6)


@pytest.mark.slow(seconds=15)
def test_sample_and_class_weights_weigh_the_loss_not_the_accuracy_as_in_keras():
    # The wrapper's clean numbers are the plain Keras model's: a weighted loss, an unweighted "accuracy" (its
    # own tracker shares that name with the compiled metric, and had overwritten it with a weighted one).
    network = functional_network()
    model = PGDAdversarialModel(network, eps=0.03, steps=2, step_size=0.02, seed=3)  # some adversarial accuracy
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy", keras.metrics.SparseCategoricalAccuracy(name="twin")],
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_twin")])
    network.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    x, y = data(48)
    weights = weights_favouring_correct_rows(network, x, y)
    wrapped = model.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
    plain = network.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
    assert wrapped["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-6)
    assert wrapped["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert wrapped["weighted_twin"] > wrapped["accuracy"] + 1e-3
    history = model.fit(x, y, class_weight={0: 10.0, 1: 1.0, 2: 1.0}, batch_size=16, epochs=2, verbose=0).history
    np.testing.assert_allclose(history["adv_accuracy"], history["adv_twin"], atol=1e-6)


@pytest.mark.slow(seconds=15)
def test_a_weighted_metric_named_like_an_unweighted_one_keeps_the_adv_prefix():
    """Keras logs it as weighted_<name>; its adversarial copy was logged as weighted_adv_accuracy, which breaks
    the adv_ rule and which a callback monitoring val_adv_weighted_accuracy never finds."""
    model = wrap("pgd", "functional")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    x, y = data(48)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y)).history
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert {"weighted_accuracy", "adv_weighted_accuracy"} <= set(logs) and "weighted_adv_accuracy" not in logs
    assert {"adv_weighted_accuracy", "val_adv_weighted_accuracy"} <= set(history)
    assert logs["adv_weighted_accuracy"] == pytest.approx(logs["adv_accuracy"], abs=1e-6)  # no weights given


def test_evaluate_without_an_attack_logs_no_adversarial_copies_even_after_fit():
    model = wrap("pgd", "functional", eval_steps=0)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **accuracy_twins())
    x, y = data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds the adversarial copies
    assert set(model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)) == {
        "loss", "accuracy", "twin", "weighted_twin"}


def test_the_list_form_of_evaluate_lists_each_metric_once_in_the_dict_forms_values():
    model = wrap("pgd", "functional")  # compiled with "accuracy", the name of the wrapper's clean accuracy too
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x, y = data(32)
    as_dict = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    as_list = model.evaluate(x, y, batch_size=16, verbose=0)
    assert len(as_list) == len(as_dict) == 6
    assert sorted(as_list) == sorted(as_dict.values())
    assert as_list[0] == as_dict["loss"]


def test_a_metric_that_cannot_be_copied_is_named_and_left_out_of_the_adversarial_logs():
    class Opaque(keras.metrics.Mean):
        def __init__(self, shift):  # no get_config for `shift`: from_config cannot rebuild it
            super().__init__(name="opaque")

        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(y_pred[:, 0], sample_weight=sample_weight)

    model = wrap("fast", "functional")
    with pytest.warns(UserWarning, match=r"FastAdversarialModel: the compiled metric 'opaque' cannot be copied.*adv_opaque"):
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[Opaque(1.0), "accuracy"])
        history = model.fit(*data(32), batch_size=16, epochs=1, verbose=0).history
    assert set(history) == {"adv_loss", "adv_accuracy"}
    assert {"opaque", "adv_accuracy"} <= set(model.evaluate(*data(32), batch_size=16, verbose=0, return_dict=True))


@pytest.mark.parametrize("loop", [pytest.param("fit", marks=pytest.mark.slow(seconds=25)), pytest.param("train", marks=pytest.mark.slow(seconds=35))])
def test_adversarial_copies_of_compiled_metrics_under_a_mirrored_strategy(loop):
    strategy = two_cpus()
    with strategy.scope():
        model = wrap("pgd", "sequential")
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **accuracy_twins())
    x, y = data(32)
    if loop == "fit":
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    else:
        history = train(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat(), epochs=1,
                        steps_per_epoch=2, verbose=False)
    np.testing.assert_allclose(history["adv_twin"], history["adv_accuracy"], atol=1e-6)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert logs["adv_twin"] == pytest.approx(logs["adv_accuracy"], abs=1e-6)


@pytest.mark.slow(seconds=35)
def test_epoch_logs_under_a_mirrored_strategy_are_the_metrics_over_all_samples():
    # 35 samples in batches of 16, 16 and 3; the last splits 2/1 between the replicas, which then hold 18 and
    # 17 samples. A step's logs are the mean of the replicas' own running means; the epoch logs must be the
    # metrics over all samples, as Keras' own model.get_metrics_result() gives them.
    strategy = two_cpus()
    with strategy.scope():
        model = wrap("pgd", "sequential")
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **accuracy_twins())
    x, y = data(35)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    overall = model.get_metrics_result()
    for name in ("adv_loss", "adv_accuracy", "adv_twin"):
        assert history[name][-1] == pytest.approx(overall[name], abs=1e-7), name
    with strategy.scope():
        clean_only = wrap("pgd", "sequential", eval_steps=0)
    clean_only.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds adversarial metrics evaluate does not log
    logs = clean_only.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    clean = np.mean(np.argmax(clean_only.predict(x, verbose=0), -1) == y)
    assert logs["accuracy"] == pytest.approx(clean, abs=1e-6)


@pytest.mark.parametrize("monitor", ["val_adv_accuracy", pytest.param("adv_loss", marks=pytest.mark.slow(seconds=15)), pytest.param("val_adv_loss", marks=pytest.mark.slow(seconds=10)), pytest.param("adv_top2", marks=pytest.mark.slow(seconds=10)),
                                     pytest.param("val_accuracy", marks=pytest.mark.slow(seconds=10))])
def test_callbacks_in_mode_auto_know_which_way_the_wrappers_metrics_improve(monitor, tmp_path):
    model = wrap("fast", "functional")  # no compiled "accuracy": val_accuracy is the wrapper's own
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x, y = data(32)
    callbacks = [keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor=monitor, save_best_only=True),
                 keras.callbacks.EarlyStopping(monitor=monitor, patience=5),
                 keras.callbacks.ReduceLROnPlateau(monitor=monitor, patience=5)]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y), callbacks=callbacks)
    improves = keras.ops.less if monitor.endswith("loss") else keras.ops.greater
    assert all(callback.monitor_op is improves for callback in callbacks)
    assert (tmp_path / "best.keras").exists()


@pytest.mark.slow(seconds=15)
def test_evaluate_with_a_seed_returns_the_same_numbers_every_time():
    model = wrap("pgd", "functional")
    x, y = data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    second = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert first == second


@pytest.mark.slow(seconds=15)
def test_a_metric_object_used_before_starts_from_zero_in_the_first_evaluate():
    # One metrics list compiled into two models: Keras builds the wrapper's compiled metrics only in its first
    # evaluate (fit does not compute them), and resets only built ones, so the first evaluate after fit
    # averaged in the other model's counts (0.75 for a true 0.68 in a digits probe).
    top2 = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")
    x, y = data(32)
    other = functional_network()
    other.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[top2])
    other.fit(x, y, batch_size=16, epochs=1, verbose=0)
    other.evaluate(x[:16], np.full(16, 2), verbose=0)  # leaves counts in top2
    model = wrap("pgd", "functional")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[top2])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    logits = model.predict(x, verbose=0)
    true_top2 = np.mean([label in np.argsort(-row)[:2] for row, label in zip(logits, y)])
    assert model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["top2"] == pytest.approx(true_top2, abs=1e-6)


# ----------------------------------------------------------------------------------------- output kind
def test_logits_model_with_a_probability_loss_is_refused_at_fit_before_any_step():
    model = PGDAdversarialModel(functional_network(), eps=EPS, steps=2, step_size=0.05)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = data(16)
    with pytest.raises(ValueError, match=r"(?s)PGDAdversarialModel: the compiled loss.*from_logits=False.*from_logits=True"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 0
    with pytest.raises(ValueError, match="from_logits=False"):
        model.evaluate(x, y, verbose=0)


def test_softmax_model_with_a_logits_loss_is_refused_and_the_opt_out_skips_the_check():
    def softmax_network():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])

    x, y = data(16)
    model = compile_(PGDAdversarialModel(softmax_network(), eps=EPS, steps=1, step_size=0.05))
    with pytest.raises(ValueError, match="says the model outputs logits"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    unusual = compile_(PGDAdversarialModel(softmax_network(), eps=EPS, steps=1, step_size=0.05, check_output_kind=False))
    unusual.fit(x, y, batch_size=16, epochs=1, verbose=0)


def test_a_sigmoid_head_under_a_logits_loss_is_refused_at_fit():
    def sigmoid_network():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="sigmoid")])

    model = compile_(PGDAdversarialModel(sigmoid_network(), eps=EPS, steps=1, step_size=0.05))
    with pytest.raises(ValueError, match=r"(?s)compiled loss .*from_logits=True.*out of a sigmoid"):
        model.fit(*data(16), batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize("loss", [
    "sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "crossentropy",
    keras.losses.sparse_categorical_crossentropy, [keras.losses.SparseCategoricalCrossentropy(from_logits=False)],
    ("SparseCategoricalCrossentropy",),
], ids=["function-name", "class-name", "crossentropy", "function", "list", "tuple-of-name"])
def test_every_keras_spelling_of_a_probability_loss_is_checked(loss):
    model = PGDAdversarialModel(functional_network(), eps=EPS, steps=2, step_size=0.05)
    model.compile(optimizer="sgd", loss=loss)
    with pytest.raises(ValueError, match=r"PGDAdversarialModel: the compiled loss .*has from_logits=False"):
        model.fit(*data(16), batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 0


def test_the_output_kind_is_checked_again_after_each_compile_and_after_loading(tmp_path):
    model = compile_(PGDAdversarialModel(functional_network(), eps=EPS, steps=2, step_size=0.05))
    x, y = data(16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has from_logits=False"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # compiled again by Keras (compile_from_config)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    loaded.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has from_logits=False"):
        loaded.evaluate(x, y, verbose=0)


def test_train_on_batch_and_test_on_batch_make_the_checks_of_fit_and_evaluate():
    model = PGDAdversarialModel(functional_network(), eps=EPS, steps=2, step_size=0.05)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = data(16)
    with pytest.raises(ValueError, match="PGDAdversarialModel: the compiled loss .*has from_logits=False"):
        model.train_on_batch(x, y)
    with pytest.raises(ValueError, match="PGDAdversarialModel: the compiled loss .*has from_logits=False"):
        model.test_on_batch(x, y)
    assert int(model.optimizer.iterations) == 0
    free = compile_(FreeAdversarialModel(functional_network(), eps=EPS, replays=2, batch_size=8))
    with pytest.raises(ValueError, match=r"FreeAdversarialModel was built with batch_size=8.*batch_size=16"):
        free.train_on_batch(x, y)


def test_multi_output_models_need_output_index():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    network = keras.Model(inputs, [keras.layers.Dense(5)(h), keras.layers.Dense(3)(h)])
    with pytest.raises(ValueError, match=r"PGDAdversarialModel: the model has 2 outputs.*output_index="):
        PGDAdversarialModel(network, eps=EPS, steps=1, step_size=0.05)
    with pytest.raises(ValueError, match=r"the model has 2 outputs.*output_index=\.\.\."):
        PGDAdversarialModel(network.inputs, network.outputs, eps=EPS, steps=1, step_size=0.05)
    model = compile_(PGDAdversarialModel(network, output_index=1, eps=EPS, steps=1, step_size=0.05))
    model.fit(*data(16), batch_size=16, epochs=1, verbose=0)
    assert model.outputs[0].shape[-1] == 3


# ------------------------------------------------------------------------------------- batch handling
@pytest.mark.parametrize("cls,kwargs", [
    (FreeAdversarialModel, dict(replays=2)), (StaleAdversarialModel, dict(steps=1, step_size=0.05, staleness=2)),
])
def test_batches_larger_than_batch_size_get_the_intended_message(cls, kwargs):
    model = compile_(cls(functional_network(), eps=EPS, batch_size=16, **kwargs))
    x, y = data(32)
    with pytest.raises(ValueError, match=rf"{cls.__name__} was built with batch_size=16.*given batch_size=32"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    static = tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)
    with pytest.raises(ValueError, match=rf"{cls.__name__} was built with batch_size=16.*batches of 32"):
        model.fit(static, epochs=1, verbose=0)
    dynamic = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch_size=16"):
        model.fit(dynamic, epochs=1, verbose=0)


def test_stale_refuses_class_weights_naming_them():
    model = wrap("stale", "functional")
    x, y = data(32)
    with pytest.raises(ValueError, match=r"StaleAdversarialModel does not support sample weights or class weights"):
        model.fit(x, y, class_weight={0: 2.0, 1: 1.0, 2: 1.0}, batch_size=16, epochs=1, verbose=0)


# ---------------------------------------------------------------------------------- numeric arguments
@pytest.mark.parametrize(
    "name,overrides,error,message",
    [
        ("pgd", dict(eps="0.1"), TypeError, r"PGDAdversarialModel: eps must be a finite number > 0, got str"),
        ("pgd", dict(steps=2.0), TypeError, "PGDAdversarialModel: steps must be an integer"),
        ("pgd", dict(step_size="0.05"), TypeError, "PGDAdversarialModel: step_size"),
        ("pgd", dict(rand_init="yes"), TypeError, "PGDAdversarialModel: rand_init must be True or False"),
        ("fast", dict(alpha=True), TypeError, "FastAdversarialModel: alpha"),
        ("fast", dict(clip_min="0"), TypeError, "FastAdversarialModel: clip_min"),
        ("fast", dict(weight_decay="5e-4"), TypeError, "FastAdversarialModel: weight_decay"),
        ("fast", dict(seed=1.5), TypeError, "FastAdversarialModel: seed"),
        ("free", dict(replays="8"), TypeError, "FreeAdversarialModel: replays"),
        ("stale", dict(staleness=0), ValueError, "StaleAdversarialModel: staleness must be an integer >= 1"),
    ],
)
def test_numeric_arguments_refuse_strings_and_bools(name, overrides, error, message):
    with pytest.raises(error, match=message):
        wrap(name, "functional", **overrides)
