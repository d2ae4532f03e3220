"""The networks of Kamath et al. 2019 (Table 1) and the CIFAR-10 ResNet18 they train beside them.

Table 1 gives layer types, kernel sizes and widths only. tfadv's reading of what it leaves open:
ReLU after every conv and hidden FC layer; 'valid' convolutions in M1 and StdCNN (M1 then feeds a
20x20x20 = 8000-wide map into FC(500) on MNIST, as no pooling is listed). C1 is Yao et al.'s, as the paper
says, so it follows their code (`HessianFlow/models/c1.py`, the TF CIFAR-10 tutorial network with BatchNorm
for LRN): 'same' 5x5 convolutions, then ReLU, BatchNorm and 3x3 max-pooling with stride 2, in that order
(Table 1 abbreviates it Conv-MP-BN). BatchNorm layers use PyTorch's defaults, as HessianFlow's do: Keras
momentum 0.9 (PyTorch's 0.1) and epsilon 1e-5. "SM(10)" is the softmax: models output logits unless
`logits=False`, which appends a float32 softmax so the probabilities stay float32 under a mixed-precision
policy.
"""
from __future__ import annotations

import keras

layers = keras.layers
#: PyTorch's BatchNorm2d defaults (running-average momentum 0.1, eps 1e-5) in Keras' convention.
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5


def _batch_norm(name: str):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _head(x, num_classes: int, logits: bool):
    outputs = layers.Dense(num_classes, name="logits")(x)
    if not logits:
        outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(outputs)
    return outputs


def m1(input_shape=(28, 28, 1), num_classes: int = 10, logits: bool = True) -> keras.Model:
    """M1: Conv(5,5,20) - Conv(5,5,20) - FC(500) - SM(10)."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(20, 5, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(20, 5, activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(500, activation="relu", name="fc1")(x)
    return keras.Model(inputs, _head(x, num_classes, logits), name="m1")


def std_cnn(input_shape=(28, 28, 1), num_classes: int = 10, logits: bool = True) -> keras.Model:
    """StdCNN: Conv(3,3,10) - Conv(3,3,10) - MP(2,2) - Conv(3,3,20) - Conv(3,3,20) - MP(2,2) - FC(50) -
    Dropout(0.5) - FC(10) - SM(10)."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(10, 3, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(10, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(20, 3, activation="relu", name="conv3")(x)
    x = layers.Conv2D(20, 3, activation="relu", name="conv4")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(50, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, _head(x, num_classes, logits), name="std_cnn")


def c1(input_shape=(32, 32, 3), num_classes: int = 10, logits: bool = True) -> keras.Model:
    """C1 (HessianFlow's): [Conv(5,5,64) - ReLU - BN - MP(3,3)/2] x 2 - FC(384) - FC(192) - SM(10)."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i in (1, 2):
        x = layers.Conv2D(64, 5, padding="same", activation="relu", name=f"conv{i}")(x)
        x = _batch_norm(f"bn{i}")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(384, activation="relu", name="fc1")(x)
    x = layers.Dense(192, activation="relu", name="fc2")(x)
    return keras.Model(inputs, _head(x, num_classes, logits), name="c1")


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = _batch_norm(f"{name}_bn1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = _batch_norm(f"{name}_bn2")(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = _batch_norm(f"{name}_proj_bn")(shortcut)
    return layers.ReLU()(layers.Add()([x, shortcut]))


def resnet18(input_shape=(32, 32, 3), num_classes: int = 10, logits: bool = True) -> keras.Model:
    """ResNet18 for CIFAR-10 (11.2 M parameters): He et al.'s BasicBlock stages [2, 2, 2, 2] of 64-512
    filters with 1x1 projection shortcuts, but the usual CIFAR stem, one 3x3 conv and no max-pool, instead
    of ImageNet's 7x7/2 conv + 3x3/2 pool (which would leave a 1x1 map at 32x32). The paper says only
    "ResNet18 as in He et al. (2016)"; this stem, and C1's BatchNorm defaults, are tfadv's choice."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU()(_batch_norm("stem_bn")(x))
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, stride, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(x, num_classes, logits), name="resnet18")


#: Model builders by the paper's names.
MODELS = {"M1": m1, "StdCNN": std_cnn, "C1": c1, "ResNet18": resnet18}
