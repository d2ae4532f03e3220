"""Issue 14 (engine): `emulated_batch_size` reproduces, sample by sample, crafting in real mini-batches.

In inference mode a sample's gradient depends on its batch only through the reduction: the mean divides it
by B. One batch of 64 with per-sample weights 1/B_i must therefore give what batches of B_i give: the same
1e-12 floor clamps (L2), the same float16 underflow, the same adversarial examples and successes.
"""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import losses
from tfadv.attacks import FGM, PGD
from tfadv.precision import dtype_policy

N = 64
SIZES = (1, 4, 16, 64)
EPS = {"inf": 0.1, "2": 1.0}


def confident_bn_model(margin: float) -> keras.Model:
    """Conv-BN-ReLU-Dense classifying everything as class 0 with a logit margin of about `margin`, so the
    loss gradient of a label-0 sample is ~exp(-margin): small enough that the mean's 1/64 pushes L2 steps
    under the 1e-12 floor and float16 backward passes toward underflow. BatchNorm has non-trivial moving
    statistics and runs in inference mode."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    bn = keras.layers.BatchNormalization()
    h = keras.layers.ReLU()(bn(h))
    bias = np.zeros(10, "float32")
    bias[0] = margin
    head = keras.layers.Dense(10, bias_initializer=keras.initializers.Constant(bias), dtype="float32")
    model = keras.Model(inputs, head(keras.layers.Flatten()(h)))
    rng = np.random.default_rng(0)
    bn.moving_mean.assign(rng.normal(0, 0.2, 4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 4).astype("float32"))
    return model


def samples():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.2, 0.8, (N, 6, 6, 1)).astype("float32")
    return x, np.zeros(N, "int64")


def make(cls, model, norm, reduction, loss_scale):
    common = dict(reduction=reduction, from_logits=True, clip_min=0.0, clip_max=1.0, loss_scale=loss_scale)
    if cls is PGD:
        return PGD(model, EPS[norm], norm, steps=3, step_size=EPS[norm] / 2, seed=7, **common)
    return FGM(model, EPS[norm], norm, **common)


def real_batches(cls, model, norm, reduction, loss_scale, x, y, size):
    """A fresh attack (so every call is a plain batch of `size`) over the data in batches of `size`."""
    attack = make(cls, model, norm, reduction, loss_scale)
    outs = [attack(x[i : i + size], y[i : i + size], sample_ids=np.arange(i, i + size), return_stats=True)
            for i in range(0, N, size)]
    return np.concatenate([o[0].numpy() for o in outs]), {k: np.concatenate([o[1][k] for o in outs])
                                                            for k in ("success", "floor_clamped_first", "grad_zero_first")}


#: Logit margins that put a lone sample's gradient just above the mechanism's threshold and 1/64 of it
#: below: the 1e-6 L2 floor (float32), float16's smallest subnormal 6e-8 (mixed_float16).
MARGIN = {"float32": 11.0, "mixed_float16": 14.0}

#: Float tolerance on x_adv. Kernels round differently at different batch sizes (accumulation order; here
#: only B = 1 and 4 differ, the sum loss as much as the mean), and an O(1) float16 gradient (per-sample loss
#: scaling) moves an L2 direction by ~1e-4 relative. Measured (2026-12-06, AVX2): at most 1.8e-7 on x in
#: float32, 8.3e-5 in mixed_float16, against steps of 0.05 to 0.5.
ATOL = {"float32": 1e-6, "mixed_float16": 2e-4}


def check_emulation(cls, norm, reduction, policy, loss_scale):
    with dtype_policy(policy):
        model = confident_bn_model(MARGIN[policy])
    x, y = samples()
    emulating = make(cls, model, norm, reduction, loss_scale)
    results = {}
    for size in SIZES:
        real_x, real_stats = real_batches(cls, model, norm, reduction, loss_scale, x, y, size)
        emulated_x, emulated_stats = emulating(x, y, sample_ids=np.arange(N), emulated_batch_size=size, return_stats=True)
        np.testing.assert_allclose(emulated_x.numpy(), real_x, atol=ATOL[policy], err_msg=f"B={size}")
        for key, value in real_stats.items():
            np.testing.assert_array_equal(emulated_stats[key], value, err_msg=f"{key}, B={size}")
        results[size] = real_x, real_stats
    return results


FAST = [  # one unmarked case per mechanism: the L2 floor in float32, float16 underflow with and without scaling
    (PGD, "2", "sum_over_batch_size", "float32", None),
    (FGM, "inf", "sum_over_batch_size", "mixed_float16", None),
    (PGD, "inf", "sum_over_batch_size", "mixed_float16", "per_sample"),
]
ALL = [c for c in itertools.product((FGM, PGD), ("inf", "2"), ("sum_over_batch_size", "sum"),
                                    ("float32", "mixed_float16"), (None, "per_sample"))
       if c not in FAST and not (c[3] == "float32" and c[4] == "per_sample")]


@pytest.mark.parametrize("cls,norm,reduction,policy,loss_scale", FAST)
def test_emulated_batches_match_real_batches(cls, norm, reduction, policy, loss_scale):
    results = check_emulation(cls, norm, reduction, policy, loss_scale)
    (alone, alone_stats), (together, together_stats) = results[1], results[64]
    # The mechanisms were at work, so the comparison was not vacuous.
    if policy == "float32":  # the L2 floor clamps the mean's 1/64-scaled gradients only
        assert together_stats["floor_clamped_first"].all() and not alone_stats["floor_clamped_first"].any()
    elif loss_scale is None:  # float16 underflow zeroes the mean's 1/64-scaled gradients only
        assert together_stats["grad_zero_first"].mean() > 0.5 and not alone_stats["grad_zero_first"].any()
    else:
        assert not together_stats["grad_zero_first"].any()
    if loss_scale is None:
        assert not np.allclose(alone, together, atol=1e-5)


@pytest.mark.slow(seconds=10)
@pytest.mark.parametrize("cls,norm,reduction,policy,loss_scale", ALL)
def test_emulated_batches_match_real_batches_everywhere(cls, norm, reduction, policy, loss_scale):
    check_emulation(cls, norm, reduction, policy, loss_scale)


def test_per_sample_batch_sizes_mix_in_one_call():
    model = confident_bn_model(11.0)
    x, y = samples()
    sizes = np.repeat([1, 4, 16, 64], N // 4)
    mixed = make(PGD, model, "2", "sum_over_batch_size", None)(x, y, sample_ids=np.arange(N), emulated_batch_size=sizes)
    for size in (1, 16):
        rows = sizes == size
        expected = make(PGD, model, "2", "sum_over_batch_size", None)(
            x, y, sample_ids=np.arange(N), emulated_batch_size=size)
        np.testing.assert_allclose(mixed.numpy()[rows], expected.numpy()[rows], atol=1e-6)


@pytest.mark.parametrize(
    "value,message",
    [(0, "emulated_batch_size must be >= 1"), (np.ones(3, "int64"), "emulated_batch_size must be an integer or 64"),
     (2.5, "emulated_batch_size must be an integer"), (np.full(N, 4.0), "emulated_batch_size must be an integer")],
)
def test_bad_emulated_batch_sizes_are_refused_before_any_compute(value, message):
    x, y = samples()
    attack = make(PGD, confident_bn_model(5.0), "inf", "sum_over_batch_size", None)
    with pytest.raises(ValueError, match=message):
        attack(x, y, emulated_batch_size=value)
    assert attack.tracing_count() == 0


def test_emulation_refuses_training_mode():
    x, y = samples()
    attack = PGD(confident_bn_model(5.0), 0.1, steps=2, step_size=0.05, from_logits=True, training=True)
    with pytest.raises(ValueError, match=r"PGD: emulated_batch_size needs the model in inference mode \(training=False\)"):
        attack(x, y, emulated_batch_size=4)


@pytest.mark.parametrize("cls,norm,policy,loss_scale", [(PGD, "2", "float32", None), (FGM, "inf", "mixed_float16", None),
                                                        (PGD, "inf", "mixed_float16", "per_sample")])
def test_sum_loss_emulation_is_the_same_computation_at_every_batch_size(cls, norm, policy, loss_scale):
    """What lets the minibatch runner share one sum-loss craft between batch sizes: bit-identical adversarial
    examples and statistics at every emulated B and in the plain batch of N (real batches of the craft size)."""
    with dtype_policy(policy):
        model = confident_bn_model(MARGIN[policy])
    x, y = samples()
    attack = make(cls, model, norm, "sum", loss_scale)
    crafted = {size: attack(x, y, sample_ids=np.arange(N), emulated_batch_size=size, return_stats=True) for size in SIZES}
    crafted["plain"] = make(cls, model, norm, "sum", loss_scale)(x, y, sample_ids=np.arange(N), return_stats=True)
    first_x, first_stats = crafted[SIZES[0]]
    for size in [*SIZES[1:], "plain"]:
        x_adv, stats = crafted[size]
        np.testing.assert_array_equal(x_adv.numpy(), first_x.numpy(), err_msg=f"B={size}")
        for key in ("success", "grad_l2_first", "floor_clamped_first", "grad_zero_first"):
            np.testing.assert_array_equal(stats[key], first_stats[key], err_msg=f"{key}, B={size}")
    assert not np.array_equal(first_x.numpy(), x)  # the attack moved the samples


def test_mean_weights_are_correctly_rounded_in_compiled_graphs():
    """The mean's 1/B as Keras' scalar sum / N gets it: a compiled 1/x becomes TensorFlow's Reciprocal op,
    whose vectorized float32 CPU kernel is one ulp low for many B (1/32 gives 0x1.fffffep-6 on AVX2)."""
    sizes = np.arange(1, 2**16 + 1, dtype="float32")
    weights = tf.function(losses.mean_weights)(tf.constant(sizes)).numpy()
    np.testing.assert_array_equal(weights, np.float32(1) / sizes)


@pytest.mark.parametrize("cls,norm,policy,loss_scale", [(PGD, "2", "float32", None), (PGD, "inf", "float32", None),
                                                        (FGM, "2", "float32", None),
                                                        (PGD, "2", "mixed_float16", "per_sample")])
def test_emulating_a_batch_its_own_size_is_the_plain_call_bit_for_bit(cls, norm, policy, loss_scale):
    """emulated_batch_size=N on a batch of N is the plain call's arithmetic at the same shape, so no rounding
    may separate them: a mean weight one ulp off (the compiled Reciprocal) moved the minibatch demo's
    32-step L2 examples 1.5e-3 eps from real batches'."""
    with dtype_policy(policy):
        model = confident_bn_model(MARGIN[policy])
    x, y = samples()
    attack = make(cls, model, norm, "sum_over_batch_size", loss_scale)
    plain, plain_stats = attack(x, y, sample_ids=np.arange(N), return_stats=True)
    emulated, emulated_stats = attack(x, y, sample_ids=np.arange(N), emulated_batch_size=N, return_stats=True)
    np.testing.assert_array_equal(emulated.numpy(), plain.numpy())
    np.testing.assert_array_equal(emulated_stats["grad_l2_first"], plain_stats["grad_l2_first"])
    assert plain_stats["floor_clamped_first"].any() or norm == "inf" or loss_scale  # the 1/N reached the step
