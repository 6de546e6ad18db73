"""ShuffleNetV2 (chunk, channel shuffle by view/transpose/contiguous, cat), written like
torchvision's."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._init import scaled


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of `groups` groups: view as (N, g, C/g, H, W), swap dims 1-2."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, -1, height, width)


def depthwise_bn(channels: int, stride: int) -> list[nn.Module]:
    """3x3 depthwise conv + BN (no activation, as in ShuffleNetV2)."""
    return [nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False), nn.BatchNorm2d(channels)]


def pointwise_bn_relu(in_planes: int, out_planes: int) -> list[nn.Module]:
    """1x1 conv + BN + ReLU."""
    return [nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes), nn.ReLU(inplace=True)]


class ShuffleUnit(nn.Module):
    """Stride 1: split channels in two, transform one half, cat, shuffle.
    Stride 2: both branches see the whole input and halve the resolution."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_planes // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*depthwise_bn(in_planes, stride), *pointwise_bn_relu(in_planes, half))
        else:
            self.branch1 = nn.Sequential()
        branch_in = in_planes if stride > 1 else half
        self.branch2 = nn.Sequential(
            *pointwise_bn_relu(branch_in, half), *depthwise_bn(half, stride), *pointwise_bn_relu(half, half)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """Stem 3x3/2 conv + max-pool, three stages (4, 8, 4 units), 1x1 conv, mean, fc."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        # Multiples of 4 (two even halves), exactly torchvision's x1.0 widths at width 1.
        stage_out = [max(8, round(c * width / 4) * 4) for c in (116, 232, 464)]
        stem = scaled(24, width)
        last = scaled(1024, max(1.0, width))
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = stem
        stages: list[nn.Sequential] = []
        for repeats, out_planes in zip((4, 8, 4), stage_out):
            units = [ShuffleUnit(in_planes, out_planes, 2)]
            units += [ShuffleUnit(out_planes, out_planes, 1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            in_planes = out_planes
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*pointwise_bn_relu(in_planes, last))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        x = x.mean([2, 3])
        return self.fc(x)


def shufflenet_v2(num_classes: int = 1000, width: float = 1.0) -> ShuffleNetV2:
    """ShuffleNetV2 x1.0 scaled by `width`."""
    return ShuffleNetV2(num_classes, width)
