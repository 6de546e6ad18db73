"""The model zoo: TorchScript-able architectures, written for quantspec like torchvision's
definitions, one module per family. `ZOO` maps a name to its builder; `build` returns a
seeded, randomly initialised model in eval mode (non-trivial BN statistics), small when
asked (`width` < 1; every model takes inputs down to 32x32)."""

from __future__ import annotations

from typing import Callable

from torch import nn
from torch.ao.quantization import QConfig, get_default_qconfig

from ._init import randomize
from .cifar_resnet import cifar_resnet20, cifar_resnet56, load_checkpoint
from .googlenet import googlenet
from .islands import island_net, island_qconfig_dict
from .mobilenet import mobilenet_v2, mobilenet_v3_small
from .regnet import regnet
from .resnet import resnet18, resnet50
from .shufflenet import shufflenet_v2
from .squeezenet import squeezenet

Builder = Callable[..., nn.Module]

ZOO: dict[str, Builder] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": mobilenet_v3_small,
    "shufflenet_v2": shufflenet_v2,
    "googlenet": googlenet,
    "squeezenet": squeezenet,
    "regnet": regnet,
    "cifar_resnet20": cifar_resnet20,
    "cifar_resnet56": cifar_resnet56,
    "island_net": island_net,
}

# Models quantized with exclusions; every other model uses {"": default fbgemm qconfig}.
QCONFIG_DICTS: dict[str, Callable[[], dict[str, QConfig | None]]] = {"island_net": island_qconfig_dict}


def build(name: str, num_classes: int = 10, width: float = 1.0, seed: int = 0) -> nn.Module:
    """Model `name` with `num_classes` outputs, channels scaled by `width`, weights and BN
    statistics drawn from `seed`; in eval mode, ready for `torch.jit.script`."""
    if name not in ZOO:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ZOO))}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return randomize(ZOO[name](num_classes=num_classes, width=width), seed).eval()


def qconfig_dict(name: str) -> dict[str, QConfig | None]:
    """The qconfig_dict model `name` is meant to be quantized with."""
    if name not in ZOO:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ZOO))}")
    factory = QCONFIG_DICTS.get(name)
    return factory() if factory else {"": get_default_qconfig("fbgemm")}


__all__ = ["ZOO", "build", "load_checkpoint", "qconfig_dict", "randomize"]
