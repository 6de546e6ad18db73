"""Conv + BatchNorm folding (`fuse_conv_bn_jit`'s `_jit_pass_fold_convbn`) against
reference.fold.fold_conv_bn, bitwise on the folded float32 weight and bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from hypothesis import strategies as st
from torch.jit._recursive import wrap_cpp_module

from quantspec.reference.fold import fold_conv_bn
from quantspec.reference.profile import NumericsProfile

from ..settings import size_scale
from . import OpCheck, register


@dataclass(frozen=True)
class FoldCase:
    """A Conv2d(in, out, kernel, groups, bias) + BatchNorm2d(out, eps, affine), params from `seed`.

    running_var spans 10^var_exponent (down to subnormal-adjacent, where eps dominates);
    a `special_var` fraction of channels (drawn after every other parameter, so the rest
    do not move) then takes a value whose `var + eps` is +0 (rsqrt +inf: infinite or, times
    a zero, NaN weights) or negative (sqrt NaN, the x86 default NaN 0xffc00000, which every
    later step propagates): 0, -0.0, -f32(eps), or -(f32(eps) + 10^u), u in [-45, 1]
    (negative, or -f32(eps) when 10^u is below eps's precision).
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
    special_var: float = 0.0

    def parameters(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        out = self.out_channels
        weight_shape = (out, self.in_channels // self.groups, self.kernel, self.kernel)
        magnitude = 10.0 ** rng.uniform(-3, 1, out)
        params = {
            "weight": (rng.standard_normal(weight_shape) * magnitude.reshape(-1, 1, 1, 1)).astype(np.float32),
            "bias": rng.standard_normal(out).astype(np.float32),
            "mean": (rng.standard_normal(out) * 3).astype(np.float32),
            "var": (rng.random(out) * 10.0**self.var_exponent).astype(np.float32),
            "gamma": rng.standard_normal(out).astype(np.float32),
            "beta": rng.standard_normal(out).astype(np.float32),
        }
        special = rng.random(out) < self.special_var
        eps = np.float32(self.eps)
        negative = (-(np.float64(eps) + 10.0 ** rng.uniform(-45, 1, out))).astype(np.float32)
        choices = np.stack([np.zeros(out), np.full(out, -0.0), np.full(out, -eps), negative], axis=1)
        kind = rng.integers(0, 4, out)
        params["var"] = np.where(special, choices[np.arange(out), kind], params["var"]).astype(np.float32)
        return params


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
        draw(st.sampled_from([0.0, 0.0, 0.25, 1.0])),
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
        self.conv = torch.nn.Conv2d(
            case.in_channels, case.out_channels, case.kernel, groups=case.groups, bias=case.bias
        )
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
    var_eps = case.parameters()["var"] + np.float32(case.eps)
    if (var_eps == 0).any():
        yield "var+eps=0"
    if (var_eps < 0).any():
        yield "var+eps<0"


CHECK = register(
    OpCheck(
        name="fold_conv_bn",
        op="torch._C._jit_pass_fold_convbn",
        cases=fold_cases(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=(FoldCase(1, 1, 1, 1, True, True, 1e-5, 0.0, 0), FoldCase(2, 8, 3, 1, True, True, 0.0, 0.0, 3, 1.0)),
        budget={"smoke": 0.25, "default": 0.7, "thorough": 0.25},  # default: >= 10^6 values
    )
)
