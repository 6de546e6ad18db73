"""A GoogLeNet/Inception-v1-style net (four-branch inception blocks joined by cat,
max-pools with ceil_mode), written like torchvision's GoogLeNet without the aux heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._init import scaled


class BasicConv2d(nn.Module):
    """Conv (no bias) + BN (eps 0.001) + ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Branches 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool(3, ceil)->1x1, concatenated."""

    def __init__(
        self, in_planes: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_planes, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_planes, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_planes, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_planes, pool_proj, 1)
        )
        self.out_planes = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# torchvision's GoogLeNet inception configurations (before the width multiplier).
INCEPTION_SETTING = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """Stem (7x7/2, pool, 1x1, 3x3, pool), inception 3a-b, pool, 4a-e, pool, 5a-b, pool,
    dropout, fc. All max-pools use ceil_mode=True, as torchvision's."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, scaled(64, width), 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(scaled(64, width), scaled(64, width), 1)
        self.conv3 = BasicConv2d(scaled(64, width), scaled(192, width), 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_planes = scaled(192, width)
        blocks: dict[str, Inception] = {}
        for name, channels in INCEPTION_SETTING.items():
            blocks[name] = Inception(in_planes, *(scaled(c, width) for c in channels))
            in_planes = blocks[name].out_planes
        self.inception3a, self.inception3b = blocks["inception3a"], blocks["inception3b"]
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a, self.inception4b, self.inception4c = (
            blocks["inception4a"], blocks["inception4b"], blocks["inception4c"]
        )
        self.inception4d, self.inception4e = blocks["inception4d"], blocks["inception4e"]
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a, self.inception5b = blocks["inception5a"], blocks["inception5b"]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.maxpool4(self.inception4e(self.inception4d(x)))
        x = self.inception5b(self.inception5a(x))
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x)


def googlenet(num_classes: int = 1000, width: float = 1.0) -> GoogLeNet:
    """GoogLeNet (no aux heads, no input transform) scaled by `width`."""
    return GoogLeNet(num_classes, width)
