"""tfadv.models.cifar_resnets against the PyTorch reference architectures.

The reference parameter counts are computed here from the PyTorch modules' definitions (one entry per
`nn.Parameter` the modules create), independently of the Keras code under test.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.models import cifar_resnets
from tfadv.models.cifar_resnets import CIFAR10_MEAN, CIFAR10_STD, preact_resnet18, resnet50_torchvision


def _conv(cin, cout, k):  # nn.Conv2d(..., bias=False)
    return cin * cout * k * k


def _bn(c):  # nn.BatchNorm2d: weight and bias (running stats are buffers, not parameters)
    return 2 * c


def _linear(cin, cout):
    return cin * cout + cout


def torch_preact_resnet18_parameters(final_bn: bool = True, num_classes: int = 10) -> int:
    """locuslab/fast_adversarial PreActResNet18 (final_bn=True); kuangliu's original has no final BN."""
    total, in_planes = _conv(3, 64, 3), 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for s in (stride, 1):
            total += _bn(in_planes) + _conv(in_planes, planes, 3) + _bn(planes) + _conv(planes, planes, 3)
            if s != 1 or in_planes != planes:
                total += _conv(in_planes, planes, 1)
            in_planes = planes
    if final_bn:
        total += _bn(512)
    return total + _linear(512, num_classes)


def torch_resnet50_parameters(num_classes: int = 1000) -> int:
    """torchvision.models.resnet50(): stem, Bottleneck x [3, 4, 6, 3], fc."""
    total, in_planes = _conv(3, 64, 7) + _bn(64), 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            total += _conv(in_planes, planes, 1) + _bn(planes) + _conv(planes, planes, 3) + _bn(planes)
            total += _conv(planes, 4 * planes, 1) + _bn(4 * planes)
            if block == 0:
                total += _conv(in_planes, 4 * planes, 1) + _bn(4 * planes)
            in_planes = 4 * planes
    return total + _linear(2048, num_classes)


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def count_layers(model: keras.Model, kind) -> int:
    return sum(isinstance(layer, kind) for layer in model.layers)


@pytest.fixture(scope="module")
def full_preact():
    return preact_resnet18()


@pytest.fixture(scope="module")
def full_resnet50():
    return resnet50_torchvision()


def test_reference_counts():
    # fast_adversarial's variant adds a final BatchNorm(512) to kuangliu's 11,171,146-parameter network.
    assert torch_preact_resnet18_parameters(final_bn=False) == 11_171_146
    assert torch_preact_resnet18_parameters() == 11_171_146 + 2 * 512 == 11_172_170
    assert torch_resnet50_parameters() == 25_557_032  # torchvision's documented count


def test_preact_resnet18_structure_matches_fast_adversarial(full_preact):
    assert trainable_count(full_preact) == torch_preact_resnet18_parameters()
    # 1 stem conv + 16 block convs + 3 projection shortcuts; 16 block BNs + the final BN; one Linear.
    assert count_layers(full_preact, keras.layers.Conv2D) == 20
    assert count_layers(full_preact, keras.layers.BatchNormalization) == 17
    assert count_layers(full_preact, keras.layers.Dense) == 1
    assert all(not layer.use_bias for layer in full_preact.layers if isinstance(layer, keras.layers.Conv2D))
    # Non-trainable weights are exactly the BN running statistics (PyTorch buffers).
    running_stats = sum(2 * layer.moving_mean.shape[0] for layer in full_preact.layers
                        if isinstance(layer, keras.layers.BatchNormalization))
    assert full_preact.count_params() - trainable_count(full_preact) == running_stats


def test_resnet50_structure_matches_torchvision(full_resnet50):
    assert trainable_count(full_resnet50) == torch_resnet50_parameters()
    assert count_layers(full_resnet50, keras.layers.Conv2D) == 53
    assert count_layers(full_resnet50, keras.layers.BatchNormalization) == 53
    assert full_resnet50.output_shape == (None, 1000)
    # v1.5: the stride sits on the 3x3 conv, not on the first 1x1 (keras.applications' v1).
    assert full_resnet50.get_layer("layer2_0_conv1").strides == (1, 1)
    assert full_resnet50.get_layer("layer2_0_conv2").strides == (2, 2)
    assert full_resnet50.get_layer("conv1").kernel_size == (7, 7)


def test_preact_shortcut_reads_block_input_not_preactivation():
    model = preact_resnet18(width=4)
    source = model.get_layer("layer2_0_shortcut").input._keras_history.operation
    assert source.name == "layer1_1_add"  # kuangliu's version would read layer2_0_1_relu


@pytest.mark.parametrize("build,classes", [(preact_resnet18, 10), (resnet50_torchvision, 1000)])
def test_forward_shapes_at_32x32(build, classes):
    model = build(width=4)
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    logits = model(x, training=False)
    assert logits.shape == (3, classes) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits))
    probabilities = build(width=4, logits=False)(x)
    np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-5)


def test_strided_conv_pads_symmetrically_like_pytorch():
    model = preact_resnet18(width=4)
    conv = model.get_layer("layer2_0_conv1")
    x = tf.random.stateless_uniform((1, 32, 32, 4), (1, 2))
    probe = keras.Model(model.get_layer("layer2_0_1_relu").output, conv.output)
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), conv.kernel, strides=2, padding="VALID")
    np.testing.assert_allclose(probe(x), expected, atol=1e-5)
    # Keras' "same" would pad (0, 1) and give a different result: the check above can fail.
    same = tf.nn.conv2d(x, conv.kernel, strides=2, padding="SAME")
    assert not np.allclose(same, expected, atol=1e-3)


def test_normalisation_inside_the_model():
    keras.utils.set_random_seed(1)
    inside = preact_resnet18(width=4)
    outside = preact_resnet18(width=4, mean=None, std=None)
    cifar_resnets.copy_weights(inside, outside)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    standardised = (x - np.array(CIFAR10_MEAN, np.float32)) / np.array(CIFAR10_STD, np.float32)
    np.testing.assert_allclose(inside(x, training=False), outside(standardised, training=False), atol=1e-4)


def test_pytorch_initialisation_and_batchnorm_settings(full_preact, full_resnet50):
    conv = full_preact.get_layer("layer3_0_conv2").kernel.numpy()  # fan_in = 9 * 256
    bound = 1 / np.sqrt(9 * 256)
    assert np.abs(conv).max() <= bound and np.abs(conv).max() > 0.99 * bound
    conv = full_resnet50.get_layer("layer3_0_conv2").kernel.numpy()  # fan_out = 9 * 256
    assert np.std(conv) == pytest.approx(np.sqrt(2 / (9 * 256)), rel=0.02)
    bn = full_preact.get_layer("final_bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)


def test_mixed_precision_keeps_float32_logits_and_copy_to_float32_clone():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(2)
        mixed = preact_resnet18(width=4)
    finally:
        keras.config.set_dtype_policy(previous)
    assert mixed.get_layer("conv1").compute_dtype == "float16"
    clone = preact_resnet18(width=4)
    cifar_resnets.copy_weights(mixed, clone)
    x = np.random.default_rng(2).random((4, 32, 32, 3), dtype=np.float32)
    mixed_logits = mixed(x, training=False)
    assert mixed_logits.dtype == tf.float32
    np.testing.assert_allclose(mixed_logits, clone(x, training=False), atol=0.05)


@pytest.mark.parametrize("kwargs,message", [
    ({"input_shape": (4, 4, 3)}, "minimum"),
    ({"input_shape": (32, 32)}, "height, width, channels"),
    ({"mean": (0.5, 0.5, 0.5), "std": None}, "both mean and std"),
    ({"input_shape": (32, 32, 1)}, "one value per channel"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        preact_resnet18(width=4, **kwargs)
    with pytest.raises(ValueError, match="architecture must be one of"):
        cifar_resnets.build("vgg16")
