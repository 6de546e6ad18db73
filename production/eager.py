"""Eager-mode post-training quantization of the CIFAR ResNets, for `quantspec compare`.

Eager mode cannot quantize an arbitrary model: it needs a *quantizable copy* of the
architecture, with `QuantStub`/`DeQuantStub` at the edges, explicit ReLU modules to fuse,
and `FloatFunctional` for tensor arithmetic. This is that copy of the CIFAR ResNet of
`../shared/data/models` (He et al. 2016, option-A shortcuts), with the same parameter
names (conv1, bn1, layerS.N.conv1/bn1/conv2/bn2, linear), so it loads the same checkpoint.

How the shortcut and the add are quantized, and why it matters for comparing with graph mode:
- The residual add and its ReLU are one `FloatFunctional.add_relu`, converted to
  `quantized::add_relu` (graph mode fuses `add` + `relu` into the same op).
- The option-A shortcut `pad(x[:, :, ::2, ::2])` runs directly on the quantized tensor:
  strided slicing keeps the qparams, and `constant_pad_nd` on a quantized tensor pads with
  the zero point, i.e. exactly 0.0, so it needs no observer and loses nothing. Graph mode
  instead leaves it a float island (dequantize, pad, add, ReLU, quantize), so the two modes
  can differ on the downsampling blocks (on ResNet-20 with 1,000 calibration images both
  still score 80.92% top-1; docs/compare-resnet20.md).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, convert, fuse_modules, get_default_qconfig, prepare

from .environment import fbgemm_engine, known_deprecations_silenced
from .zoo.cifar_resnet import ShortcutA

# The zoo's CIFAR ResNets (production.zoo names) by depth: depth = 6n + 2, n blocks per stage.
CIFAR_RESNET_DEPTHS = {"cifar_resnet20": 20, "cifar_resnet56": 56}


class QuantizableBasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, ReLU; with modules eager mode can fuse."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        downsample = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = ShortcutA(planes // 4) if downsample else nn.Identity()
        self.skip_add = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.skip_add.add_relu(out, self.shortcut(x))

    def fuse(self) -> None:
        fuse_modules(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2"]], inplace=True)


class QuantizableCifarResNet(nn.Module):
    """The CIFAR ResNet (16/32/64 channels, n blocks per stage) between Quant/DeQuant stubs."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth {depth}: expected 6n + 2 (20, 32, 44, 56, 110)")
        blocks = (depth - 2) // 6
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = _stage(16, 16, blocks, 1)
        self.layer2 = _stage(16, 32, blocks, 2)
        self.layer3 = _stage(32, 64, blocks, 2)
        self.linear = nn.Linear(64, num_classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(self.quant(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3))  # as the float model: quantized avg_pool2d, input qparams
        return self.dequant(self.linear(out.view(out.size(0), -1)))

    def fuse(self) -> None:
        """Fold every BN into its conv and fuse the following ReLU (eval mode only)."""
        fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                block.fuse()


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    strides = [stride] + [1] * (blocks - 1)
    layers = []
    for s in strides:
        layers.append(QuantizableBasicBlock(in_planes, planes, s))
        in_planes = planes
    return nn.Sequential(*layers)


def quantizable_copy(arch: str, state_dict: Mapping[str, torch.Tensor]) -> QuantizableCifarResNet:
    """The quantizable copy of `arch` in eval mode, holding the float weights `state_dict`.

    `state_dict` is the float model's (e.g. `float_model.state_dict()`, scripted or not);
    its keys must be exactly the architecture's parameter and buffer names.
    """
    if arch not in CIFAR_RESNET_DEPTHS:
        raise ValueError(f"no eager-mode quantizable copy of {arch!r}; available: {sorted(CIFAR_RESNET_DEPTHS)}")
    model = QuantizableCifarResNet(CIFAR_RESNET_DEPTHS[arch])
    model.load_state_dict(dict(state_dict), strict=True)
    return model.eval()


def quantize_eager(
    model: QuantizableCifarResNet, calibrate: Callable[[nn.Module, Iterable], None], calibrate_args: Iterable
) -> nn.Module:
    """Eager PTQ as in torch's tutorial: fuse, default fbgemm qconfig, prepare, calibrate, convert.

    Runs under the fbgemm engine (prepack happens in `convert`) with torch's known deprecation
    warnings silenced; `model` is modified in place.
    """
    with known_deprecations_silenced(), fbgemm_engine():
        model.eval()
        model.fuse()
        model.qconfig = get_default_qconfig("fbgemm")
        prepare(model, inplace=True)
        calibrate(model, calibrate_args)
        return convert(model, inplace=True)
