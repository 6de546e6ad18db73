"""MobileNetV2 (inverted residuals, depthwise conv, ReLU6, add) and MobileNetV3-small
(hardswish, squeeze-excitation with hardsigmoid and mul), written like torchvision's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._init import scaled


class ConvBNActivation(nn.Sequential):
    """Conv (no bias) + BN + optional activation; children named 0, 1, 2 as torchvision's."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU6,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear project;
    residual add when stride is 1 and the shape is kept."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_planes * expand_ratio
        self.use_res_connect = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(in_planes, hidden, kernel_size=1))
        layers.append(ConvBNActivation(hidden, hidden, stride=stride, groups=hidden))
        layers.append(ConvBNActivation(hidden, out_planes, kernel_size=1, activation=None))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


# (expand ratio t, output channels c, repeats n, first stride s), torchvision's table.
MOBILENET_V2_SETTING = [
    [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]
]


class MobileNetV2(nn.Module):
    """Stem 3x3/2 conv, 17 inverted residuals, 1x1 conv to 1280, pool, dropout, linear."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        in_planes = scaled(32, width)
        last = scaled(1280, max(1.0, width))
        features: list[nn.Module] = [ConvBNActivation(3, in_planes, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            out_planes = scaled(c, width)
            for index in range(n):
                features.append(InvertedResidual(in_planes, out_planes, s if index == 0 else 1, t))
                in_planes = out_planes
        features.append(ConvBNActivation(in_planes, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


class SqueezeExcitation(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(avgpool(x))))), fc = 1x1 conv with bias; the
    hardsigmoid is not in-place, as torchvision's (graph mode leaves `hardsigmoid_` unobserved)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.hardsigmoid(self.fc2(self.relu(self.fc1(scale))))
        return scale * x


class InvertedResidualV3(nn.Module):
    """MobileNetV3 block: optional 1x1 expand, kxk depthwise, optional SE, 1x1 project."""

    def __init__(
        self,
        in_planes: int,
        kernel: int,
        expanded: int,
        out_planes: int,
        use_se: bool,
        activation: type[nn.Module],
        stride: int,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expanded != in_planes:
            layers.append(ConvBNActivation(in_planes, expanded, kernel_size=1, activation=activation))
        layers.append(
            ConvBNActivation(
                expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded, activation=activation
            )
        )
        if use_se:
            layers.append(SqueezeExcitation(expanded, scaled(expanded // 4, 1.0)))
        layers.append(ConvBNActivation(expanded, out_planes, kernel_size=1, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


# (kernel, expanded, out, use SE, activation, stride), torchvision's mobilenet_v3_small table.
MOBILENET_V3_SMALL_SETTING = [
    (3, 16, 16, True, nn.ReLU, 2),
    (3, 72, 24, False, nn.ReLU, 2),
    (3, 88, 24, False, nn.ReLU, 1),
    (5, 96, 40, True, nn.Hardswish, 2),
    (5, 240, 40, True, nn.Hardswish, 1),
    (5, 240, 40, True, nn.Hardswish, 1),
    (5, 120, 48, True, nn.Hardswish, 1),
    (5, 144, 48, True, nn.Hardswish, 1),
    (5, 288, 96, True, nn.Hardswish, 2),
    (5, 576, 96, True, nn.Hardswish, 1),
    (5, 576, 96, True, nn.Hardswish, 1),
]


class MobileNetV3Small(nn.Module):
    """Stem 3x3/2 conv + hardswish, 11 blocks, 1x1 conv + hardswish, pool, linear +
    hardswish + dropout + linear."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        in_planes = scaled(16, width)
        features: list[nn.Module] = [ConvBNActivation(3, in_planes, stride=2, activation=nn.Hardswish)]
        for kernel, expanded, out, use_se, activation, stride in MOBILENET_V3_SMALL_SETTING:
            out_planes = scaled(out, width)
            features.append(
                InvertedResidualV3(in_planes, kernel, scaled(expanded, width), out_planes, use_se, activation, stride)
            )
            in_planes = out_planes
        last_conv = 6 * in_planes
        features.append(ConvBNActivation(in_planes, last_conv, kernel_size=1, activation=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = scaled(1024, width)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, hidden),
            nn.Hardswish(inplace=True),
            nn.Dropout(0.2, inplace=True),
            nn.Linear(hidden, num_classes),
        )
        # The in-place dropout is torchvision's; graph mode then leaves the last linear float
        # (dequantize, dropout_, linear with dequantized int8 weights, quantize).

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)


def mobilenet_v2(num_classes: int = 1000, width: float = 1.0) -> MobileNetV2:
    """MobileNetV2 with width multiplier `width`."""
    return MobileNetV2(num_classes, width)


def mobilenet_v3_small(num_classes: int = 1000, width: float = 1.0) -> MobileNetV3Small:
    """MobileNetV3-small with width multiplier `width`."""
    return MobileNetV3Small(num_classes, width)
