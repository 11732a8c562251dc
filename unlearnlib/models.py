"""Model architectures used across the course.

Introduced in the Background chapter ({ref}`chap-background`).

Every model takes ``input_shape`` (C, H, W) and ``num_classes`` and returns logits.
Convolutional models also take a ``width`` multiplier on their channel counts, so that the
paper architectures (``width=1``) and CPU-sized variants (e.g. ``width=0.25``) share code.
Each model lists in ``feature_layers`` the names of the submodules whose outputs are its
spatial feature maps; attention transfer ({mod}`unlearnlib.distill`) hooks those layers.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "LeNet5", "SISACNN", "AllCNN", "ResNet9", "MODELS", "build_model", "count_parameters"]


def _check_shape(input_shape, num_classes):
    if len(tuple(input_shape)) != 3 or any(int(s) <= 0 for s in input_shape):
        raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return tuple(int(s) for s in input_shape), int(num_classes)


def _channels(base: int, width: float) -> int:
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, int(round(base * width)))


def _flat_size(module: nn.Module, input_shape) -> int:
    with torch.no_grad():
        return module(torch.zeros(1, *input_shape)).flatten(1).shape[1]


class MLP(nn.Module):
    """Fully connected network: flatten, ``hidden`` ReLU layers, linear output."""

    feature_layers: tuple[str, ...] = ()

    def __init__(self, input_shape, num_classes, hidden=(256, 128), width: float = 1.0):
        super().__init__()
        input_shape, num_classes = _check_shape(input_shape, num_classes)
        sizes = [input_shape[0] * input_shape[1] * input_shape[2]]
        sizes += [_channels(h, width) for h in hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.

    The first convolution pads by 2 so that 28x28 MNIST gives the classic 16x5x5 feature
    map; inputs smaller than 10x10 after the first pooling are padded in the second
    convolution too, so the 8x8 digits work.
    """

    feature_layers = ("conv1", "conv2")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        super().__init__()
        (c, h, w), num_classes = _check_shape(input_shape, num_classes)
        c1, c2 = _channels(6, width), _channels(16, width)
        pad2 = 0 if min(h, w) // 2 >= 10 else 2
        self.conv1 = nn.Sequential(nn.Conv2d(c, c1, 5, padding=2), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5, padding=pad2), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        trunk = nn.Sequential(self.conv1, self.pool1, self.conv2, self.pool2)
        flat = _flat_size(trunk, (c, h, w))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, _channels(120, width)), nn.ReLU(),
            nn.Linear(_channels(120, width), _channels(84, width)), nn.ReLU(),
            nn.Linear(_channels(84, width), num_classes),
        )

    def forward(self, x):
        return self.head(self.pool2(self.conv2(self.pool1(self.conv1(x)))))


class SISACNN(nn.Module):
    """The SISA paper's MNIST network: two 5x5 convolutions (32, 64 channels), each
    followed by 2x2 max-pooling, then a 128-unit hidden layer and the output layer.
    """

    feature_layers = ("conv1", "conv2")

    def __init__(self, input_shape, num_classes, width: float = 1.0, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        (c, h, w), num_classes = _check_shape(input_shape, num_classes)
        c1, c2 = _channels(32, width), _channels(64, width)
        self.conv1 = nn.Sequential(nn.Conv2d(c, c1, 5, padding=2), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        flat = _flat_size(nn.Sequential(self.conv1, self.pool1, self.conv2, self.pool2), (c, h, w))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.pool2(self.conv2(self.pool1(self.conv1(x)))))


def _conv_bn(c_in, c_out, kernel=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) with batch normalisation, as used by the
    zero-shot unlearning paper: eight convolution blocks (96 and 192 channels at
    ``width=1``; strided convolutions instead of pooling), global average pooling and a
    linear classifier.
    """

    feature_layers = tuple(f"block{i}" for i in range(1, 9))

    def __init__(self, input_shape, num_classes, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        (c, _, _), num_classes = _check_shape(input_shape, num_classes)
        f1, f2 = _channels(96, width), _channels(192, width)
        self.block1 = _conv_bn(c, f1)
        self.block2 = _conv_bn(f1, f1)
        self.block3 = _conv_bn(f1, f2, stride=2)
        self.drop1 = nn.Dropout(dropout)
        self.block4 = _conv_bn(f2, f2)
        self.block5 = _conv_bn(f2, f2)
        self.block6 = _conv_bn(f2, f2, stride=2)
        self.drop2 = nn.Dropout(dropout)
        self.block7 = _conv_bn(f2, f2)
        self.block8 = _conv_bn(f2, f2, kernel=1)
        self.classifier = nn.Linear(f2, num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        x = self.block6(self.block5(self.block4(self.drop1(x))))
        x = self.block8(self.block7(self.drop2(x)))
        # a plain mean rather than AdaptiveAvgPool2d: its CUDA backward is nondeterministic
        return self.classifier(x.mean(dim=(2, 3)))


class _Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet-9 in the style of Myrtle.ai's fast CIFAR-10 network (64-128-256-512 channels
    at ``width=1``), with global max-pooling, so any input of at least 8x8 works.
    """

    feature_layers = ("prep", "layer1", "layer2", "layer3")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        super().__init__()
        (c, _, _), num_classes = _check_shape(input_shape, num_classes)
        w1, w2, w3, w4 = (_channels(b, width) for b in (64, 128, 256, 512))
        self.prep = _conv_bn(c, w1)
        self.layer1 = nn.Sequential(_conv_bn(w1, w2), nn.MaxPool2d(2), _Residual(w2))
        self.layer2 = nn.Sequential(_conv_bn(w2, w3), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv_bn(w3, w4), nn.MaxPool2d(2), _Residual(w4))
        self.classifier = nn.Linear(w4, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.classifier(x.amax(dim=(2, 3)))


MODELS = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "sisa_cnn": SISACNN,
    "allcnn": AllCNN,
    "resnet9": ResNet9,
}


def build_model(name: str, input_shape, num_classes: int, **kwargs) -> nn.Module:
    """Build a model by name: ``mlp``, ``lenet5``, ``sisa_cnn``, ``allcnn``, ``resnet9``.

    Extra keyword arguments (``width``, ``dropout``, ``hidden``) go to the constructor.
    Introduced in {ref}`chap-background`.
    """
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[key](input_shape, num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters. Introduced in {ref}`chap-background`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
