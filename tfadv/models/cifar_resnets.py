"""The two CIFAR-10 networks of the `freefast` reproduction, ported from the PyTorch code that produced it.

- `preact_resnet18`: locuslab/fast_adversarial `CIFAR10/preact_resnet.py` (used byte-identical by the seed,
  not-a-genius/neuralNetworkExam). It differs from kuangliu's PreActResNet18 in two places: the 1x1
  shortcut conv reads the block input x (not relu(bn1(x))), and a final BN + ReLU sits before the pooling.
- `resnet50_torchvision`: `torchvision.models.resnet50()` exactly as the seed calls it: ResNet v1.5 (the
  stride sits on the 3x3 conv of a bottleneck, not on the first 1x1 as in `keras.applications.ResNet50`),
  the ImageNet stem (7x7/2 conv + 3x3/2 max-pool) applied to 32x32 images, and a 1000-way head although
  CIFAR-10 has 10 classes (the seed's logs start at loss 7.38 ~ ln 1000).

Both take images in [0, 1] and normalise with the CIFAR-10 mean/std *inside* the model, so eps, step sizes
and clipping are in pixel units; the reproduced code normalises outside and scales eps by 1/std per
channel, which is the same threat model. Both return float32 logits by default: the reproduced code trains
on logits with `F.cross_entropy`, and logits with `from_logits=True` keep Keras' cross-entropy exact under
mixed_float16 (a float16 softmax underflows and Keras then clips the probabilities, zeroing the gradient of
confidently wrong samples, see the notes' tf_keras_facts section 2). `logits=False` appends a float32 softmax.

Ported details that move numbers: PyTorch's symmetric padding for strided convs (Keras "same" pads
asymmetrically, so strided convs use ZeroPadding2D + "valid"), BatchNorm momentum 0.1 / eps 1e-5
(Keras momentum 0.9, epsilon 1e-5), bias-free convs, and each reference's weight initialisation.
"""
from __future__ import annotations

from typing import Sequence

import keras

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

#: PyTorch's default Conv/Linear init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
_TORCH_DEFAULT_INIT = {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"}
#: torchvision ResNet's conv init, kaiming_normal(mode="fan_out", nonlinearity="relu").
_TORCHVISION_CONV_INIT = {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}

#: PyTorch BatchNorm2d defaults (momentum 0.1 on the new value = Keras momentum 0.9 on the old one).
_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _check_input(input_shape: Sequence[int], min_size: int, mean: Sequence[float] | None,
                 std: Sequence[float] | None) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
    height, width, channels = input_shape
    if height < min_size or width < min_size:
        raise ValueError(f"input_shape {tuple(input_shape)} is smaller than this network's minimum {min_size}x{min_size}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (normalisation inside the model) or neither")
    if mean is not None and not (len(mean) == len(std) == channels):
        raise ValueError(f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}")
    if std is not None and min(std) <= 0:
        raise ValueError(f"std must be positive, got {tuple(std)}")


def _inputs(input_shape, mean, std):
    """Images in [0, 1], normalised in float32 (before any float16 cast) when mean/std are given."""
    inputs = keras.Input(tuple(input_shape), name="images")
    if mean is None:
        return inputs, inputs
    normalise = keras.layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], dtype="float32", name="normalize"
    )
    return inputs, normalise(inputs)


def _head(x, num_classes: int, logits: bool, bias_init: keras.initializers.Initializer):
    # float32 so the logits (and the loss) stay float32 under a mixed-precision policy.
    out = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(**_TORCH_DEFAULT_INIT),
        bias_initializer=bias_init,
        dtype="float32",
        name="logits",
    )(x)
    if not logits:
        out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(out)
    return out


def _conv(filters: int, kernel: int, stride: int, init: dict, name: str):
    """A bias-free conv with PyTorch's symmetric padding of kernel // 2."""
    padding = kernel // 2
    conv = keras.layers.Conv2D(
        filters, kernel, strides=stride, use_bias=False,
        padding="same" if stride == 1 else "valid",
        kernel_initializer=keras.initializers.VarianceScaling(**init), name=name,
    )
    if stride == 1 or padding == 0:
        return conv
    pad = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")
    return lambda x: conv(pad(x))


def _bn_relu(x, name: str):
    x = keras.layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _preact_block(x, filters: int, stride: int, name: str):
    """out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x); the shortcut is a 1x1 conv on x itself."""
    in_filters = x.shape[-1]
    out = _bn_relu(x, f"{name}_1")
    out = _conv(filters, 3, stride, _TORCH_DEFAULT_INIT, f"{name}_conv1")(out)
    out = _bn_relu(out, f"{name}_2")
    out = _conv(filters, 3, 1, _TORCH_DEFAULT_INIT, f"{name}_conv2")(out)
    shortcut = x
    if stride != 1 or in_filters != filters:
        shortcut = _conv(filters, 1, stride, _TORCH_DEFAULT_INIT, f"{name}_shortcut")(x)
    return keras.layers.Add(name=f"{name}_add")([out, shortcut])


def preact_resnet18(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    width: int = 64,
    mean: Sequence[float] | None = CIFAR10_MEAN,
    std: Sequence[float] | None = CIFAR10_STD,
    logits: bool = True,
    name: str = "preact_resnet18",
) -> keras.Model:
    """PreActResNet18 as in fast_adversarial: conv3x3(width) -> 4 stages x 2 pre-activation blocks
    (width, 2w, 4w, 8w; strides 1, 2, 2, 2) -> BN -> ReLU -> global average pool -> Dense.

    `width=64` is the paper's network (11,172,170 parameters); smaller widths are for tests and the
    offline demo. The 4x4 average pool of the original equals global pooling on 32x32 inputs; global
    pooling also accepts the demo's smaller images.
    """
    _check_input(input_shape, 8, mean, std)
    inputs, x = _inputs(input_shape, mean, std)
    x = _conv(width, 3, 1, _TORCH_DEFAULT_INIT, "conv1")(x)
    for stage, (multiplier, stride) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2)), start=1):
        for block in range(2):
            x = _preact_block(x, width * multiplier, stride if block == 0 else 1, f"layer{stage}_{block}")
    x = _bn_relu(x, "final")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    bound = (8 * width) ** -0.5  # PyTorch's Linear bias init U(+-1/sqrt(fan_in))
    outputs = _head(x, num_classes, logits, keras.initializers.RandomUniform(-bound, bound))
    return keras.Model(inputs, outputs, name=name)


def _bottleneck(x, planes: int, stride: int, name: str):
    """torchvision Bottleneck (v1.5): 1x1 -> 3x3 (stride here) -> 1x1 (4*planes), BN after each conv."""
    out_filters = 4 * planes
    out = _conv(planes, 1, 1, _TORCHVISION_CONV_INIT, f"{name}_conv1")(x)
    out = _bn_relu(out, f"{name}_1")
    out = _conv(planes, 3, stride, _TORCHVISION_CONV_INIT, f"{name}_conv2")(out)
    out = _bn_relu(out, f"{name}_2")
    out = _conv(out_filters, 1, 1, _TORCHVISION_CONV_INIT, f"{name}_conv3")(out)
    out = keras.layers.BatchNormalization(**_BN, name=f"{name}_3_bn")(out)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv(out_filters, 1, stride, _TORCHVISION_CONV_INIT, f"{name}_downsample")(x)
        shortcut = keras.layers.BatchNormalization(**_BN, name=f"{name}_downsample_bn")(shortcut)
    out = keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def resnet50_torchvision(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 1000,
    width: int = 64,
    mean: Sequence[float] | None = CIFAR10_MEAN,
    std: Sequence[float] | None = CIFAR10_STD,
    logits: bool = True,
    name: str = "resnet50_torchvision",
) -> keras.Model:
    """`torchvision.models.resnet50()` as the seed trains it on CIFAR-10: ImageNet stem, 1000 outputs.

    Stem conv7x7/2 (width) -> BN -> ReLU -> max-pool 3x3/2 -> stages of 3, 4, 6, 3 bottlenecks (planes
    w, 2w, 4w, 8w; strides 1, 2, 2, 2) -> global average pool -> Dense(num_classes). On 32x32 inputs the
    last stage runs at 1x1. `width=64, num_classes=1000` has torchvision's 25,557,032 parameters.
    """
    _check_input(input_shape, 32, mean, std)
    inputs, x = _inputs(input_shape, mean, std)
    x = _conv(width, 7, 2, _TORCHVISION_CONV_INIT, "conv1")(x)
    x = _bn_relu(x, "stem")
    # PyTorch pads the max-pool with -inf; after a ReLU every value is >= 0, so zero padding is the same.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (blocks, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2)), start=1):
        for block in range(blocks):
            x = _bottleneck(x, width * 2 ** (stage - 1), stride if block == 0 else 1, f"layer{stage}_{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    bound = (32 * width) ** -0.5
    outputs = _head(x, num_classes, logits, keras.initializers.RandomUniform(-bound, bound))
    return keras.Model(inputs, outputs, name=name)


ARCHITECTURES = {"preact_resnet18": preact_resnet18, "resnet50": resnet50_torchvision}


def build(architecture: str, **kwargs) -> keras.Model:
    """Build one of ARCHITECTURES by name (the names the freefast runner's grid uses)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture](**kwargs)


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer, matched by name: e.g. a mixed-precision training model (whose extra
    state, such as a Free perturbation, is not a layer weight) into a float32 clone for evaluation."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
