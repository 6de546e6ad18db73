"""Conv + BatchNorm folding (`fuse_conv_bn_jit`'s `_jit_pass_fold_convbn`) against
reference.fold.fold_conv_bn, bitwise on the folded float32 weight and bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from hypothesis import strategies as st
from torch.jit._recursive import wrap_cpp_module

from reference.fold import fold_conv_bn
from reference.profile import NumericsProfile

from ..settings import size_scale
from . import OpCheck, register


@dataclass(frozen=True)
class FoldCase:
    """A Conv2d(in, out, kernel, groups, bias) + BatchNorm2d(out, eps, affine), params from `seed`.

    running_var spans 10^var_exponent (down to subnormal-adjacent, where eps dominates).
    """

    in_channels: int
    out_channels: int
    kernel: int
    groups: int
    bias: bool
    affine: bool
    eps: float
    var_exponent: float
    seed: int

    def parameters(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        out = self.out_channels
        weight_shape = (out, self.in_channels // self.groups, self.kernel, self.kernel)
        magnitude = 10.0 ** rng.uniform(-3, 1, out)
        return {
            "weight": (rng.standard_normal(weight_shape) * magnitude.reshape(-1, 1, 1, 1)).astype(np.float32),
            "bias": rng.standard_normal(out).astype(np.float32),
            "mean": (rng.standard_normal(out) * 3).astype(np.float32),
            "var": (rng.random(out) * 10.0**self.var_exponent).astype(np.float32),
            "gamma": rng.standard_normal(out).astype(np.float32),
            "beta": rng.standard_normal(out).astype(np.float32),
        }


@st.composite
def fold_cases(draw: st.DrawFn) -> FoldCase:
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    in_channels = groups * draw(st.integers(1, 8 * size_scale()))  # no batch: channels scale
    out_channels = groups * draw(st.integers(1, 16 * size_scale()))
    return FoldCase(
        in_channels,
        out_channels,
        draw(st.sampled_from([1, 3, 5])),
        groups,
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.sampled_from([1e-5, 1e-3, 0.1, 1e-12, 0.0])),
        draw(st.floats(-40, 3)),
        draw(st.integers(0, 2**32 - 1)),
    )


def reference(case: FoldCase, profile: NumericsProfile) -> np.ndarray:
    del profile  # folding is float32 tensor arithmetic, the same on every profile
    p = case.parameters()
    weight, bias = fold_conv_bn(
        p["weight"],
        p["bias"] if case.bias else None,
        p["mean"],
        p["var"],
        p["gamma"] if case.affine else None,
        p["beta"] if case.affine else None,
        case.eps,
    )
    return np.concatenate([weight.ravel(), bias])


class _ConvBN(torch.nn.Module):
    def __init__(self, case: FoldCase) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(case.in_channels, case.out_channels, case.kernel, groups=case.groups, bias=case.bias)
        self.bn = torch.nn.BatchNorm2d(case.out_channels, eps=case.eps, affine=case.affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def oracle(case: FoldCase) -> np.ndarray:
    p = case.parameters()
    model = _ConvBN(case).eval()
    with torch.no_grad():
        model.conv.weight.copy_(torch.from_numpy(p["weight"]))
        if case.bias:
            model.conv.bias.copy_(torch.from_numpy(p["bias"]))
        model.bn.running_mean.copy_(torch.from_numpy(p["mean"]))
        model.bn.running_var.copy_(torch.from_numpy(p["var"]))
        if case.affine:
            model.bn.weight.copy_(torch.from_numpy(p["gamma"]))
            model.bn.bias.copy_(torch.from_numpy(p["beta"]))
    folded = wrap_cpp_module(torch._C._jit_pass_fold_convbn(torch.jit.script(model)._c))
    return np.concatenate([folded.conv.weight.detach().numpy().ravel(), folded.conv.bias.detach().numpy()])


def label(case: FoldCase) -> Iterator[str]:
    yield "bias" if case.bias else "no-bias"
    yield "affine" if case.affine else "no-affine"
    if case.groups > 1:
        yield "grouped"
    if case.var_exponent < -30:
        yield "tiny-var"


CHECK = register(
    OpCheck(
        name="fold_conv_bn",
        op="torch._C._jit_pass_fold_convbn",
        cases=fold_cases(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=(FoldCase(1, 1, 1, 1, True, True, 1e-5, 0.0, 0),),
        budget={"smoke": 0.25, "default": 0.5, "thorough": 0.25},  # default: >= 10^6 values
    )
)
