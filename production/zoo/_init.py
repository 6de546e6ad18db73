"""Deterministic random initialisation for zoo models.

Quantization is only meaningful when BN statistics are not the identity, so BN layers get
random affine parameters and running statistics near (not at) the statistics of their real
input; every draw comes from one seeded `torch.Generator`, so a model built twice with the
same seed is bit-identical.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..environment import torch_threads

CALIBRATION_SHAPE = (4, 3, 64, 64)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every conv/linear/BN of `model` with seeded random values, in place; returns it
    in eval mode.

    Conv and linear weights are He-normal; biases and BN shifts small normals; BN scales
    uniform in [0.5, 1.5]. BN running statistics come from one forward pass of a seeded
    random batch (shape `CALIBRATION_SHAPE`), on one torch thread (float convs sum in a
    thread-count-dependent order, so the statistics would otherwise depend on the
    machine's thread setting): each BN's running mean is its input's channel
    mean plus 0.2 standard deviations of noise, its running variance the input variance
    times a factor uniform in [0.5, 2] (the standard deviation floored at half the
    layer's median). Activations thus stay O(1) through any depth while
    no BN is an identity or an exact normalisation.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.05, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
        _set_running_statistics(model.eval(), generator)
    return model


def _set_running_statistics(model: nn.Module, generator: torch.Generator) -> None:
    """Set each BN's running statistics from its input during one forward pass (pre-hooks
    run in execution order, so later BNs see already-initialised earlier ones)."""

    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)
        mean, std = x.mean(1), x.std(1)
        # Deep layers see few pixels: keep a near-constant channel from getting a tiny
        # variance that would blow up other inputs.
        std = std.clamp_min(0.5 * float(std.median()) + 1e-3)
        module.running_mean.copy_(mean + 0.2 * std * torch.randn(mean.shape, generator=generator))
        module.running_var.copy_(std.square() * torch.empty(mean.shape).uniform_(0.5, 2.0, generator=generator))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch_threads(1):
            model(torch.randn(CALIBRATION_SHAPE, generator=generator))
    finally:
        for handle in handles:
            handle.remove()


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """`channels * width` rounded to a multiple of `divisor` (at least `divisor`), like
    torchvision's `_make_divisible`: never more than 10% below the exact product."""
    if width <= 0:
        raise ValueError(f"width multiplier must be > 0, got {width}")
    value = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    if value < 0.9 * channels * width:
        value += divisor
    return value
