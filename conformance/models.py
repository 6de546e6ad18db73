"""Random whole models, converted by `production.quantize_jit` and checked node by node.

`model_specs()` is a Hypothesis strategy of small CNNs: a stem convolution, then a chain of
blocks drawn from conv (random kernel, stride, padding, dilation, groups incl. depthwise,
optional BN, relu / relu6 / hardswish / none), residual (two convs and an add, optional
relu), concat (two branches, `torch.cat`), max / avg pooling (ceil_mode, padding) and
squeeze-excitation (mean, hardsigmoid gate, mul), and a head (adaptive average pool,
flatten, linear); random qconfig_dict exclusions leave pooling blocks float (float islands:
dequantize, float pool, quantize). `check_spec` builds
the model with seeded weights and BN statistics, calibrates, converts, and runs
`production.verify` on random and tie-heavy inputs. A spec prints as a rebuild recipe, so
a shrunk failure is a small model you can paste.

torch's JIT keeps the types of every scripted and converted module for the life of the
process (about 20 MB per model here): run long campaigns in chunks of a few hundred
models per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch
from hypothesis import strategies as st
from torch import nn

from quantspec.production.quantize import quantize_jit
from quantspec.production.verify import VerifyReport, tie_inputs, verify
from quantspec.reference.ops._pool_common import pooling_output_size

from .strategies import one_in


@dataclass(frozen=True)
class ConvSpec:
    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    depthwise: bool = False
    groups: int = 1
    bn: bool = True
    act: str = "relu"  # relu, relu6, hardswish, none


@dataclass(frozen=True)
class ResidualSpec:
    act: bool = True


@dataclass(frozen=True)
class ConcatSpec:
    branch_channels: int = 4


@dataclass(frozen=True)
class PoolSpec:
    kind: str = "max"  # max, avg
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    ceil_mode: bool = False


@dataclass(frozen=True)
class SqueezeSpec:
    reduced: int = 4


BlockSpec = Union[ConvSpec, ResidualSpec, ConcatSpec, PoolSpec, SqueezeSpec]


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: input size, stem width, blocks, classes, float (excluded) blocks, seed."""

    size: int
    stem: int
    blocks: tuple[BlockSpec, ...]
    classes: int = 5
    excluded: tuple[int, ...] = ()
    seed: int = 0
    batch: int = 2


_ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def _activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]() if name in _ACTIVATIONS else nn.Identity()


# Module constructors take plain values, not the spec dataclasses: TorchScript (2.14)
# inspects constructor annotations and cannot get the source of a dataclass __init__.


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, depthwise: bool = False, groups: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        super().__init__()
        groups = in_channels if depthwise else groups
        out_channels = in_channels if depthwise else out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, groups, bias=not bn)
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.act = _activation(act)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, act: bool) -> None:
        super().__init__()
        self.first = ConvBlock(channels, channels)
        self.second = ConvBlock(channels, channels, act="none")
        self.act = nn.ReLU() if act else nn.Identity()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.second(self.first(x)) + x)


class ConcatBlock(nn.Module):
    def __init__(self, channels: int, branch_channels: int) -> None:
        super().__init__()
        self.left = ConvBlock(channels, branch_channels, kernel=1, padding=0)
        self.right = ConvBlock(channels, branch_channels)
        self.out_channels = 2 * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], 1)


class PoolBlock(nn.Module):
    def __init__(self, channels: int, kind: str, kernel: int, stride: int, padding: int, ceil_mode: bool) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
        else:
            self.pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class SqueezeBlock(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(scale))))


def _block(channels: int, spec: BlockSpec) -> nn.Module:
    if isinstance(spec, ConvSpec):
        return ConvBlock(channels, spec.out_channels, spec.kernel, spec.stride, spec.padding, spec.dilation,
                         spec.depthwise, spec.groups, spec.bn, spec.act)
    if isinstance(spec, ResidualSpec):
        return ResidualBlock(channels, spec.act)
    if isinstance(spec, ConcatSpec):
        return ConcatBlock(channels, spec.branch_channels)
    if isinstance(spec, PoolSpec):
        return PoolBlock(channels, spec.kind, spec.kernel, spec.stride, spec.padding, spec.ceil_mode)
    return SqueezeBlock(channels, spec.reduced)


class RandomNet(nn.Module):
    def __init__(self, stem: nn.Module, blocks: list, features: int, classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build(spec: ModelSpec) -> nn.Module:
    """The float model of `spec`: weights and BN statistics drawn from `spec.seed`, eval mode."""
    generator = torch.Generator().manual_seed(spec.seed)
    blocks, channels = [], spec.stem
    for block_spec in spec.blocks:
        blocks.append(_block(channels, block_spec))
        channels = blocks[-1].out_channels
    model = RandomNet(ConvBlock(3, spec.stem), blocks, channels, spec.classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


def qconfig_dict(spec: ModelSpec) -> dict:
    """Default fbgemm qconfig, with the excluded blocks left float."""
    config: dict = {"": torch.ao.quantization.get_default_qconfig("fbgemm")}
    for index in spec.excluded:
        config[f"blocks.{index}"] = None
    return config


def inputs(spec: ModelSpec, kind: str, converted: torch.jit.ScriptModule) -> torch.Tensor:
    """Random N(0, 1) inputs of the spec's size, or inputs on exact .5 ties of the converted
    model's input quantization (`production.verify.tie_inputs`)."""
    generator = torch.Generator().manual_seed(spec.seed + 1)
    shape = (spec.batch, 3, spec.size, spec.size)
    if kind == "random":
        return torch.randn(shape, generator=generator)
    return tie_inputs(converted, shape, generator)


def convert(spec: ModelSpec) -> torch.jit.ScriptModule:
    """`production.quantize_jit` of the spec's model, calibrated on two seeded batches."""
    generator = torch.Generator().manual_seed(spec.seed + 2)
    data = [torch.randn(spec.batch, 3, spec.size, spec.size, generator=generator) for _ in range(2)]
    return quantize_jit(build(spec), qconfig_dict(spec), lambda model, batches: [model(b) for b in batches], [data])


@dataclass
class SpecResult:
    """Node-by-node results of one spec on random and tie-heavy inputs."""

    spec: ModelSpec
    reports: dict[str, VerifyReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports.values())


def check_spec(spec: ModelSpec, num_threads: int = 1) -> SpecResult:
    """Convert `spec` and verify it node by node on random and tie-heavy inputs."""
    converted = convert(spec)
    result = SpecResult(spec)
    for kind in ("random", "ties"):
        result.reports[kind] = verify(converted, inputs(spec, kind, converted), num_threads=num_threads)
    return result


# --- Hypothesis strategy -------------------------------------------------------------


@st.composite
def conv_specs(draw: st.DrawFn, size: int) -> ConvSpec:
    kernel = draw(st.sampled_from((1, 3, 3, 5)))
    dilation = draw(st.sampled_from((1, 1, 1, 2))) if kernel > 1 else 1
    reach = dilation * (kernel - 1)
    padding = draw(st.integers(0, (reach + 1) // 2)) if reach else 0
    if size + 2 * padding - reach < 1:
        padding = (reach - size + 2) // 2
    stride = draw(st.sampled_from((1, 1, 2)))
    depthwise = kernel > 1 and draw(one_in(4))
    groups = 1 if depthwise else draw(st.sampled_from((1, 1, 2)))
    out_channels = draw(st.sampled_from((4, 6, 8, 12, 16)))
    return ConvSpec(
        out_channels=out_channels, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
        depthwise=depthwise, groups=groups, bn=draw(st.booleans()),
        act=draw(st.sampled_from(("relu", "relu", "relu6", "hardswish", "none"))),
    )


def _conv_out(size: int, spec: ConvSpec) -> int:
    # ATen's conv output size is pooling's floor formula: floor((size + 2p - d(k-1) - 1) / s) + 1.
    return pooling_output_size(size, spec.kernel, spec.padding, spec.stride, spec.dilation, ceil_mode=False)


def _pool_out(size: int, spec: PoolSpec) -> int:
    return pooling_output_size(size, spec.kernel, spec.padding, spec.stride, 1, spec.ceil_mode)


@st.composite
def model_specs(draw: st.DrawFn, max_blocks: int = 5) -> ModelSpec:
    """Small random CNNs (see the module docstring); every spec builds and runs."""
    input_size = draw(st.integers(6, 14))
    stem = draw(st.sampled_from((4, 8, 12)))
    size, channels, blocks = input_size, stem, []
    for _ in range(draw(st.integers(1, max_blocks))):
        kind = draw(st.sampled_from(("conv", "conv", "residual", "concat", "pool", "squeeze")))
        if kind == "conv":
            spec: BlockSpec = draw(conv_specs(size))
            if not spec.depthwise and (channels % spec.groups or spec.out_channels % spec.groups):
                spec = ConvSpec(**{**spec.__dict__, "groups": 1})
            if _conv_out(size, spec) < 1:
                continue
            size = _conv_out(size, spec)
            channels = channels if spec.depthwise else spec.out_channels
        elif kind == "pool":
            kernel = draw(st.sampled_from((2, 3)))
            spec = PoolSpec(draw(st.sampled_from(("max", "avg"))), kernel, draw(st.sampled_from((1, 2))),
                            draw(st.integers(0, kernel // 2)), draw(st.booleans()))
            if size < kernel or _pool_out(size, spec) < 1:
                continue
            size = _pool_out(size, spec)
        elif kind == "residual":
            spec = ResidualSpec(draw(st.booleans()))
        elif kind == "concat":
            spec = ConcatSpec(draw(st.sampled_from((2, 4, 6))))
            channels = 2 * spec.branch_channels
        else:
            spec = SqueezeSpec(draw(st.sampled_from((2, 4))))
        blocks.append(spec)
    # Exclusions leave a block float. Only pooling blocks before the last block: a float
    # conv/linear island is not bit-exact (BLAS summation order, see reference.ops.float_ops)
    # and the head's float adaptive_avg_pool2d is not modelled.
    poolable = [i for i, b in enumerate(blocks[:-1]) if isinstance(b, PoolSpec)]
    excluded: tuple[int, ...] = ()
    if poolable and draw(st.booleans()):
        excluded = (draw(st.sampled_from(poolable)),)
    return ModelSpec(input_size, stem, tuple(blocks), excluded=excluded, seed=draw(st.integers(0, 2**16)))
