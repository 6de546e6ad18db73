"""SqueezeNet 1.1 (fire modules: squeeze 1x1, expand 1x1 and 3x3 joined by cat), written
like torchvision's."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._init import scaled


class Fire(nn.Module):
    """relu(squeeze 1x1), then cat(relu(expand 1x1), relu(expand 3x3))."""

    def __init__(self, in_planes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_planes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_planes = expand1x1 + expand3x3

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


# (squeeze, expand) per fire module of SqueezeNet 1.1; None marks a ceil_mode max-pool.
SQUEEZENET_SETTING = [
    None, (16, 64), (16, 64), None, (32, 128), (32, 128), None, (48, 192), (48, 192), (64, 256), (64, 256)
]


class SqueezeNet(nn.Module):
    """3x3/2 conv + ReLU, fire modules between ceil_mode max-pools, dropout, 1x1 conv
    classifier + ReLU, global average pool."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        in_planes = scaled(64, width)
        layers: list[nn.Module] = [nn.Conv2d(3, in_planes, 3, stride=2), nn.ReLU(inplace=True)]
        for setting in SQUEEZENET_SETTING:
            if setting is None:
                layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
                continue
            fire = Fire(in_planes, scaled(setting[0], width), scaled(setting[1], width), scaled(setting[1], width))
            layers.append(fire)
            in_planes = fire.out_planes
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(in_planes, num_classes, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet(num_classes: int = 1000, width: float = 1.0) -> SqueezeNet:
    """SqueezeNet 1.1 scaled by `width`."""
    return SqueezeNet(num_classes, width)
