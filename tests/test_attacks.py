"""Contract, batch invariance, the paper's mechanism, mixed precision, compilation and errors of FGM/PGD."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tfadv import geometry
from tfadv.attacks import FGM, PGD
from tfadv.evaluation import robust_accuracy
from tfadv.precision import dtype_policy

NORMS = ("inf", "2")
EPS = {"inf": 0.1, "2": 1.0}


def small_cnn(batchnorm: bool = False, logits: bool = True, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    if batchnorm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation=None if logits else "softmax")(h)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def untrained():
    """One untrained CNN per head type, shared so each test does not rebuild it."""
    return {True: small_cnn(logits=True), False: small_cnn(logits=False)}


def digits_data():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x, data.target.astype("int64")


def trained_cnn(digits):
    """A small CNN with BatchNorm and a softmax head, trained to ~95% on digits (a few seconds)."""
    x, y = digits
    model = small_cnn(batchnorm=True, logits=False)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def digits():
    return digits_data()


@pytest.fixture(scope="module")
def trained(digits):
    return trained_cnn(digits)


def batch(digits, n=16, offset=1400):
    x, y = digits
    return x[offset : offset + n], y[offset : offset + n]


# ----------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    "attack_cls,norm,reduction,logits", list(itertools.product((FGM, PGD), NORMS, ("sum_over_batch_size", "sum"), (True, False)))
)
def test_output_stays_in_eps_ball_and_clip_range(untrained, digits, attack_cls, norm, reduction, logits):
    model = untrained[logits]
    x, y = batch(digits)
    kwargs = dict(reduction=reduction, from_logits=logits, clip_min=0.0, clip_max=1.0)
    if attack_cls is PGD:
        kwargs.update(steps=4, step_size=EPS[norm] / 2, seed=0)
    x_adv = attack_cls(model, EPS[norm], norm, **kwargs)(x, y).numpy()
    size = geometry.norm_of(tf.constant(x_adv - x), norm).numpy()
    assert np.all(size <= EPS[norm] * (1 + 1e-5))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.any(size > 0.5 * EPS[norm]), "the attack did not move at all"


@pytest.mark.parametrize("norm", NORMS)
def test_eps_zero_and_step_size_zero_are_identity(digits, norm):
    model = small_cnn()
    x, y = batch(digits)
    for attack in (
        FGM(model, 0.0, norm, from_logits=True, clip_min=0.0, clip_max=1.0),
        PGD(model, 0.0, norm, steps=3, step_size=0.1, from_logits=True, clip_min=0.0, clip_max=1.0),
        PGD(model, EPS[norm], norm, steps=3, step_size=0.0, rand_init=False, from_logits=True, clip_min=0.0, clip_max=1.0),
    ):
        np.testing.assert_array_equal(attack(x, y).numpy(), x)


def test_inputs_are_not_mutated(digits):
    model = small_cnn()
    x, y = batch(digits)
    x_before, y_before = x.copy(), y.copy()
    PGD(model, 0.1, steps=3, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0)(x, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("norm", NORMS)
def test_random_start_lies_inside_the_ball(norm):
    seeds = geometry.sample_seeds(7, tf.range(256, dtype=tf.int64), 0)
    delta = geometry.random_start(tf.constant([256, 6, 6, 3]), 0.5, norm, seeds)
    size = geometry.norm_of(delta, norm).numpy()
    assert np.all(size <= 0.5 * (1 + 1e-6))
    if norm == "2":
        # Uniform in the ball: (r / eps)^d is uniform on [0, 1].
        u = (size / 0.5) ** 108
        assert 0.35 < u.mean() < 0.65
    else:
        assert delta.numpy().min() < -0.45 and delta.numpy().max() > 0.45


def xla_calls(fn, *args) -> int:
    """Functions compiled by XLA (jit_compile=True) in fn's graph for these arguments."""
    graph = fn.get_concrete_function(*args).graph.as_graph_def()
    return sum("_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b for f in graph.library.function)


def test_per_sample_select_and_finite_guard_are_exact_and_compiled_by_xla():
    """geometry.select_per_sample and finite_or_zero run as XLA clusters inside a traced attack (TensorFlow's
    own Select is 11-18x slower on a CPU) and give tf.where's answer, non-finite values included."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 4, 3)).astype(np.float32)
    y = rng.normal(size=(6, 4, 4, 3)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 1, 1, 1], y[2, 2, 2, 2] = np.nan, np.inf, -np.inf
    condition = np.array([True, True, False, False, True, False])
    expected = np.where(condition[:, None, None, None], x, y)
    graph_select = tf.function(geometry.select_per_sample)
    for select in (geometry.select_per_sample, graph_select):  # eager, then traced
        np.testing.assert_array_equal(select(tf.constant(condition), tf.constant(x), tf.constant(y)).numpy(), expected)
    assert xla_calls(graph_select, tf.constant(condition), tf.constant(x), tf.constant(y)) == 1
    graph_guard = tf.function(geometry.finite_or_zero)
    np.testing.assert_array_equal(graph_guard(tf.constant(x)).numpy(), np.where(np.isfinite(x), x, 0.0))
    assert xla_calls(graph_guard, tf.constant(x)) == 1


def test_one_hot_and_sparse_labels_agree(digits):
    model = small_cnn()
    x, y = batch(digits)
    attack = PGD(model, 1.0, "2", steps=3, step_size=0.5, from_logits=True, clip_min=0.0, clip_max=1.0, seed=3)
    ids = np.arange(len(x))
    np.testing.assert_allclose(
        attack(x, y, sample_ids=ids).numpy(), attack(x, np.eye(10, dtype="float32")[y], sample_ids=ids).numpy(), atol=1e-6
    )


def test_targeted_attack_moves_toward_the_target(trained, digits):
    x, y = batch(digits, 64)
    target = (y + 1) % 10
    attack = PGD(trained, 0.3, "inf", steps=10, step_size=0.05, targeted=True, clip_min=0.0, clip_max=1.0, seed=0)
    _, stats = attack(x, target, return_stats=True)
    loss = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    before = loss(target, trained(x, training=False)).numpy()
    after = loss(target, trained(attack(x, target), training=False)).numpy()
    assert np.mean(after < before) > 0.9
    assert stats["success"].mean() > 0.5
    np.testing.assert_array_equal(stats["success"], stats["prediction"] == target)


def test_pgd_is_at_least_as_strong_as_fgm(trained, digits):
    x, y = batch(digits, 200, offset=1500)
    fgm = FGM(trained, 0.1, "inf", clip_min=0.0, clip_max=1.0)
    pgd = PGD(trained, 0.1, "inf", steps=10, step_size=0.025, clip_min=0.0, clip_max=1.0, seed=0)
    clean = robust_accuracy(trained, PGD(trained, 0.0, steps=1, step_size=0.0), x, y)
    fgm_acc = robust_accuracy(trained, fgm, x, y)
    pgd_acc = robust_accuracy(trained, pgd, x, y)
    assert clean > 0.85
    assert pgd_acc <= fgm_acc < clean


@pytest.mark.slow(seconds=20)
def test_more_restarts_never_raise_robust_accuracy(trained, digits):
    x, y = batch(digits, 100, offset=1500)
    attack = PGD(trained, 0.08, "inf", steps=3, step_size=0.03, clip_min=0.0, clip_max=1.0, seed=1)
    one = robust_accuracy(trained, attack, x, y, restarts=1)
    three = robust_accuracy(trained, attack, x, y, restarts=3)
    assert three <= one
    # The restarts are keyed on the global sample index, so batching does not change the answer.
    assert robust_accuracy(trained, attack, x, y, restarts=3, batch_size=7) == three


# ---------------------------------------------------------------------------------- batch invariance
@pytest.mark.parametrize("norm", NORMS)
def test_sum_reduction_is_batch_invariant_with_a_seeded_random_start(trained, digits, norm):
    """A sample's adversarial example is the same crafted alone or in a batch of 64 (BatchNorm model)."""
    x, y = batch(digits, 64, offset=1500)
    attack = PGD(trained, EPS[norm], norm, steps=5, step_size=EPS[norm] / 4, reduction="sum", seed=11, clip_min=0.0, clip_max=1.0)
    together = attack(x, y, sample_ids=np.arange(64)).numpy()
    alone = np.concatenate([attack(x[i : i + 1], y[i : i + 1], sample_ids=[i]).numpy() for i in range(64)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_seeded_attacks_are_deterministic_and_seeds_matter(digits):
    model = small_cnn()
    x, y = batch(digits)
    make = lambda seed: PGD(model, 0.1, steps=2, step_size=0.02, from_logits=True, seed=seed, clip_min=0.0, clip_max=1.0)
    np.testing.assert_array_equal(make(5)(x, y).numpy(), make(5)(x, y).numpy())
    assert not np.allclose(make(5)(x, y).numpy(), make(6)(x, y).numpy())
    attack = make(5)
    assert not np.allclose(attack(x, y, restart=0).numpy(), attack(x, y, restart=1).numpy())


def test_authors_batch_radius_start_is_one_radius_for_the_batch():
    seeds = geometry.sample_seeds(3, tf.range(32, dtype=tf.int64), 0)
    delta = geometry.random_start(tf.constant([32, 5, 5, 1]), 2.0, "2", seeds, l2_rand_init="batch_radius")
    size = geometry.l2_norm(delta).numpy()
    np.testing.assert_allclose(size, size[0], rtol=1e-5)
    assert 0 < size[0] <= 2.0


# ------------------------------------------------------------------------------ the paper's mechanism
def confident_model(margin: float) -> keras.Model:
    """Every input is classified 0 with a logit margin of about `margin`, so every sample's loss
    gradient has about the same, tunable, size: exp(-margin) times the small kernel."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    bias = np.zeros(10, "float32")
    bias[0] = margin
    dense = keras.layers.Dense(
        10,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=1),
        bias_initializer=keras.initializers.Constant(bias),
    )
    return keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))


def test_mean_reduction_shrinks_the_l2_step_as_the_batch_grows_and_sum_does_not(digits):
    x = digits[0][:64]
    y = np.zeros(64, "int64")
    # The gradient falls like exp(-margin): pick the margin that puts a lone sample's gradient at ~1e-5,
    # a little above the 1e-6 floor, so that dividing by 64 takes it below.
    _, probe = FGM(confident_model(5.0), 1.0, "2", reduction="sum", from_logits=True)(x, y, return_stats=True)
    model = confident_model(5.0 + np.log(np.median(probe["grad_l2_first"]) / 1e-5))
    _, stats = FGM(model, 1.0, "2", reduction="sum", from_logits=True)(x, y, return_stats=True)
    assert np.min(stats["grad_l2_first"]) > 1e-6 and not stats["floor_clamped_first"].any()

    def median_step(reduction, n, **kwargs):
        attack = FGM(model, 1.0, "2", reduction=reduction, from_logits=True, **kwargs)
        out = [attack(x[i : i + n], y[i : i + n], return_stats=True)[1] for i in range(0, 64, n)]
        return float(np.median(np.concatenate([s["perturbation_l2"] for s in out]))), np.concatenate(
            [s["floor_clamped_first"] for s in out]
        )

    alone, clamped_alone = median_step("sum_over_batch_size", 1)
    together, clamped_together = median_step("sum_over_batch_size", 64)
    assert alone > 0.999 and not clamped_alone.any()
    assert together < 0.5 * alone and clamped_together.all()
    assert median_step("sum", 64)[0] == pytest.approx(median_step("sum", 1)[0], rel=1e-5)
    # The scale-invariant normalisation removes the effect under the mean too.
    assert median_step("sum_over_batch_size", 64, l2_normalization="exact")[0] > 0.999


def test_exact_l2_normalisation_is_scale_invariant_and_clamped_is_not():
    g = tf.random.stateless_normal([4, 8, 8, 1], [1, 2])
    for tiny in (1e-3, 1e-9, 1e-20):
        np.testing.assert_allclose(
            geometry.steepest_ascent(g * tiny, "2", "exact").numpy(), geometry.steepest_ascent(g, "2", "exact").numpy(), rtol=1e-5, atol=1e-7
        )
    assert geometry.l2_norm(geometry.steepest_ascent(g * 1e-9, "2", "clamped")).numpy().max() < 1e-2
    zero = tf.zeros([2, 3, 3, 1])
    for mode in ("exact", "clamped"):
        np.testing.assert_array_equal(geometry.steepest_ascent(zero, "2", mode).numpy(), 0.0)


def test_loss_matches_a_direct_keras_loss_call_as_the_authors_made_it(trained, digits):
    """Per-sample loss reduced by tfadv gives the gradient of CategoricalCrossentropy(reduction=...)(y, model(x))."""
    x, y = batch(digits, 32)
    x = tf.constant(x)
    onehot = tf.one_hot(y, 10)
    for reduction in ("sum_over_batch_size", "sum"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras.losses.CategoricalCrossentropy(reduction=reduction)(onehot, trained(x, training=False))
        expected = tape.gradient(loss, x).numpy()
        attack = FGM(trained, 1.0, "2", reduction=reduction)
        _, _, grad = attack._objective_and_gradient(x, onehot)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-12)


def test_loss_path_reports_the_keras_logits_shortcut(digits):
    x, y = batch(digits, 4)
    softmax_head = small_cnn(logits=False)
    assert PGD(softmax_head, 0.1, steps=1, step_size=0.1)(x, y, return_stats=True)[1]["loss_path"] == "softmax_logits_shortcut"
    inputs = keras.Input((8, 8, 1))
    scaled = keras.layers.Rescaling(1.0)(softmax_head(inputs))  # anything between softmax and loss drops the shortcut
    wrapped = keras.Model(inputs, scaled)
    assert PGD(wrapped, 0.1, steps=1, step_size=0.1)(x, y, return_stats=True)[1]["loss_path"] == "clipped_probabilities"
    logits = small_cnn(logits=True)
    assert PGD(logits, 0.1, steps=1, step_size=0.1, from_logits=True)(x, y, return_stats=True)[1]["loss_path"] == "from_logits"


# --------------------------------------------------------------------------------- mixed precision
@pytest.fixture
def mixed_float16():
    with dtype_policy("mixed_float16"):
        yield


def test_mixed_float16_model_runs_with_float32_inputs_and_outputs(digits, mixed_float16):
    model = small_cnn(logits=False)
    x, y = batch(digits)
    x_adv, stats = PGD(model, 0.1, steps=2, step_size=0.05, clip_min=0.0, clip_max=1.0, seed=0)(x, y, return_stats=True)
    assert x_adv.dtype == tf.float32
    assert stats["loss_path"] == "clipped_probabilities"
    assert np.all(stats["perturbation_linf"] <= 0.1 + 1e-6)


def test_per_sample_loss_scaling_restores_gradients_that_float16_underflows(digits, mixed_float16):
    """The paper's float16 mechanism: the mean's 1/N pushes a confident sample's backward pass below
    float16's smallest subnormal (6e-8); per-sample loss scaling keeps it representable."""
    x = digits[0][:64]
    y = np.zeros(64, "int64")
    model = confident_model(14.0)
    plain = FGM(model, 1.0, "2", from_logits=True)
    scaled = FGM(model, 1.0, "2", from_logits=True, loss_scale="per_sample")
    _, plain_stats = plain(x, y, return_stats=True)
    _, scaled_stats = scaled(x, y, return_stats=True)
    assert plain_stats["grad_zero_first"].mean() > 0.5
    assert not scaled_stats["grad_zero_first"].any()
    assert np.all(np.isfinite(scaled_stats["grad_l2_first"]))


def test_may_overflow_only_with_a_16_bit_layer_or_a_scaled_loss(mixed_float16):
    from tfadv.precision import may_overflow

    mixed = small_cnn()
    with dtype_policy("float32"):
        plain = small_cnn()
        inputs = keras.Input((8, 8, 1))
        nested = keras.Model(inputs, mixed(inputs))  # a float32 wrapper around float16 layers
    assert may_overflow(mixed) and may_overflow(nested)
    assert not may_overflow(plain)
    assert may_overflow(plain, loss_scaled=True)


@pytest.mark.parametrize("norm", NORMS)
def test_float16_gradient_overflow_takes_no_step_instead_of_writing_nan(digits, mixed_float16, norm):
    """A loss scale far above float16's range turns the backward pass into Inf; those entries must take
    no step (an L2 step would otherwise divide Inf by Inf)."""
    model = small_cnn()
    x, y = batch(digits)
    attack = FGM(model, EPS[norm], norm, from_logits=True, loss_scale=1e9, clip_min=0.0, clip_max=1.0)
    x_adv, stats = attack(x, y, return_stats=True)
    assert stats["nonfinite_grad_first"].any(), "the loss scale did not overflow float16: the test is void"
    assert np.all(np.isfinite(x_adv.numpy()))


@pytest.mark.slow(seconds=15)
def test_per_sample_scaling_does_not_change_the_float32_step(trained, digits):
    x, y = batch(digits, 16)
    for norm in NORMS:
        plain = PGD(trained, EPS[norm], norm, steps=3, step_size=EPS[norm] / 3, seed=2, clip_min=0.0, clip_max=1.0)
        scaled = PGD(trained, EPS[norm], norm, steps=3, step_size=EPS[norm] / 3, seed=2, clip_min=0.0, clip_max=1.0, loss_scale="per_sample")
        np.testing.assert_allclose(plain(x, y).numpy(), scaled(x, y).numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------- compilation
def test_second_call_with_the_same_shapes_does_not_retrace(digits):
    model = small_cnn()
    x, y = batch(digits, 16)
    attack = PGD(model, 0.1, steps=3, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0)
    attack(x, y)
    attack(x * 0.5, y)
    assert attack.tracing_count() == 1
    attack(x[:5], y[:5])  # the last, short batch of a dataset: one more signature, traced once
    attack(x[5:10], y[5:10])
    assert attack.tracing_count() == 2


def test_attack_runs_inside_another_tf_function(digits):
    model = small_cnn()
    x, y = batch(digits, 8)
    attack = PGD(model, 0.1, steps=2, step_size=0.05, from_logits=True, clip_min=0.0, clip_max=1.0, seed=0)

    @tf.function
    def outer(x, y):
        return attack(x, y)

    inside = outer(tf.constant(x), tf.constant(y)).numpy()
    attack.reset()  # the traced call advanced the sample stream too
    np.testing.assert_allclose(inside, attack(x, y).numpy(), atol=1e-6)
    assert not np.allclose(outer(tf.constant(x), tf.constant(y)).numpy(), inside)  # and keeps advancing it


@pytest.mark.slow(seconds=15)
def test_select_first_success_freezes_fooled_samples_and_max_loss_never_loses(trained, digits):
    x, y = batch(digits, 64, offset=1500)
    loss = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    common = dict(steps=8, step_size=0.05, clip_min=0.0, clip_max=1.0, seed=4)
    last = PGD(trained, 0.2, **common)(x, y)
    best = PGD(trained, 0.2, select="max_loss", **common)(x, y)
    assert np.all(loss(y, trained(best)).numpy() >= loss(y, trained(last)).numpy() - 1e-4)
    _, stats = PGD(trained, 0.2, select="first_success", **common)(x, y, return_stats=True)
    _, last_stats = PGD(trained, 0.2, **common)(x, y, return_stats=True)
    assert stats["success"].mean() >= last_stats["success"].mean()
    assert np.median(stats["perturbation_linf"][stats["success"]]) <= 0.2 + 1e-6
