"""The wrappers used as Keras models are: a refused call can be corrected and retried, dict inputs,
keras.models.clone_model, and the same loss quantity (weight decay included) in fit and evaluate."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_training import EPS, MODELS, build, compile_, data

from tfadv.training import FreeAdversarialModel, PGDAdversarialModel, StaleAdversarialModel

CALLS = {
    "fit": lambda model, x, y: model.fit(x, y, batch_size=16, epochs=1, verbose=0).history["adv_loss"],
    "evaluate": lambda model, x, y: model.evaluate(x, y, batch_size=16, verbose=0),
    "train_on_batch": lambda model, x, y: model.train_on_batch(x[:16], y[:16]),
    "test_on_batch": lambda model, x, y: model.test_on_batch(x[:16], y[:16]),
}


class RefusingOnce(PGDAdversarialModel):
    """Raises while its steps are traced until `refuse` is cleared: a trace-time check that the user fixes."""

    refuse = True

    def train_step(self, data):
        if self.refuse:
            raise ValueError("refused while tracing")
        return super().train_step(data)

    def test_step(self, data):
        if self.refuse:
            raise ValueError("refused while tracing")
        return super().test_step(data)


# ------------------------------------------------------------------------------- retry after a refusal
@pytest.mark.parametrize("call", CALLS)
def test_a_step_refused_while_tracing_leaves_the_model_usable(call):
    # The compiled metrics' adversarial copies used to be built inside the first trace: a refused trace left a
    # tf.function that could no longer create them ("Creating variables on a non-first call").
    model = compile_(build(RefusingOnce, steps=2, step_size=0.05, eval_steps=2, eval_step_size=0.05))
    x, y = data(32)
    with pytest.raises(ValueError, match="refused while tracing"):
        CALLS[call](model, x, y)
    model.refuse = False
    assert np.all(np.isfinite(CALLS[call](model, x, y)))


def stale():
    return compile_(build(StaleAdversarialModel, steps=2, step_size=0.05, staleness=2, batch_size=16))


@pytest.mark.parametrize("given, call", [
    ("class_weight", lambda m, x, y: m.fit(x, y, class_weight={0: 2.0, 1: 1.0, 2: 1.0}, batch_size=16, verbose=0)),
    ("sample_weight", lambda m, x, y: m.fit(x, y, sample_weight=np.ones(len(x)), batch_size=16, verbose=0)),
    ("a third \\(weight\\) element in the dataset's batches", lambda m, x, y: m.fit(
        tf.data.Dataset.from_tensor_slices((x, y, np.ones(len(x), "float32"))).batch(16), verbose=0)),
    ("sample_weight", lambda m, x, y: m.train_on_batch(x[:16], y[:16], sample_weight=np.ones(16))),
    ("class_weight", lambda m, x, y: m.train_on_batch(x[:16], y[:16], class_weight={0: 2.0, 1: 1.0, 2: 1.0})),
])
def test_stale_refuses_weights_up_front_and_trains_once_they_are_dropped(given, call):
    model = stale()
    x, y = data(32)
    with pytest.raises(ValueError, match=rf"StaleAdversarialModel does not support .* but was given {given}"):
        call(model, x, y)
    assert int(model.optimizer.iterations) == 0
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 2 and np.isfinite(history.history["adv_loss"][0])


def test_stale_refuses_weights_a_generator_yields_and_trains_on_after():
    model = stale()
    x, y = data(32)

    def batches(weighted):
        for i in range(0, 32, 16):
            yield (x[i:i + 16], y[i:i + 16]) + ((np.ones(16, "float32"),) if weighted else ())

    with pytest.raises(ValueError, match=r"but was given a third \(weight\) element in the batches"):
        model.fit(batches(True), epochs=1, verbose=0)  # only the traced step can see these weights
    history = model.fit(batches(False), epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0])


@pytest.mark.parametrize("name", ["free", "stale"])
def test_keras_default_batch_size_is_refused_up_front_and_the_corrected_fit_trains(name):
    cls, kwargs = MODELS[name]
    model = compile_(build(cls, **kwargs))  # batch_size=16
    x, y = data(40)
    with pytest.raises(ValueError, match=rf"{cls.__name__} was built with batch_size=16, but fit was given no "
                                         r"batch_size, so Keras batches the arrays by its default of 32.*"
                                         r"batch_size=16\)"):
        model.fit(x, y, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 0
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 3 batches
    model.fit(x[:12], y[:12], epochs=1, verbose=0)  # fewer samples than 32: one batch of 12 fits
    assert int(model.optimizer.iterations) == 4 * kwargs.get("replays", 1)


# ------------------------------------------------------------------------------------------ dict inputs
def network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def dict_inputs():
    """A wrapped model (its input is named `adversarial_input`), its twin, the data, and the data as a dict."""
    settings = dict(eps=EPS, steps=2, step_size=0.05, eval_steps=2, eval_step_size=0.05, seed=3)
    model, twin = (compile_(PGDAdversarialModel(network(), **settings)) for _ in range(2))
    x, y = data(32)
    return model, twin, x, y, {"adversarial_input": x}


@pytest.mark.slow(seconds=20)
def test_a_dict_keyed_by_the_input_name_works_wherever_an_array_does():
    model, twin, x, y, named = dict_inputs()
    assert model.input_name == "adversarial_input"
    dataset = tf.data.Dataset.from_tensor_slices((named, y)).batch(16)
    history = model.fit(dataset, epochs=1, verbose=0, validation_data=(named, y), validation_batch_size=16)
    expected = twin.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, validation_data=(x, y))
    assert {k: v[0] for k, v in history.history.items()} == pytest.approx(
        {k: v[0] for k, v in expected.history.items()}, rel=1e-5)
    model.fit(named, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    twin.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert model.evaluate(named, y, batch_size=16, verbose=0, return_dict=True) == pytest.approx(
        twin.evaluate(x, y, batch_size=16, verbose=0, return_dict=True), rel=1e-5)
    assert model.test_on_batch({"adversarial_input": x[:16]}, y[:16], return_dict=True) == pytest.approx(
        twin.test_on_batch(x[:16], y[:16], return_dict=True), rel=1e-5)
    assert model.train_on_batch({"adversarial_input": x[:16]}, y[:16], return_dict=True) == pytest.approx(
        twin.train_on_batch(x[:16], y[:16], return_dict=True), rel=1e-5)
    np.testing.assert_allclose(model.predict(named, verbose=0), twin.predict(x, verbose=0), rtol=1e-5)


def test_a_dict_keyed_by_an_unnamed_inputs_layer_name_trains():
    model = compile_(build(PGDAdversarialModel, steps=2, step_size=0.05))  # keras.Input() without a name
    x, y = data(16)
    assert model.input_name.startswith("input_layer")
    history = model.fit({model.input_name: x}, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0])


def test_a_functional_model_built_on_a_dict_of_one_input_takes_that_dict():
    inputs = keras.Input((8, 8, 1), name="pixels")
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    model = compile_(PGDAdversarialModel({"image": inputs}, outputs, eps=EPS, steps=1, step_size=0.05, seed=1))
    x, y = data(16)
    assert model.input_name == "image"
    history = model.fit({"image": x}, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0])


@pytest.mark.parametrize("keys", [("image",), ("adversarial_input", "image")])
def test_a_dict_of_other_keys_is_refused_naming_the_input(keys):
    model, _, x, y, _ = dict_inputs()
    given = {key: x for key in keys}
    message = (r"takes one input: an array or tensor, or a one-entry dict keyed by the model's input name "
               rf"'adversarial_input'; got a dict with keys \[{', '.join(repr(k) for k in keys)}\]")
    with pytest.raises(ValueError, match=message):
        model.fit(tf.data.Dataset.from_tensor_slices((given, y)).batch(16), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.evaluate(given, y, batch_size=16, verbose=0)


def test_dict_inputs_outside_the_valid_range_are_refused():
    model, _, x, y, _ = dict_inputs()
    with pytest.raises(tf.errors.InvalidArgumentError, match="clip_max=1.0"):
        model.fit({"adversarial_input": x * 255}, y, batch_size=16, epochs=1, verbose=0)


# -------------------------------------------------------------------------------------------- cloning
@pytest.mark.parametrize("name", [n if n in ("pgd", "fast") else pytest.param(n, marks=pytest.mark.slow(seconds=35 if n == "free" else 15))
                                  for n in MODELS])
def test_clone_model_gives_the_same_wrapper_with_fresh_weights(name):
    cls, kwargs = MODELS[name]
    model = compile_(build(cls, weight_decay=1e-3, **kwargs))
    x, y = data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    clone = keras.models.clone_model(model)
    assert type(clone) is cls
    assert clone.adversarial_settings() == model.adversarial_settings()
    assert clone.compiled
    mine = {id(v) for v in model.variables}
    assert not any(id(v) in mine for v in clone.variables)
    assert any(not np.allclose(a, b) for a, b in zip(clone.get_weights(), model.get_weights()))
    history = clone.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["adv_loss"][0])


def test_clone_model_uses_the_users_clone_function():
    cls, kwargs = MODELS["free"]
    model = compile_(build(cls, **kwargs))
    clone = keras.models.clone_model(model, clone_function=lambda layer: layer)  # share every layer
    assert type(clone) is FreeAdversarialModel and clone.replays == model.replays
    assert [id(v) for v in clone.trainable_variables] == [id(v) for v in model.trainable_variables]
    assert clone.delta is not model.delta  # the per-row state is the clone's own


# ------------------------------------------------------------------------------------ weight decay
def test_evaluate_losses_include_weight_decay_like_fits_adv_loss():
    # Keras logs loss and val_loss with the regularization losses in both: the same quantity in fit and evaluate.
    x, y = data(32)
    logs = {}
    for decay in (0.0, 0.05):
        model = compile_(build(PGDAdversarialModel, steps=2, step_size=0.05, eval_steps=2, eval_step_size=0.05,
                               weight_decay=decay))
        logs[decay] = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
        penalty = float(model.l2_penalty())
    assert penalty > 0.01
    assert logs[0.05]["loss"] - logs[0.0]["loss"] == pytest.approx(penalty, rel=1e-4)
    assert logs[0.05]["adv_loss"] - logs[0.0]["adv_loss"] == pytest.approx(penalty, rel=1e-4)
    assert logs[0.05]["adv_accuracy"] == logs[0.0]["adv_accuracy"]  # the attack itself is unchanged
