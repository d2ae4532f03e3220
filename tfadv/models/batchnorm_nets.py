"""Networks with and without batch normalisation (Galloway et al. 2019, "BN increases adversarial
vulnerability"): linear models, MLPs with one BN layer, deep constant-width ReLU nets, VGG,
WideResNet-28-10 and the authors' CIFAR ResNet-110 with BN or with Fixup initialisation (no normalisation).

Every builder returns logits. BN follows the paper's eq. 1: normalise the pre-activation, then the
nonlinearity. Keras' `epsilon` is the paper's numerical-stability constant c, added to the variance inside
the square root, (h - mu) / sqrt(sigma^2 + c) (the paper's text is ambiguous about where c goes; the
authors' blog puts it inside the root, as Keras does).
"""
from __future__ import annotations

import math
from typing import Literal

import keras
import numpy as np

Affine = Literal["fixed", "learned"]

#: Default numerical-stability constant c (Keras' BatchNormalization default, and Figure 2's value).
DEFAULT_EPSILON = 1e-3

#: Convolution widths of the VGG variants ("M" = 2x2 max-pool). VGG11-19 are Simonyan & Zisserman's
#: configurations A, B, D, E; "vgg8" (5 conv + 3 FC = 8 weight layers) is tfadv's reading of the paper's
#: VGG8, whose definition could not be found.
VGG_CONFIGS: dict[str, tuple] = {
    "vgg8": (64, "M", 128, "M", 256, "M", 512, "M", 512, "M"),
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


def _regularizer(weight_decay: float) -> keras.regularizers.Regularizer | None:
    """L2 weight decay as in PyTorch's SGD `weight_decay` and tf.nn.l2_loss: loss + (lambda/2)||w||^2,
    so the decay term of the gradient is lambda * w."""
    if weight_decay < 0 or not math.isfinite(weight_decay):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None


def batch_norm(epsilon: float = DEFAULT_EPSILON, affine: Affine = "learned", momentum: float = 0.99,
               gamma_initializer: str | keras.initializers.Initializer = "ones",
               name: str | None = None) -> keras.layers.BatchNormalization:
    """A BN layer with stability constant c = `epsilon`.

    affine="fixed": gamma = 1, beta = 0, not trained (Table 1's "F"). affine="learned": trainable
    gamma (from `gamma_initializer`) and beta (from 0).
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon (the BN constant c) must be a finite number > 0, got {epsilon!r}")
    if affine not in ("fixed", "learned"):
        raise ValueError(f"affine must be 'fixed' or 'learned', got {affine!r}")
    fixed = affine == "fixed"
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=momentum, center=not fixed,
                                           scale=not fixed, gamma_initializer=gamma_initializer, name=name)


@keras.saving.register_keras_serializable(package="tfadv")
class SignedLogits(keras.layers.Layer):
    """Two-class logits (-z/2, z/2) from one score z: softmax cross-entropy on them equals the logistic
    loss of w.x + b, so a binary linear model stays the paper's single weight vector."""

    def call(self, z):
        return keras.ops.concatenate([-0.5 * z, 0.5 * z], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


def linear_classifier(input_shape: tuple[int, ...], num_classes: int = 2, *,
                      batchnorm: Affine | None = None, epsilon: float = DEFAULT_EPSILON,
                      weight_decay: float = 0.0, init_stddev: float | None = 0.1,
                      name: str | None = None) -> keras.Model:
    """f(x) = w.x + b, optionally on batch-normalised inputs (BNGD: BN with h = x, Section 3).

    With num_classes=2 the model has one weight vector (logits via `SignedLogits`). batchnorm="fixed"
    keeps gamma = 1, beta = 0; "learned" initialises gamma ~ U(0, 1), beta = 0 and trains them (PyTorch's
    BN initialisation before v1.2, tfadv's reading of the paper's "randomly initialized"). Weights start
    from a truncated normal with `init_stddev` (the authors' 2018 logistic code uses 0.1); None keeps
    Keras' Glorot default.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    if batchnorm is not None:
        gamma = keras.initializers.RandomUniform(0.0, 1.0) if batchnorm == "learned" else "ones"
        x = batch_norm(epsilon, batchnorm, gamma_initializer=gamma, name="input_bn")(x)
    init = "glorot_uniform" if init_stddev is None else keras.initializers.TruncatedNormal(stddev=init_stddev)
    units = 1 if num_classes == 2 else num_classes
    x = keras.layers.Dense(units, kernel_initializer=init, kernel_regularizer=_regularizer(weight_decay),
                           name="linear")(x)
    if num_classes == 2:
        x = SignedLogits(name="logits")(x)
    tag = "linear" if batchnorm is None else f"bn_{batchnorm}_linear"
    return keras.Model(inputs, x, name=name or tag)


def mlp(input_shape: tuple[int, ...], num_classes: int = 10, *, hidden_units: tuple[int, ...] | None = None,
        batchnorm_layer: int | None = None, epsilon: float = DEFAULT_EPSILON, weight_decay: float = 0.0,
        name: str | None = None) -> keras.Model:
    """Two hidden ReLU layers of width d/2 (d = input dimension) by default, as Tables 6-7; BN on the
    pre-activation of hidden layer `batchnorm_layer` (0-based) only."""
    d = int(np.prod(input_shape))
    hidden_units = tuple(hidden_units) if hidden_units is not None else (max(1, d // 2),) * 2
    if batchnorm_layer is not None and not 0 <= batchnorm_layer < len(hidden_units):
        raise ValueError(f"batchnorm_layer must index one of the {len(hidden_units)} hidden layers, "
                         f"got {batchnorm_layer}")
    reg = _regularizer(weight_decay)
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, kernel_regularizer=reg, name=f"dense_{i}")(x)
        if i == batchnorm_layer:
            x = batch_norm(epsilon, name=f"bn_{i}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, x, name=name or ("bn_mlp" if batchnorm_layer is not None else "mlp"))


def deep_fc(input_shape: tuple[int, ...], num_classes: int = 10, *, depth: int, width: int = 384,
            batchnorm: bool = False, epsilon: float = DEFAULT_EPSILON, name: str | None = None) -> keras.Model:
    """`depth` hidden Dense(width) -> [BN] -> ReLU layers and a linear read-out (Figure 2, after Yang et al.
    2019). BN keeps Keras' default gamma, beta and c = `epsilon`."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1 hidden layers, got {depth}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for i in range(depth):
        x = keras.layers.Dense(width, name=f"dense_{i}")(x)
        if batchnorm:
            x = batch_norm(epsilon, name=f"bn_{i}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, x, name=name or f"{'bn_' if batchnorm else ''}fc{depth}x{width}")


def vgg(variant: str = "vgg8", *, batchnorm: bool, input_shape: tuple[int, int, int] = (32, 32, 3),
        num_classes: int = 10, width: float = 1.0, classifier_units: int = 512, weight_decay: float = 0.0,
        epsilon: float = 1e-5, name: str | None = None) -> keras.Model:
    """VGG for 32x32 inputs: 3x3 convolutions [-> BN] -> ReLU per `VGG_CONFIGS`, then three FC layers
    (classifier_units, classifier_units, num_classes). `width` scales every layer (small demo models).
    epsilon defaults to 1e-5, PyTorch's BN constant, since the paper trained torchvision-style VGGs."""
    if variant not in VGG_CONFIGS:
        raise ValueError(f"variant must be one of {sorted(VGG_CONFIGS)}, got {variant!r}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    reg = _regularizer(weight_decay)
    inputs = keras.Input(input_shape)
    x = inputs
    for item in VGG_CONFIGS[variant]:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, padding="same")(x)
            continue
        x = keras.layers.Conv2D(max(1, round(item * width)), 3, padding="same", use_bias=not batchnorm,
                                kernel_initializer="he_normal", kernel_regularizer=reg)(x)
        if batchnorm:
            x = batch_norm(epsilon)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    hidden = max(1, round(classifier_units * width))
    for _ in range(2):
        x = keras.layers.Dense(hidden, kernel_regularizer=reg)(x)
        if batchnorm:
            x = batch_norm(epsilon)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, x, name=name or (f"{variant}_bn" if batchnorm else variant))


# ----------------------------------------------------------------------------------------- WideResNet
class _Scalar(keras.layers.Layer):
    """One learned scalar (Fixup's biases and multipliers), optionally L2-regularised."""

    initial = "zeros"

    def __init__(self, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.regularizer = keras.regularizers.get(regularizer)

    def build(self, input_shape):
        self.value = self.add_weight(shape=(), initializer=self.initial, regularizer=self.regularizer,
                                     name=type(self).__name__.lower())

    def get_config(self):
        return {**super().get_config(), "regularizer": keras.regularizers.serialize(self.regularizer)}


@keras.saving.register_keras_serializable(package="tfadv")
class ScalarBias(_Scalar):
    """x + b with one learned scalar b (Fixup's bias, initialised to 0)."""

    def call(self, x):
        return x + keras.ops.cast(self.value, x.dtype)


@keras.saving.register_keras_serializable(package="tfadv")
class ScalarScale(_Scalar):
    """x * s with one learned scalar s (Fixup's multiplier, initialised to 1)."""

    initial = "ones"

    def call(self, x):
        return x * keras.ops.cast(self.value, x.dtype)


def wide_resnet(depth: int = 28, width: int = 10, *, normalization: Literal["batchnorm", "fixup"],
                input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10,
                weight_decay: float = 0.0, epsilon: float = 1e-5, name: str | None = None) -> keras.Model:
    """WRN-depth-width (Zagoruyko & Komodakis), with BN or with Fixup initialisation and no normalisation.

    "batchnorm": pre-activation blocks BN -> ReLU -> conv, twice. "fixup" (Zhang et al. 2019): no normalisation;
    scalar biases before each convolution and activation, a scalar multiplier on each residual branch, the branch's
    last convolution and the classifier zero, its first convolution He-initialised on fan-out (as Zhang's code) and
    scaled by L^(-1/2) (L residual branches, m = 2 layers per branch: L^(-1/(2m-2))).
    """
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    if normalization not in ("batchnorm", "fixup"):
        raise ValueError(f"normalization must be 'batchnorm' or 'fixup', got {normalization!r}")
    if width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width}")
    blocks = (depth - 4) // 6
    fixup = normalization == "fixup"
    reg = _regularizer(weight_decay)
    he = keras.initializers.HeNormal()
    branch_init = keras.initializers.VarianceScaling(2.0 / (3 * blocks), "fan_out", "untruncated_normal")

    def conv(filters, kernel, stride=1, init=he):
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                   kernel_initializer=init, kernel_regularizer=reg)

    def bn_relu(x):
        return keras.layers.ReLU()(batch_norm(epsilon)(x))

    def block(x, filters, stride):
        same_shape = stride == 1 and x.shape[-1] == filters
        if fixup:
            entry = ScalarBias()(x)
            h = conv(filters, 3, stride, branch_init)(entry)
            h = keras.layers.ReLU()(ScalarBias()(h))
            h = conv(filters, 3, 1, "zeros")(ScalarBias()(h))
            h = ScalarBias()(ScalarScale()(h))
            shortcut = x if same_shape else conv(filters, 1, stride)(entry)
            return keras.layers.ReLU()(keras.layers.Add()([h, shortcut]))
        entry = bn_relu(x)
        h = conv(filters, 3, stride)(entry)
        h = conv(filters, 3)(bn_relu(h))
        shortcut = x if same_shape else conv(filters, 1, stride)(entry)
        return keras.layers.Add()([h, shortcut])

    inputs = keras.Input(input_shape)
    x = conv(16, 3)(inputs)
    if fixup:
        x = keras.layers.ReLU()(ScalarBias()(x))
    for group, stride in zip((16 * width, 32 * width, 64 * width), (1, 2, 2)):
        for i in range(blocks):
            x = block(x, group, stride if i == 0 else 1)
    if not fixup:
        x = bn_relu(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if fixup:
        x = ScalarBias()(x)
    head_init = "zeros" if fixup else "glorot_uniform"
    x = keras.layers.Dense(num_classes, kernel_initializer=head_init, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, x, name=name or f"wrn{depth}_{width}_{normalization}")


# ------------------------------------------------------------------------- the authors' CIFAR ResNet
#: PyTorch's default Conv2d/Linear kernel init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
TORCH_DEFAULT_INIT = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_conv(filters: int, stride: int, init, reg, name: str):
    """3x3 conv, no bias, PyTorch's padding of 1 on every side (Keras' "same" pads a strided conv asymmetrically)."""
    conv = keras.layers.Conv2D(filters, 3, strides=stride, padding="same" if stride == 1 else "valid",
                               use_bias=False, kernel_initializer=init, kernel_regularizer=reg, name=name)
    if stride == 1:
        return conv
    return lambda x: conv(keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x))


def _subsample_and_widen(x, filters: int, name: str):
    """He et al.'s option-A shortcut as the authors wrote it: AvgPool2d(1, stride 2), then zero channels."""
    x = keras.layers.Lambda(lambda t: t[:, ::2, ::2, :], name=f"{name}_subsample")(x)
    return keras.layers.Lambda(lambda t: keras.ops.concatenate([t, keras.ops.zeros_like(t)], axis=-1),
                               name=f"{name}_widen")(x) if filters == 2 * x.shape[-1] else x


def cifar_resnet(depth: int = 110, *, normalization: Literal["batchnorm", "fixup"],
                 input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10,
                 weight_decay: float = 0.0, name: str | None = None) -> keras.Model:
    """He et al.'s CIFAR ResNet-`depth` (3 stages of (depth - 2) / 6 post-activation basic blocks, 16/32/64
    filters, option-A shortcuts) as in the authors' released code, AngusG/bn-advex-zhang-fixup
    cifar/models/resnet_cifar.py ("batchnorm") and fixup_resnet_cifar.py ("fixup", no normalisation).

    batchnorm: conv -> BN -> ReLU -> conv -> BN (gamma initialised to 0), BN on the subsampled shortcut,
    kaiming-normal fan-out convs, BN momentum 0.1 and eps 1e-5 (PyTorch's). fixup: scalar biases before each
    conv and activation, a scalar multiplier, branch convs N(0, 2 / fan_out) * L^(-1/2) (L blocks) and zeros,
    a zero classifier. `weight_decay` applies to every parameter, as PyTorch's SGD weight_decay does.
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (8, 20, 32, 56, 110, ...), got {depth}")
    if normalization not in ("batchnorm", "fixup"):
        raise ValueError(f"normalization must be 'batchnorm' or 'fixup', got {normalization!r}")
    blocks, fixup, reg = (depth - 2) // 6, normalization == "fixup", _regularizer(weight_decay)
    fan_out = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
    branch = keras.initializers.VarianceScaling(2.0 / (3 * blocks), "fan_out", "untruncated_normal")

    def bn(name, gamma="ones"):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=gamma,
                                               gamma_regularizer=reg, beta_regularizer=reg, name=name)

    def scalar(kind, name):
        return (ScalarBias if kind == "bias" else ScalarScale)(regularizer=reg, name=name)

    def block(x, filters, stride, name):
        if fixup:
            entry = scalar("bias", f"{name}_bias1a")(x)
            h = _torch_conv(filters, stride, branch, reg, f"{name}_conv1")(entry)
            h = keras.layers.ReLU()(scalar("bias", f"{name}_bias1b")(h))
            h = _torch_conv(filters, 1, "zeros", reg, f"{name}_conv2")(scalar("bias", f"{name}_bias2a")(h))
            h = scalar("bias", f"{name}_bias2b")(scalar("scale", f"{name}_scale")(h))
            shortcut = _subsample_and_widen(entry, filters, name) if stride != 1 else x
        else:
            h = keras.layers.ReLU()(bn(f"{name}_bn1")(_torch_conv(filters, stride, fan_out, reg, f"{name}_conv1")(x)))
            h = bn(f"{name}_bn2", "zeros")(_torch_conv(filters, 1, fan_out, reg, f"{name}_conv2")(h))
            shortcut = x if stride == 1 else _subsample_and_widen(bn(f"{name}_down_bn")(x), filters, name)
        return keras.layers.ReLU()(keras.layers.Add()([h, shortcut]))

    inputs = keras.Input(input_shape)
    x = _torch_conv(16, 1, TORCH_DEFAULT_INIT if fixup else fan_out, reg, "conv1")(inputs)
    x = keras.layers.ReLU()(scalar("bias", "bias1")(x) if fixup else bn("bn1")(x))
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(blocks):
            x = block(x, filters, 2 if stage and not i else 1, f"layer{stage + 1}_{i}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    if fixup:
        x = scalar("bias", "bias2")(x)
    bound = 64 ** -0.5  # PyTorch's Linear bias init U(+-1/sqrt(fan_in))
    head = dict(kernel_initializer="zeros", bias_initializer="zeros") if fixup else dict(
        kernel_initializer=TORCH_DEFAULT_INIT, bias_initializer=keras.initializers.RandomUniform(-bound, bound))
    x = keras.layers.Dense(num_classes, kernel_regularizer=reg, bias_regularizer=reg, name="logits", **head)(x)
    return keras.Model(inputs, x, name=name or f"resnet{depth}_{normalization}")


# --------------------------------------------------------------------------------- BN depth theory
def bn_max_trainable_depth(batch_size: int, correction: float = 16.0) -> float:
    """Maximum trainable depth of a batch-normalised ReLU net vs batch size B (Yang et al. 2019,
    Thm 3.10), as the dashed line of Figure 2, written as in the authors' blog:

        J1(c)  = (sqrt(1 - c^2) + (pi - arccos c) c) / pi,   J1'(c) = -c / (pi sqrt(1 - c^2)) (blog's form)
        lam_G  = [(B - 1 + J1'(-1/(B-1))) / (1 - J1(-1/(B-1))) - 1] / (B - 3)
        depth  = correction / ln(lam_G)
    """
    if batch_size < 4:
        raise ValueError(f"the formula needs batch_size >= 4, got {batch_size}")
    c = -1.0 / (batch_size - 1)
    j1 = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    j1_prime = -c / (math.pi * math.sqrt(1 - c * c))
    lam = ((batch_size - 1 + j1_prime) / (1 - j1) - 1) / (batch_size - 3)
    return correction / math.log(lam)
