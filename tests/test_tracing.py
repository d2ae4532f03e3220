"""tfadv.tracing.own_graph_helps / call_as_own_graph: gradient passes of max-pooling models on a CPU run as a
function graph of their own (TensorFlow's oneDNN rewrite of MaxPoolGrad), with the same answers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import tracing
from tfadv.attacks import APGD, PGD
from tfadv.models.digits_cnn import build_digits_cnn
from tfadv.precision import dtype_policy

# On a machine with GPUs the gradient pass stays inline (no oneDNN rewrite to win); `make test` hides GPUs.
pytestmark = pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="a GPU is visible")


def test_only_float32_max_pooling_models_take_their_own_graph():
    assert tracing.own_graph_helps(build_digits_cnn(16, 10))
    with dtype_policy("mixed_float16"):  # float16 pooling has no oneDNN kernel here to gain
        assert not tracing.own_graph_helps(build_digits_cnn(16, 10))
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert not tracing.own_graph_helps(flat)
    nested = keras.Sequential([keras.Input((16, 16, 3)), build_digits_cnn(16, 10)])
    assert tracing.own_graph_helps(nested)  # found inside a nested model too


def own_graph_calls(attack) -> int:
    """Functions marked not-to-inline in the attack's compiled graphs (TensorFlow's private listing)."""
    return sum("_noinline" in fd.attr for f in attack._compiled.values() for cf in f._list_all_concrete_functions()
               for fd in cf.graph.as_graph_def().library.function)


#: An L2 step carries the gradient's values, which the two graphs' kernels round differently (oneDNN's and
#: TensorFlow's MaxPoolGrad, fused or separate bias and ReLU): measured 3e-5 on pixels in [0, 255].
L2_ATOL = 1e-3


@pytest.mark.parametrize("make,atol", [
    (lambda m: PGD(m, 24.0, "inf", steps=5, clip_min=0.0, clip_max=255.0, seed=3), 0.0),
    (lambda m: PGD(m, 400.0, "2", steps=5, clip_min=0.0, clip_max=255.0, seed=3, reduction="sum"), L2_ATOL),
    (lambda m: APGD(m, 24.0, "inf", 6, clip_min=0.0, clip_max=255.0, seed=3), 0.0),
], ids=["pgd-linf", "pgd-l2-sum", "apgd"])
def test_own_graph_gives_the_inline_answer_sample_by_sample(make, atol):
    keras.utils.set_random_seed(0)
    model = build_digits_cnn(16, 10)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    own, inline = make(model), make(model)
    assert own._own_graph
    inline._own_graph = False
    x_own, x_inline = np.asarray(own(x, y)), np.asarray(inline(x, y))
    # The two paths really differ (APGD's XLA-fused bookkeeping is not inlined either, on both paths).
    assert own_graph_calls(own) > own_graph_calls(inline)
    assert not np.array_equal(x_own, x)
    np.testing.assert_allclose(x_own, x_inline, rtol=0, atol=atol)
    np.testing.assert_array_equal(np.argmax(model(x_own), -1), np.argmax(model(x_inline), -1))


def test_looped_training_steps_take_their_own_graph_with_the_inline_answer(monkeypatch):
    """PGD-kappa training loops its steps in the graph past crafting.UNROLL_STEPS; there each gradient pass is a
    graph of its own on a max-pooling net, crafting what the inline pass crafts."""
    from tfadv.training import PGDAdversarialModel

    keras.utils.set_random_seed(0)
    net = build_digits_cnn(16, 10)
    model = PGDAdversarialModel(net.inputs[0], net.outputs[0], eps=24.0, steps=12, step_size=4.0, seed=3,
                                clip_min=0.0, clip_max=255.0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy())  # the digits CNN outputs probabilities
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, 32))

    def crafted(own: bool):
        monkeypatch.setattr(tracing, "own_graph_helps", lambda m: own)
        craft = tf.function(model.craft)
        graph = craft.get_concrete_function(x, y).graph.as_graph_def()
        calls = sum("_noinline" in f.attr for f in graph.library.function)
        return np.asarray(craft(x, y)), calls

    (x_own, own_calls), (x_inline, inline_calls) = crafted(True), crafted(False)
    assert own_calls > inline_calls
    assert not np.array_equal(x_own, x.numpy())
    np.testing.assert_array_equal(x_own, x_inline)
