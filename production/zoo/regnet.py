"""A RegNetX-style net: stages of bottleneck blocks whose 3x3 conv is grouped (fixed group
width), written like torchvision's RegNet (`ResBottleneckBlock`, bottleneck ratio 1, no SE).
Group widths 8 and 16 put the 3x3 convs on FBGEMM's groupwise path."""

from __future__ import annotations

from torch import Tensor, nn

from ._init import scaled


def conv_bn(in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv (no bias) + BN."""
    return [
        nn.Conv2d(in_planes, out_planes, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_planes),
    ]


class ResBottleneckBlock(nn.Module):
    """1x1-BN-ReLU, grouped 3x3(stride)-BN-ReLU, 1x1-BN; projection shortcut when the shape
    changes; add, ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.proj = (
            nn.Sequential(*conv_bn(in_planes, out_planes, 1, stride))
            if stride != 1 or in_planes != out_planes
            else None
        )
        self.f = nn.Sequential(
            *conv_bn(in_planes, out_planes, 1),
            nn.ReLU(inplace=True),
            *conv_bn(out_planes, out_planes, 3, stride, out_planes // group_width),
            nn.ReLU(inplace=True),
            *conv_bn(out_planes, out_planes, 1),
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


# (width, depth, group width) per stage, after RegNetX-200MF (group widths varied on purpose).
REGNET_SETTING = [(24, 1, 8), (56, 1, 8), (152, 4, 16), (368, 7, 16)]


class RegNet(nn.Module):
    """Stem 3x3/2 conv-BN-ReLU (32), four stages (first block stride 2), pool, fc."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        in_planes = scaled(32, width)
        self.stem = nn.Sequential(*conv_bn(3, in_planes, 3, 2), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        for planes, depth, group_width in REGNET_SETTING:
            out_planes = scaled(planes, width, group_width)
            blocks = (
                ResBottleneckBlock(in_planes if i == 0 else out_planes, out_planes, 2 if i == 0 else 1, group_width)
                for i in range(depth)
            )
            stages.append(nn.Sequential(*blocks))
            in_planes = out_planes
        self.trunk_output = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.trunk_output(self.stem(x))
        return self.fc(self.avgpool(x).flatten(1))


def regnet(num_classes: int = 1000, width: float = 1.0) -> RegNet:
    """RegNetX-200MF-style net scaled by `width`."""
    return RegNet(num_classes, width)
