"""Issue 12 for attacks: no silently wrong attack on any Keras model. Output kind vs from_logits, multi-output
models, Sequential/subclassed models, numeric arguments, fresh and batch-invariant random starts, padding."""
import logging
import threading
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_attacks import batch, digits_data, small_cnn, trained_cnn

from tfadv.attacks import APGD, FAB, FGM, PGD, Square
from tfadv.evaluation import accuracy, robust, robust_accuracy, robust_mask
from tfadv.precision import dtype_policy
from tfadv.training import PGDAdversarialModel
from tfadv.validation import EvaluationWarning


@pytest.fixture(scope="module")
def digits():
    return digits_data()


@pytest.fixture(scope="module")
def trained(digits):
    return trained_cnn(digits)


def sequential(logits: bool = True) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation=None if logits else "softmax"),
    ])


class Subclassed(keras.Model):
    def __init__(self, heads: int = 1):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.heads = [keras.layers.Dense(10) for _ in range(heads)]

    def call(self, x, training=False):
        h = self.hidden(self.flatten(x))
        out = [head(h) for head in self.heads]
        return out[0] if len(out) == 1 else out


def two_headed() -> keras.Model:
    """Functional model with outputs [aux (3 units), logits (10 units)]."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, [keras.layers.Dense(3)(h), keras.layers.Dense(10)(h)])


# ------------------------------------------------------------------------------------ output kind
def test_logits_model_with_the_default_from_logits_is_refused_before_any_compute(digits):
    """The issue's probe: a logits model under from_logits=False gave zero gradients for most samples and
    a robust accuracy of 0.97 instead of 0.57. Now it is an error naming both fixes."""
    x, y = batch(digits)
    attack = PGD(small_cnn(logits=True), 0.1, steps=2, step_size=0.05, clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match=r"(?s)PGD: from_logits=False.*from_logits=True.*softmax.*check_output_kind=False"):
        attack(x, y)
    assert attack.tracing_count() == 0
    with pytest.raises(ValueError, match="from_logits=False"):
        robust_accuracy(attack.model, attack, x, y)


def test_softmax_model_with_from_logits_true_is_refused(digits):
    x, y = batch(digits)
    attack = FGM(small_cnn(logits=False), 0.1, from_logits=True, clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match=r"(?s)FGM: from_logits=True says the model outputs logits.*softmax"):
        attack(x, y)


def squashed_sequential() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="sigmoid")])


def squashed_second_output() -> keras.Model:
    """Functional: [logits, tanh(logits of a second head)] with the tanh as a layer of its own."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, [keras.layers.Dense(10)(h), keras.layers.Activation("tanh")(keras.layers.Dense(10)(h))])


def squashed_inside_a_wrapper() -> keras.Model:
    """A functional model whose scores are the second output of a nested model ending in a hard sigmoid."""
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inner_in)
    inner = keras.Model(inner_in, [keras.layers.Dense(3)(h), keras.layers.Dense(10, activation="hard_sigmoid")(h)])
    outer_in = keras.Input((8, 8, 1))
    return keras.Model(outer_in, inner(outer_in)[1])


@pytest.mark.parametrize("make, output_index, squash", [
    (squashed_sequential, None, "sigmoid"), (squashed_second_output, 1, "tanh"),
    (squashed_inside_a_wrapper, None, "hard_sigmoid"),
], ids=["sequential-sigmoid", "second-output-tanh", "nested-hard-sigmoid"])
def test_scores_squashed_by_a_final_sigmoid_or_tanh_are_refused_as_logits(digits, make, output_index, squash):
    """Per-class sigmoid rows are off the simplex as logits are, so the numeric check passes them: the model's
    last layer tells."""
    x, y = batch(digits, 8)
    attack = PGD(make(), 0.1, steps=1, step_size=0.1, from_logits=True, output_index=output_index,
                 clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match=rf"(?s)PGD: from_logits=True says the model outputs logits.*out of a {squash}"):
        attack(x, y)
    assert attack.tracing_count() == 0


def test_an_unsquashed_output_beside_a_squashed_one_and_the_opt_out_pass(digits):
    x, y = batch(digits, 8)
    FGM(squashed_second_output(), 0.1, from_logits=True, output_index=0, clip_min=0.0, clip_max=1.0)(x, y)
    FGM(squashed_sequential(), 0.1, from_logits=True, check_output_kind=False, clip_min=0.0, clip_max=1.0)(x, y)


@pytest.mark.slow(seconds=15)
def test_matching_heads_pass_and_the_opt_out_skips_the_check(digits):
    x, y = batch(digits)
    FGM(small_cnn(logits=True), 0.1, from_logits=True)(x, y)
    FGM(small_cnn(logits=False), 0.1)(x, y)
    FGM(small_cnn(logits=True), 0.1, check_output_kind=False)(x, y)  # deliberately unusual head


def test_float16_softmax_rows_are_accepted_as_probabilities(digits):
    x, y = batch(digits)
    with dtype_policy("mixed_float16"):
        model = small_cnn(logits=False)
    assert model.outputs[0].dtype == "float16"
    FGM(model, 0.1, clip_min=0.0, clip_max=1.0)(x, y)


def test_the_check_also_runs_when_the_first_call_is_traced(digits):
    x, y = batch(digits, 8)
    attack = PGD(small_cnn(logits=True), 0.1, steps=1, step_size=0.1, clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match="from_logits=False"):
        tf.function(lambda a, b: attack(a, b))(tf.constant(x), tf.constant(y))


# ----------------------------------------------------------------------------- model styles, outputs
@pytest.mark.parametrize("make", [sequential, Subclassed], ids=["sequential", "subclassed"])
def test_sequential_and_subclassed_models_are_attacked(digits, make):
    x, y = batch(digits)
    x_adv = PGD(make(), 0.1, steps=2, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0, seed=0)(x, y)
    assert 0 < np.abs(x_adv.numpy() - x).max() <= 0.1 + 1e-6


def test_multi_output_models_need_output_index(digits):
    x, y = batch(digits)
    with pytest.raises(ValueError, match=r"PGD: the model has 2 outputs.*output_index="):
        PGD(two_headed(), 0.1, steps=2, step_size=0.05, from_logits=True)
    attack = PGD(Subclassed(heads=2), 0.1, steps=2, step_size=0.05, from_logits=True)  # outputs unknown until called
    with pytest.raises(ValueError, match="output_index="):
        attack(x, y)
    with pytest.raises(ValueError, match=r"output_index=5 is not one of"):
        PGD(two_headed(), 0.1, steps=2, step_size=0.05, from_logits=True, output_index=5)


def test_output_index_attacks_that_head(digits):
    x, y = batch(digits)
    model = two_headed()
    single = keras.Model(model.inputs, model.outputs[1])
    common = dict(steps=3, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0, seed=1)
    chosen, stats = PGD(model, 0.1, output_index=1, **common)(x, y, return_stats=True)
    np.testing.assert_allclose(chosen.numpy(), PGD(single, 0.1, **common)(x, y).numpy(), atol=1e-6)
    assert stats["prediction"].max() > 2  # the 10-class head, not the 3-unit one
    assert 0.0 <= robust_accuracy(model, PGD(model, 0.1, output_index=1, **common), x, y) <= 1.0


# ------------------------------------------------------------------------------- numeric arguments
@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(eps="0.1"), TypeError, r"PGD: eps must be a finite number >= 0, got str '0.1'"),
        (dict(eps="abc"), TypeError, r"PGD: eps must be a finite number"),
        (dict(eps=True), TypeError, r"PGD: eps must be a finite number"),
        (dict(step_size="0.05"), TypeError, "PGD: step_size"),
        (dict(steps=2.0), TypeError, "PGD: steps must be an integer"),
        (dict(steps="2"), TypeError, "PGD: steps must be an integer"),
        (dict(clip_min="0", clip_max=1.0), TypeError, "PGD: clip_min"),
        (dict(clip_min=0.0, clip_max=float("inf")), ValueError, "PGD: clip_max"),
        (dict(from_logits="False"), TypeError, "PGD: from_logits must be True or False"),
        (dict(rand_init=1), TypeError, "PGD: rand_init must be True or False"),
        (dict(seed="1"), TypeError, "PGD: seed must be an integer"),
        (dict(loss_scale="2"), ValueError, "PGD: loss_scale must be"),
        (dict(loss_scale=True), TypeError, "PGD: loss_scale"),
        (dict(norm="1"), ValueError, "PGD: norm must be"),
        (dict(reduction="none"), ValueError, "PGD: reduction must be"),
    ],
)
def test_strings_and_bools_are_refused_naming_class_and_argument(kwargs, error, message):
    config = dict(eps=0.1, norm="inf", steps=2, step_size=0.05, from_logits=True)
    config.update(kwargs)
    with pytest.raises(error, match=message):
        PGD(small_cnn(), **config)


def test_fgm_names_itself_and_numpy_scalars_are_numbers():
    with pytest.raises(TypeError, match="FGM: eps"):
        FGM(small_cnn(), "0.3")
    attack = PGD(small_cnn(), np.float32(0.1), steps=np.int64(2), step_size=np.float64(0.05), from_logits=True)
    assert attack.eps == pytest.approx(0.1) and attack.steps == 2


@pytest.mark.parametrize(
    "call,error,message",
    [
        (dict(restart="1"), TypeError, "PGD: restart must be an integer"),
        (dict(restart=-1), ValueError, "PGD: restart must be an integer >= 0"),
        (dict(sample_ids=np.arange(16) + 0.5), ValueError, "PGD: sample_ids must be 16 integers"),
        (dict(sample_ids=np.arange(3)), ValueError, "PGD: sample_ids must be 16 integers"),
    ],
)
def test_bad_call_arguments_are_refused_before_any_compute(digits, call, error, message):
    x, y = batch(digits)
    attack = PGD(small_cnn(), 0.1, steps=2, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0)
    with pytest.raises(error, match=message):
        attack(x, y, **call)
    assert attack.tracing_count() == 0


# --------------------------------------------------------------------------------- random starts
def starts(attack, x, y, **kwargs):
    """The random start itself: PGD with step_size 0 returns clip(x + delta0)."""
    return attack(x, y, **kwargs).numpy() - x


def test_consecutive_batches_get_fresh_starts_and_reset_replays_them(digits):
    """The issue's probe: with a seed and no sample_ids, every batch of a loop got the same start."""
    x, y = batch(digits, 16)
    attack = PGD(small_cnn(), 0.1, steps=1, step_size=0.0, from_logits=True, seed=3)
    first, second = starts(attack, x, y), starts(attack, x, y)
    assert not np.allclose(first, second)
    attack.reset()
    np.testing.assert_array_equal(starts(attack, x, y), first)
    np.testing.assert_array_equal(starts(attack, x, y, sample_ids=np.arange(16, 32)), second)
    # Explicit ids leave the stream where it was.
    np.testing.assert_array_equal(starts(attack, x, y), second)


def test_a_stream_gets_the_same_starts_in_batches_of_1_or_64(trained, digits):
    x, y = batch(digits, 64, offset=1500)
    attack = PGD(trained, 0.1, steps=3, step_size=0.03, reduction="sum", clip_min=0.0, clip_max=1.0, seed=5)
    together = attack(x, y).numpy()
    attack.reset()
    alone = np.concatenate([attack(x[i : i + 1], y[i : i + 1]).numpy() for i in range(64)])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    assert not np.allclose(attack(x, y).numpy(), together)  # the stream moved on: fresh starts


def test_threads_sharing_an_attack_get_disjoint_stream_positions():
    """train_async's workers share one attack: each call must get a block of ids of its own (the first
    version read the stream position twice, so a call could get another call's ids or a range of the wrong
    length, as seen once in CI)."""
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    y = np.zeros(4, np.int64)
    attack = PGD(sequential(), 0.1, steps=1, step_size=0.0, from_logits=True, seed=1)
    calls_per_thread, results, errors = 60, [], []

    def work():
        try:
            for _ in range(calls_per_thread):
                results.append(starts(attack, x, y))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    block_of = {starts(attack, x, y, sample_ids=np.arange(k * 4, k * 4 + 4)).tobytes(): k for k in range(len(results))}
    assert sorted(block_of.get(r.tobytes(), -1) for r in results) == list(range(len(results)))


# ----------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
def test_a_short_batch_is_padded_into_a_compiled_size_exactly(trained, digits, reduction):
    x, y = batch(digits, 64, offset=1500)
    common = dict(steps=3, step_size=0.5, reduction=reduction, clip_min=0.0, clip_max=1.0, seed=2)
    attack = PGD(trained, 1.0, "2", **common)
    attack(x[:16], y[:16], sample_ids=np.arange(16))
    short, stats = attack(x[16:27], y[16:27], sample_ids=np.arange(16, 27), return_stats=True)
    assert attack.tracing_count() == 2 and {k[0] for k in attack._compiled} == {16}
    assert short.shape[0] == 11 and all(len(v) == 11 for k, v in stats.items() if k != "loss_path")
    exact = PGD(trained, 1.0, "2", **common)(x[16:27], y[16:27], sample_ids=np.arange(16, 27))
    np.testing.assert_allclose(short.numpy(), exact.numpy(), atol=1e-5)


def test_an_unpadded_batch_takes_the_plain_path_whatever_was_compiled_before(trained, digits):
    """A batch shorter than a compiled size but run at its own size (no padding) used to take the per-sample
    weighted path all the same, so its answer depended on the calls before it: in the efficient demo, a
    strength cell's logged losses differed by up to 2e-4 after another cell had run in the same process."""
    x, y = batch(digits, 64, offset=1500)
    common = dict(steps=3, step_size=0.05, clip_min=0.0, clip_max=1.0, seed=2)
    fresh = PGD(trained, 0.1, **common)(x[:8], y[:8], sample_ids=np.arange(8)).numpy()
    attack = PGD(trained, 0.1, **common)
    attack(x[:16], y[:16], sample_ids=np.arange(16))
    after = attack(x[:8], y[:8], sample_ids=np.arange(8)).numpy()  # short beside 16, but run at its own size
    assert all(not weighted for (rows, *_, weighted) in attack._compiled), sorted(attack._compiled)
    np.testing.assert_array_equal(after, fresh)
    attack(x[:5], y[:5], sample_ids=np.arange(5))  # padded into the 8 rows: weighted, so the mean keeps its 1/5
    assert {(rows, weighted) for (rows, *_, weighted) in attack._compiled} == {(16, False), (8, False), (8, True)}


@pytest.mark.slow(seconds=35)
def test_robust_accuracy_with_restarts_traces_few_signatures_and_warns_nothing(trained, digits):
    x, y = batch(digits, 100, offset=1500)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        attacks = [PGD(trained, eps, steps=2, step_size=eps / 2, clip_min=0.0, clip_max=1.0, seed=1) for eps in (0.03, 0.05, 0.08)]
        for attack in attacks:
            robust_accuracy(trained, attack, x, y, batch_size=32, restarts=4)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in messages if "retracing" in m]
    # At most 5: a size can be compiled twice, plain and weighted, since a batch that needs no padding runs
    # the plain function even where a weighted one of its size exists (its answer must not depend on the
    # calls before it: test_an_unpadded_batch_takes_the_plain_path_whatever_was_compiled_before).
    assert max(attack.tracing_count() for attack in attacks) <= 5, [sorted(a._compiled) for a in attacks]


# ------------------------------------------------------------------------------ configuration errors
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(eps=-1.0), "eps must be a finite number >= 0"),
        (dict(eps=float("nan")), "eps must be a finite number >= 0"),
        (dict(norm="1"), "norm must be"),
        (dict(reduction="none"), "reduction must be"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(step_size=-0.1), "step_size must be"),
        (dict(clip_min=1.0, clip_max=0.0), "clip_min must be < clip_max"),
        (dict(clip_min=0.0), "give both clip_min and clip_max"),
        (dict(loss_scale=-2.0), "loss_scale must be"),
        (dict(select="best"), "select must be"),
        (dict(l2_normalization="l2"), "l2_normalization must be"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    model = small_cnn()
    config = dict(eps=0.1, norm="inf", steps=2, step_size=0.05)
    config.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PGD(model, **config)


@pytest.mark.parametrize(
    "x,y,error,message",
    [
        (np.zeros((4, 8, 8, 1), "float32"), np.zeros(3, "int64"), ValueError, "y must be class ids"),
        (np.zeros((4, 8, 8, 1), "float32"), np.array([0, 1, 2, 10]), ValueError, r"labels must lie in \[0, 10\)"),
        (np.zeros((4, 8, 8, 1), "float32"), np.array([0, -1, 2, 3]), ValueError, "labels must lie"),
        (np.zeros((4, 8, 8, 1), "float32"), np.zeros((4, 9), "float32"), ValueError, "one-hot labels have 9 columns"),
        (np.zeros((4, 8, 8, 1), "float32"), np.full((4, 10), 0.5, "float32"), ValueError, "sum to 1"),
        (np.zeros((4, 8, 8, 1), "float32"), np.eye(10, dtype="float32")[[0, 1, 2, 3]] * 0.9 + 0.01, ValueError,
         r"(?s)PGD: label rows must be exactly one-hot.*4 of 4 rows are soft.*np.argmax\(y, axis=-1\)"),
        (np.zeros((4, 8, 8, 1), "float32"), np.eye(10, dtype="float32")[[0, 1, 2, 3]] * 0.5
         + np.eye(10, dtype="float32")[[1, 2, 3, 4]] * 0.5, ValueError, "exactly one-hot"),
        (np.zeros((0, 8, 8, 1), "float32"), np.zeros(0, "int64"), ValueError, r"PGD: no samples: x has shape \(0, 8, 8, 1\)"),
        (np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "float32"), TypeError, "must be integers"),
        (np.zeros((4, 8, 8, 1), "float32"), np.zeros((4, 1), "float32"), TypeError, "must be integers"),
        (np.zeros((4, 8, 8, 1), "float32"), np.full((4, 1), 10), ValueError, r"labels must lie in \[0, 10\)"),
        (np.full((4, 8, 8, 1), np.nan, "float32"), np.zeros(4, "int64"), ValueError, "NaN or Inf"),
        (np.full((4, 8, 8, 1), 2.0, "float32"), np.zeros(4, "int64"), ValueError, r"outside \[clip_min, clip_max\]"),
        (np.zeros((4, 8, 8), "float32"), np.zeros(4, "int64"), ValueError, "rank 4"),
        (np.zeros((4, 8, 8, 1), "uint8"), np.zeros(4, "int64"), TypeError, "floating point"),
    ],
)
def test_bad_inputs_are_refused_before_any_compute(x, y, error, message):
    attack = PGD(small_cnn(), 0.1, steps=2, step_size=0.05, clip_min=0.0, clip_max=1.0, from_logits=True)
    with pytest.raises(error, match=message):
        attack(x, y)
    assert attack.tracing_count() == 0


# ------------------------------------------------------------------------ Keras' sparse (N, 1) labels
@pytest.mark.parametrize("make", [
    lambda m: PGD(m, 0.1, steps=3, step_size=0.05, rand_init=True, seed=0),
    pytest.param(lambda m: APGD(m, 0.1, "inf", 4, seed=0), marks=pytest.mark.slow(seconds=35)),
    pytest.param(lambda m: Square(m, 0.1, "inf", 10, seed=0), marks=pytest.mark.slow(seconds=20)),
    pytest.param(lambda m: FAB(m, 0.1, "inf", 3, seed=0), marks=pytest.mark.slow(seconds=25)),
], ids=["PGD", "APGD", "Square", "FAB"])
def test_sparse_column_labels_are_class_ids_as_in_keras(trained, digits, make):
    """keras.datasets' CIFAR-10 labels are (N, 1) ids, which Keras' sparse losses accept. Attacks read them
    as ids, eagerly and inside a tf.function, not as one-column one-hot rows (which were refused)."""
    x, y = batch(digits)
    reference = make(trained)(x, y).numpy()
    column = make(trained)(x, y[:, None]).numpy()
    np.testing.assert_array_equal(column, reference)
    traced_attack = make(trained)
    traced = tf.function(lambda a, b: traced_attack(a, b, sample_ids=tf.range(len(x))))(
        tf.constant(x), tf.constant(y[:, None])).numpy()
    np.testing.assert_array_equal(traced, reference)
    assert robust_accuracy(trained, make(trained), x, y[:, None]) == robust_accuracy(trained, make(trained), x, y)


# ------------------------------------------------------------------- one score per sample (binary heads)
def binary_net(activation: str | None) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1, activation=activation)])


@pytest.mark.parametrize("activation", [None, "sigmoid"], ids=["logit", "sigmoid"])
def test_a_single_score_head_is_refused_where_its_argmax_would_be_class_0(digits, activation):
    """A binary classifier's one score has arg-max 0 for every sample: accuracy was the fraction of label-0
    samples (0.52 on digits >= 5) and adversarial training logged that constant as its accuracy."""
    x, y = digits[0][:64], (digits[1][:64] >= 5).astype("int64")
    net, from_logits = binary_net(activation), activation is None
    with pytest.raises(ValueError, match="one score per sample"):
        accuracy(net, x, y)
    with pytest.raises(ValueError, match="one score per sample"):
        PGD(net, 0.1, steps=2, step_size=0.05, from_logits=from_logits)(x, y)
    with pytest.raises(ValueError, match="one score per sample"):
        robust_accuracy(net, PGD(net, 0.1, steps=2, step_size=0.05, from_logits=from_logits), x, y)
    for check in (True, False):  # the opt-out skips the probe pass, not the trace-time check
        model = PGDAdversarialModel(binary_net(activation), eps=0.1, steps=2, step_size=0.05, check_output_kind=check)
        model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=from_logits))
        with pytest.raises(ValueError, match="one score per sample"):
            model.fit(x, y, epochs=1, verbose=0)


def test_the_two_score_head_the_error_suggests_reads_a_binary_logit_correctly(digits):
    x, y = digits[0][:64], (digits[1][:64] >= 5).astype("int64")
    single = binary_net(None)
    two = keras.Sequential([single, keras.layers.Lambda(
        lambda z: keras.ops.concatenate([keras.ops.zeros_like(z), z], axis=-1))])
    thresholded = float(np.mean((single(x).numpy()[:, 0] > 0) == y))
    assert accuracy(two, x, y) == thresholded
    assert robust_accuracy(two, PGD(two, 0.1, steps=2, step_size=0.05, from_logits=True), x, y) <= thresholded


def nan_where_bright() -> keras.Model:
    """A logits net whose output row is NaN for every image whose first pixel exceeds 0.5."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    scores = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    broken = keras.layers.Lambda(lambda t: keras.ops.where(t[0][:, :1, 0, 0] > 0.5, float("nan"), t[1]))
    return keras.Model(inputs, broken([inputs, scores]))


def test_a_nan_output_row_counts_as_misclassified_not_as_class_0_and_is_said(digits):
    """np.argmax of a NaN row is 0: every broken sample labelled 0 counted as correct, then as robust."""
    x = digits[0][:64].copy()
    x[:16, 0, 0, 0] = 1.0  # 16 broken rows
    y = np.zeros(64, "int64")
    net = nan_where_bright()
    finite = net(x[16:]).numpy()
    expected = float(np.sum(np.argmax(finite, -1) == 0)) / 64
    with pytest.warns(EvaluationWarning, match="NaN or Inf for 16 of 64 samples; they count as misclassified"):
        assert accuracy(net, x, y) == expected
    attack = PGD(net, 0.05, steps=2, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0, seed=0)
    _, stats = attack(x[:16], y[:16], return_stats=True)
    assert stats["success"].all() and (stats["prediction"] == -1).all()
    targeted = PGD(net, 0.05, steps=2, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0, seed=0,
                   targeted=True)
    assert not targeted(x[:16], y[:16], return_stats=True)[1]["success"].any()  # a NaN row hits no target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for early_exit in (True, False):
            assert not robust_mask(net, attack, x, y, early_exit=early_exit)[:16].any()


def test_an_l2_attack_whose_answer_depends_on_batch_size_is_said_to_in_robust_accuracy(trained, digits):
    x, y = batch(digits, 32)
    clamped = PGD(trained, 0.5, norm="2", steps=2, step_size=0.25, clip_min=0.0, clip_max=1.0, seed=0)
    with pytest.warns(EvaluationWarning, match="depends on batch_size"):
        robust_accuracy(trained, clamped, x, y, batch_size=16)
    for fixed in (dict(reduction="sum"), dict(l2_normalization="exact"), dict(norm="inf")):
        attack = PGD(trained, **{**dict(eps=0.5, norm="2", steps=2, step_size=0.25, clip_min=0.0, clip_max=1.0),
                                 **fixed})
        with warnings.catch_warnings():
            warnings.simplefilter("error", EvaluationWarning)
            robust._warn_if_batch_dependent(attack, batch_size=16)  # what robust_mask asks first


@pytest.mark.parametrize("make, reads", [
    (lambda m: PGD(m, 0.1, steps=2, step_size=0.05, targeted=True, seed=0), "targets"),
    (lambda m: FGM(m, 0.1, targeted=True), "targets"),
    (lambda m: APGD(m, 0.1, "inf", 2, targeted=True, n_target_classes=2, seed=0), "true labels"),
    (lambda m: Square(m, 0.1, "inf", 5, targeted=True, n_target_classes=2, seed=0), "true labels"),
    (lambda m: FAB(m, 0.1, "inf", 2, targeted=True, n_target_classes=2, seed=0), "true labels"),
], ids=["PGD", "FGM", "APGD", "Square", "FAB"])
def test_labels_of_the_other_meaning_are_said_to_look_misread(trained, digits, make, reads):
    """PGD/FGM targeted read y as targets, AutoAttack's targeted attacks as true labels: the wrong kind ran
    without a word and reported about 100% success (APGD: 100% 'success', 0% of samples at the target)."""
    x, _ = batch(digits, 16)
    predicted = np.argmax(trained(x, training=False).numpy(), axis=-1)
    other = (predicted + 1) % 10
    wrong, right = (predicted, other) if reads == "targets" else (other, predicted)
    # The check runs on the first batch's validation, before anything is compiled (the attacks' own cost).
    with pytest.warns(EvaluationWarning, match="y looks like the true labels" if reads == "targets"
                      else "y looks like target classes"):
        make(trained)._validated(x, wrong)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvaluationWarning)
        make(trained)._validated(x, right)


# --------------------------------------------------------------------- restarts that cannot differ
@pytest.mark.parametrize("make, repeats", [
    (lambda m: FGM(m, 0.1), True),
    (lambda m: PGD(m, 0.1, steps=3, step_size=0.05, rand_init=False), True),
    (lambda m: PGD(m, 0.1, steps=3, step_size=0.05, rand_init=True, seed=0), False),
    (lambda m: FAB(m, 0.1, "inf", 2, seed=0), False),  # no rand_init, but its later restarts start at random
], ids=["FGM", "PGD-no-rand-init", "PGD", "FAB"])
def test_restarts_of_a_deterministic_attack_are_said_to_repeat_the_first(trained, digits, make, repeats):
    x, y = batch(digits)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        robust_accuracy(trained, make(trained), x, y, restarts=3)
    said = [w for w in record if "repeat its first run exactly" in str(w.message)]
    assert len(said) == repeats
    if repeats:
        assert issubclass(said[0].category, EvaluationWarning) and said[0].filename == __file__


# ---------------------------------------------------------------- soft labels: no single true class
COMMON = dict(from_logits=False, clip_min=0.0, clip_max=1.0, seed=0)  # `trained` outputs probabilities
EVERY_ATTACK = {
    "PGD": lambda m: PGD(m, 0.1, "inf", 4, **COMMON),
    "APGD-DLR": lambda m: APGD(m, 0.1, "inf", 4, loss="dlr", **COMMON),
    "APGD-T": lambda m: APGD(m, 0.1, "inf", 4, loss="dlr", targeted=True, n_target_classes=2, **COMMON),
    "Square": lambda m: Square(m, 0.1, "inf", 10, **COMMON),
    "FAB-T": lambda m: FAB(m, 0.1, "inf", 4, targeted=True, n_target_classes=2, **COMMON),
}


@pytest.mark.parametrize("make", [
    pytest.param(make, id=name, marks=pytest.mark.slow(seconds=15) if name in ("APGD-DLR", "APGD-T", "FAB-T") else ())
    for name, make in EVERY_ATTACK.items()])
def test_smoothed_one_hot_rows_are_refused_by_every_attack_and_by_evaluation(trained, digits, make):
    """The probe: np.eye(10)[y] * 0.9 + 0.01 passed (non-negative, rows summing to 1) and changed every
    attack's robust accuracy; APGD-DLR fell to 10%, with NaN examples counted as successes, because DLR and
    the margin read `y_onehot > 0` as the true class."""
    x, y = batch(digits, 16)
    smoothed = np.eye(10, dtype="float32")[y] * 0.9 + 0.01
    attack = make(trained)
    with pytest.raises(ValueError, match=r"(?s)label rows must be exactly one-hot.*no single true class"):
        attack(x, smoothed)
    with pytest.raises(ValueError, match="robust_accuracy: label rows must be exactly one-hot"):
        robust_accuracy(trained, make(trained), x, smoothed)
    assert attack.tracing_count() == 0
    traced_attack = make(trained)  # inside a tf.function the labels are checked when the graph runs
    traced = tf.function(lambda a, b: traced_attack(a, b, sample_ids=tf.range(len(x))))
    with pytest.raises(tf.errors.InvalidArgumentError, match="exactly one-hot"):
        traced(tf.constant(x), tf.constant(smoothed))


def test_accuracy_refuses_soft_rows_before_any_compute(trained, digits):
    x, y = batch(digits, 16)
    with pytest.raises(ValueError, match="accuracy: label rows must be exactly one-hot"):
        accuracy(trained, x, np.eye(10)[y] * 0.9 + 0.01)


# ----------------------------------------------------------- labels outside the model's class count
@pytest.mark.parametrize("make, kwargs", [
    (lambda m: PGD(m, 0.1, "inf", 4, **COMMON), {}),
    (lambda m: FGM(m, 0.1, clip_min=0.0, clip_max=1.0), {}),
    (lambda m: PGD(m, 0.1, "inf", 4, select="first_success", **COMMON), {}),
    (lambda m: APGD(m, 0.1, "inf", 4, **COMMON), dict(verbose=True)),
], ids=["PGD", "FGM", "PGD-first-success", "APGD-verbose"])
@pytest.mark.parametrize("bad", [10, -1])
def test_robust_accuracy_refuses_labels_outside_the_class_count_before_any_compute(trained, digits, make, kwargs,
                                                                                   bad):
    """The probe: robust_accuracy read the labels without the class count on its plain path, so a label 10 on
    a 10-class model was never correct, never attacked and counted as not robust (43% instead of 50%)."""
    x, y = batch(digits, 16)
    y = y.copy()
    y[:3] = bad
    attack = make(trained)
    with pytest.raises(ValueError, match=r"robust_accuracy: labels must lie in \[0, 10\)"):
        robust_accuracy(trained, attack, x, y, **kwargs)
    assert attack.tracing_count() == 0


def test_robust_accuracy_of_the_same_shape_refuses_labels_outside_the_class_count(trained, digits):
    from tfadv.evaluation.same_shape import robust_accuracy_same_shape

    x, y = batch(digits, 16)
    attack = PGD(trained, 0.1, "inf", 4, **COMMON)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        robust_accuracy_same_shape(trained, attack, x, np.where(y == 9, 10, y))
    with pytest.raises(ValueError, match="no samples"):
        robust_accuracy_same_shape(trained, attack, x[:0], y[:0])


# ------------------------------------------------------------------------- the attack's Keras loss
@pytest.mark.parametrize("from_logits, loss, stated", [
    (True, keras.losses.CategoricalCrossentropy(), "False"),
    (True, keras.losses.SparseCategoricalCrossentropy(), "False"),
    (False, keras.losses.CategoricalCrossentropy(from_logits=True), "True"),
])
def test_a_loss_whose_from_logits_contradicts_the_attacks_is_refused(from_logits, loss, stated):
    """The probe: PGD(from_logits=True, loss=CategoricalCrossentropy()) kept the loss's from_logits=False,
    read logits as probabilities (zero gradients): 88% robust instead of 44%, with loss_path "from_logits"."""
    message = (rf"PGD: loss={type(loss).__name__}\(from_logits={stated}\) contradicts from_logits={from_logits}.*"
               rf"Build the loss with from_logits={from_logits}")
    with pytest.raises(ValueError, match=message):
        PGD(sequential(logits=from_logits), 0.1, "inf", 4, from_logits=from_logits, loss=loss)
    with pytest.raises(ValueError, match="FGM: loss="):
        FGM(sequential(logits=from_logits), 0.1, from_logits=from_logits, loss=loss)


def test_a_matching_loss_is_used_and_a_smoothed_one_refused(trained, digits):
    x, y = batch(digits, 16)
    default = PGD(trained, 0.1, "inf", 4, **COMMON)
    same = PGD(trained, 0.1, "inf", 4, loss=keras.losses.CategoricalCrossentropy(from_logits=False), **COMMON)
    ids = np.arange(len(x))
    np.testing.assert_allclose(same(x, y, sample_ids=ids).numpy(), default(x, y, sample_ids=ids).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"PGD: loss=CategoricalCrossentropy\(label_smoothing=0.1\).*label_smoothing=0"):
        PGD(trained, 0.1, loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), **COMMON)


def test_loss_path_claims_no_keras_cross_entropy_path_for_another_loss(trained, digits):
    """stats["loss_path"] describes Keras' cross-entropy; for any other loss it says so instead of
    reporting the attack's from_logits as the path taken."""
    x, y = batch(digits, 8)
    logits = sequential(logits=True)
    focal = keras.losses.CategoricalFocalCrossentropy(from_logits=True)
    _, stats = PGD(logits, 0.1, "inf", 2, loss=focal, from_logits=True)(x, y, return_stats=True)
    assert stats["loss_path"] == "custom_loss"
    _, stats = PGD(logits, 0.1, "inf", 2, from_logits=True)(x, y, return_stats=True)
    assert stats["loss_path"] == "from_logits"


# ----------------------------------------------------------------- no gradient path from x at all
def behind(preprocessing, core: keras.Model) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, core(keras.layers.Lambda(preprocessing)(inputs)))


NO_GRADIENT = {"round": lambda t: tf.round(t * 4.0) / 4.0, "stop_gradient": tf.stop_gradient}
GRADIENT_ATTACKS = {
    "PGD": lambda m: PGD(m, 0.1, "inf", 4, **COMMON),
    "FGM": lambda m: FGM(m, 0.1, clip_min=0.0, clip_max=1.0),
    "APGD": lambda m: APGD(m, 0.1, "inf", 4, **COMMON),
    "FAB": lambda m: FAB(m, 0.1, "inf", 4, **COMMON),
    "FAB-T": lambda m: FAB(m, 0.1, "inf", 4, targeted=True, n_target_classes=2, **COMMON),
}


@pytest.mark.parametrize("make", GRADIENT_ATTACKS.values(), ids=GRADIENT_ATTACKS.keys())
@pytest.mark.parametrize("preprocessing", NO_GRADIENT.values(), ids=NO_GRADIENT.keys())
def test_a_model_without_an_input_gradient_is_named_by_every_gradient_attack(trained, digits, make, preprocessing):
    """The probe: PGD and FGM failed with "None values not supported." deep in a trace, and APGD read the
    missing gradient as zero and reported the clean accuracy as robust."""
    x, y = batch(digits, 16)
    model = behind(preprocessing, trained)
    message = r"(?s)no gradient with respect to its input x.*tf.round.*tf.stop_gradient.*Square.*BPDA"
    with pytest.raises(ValueError, match=message):
        make(model)(x, y)
    with pytest.raises(ValueError, match=message):
        robust_accuracy(model, make(model), x, y)


def test_a_model_without_an_input_gradient_is_still_attacked_by_square_and_named_by_the_masking_checks(trained, digits):
    from tfadv.evaluation import check_gradient_masking

    x, y = batch(digits, 32)
    model = behind(NO_GRADIENT["round"], trained)
    assert 0.0 <= robust_accuracy(model, Square(model, 0.1, "inf", 20, **COMMON), x, y) <= 1.0
    report = check_gradient_masking(model, x, y, eps=0.1, norm="inf", clip_min=0.0, clip_max=1.0, steps=2, queries=10)
    assert [f.name for f in report.raised] == ["no_input_gradient"]
