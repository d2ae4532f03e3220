"""tfadv.analysis.hessian against the exact Hessian of tiny models (built independently: jacobian of the gradient
over a flattened parameter vector through Keras' stateless_call, then numpy's eigvalsh)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.analysis.hessian import (
    CONVERGED,
    HESSIANFLOW,
    PowerIteration,
    hessian_eigenvalue_fn,
    power_iteration,
    top_hessian_eigenvalue,
)

TIGHT = PowerIteration(max_iterations=2000, tolerance=1e-7)


def exact_hessian_eigenvalues(model: keras.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    shapes = [t.shape for t in trainable]
    sizes = [int(np.prod(s)) for s in shapes]
    theta = tf.concat([tf.reshape(t, [-1]) for t in trainable], axis=0)

    def mean_loss(flat):
        values = [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
        logits, _ = model.stateless_call(values, non_trainable, tf.constant(x), training=False)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            loss = mean_loss(theta)
        grad = inner.gradient(loss, theta)
    hessian = outer.jacobian(grad, theta).numpy().astype("float64")
    return np.linalg.eigvalsh((hessian + hessian.T) / 2)


def tiny_mlp(batch_norm: bool) -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(4)(inputs)
    if batch_norm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("tanh")(h)
    outputs = keras.layers.Dense(3)(h)
    return keras.Model(inputs, outputs)


def tiny_data(n: int = 24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, size=n)


def test_power_iteration_on_explicit_matrix_handles_the_sign():
    matrix = tf.constant(np.diag([-5.0, 2.0, 1.0, 0.5]).astype("float32"))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    matrix = tf.constant((q @ matrix.numpy() @ q.T).astype("float32"))

    def matvec(v):
        return [tf.linalg.matvec(matrix, v[0])]

    v0 = [tf.constant([1.0, 1.0, 1.0, 1.0])]
    eigenvalue, iterations, converged = power_iteration(matvec, v0, 500, 1e-7)
    assert converged and 1 < int(iterations) < 500
    assert eigenvalue.numpy() == pytest.approx(-5.0, rel=1e-4)  # largest magnitude, sign kept
    shifted, _, _ = power_iteration(matvec, v0, 500, 1e-7, shift=eigenvalue)
    assert (shifted + eigenvalue).numpy() == pytest.approx(2.0, rel=1e-3)  # largest algebraic


@pytest.mark.parametrize("batch_norm", [False, pytest.param(True, marks=pytest.mark.slow(seconds=15))])
def test_top_eigenvalue_matches_exact_hessian(batch_norm):
    model = tiny_mlp(batch_norm)
    x, y = tiny_data()
    if batch_norm:  # non-trivial inference statistics, so a training-mode Hessian would differ
        bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        bn.moving_mean.assign(np.linspace(-0.5, 0.5, 4).astype("float32"))
        bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype("float32"))
        bn.gamma.assign(np.linspace(0.8, 1.3, 4).astype("float32"))
    exact = exact_hessian_eigenvalues(model, x, y)
    largest_magnitude = exact[np.argmax(np.abs(exact))]

    result = top_hessian_eigenvalue(model, x, y, settings=TIGHT, from_logits=True)
    assert result.converged and result.which == "largest_magnitude"
    assert result.eigenvalue == pytest.approx(largest_magnitude, rel=1e-3)

    largest = top_hessian_eigenvalue(model, x, y, settings=TIGHT, which="largest")
    assert largest.eigenvalue == pytest.approx(exact.max(), rel=1e-3)

    # Chunking the data subset is a memory knob only.
    chunked = top_hessian_eigenvalue(model, x, y, settings=PowerIteration(2000, 1e-7, batch_size=7))
    assert chunked.eigenvalue == pytest.approx(result.eigenvalue, rel=1e-4)


def test_the_compiled_function_measures_new_weights_without_retracing():
    model = tiny_mlp(batch_norm=True)
    x, y = tiny_data()
    measure = hessian_eigenvalue_fn(model, settings=TIGHT, which="largest")
    for scale in (1.0, 0.5):  # new weights in the same model: same answers as a fresh measurement, one trace
        model.set_weights([w * scale for w in model.get_weights()])
        assert measure(x, y, seed=3) == top_hessian_eigenvalue(model, x, y, settings=TIGHT, which="largest", seed=3)
    assert measure.tracing_count() == 1


def test_presets_and_weight_decay():
    model = tiny_mlp(batch_norm=False)
    x, y = tiny_data()
    assert (HESSIANFLOW.max_iterations, HESSIANFLOW.tolerance, HESSIANFLOW.num_samples) == (10, 1e-2, 200)
    assert (CONVERGED.max_iterations, CONVERGED.tolerance) == (100, 1e-3)
    quick = top_hessian_eigenvalue(model, x, y, settings="hessianflow")
    assert 2 <= quick.iterations <= 10
    converged = top_hessian_eigenvalue(model, x, y, settings="converged")
    assert converged.iterations <= 100
    # Weight decay c adds c*I, shifting the top eigenvalue by exactly c.
    decayed = top_hessian_eigenvalue(model, x, y, settings=TIGHT, which="largest", weight_decay=0.25)
    plain = top_hessian_eigenvalue(model, x, y, settings=TIGHT, which="largest")
    assert decayed.eigenvalue == pytest.approx(plain.eigenvalue + 0.25, rel=1e-3)


def test_uses_only_the_first_num_samples():
    model = tiny_mlp(batch_norm=False)
    x, y = tiny_data(40)
    head = top_hessian_eigenvalue(model, x, y, settings=PowerIteration(2000, 1e-7, num_samples=10))
    assert head.eigenvalue == pytest.approx(exact_hessian_eigenvalues(model, x[:10], y[:10]).max(), rel=1e-3)


def test_keras_sparse_column_labels_are_class_ids():
    model = tiny_mlp(batch_norm=False)
    x, y = tiny_data()
    column = top_hessian_eigenvalue(model, x, y[:, None], settings=TIGHT)
    assert column.eigenvalue == top_hessian_eigenvalue(model, x, y, settings=TIGHT).eigenvalue


@pytest.mark.parametrize("reduction", ["sum", "none", None])
def test_a_loss_not_reduced_by_the_mean_is_refused(reduction):
    """The tool measures the mean loss's Hessian; a "sum" loss used to get that eigenvalue back silently
    (n times smaller than its own). Mean reductions give the default loss's eigenvalue."""
    model = tiny_mlp(batch_norm=False)
    x, y = tiny_data()
    given = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)
    with pytest.raises(ValueError, match=f"reduction={reduction!r}.*mean loss"):
        top_hessian_eigenvalue(model, x, y, settings=TIGHT, loss=given)
    default = top_hessian_eigenvalue(model, x, y, settings=TIGHT).eigenvalue
    for mean in ("sum_over_batch_size", "mean"):
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=mean)
        measured = top_hessian_eigenvalue(model, x, y, settings=TIGHT, loss=loss).eigenvalue
        assert measured == pytest.approx(default, rel=1e-5)


def test_bad_input_is_refused():
    model = tiny_mlp(batch_norm=False)
    x, y = tiny_data()
    with pytest.raises(ValueError, match="labels must lie"):
        top_hessian_eigenvalue(model, x, y + 5)
    with pytest.raises(ValueError, match="same length"):
        top_hessian_eigenvalue(model, x, y[:3])
    with pytest.raises(ValueError, match="settings must be one of"):
        top_hessian_eigenvalue(model, x, y, settings="fast")
    with pytest.raises(ValueError, match="tolerance"):
        PowerIteration(max_iterations=5, tolerance=0.0)
