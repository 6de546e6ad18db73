"""The CIFAR-10 ResNet-20/56 of He et al. 2016 (section 4.2) with "option A" shortcuts, the
architecture of the pretrained checkpoints in `../shared/data/models` (akamaster/
pytorch_resnet_cifar10). Option A is parameter-free: subsample by 2, zero-pad channels;
quantize_jit leaves that pad as a float island (dequantize, pad, quantize)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShortcutA(nn.Module):
    """x[:, :, ::2, ::2] zero-padded in channels by `pad` on each side."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], [0, 0, 0, 0, self.pad, self.pad], "constant", 0.0)


class BasicBlock(nn.Module):
    """relu(bn1(conv1)), bn2(conv2), add shortcut, relu; functional ReLU as the original."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes // 4) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv3x3(3->16)-BN-ReLU, three stages of n blocks (16, 32, 64 channels), global
    average pool (avg_pool2d over the whole map, as the original), linear."""

    def __init__(self, blocks: int, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        planes = [int(16 * width) * m for m in (1, 2, 4)]
        if planes[0] < 4 or planes[0] % 4:
            raise ValueError(f"width {width} gives {planes[0]} stem channels; option A needs a multiple of 4")
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.in_planes = planes[0]
        self.layer1 = self._make_layer(planes[0], blocks, 1)
        self.layer2 = self._make_layer(planes[1], blocks, 2)
        self.layer3 = self._make_layer(planes[2], blocks, 2)
        self.linear = nn.Linear(planes[2], num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for index in range(blocks):
            layers.append(BasicBlock(self.in_planes, planes, stride if index == 0 else 1))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3))
        return self.linear(out.view(out.size(0), -1))


def cifar_resnet20(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-20 (3 blocks per stage)."""
    return CifarResNet(3, num_classes, width)


def cifar_resnet56(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """CIFAR ResNet-56 (9 blocks per stage)."""
    return CifarResNet(9, num_classes, width)


def load_checkpoint(model: CifarResNet, path: str | Path) -> CifarResNet:
    """Load an akamaster checkpoint (`{'best_prec1', 'state_dict'}` with `module.` keys)
    into `model` (strictly: every key must match); returns the model in eval mode."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: expected a dict with a 'state_dict' entry, got {type(checkpoint).__name__}")
    state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
