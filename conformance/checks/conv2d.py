"""quantized::conv2d / conv2d_relu (fbgemm) against reference.ops.conv2d, on every FBGEMM path;
and the reference's fast kernel (`reference.fast.conv2d`) against the same plain definition.

Cases are drawn per target path ("depthwise", "groupwise", "pointwise", "im2col") and the
strategy asserts that `conv_path` agrees, so each path is reached by construction; the
labels count cases per path. Two more targets: "deep" (|acc| > 2^24, below) and
"winograd", stride-1 3x3 convs with 14x14 to 20x20 outputs, where the fast kernel forms the
sums by Winograd F(2x2, 3x3) when its exactness bound holds (label "winograd" when the
drawn kinds guarantee it, `takes_winograd`) and by the im2col GEMM otherwise. The hard
inputs: activations near 255 and a_zp > 127 (int16 pair saturation, also on depthwise
borders, where padding reads a_zp), extreme weights, K large enough for |acc| > 2^24, tiny
output scales (the INT32_MIN pitfall), per-tensor and per-channel weights with zero and
odd zero points, biases on requantization ties, relu, and channel counts that are not
multiples of 8/16/32 (vector tails).

Two torch facts shape the cases (see docs/spec.md, "Convolution and linear"):
* FBGEMM's groupwise kernel is broken when groups is not a multiple of G_together (heap
  corruption, nondeterministic outputs, sometimes an abort): those configurations are
  never drawn.
* `FBGEMM_ENABLE_INSTRUCTIONS` (how conformance emulates AVX2/AVX512 CPUs) does not reach
  the groupwise path: its kernel choice and G_together follow CPUID. Cases on that path
  are checked against the hardware's profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from quantspec.production.environment import detect_cpu_features, hardware_cpu_features
from quantspec.reference import fast
from quantspec.reference.fast.conv2d import WINOGRAD_MIN_PIXELS
from quantspec.reference.ops import conv2d, conv_path
from quantspec.reference.ops.conv2d import groups_together
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import oracles
from ..settings import size_scale
from ..targets import TargetCall
from . import OpCheck, explained, register
from ._gemm_cases import (
    ACT_RANGES,
    W_MAX_ABS,
    gemm_operands,
    gemm_qparams,
    gemm_weight_arguments,
    pairs_saturate,
    qparam_labels,
    typical_acc_above_2_24,
)

PATHS = ("depthwise", "groupwise", "pointwise", "im2col")


HARDWARE_CPU = hardware_cpu_features()  # what FBGEMM's CPUID checks see


@dataclass(frozen=True)
class ConvCase:
    """A conv2d case: structure and qparams as drawn; arrays expand from `seed` (`arrays()`)."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    act_scale: float
    act_zero_point: int
    act_kind: str
    w_per_channel: bool
    w_scale: float
    w_zero_point_kind: str
    w_kind: str
    bias_kind: str
    out_scale_rel: float
    out_zero_point: int
    relu: bool
    seed: int

    @property
    def depth(self) -> int:
        """K of one output: kH * kW * in_channels / groups."""
        return self.kernel[0] * self.kernel[1] * self.in_channels // self.groups

    def arrays(self) -> tuple[QTensor, QTensor, Optional[np.ndarray], float]:
        """(x, weight, bias, output_scale), deterministic for the case."""
        x_shape = (self.batch, self.in_channels) + self.size
        w_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel
        return gemm_operands(self, x_shape, w_shape, self.depth)

    def path(self, cpu: str = HARDWARE_CPU) -> str:
        """The FBGEMM path of this configuration on a CPU with these features."""
        profile = NumericsProfile("2.13", cpu)
        return conv_path(self.in_channels, self.out_channels, self.kernel, self.stride, self.padding,
                         self.dilation, self.groups, profile)


# --- Winograd by construction (a label) -------------------------------------------------------

WINOGRAD_CPU = not NumericsProfile("2.13", detect_cpu_features()).gemm_pairs_saturate  # VNNI: no pair saturation


def takes_winograd(case: ConvCase) -> bool:
    """Whether the fast kernel forms this case's sums by Winograd F(2x2, 3x3) by construction:
    a single-group stride-1 3x3 conv with `WINOGRAD_MIN_PIXELS` outputs per image on a VNNI
    CPU, whose kinds guarantee Winograd's exactness bound (`fast.winograd.winograd_is_exact`).
    That bound, 4 * (max tile sum of squares) * (max over positions and output channels of
    sum_c U'^2) <= 2^48, holds whenever
    4 * (16 C A^2) * (C (9 W)^2) <= 2^48, with A = max |a - a_zp| and W = max |w - w_zp|
    (|U'| <= 9 W): C A W <= 2^24 / 72. Cases that meet the bound by chance are not counted."""
    out_hw = [s + 2 * p - 2 for s, p in zip(case.size, case.padding)]
    shape = case.kernel == (3, 3) and case.stride == case.dilation == (1, 1) and case.groups == 1
    if not (WINOGRAD_CPU and shape and out_hw[0] * out_hw[1] >= WINOGRAD_MIN_PIXELS):
        return False
    low, high = ACT_RANGES[case.act_kind]
    a_max = max(high - case.act_zero_point, case.act_zero_point - low)
    w_max = W_MAX_ABS[case.w_kind] + (0 if case.w_zero_point_kind == "zero" else 9)
    return 72 * case.in_channels * a_max * w_max <= 2**24


# --- strategy ---------------------------------------------------------------------------------

@st.composite
def structure(draw: st.DrawFn, path: str) -> dict:
    """Channels, groups, kernel, stride, padding, dilation for a target path."""
    if path == "depthwise":
        groups = 8 * draw(st.integers(1, 5))
        k = draw(st.sampled_from([3, 5, 7]))
        return dict(in_channels=groups, out_channels=groups * draw(st.sampled_from([1, 2])), groups=groups,
                    kernel=(k, k), stride=(draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))),
                    padding=((k - 1) // 2,) * 2, dilation=(1, 1))
    if path == "groupwise":
        c_per_g = draw(st.sampled_from([2, 4, 8, 16]))
        groups = groups_together(c_per_g, HARDWARE_CPU != "avx2") * draw(st.integers(1, 3))
        s = draw(st.sampled_from([1, 2]))
        return dict(in_channels=c_per_g * groups, out_channels=c_per_g * groups, groups=groups,
                    kernel=(3, 3), stride=(s, s), padding=(1, 1), dilation=(1, 1))
    if path == "pointwise":
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        return dict(in_channels=groups * draw(st.integers(1, 48)), out_channels=groups * draw(st.integers(1, 48)),
                    groups=groups, kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    groups = draw(st.sampled_from([1, 1, 2, 3, 5]))
    return dict(
        in_channels=groups * draw(st.integers(1, 40)), out_channels=groups * draw(st.integers(1, 24)), groups=groups,
        kernel=(draw(st.integers(1, 5)), draw(st.integers(1, 5))),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=(draw(st.integers(0, 3)), draw(st.integers(0, 3))),
        dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
    )


@st.composite
def conv_cases(draw: st.DrawFn) -> ConvCase:
    """A ConvCase on a drawn target path, asserting FBGEMM takes it.

    The extra target "deep" is an im2col conv with K = 9 * 48..128, activations 200..255
    with zero point 0 and extreme weights: |acc| > 2^24, where `f32(acc)` rounds.
    """
    target = draw(st.sampled_from(PATHS + ("deep", "winograd")))
    deep = target == "deep"
    if deep:
        shape = dict(in_channels=draw(st.integers(48, 128)), out_channels=draw(st.integers(1, 20)), groups=1,
                     kernel=(3, 3), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    elif target == "winograd":
        pad = draw(st.integers(0, 1))
        shape = dict(in_channels=draw(st.integers(1, 24)), out_channels=draw(st.integers(1, 24)), groups=1,
                     kernel=(3, 3), stride=(1, 1), padding=(pad, pad), dilation=(1, 1))
    else:
        shape = draw(structure(target))
    kh, kw = shape["kernel"]
    span = (shape["dilation"][0] * (kh - 1) + 1, shape["dilation"][1] * (kw - 1) + 1)
    # Winograd needs WINOGRAD_MIN_PIXELS outputs per image: 14 to 20 per side here (odd and even).
    smallest = 14 if target == "winograd" else 1
    size = tuple(max(smallest, s - 2 * p) + draw(st.integers(0, 9 if smallest == 1 else 6))
                 for s, p in zip(span, shape["padding"]))
    case = ConvCase(batch=draw(st.integers(1, 2 * size_scale())), size=size, **shape, **draw(gemm_qparams(deep)))
    path = case.path()
    if target not in ("im2col", "deep", "winograd"):
        assert path == target, f"{case!r} takes {path}, not {target}"
    c_per_g = case.in_channels // case.groups
    # The FBGEMM groupwise defect, see the module doc.
    assume(not (path == "groupwise" and case.groups % groups_together(c_per_g, HARDWARE_CPU != "avx2")))
    return case


# --- reference, torch, labels -------------------------------------------------------------------


def effective_profile(case: ConvCase, profile: NumericsProfile) -> NumericsProfile:
    """The profile torch really runs: under FBGEMM_ENABLE_INSTRUCTIONS emulation the groupwise
    path still follows CPUID (its kernel and G_together)."""
    emulated = bool(os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS")) and profile.cpu != HARDWARE_CPU
    if emulated and case.path(HARDWARE_CPU) == "groupwise":
        return NumericsProfile(profile.torch_release, HARDWARE_CPU, profile.engine)
    return profile


def reference(case: ConvCase, profile: NumericsProfile) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return conv2d(x, weight, bias, case.stride, case.padding, case.dilation, case.groups,
                  out_scale, case.out_zero_point, case.relu, effective_profile(case, profile))


def fast_kernel(case: ConvCase, profile: NumericsProfile) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return fast.conv2d(x, weight, bias, case.stride, case.padding, case.dilation, case.groups,
                       out_scale, case.out_zero_point, case.relu, effective_profile(case, profile))


def call(case: ConvCase) -> TargetCall:
    x, weight, bias, out_scale = case.arrays()
    return TargetCall("conv2d", dict(
        x=x.int_repr, x_scale=x.scale, x_zero_point=x.zero_point, **gemm_weight_arguments(weight), bias=bias,
        stride=list(case.stride), padding=list(case.padding), dilation=list(case.dilation), groups=case.groups,
        scale=out_scale, zero_point=case.out_zero_point, relu=case.relu,
    ))


def explain(case: ConvCase, profile: NumericsProfile) -> dict[str, np.ndarray]:
    """fbgemm: the int32 accumulator, the requantized float32 and its rounding per output."""
    return explained(lambda: reference(case, profile), nhwc_steps=True)


def oracle(case: ConvCase) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return oracles.conv2d(x, weight, bias, case.stride, case.padding, case.dilation, case.groups, out_scale,
                          case.out_zero_point, case.relu)


def label(case: ConvCase) -> Iterator[str]:
    path = case.path()
    yield path
    if takes_winograd(case):
        yield "winograd"
    yield from qparam_labels(case)
    if case.out_channels % 8:
        yield "oc-tail"
    if pairs_saturate(case.act_kind, case.w_kind, case.depth):
        yield f"sat-pairs-{path}"
    if typical_acc_above_2_24(case.act_kind, case.act_zero_point, case.w_kind, case.depth):
        yield "acc>2^24"


EXAMPLES = (
    # Depthwise border saturation: a_zp 255 and positive weights; padding taps pair to 64770 -> 32767.
    ConvCase(1, 8, 8, 8, (3, 3), (3, 3), (1, 1), (1, 1), (1, 1), 0.5, 255, "high", False, 0.25, "zero", "extreme",
             "none", 1.0, 128, False, 7),
    # The INT32_MIN pitfall on a GEMM path: a tiny output scale and huge bias.
    ConvCase(1, 5, 3, 1, (4, 4), (3, 3), (1, 1), (1, 1), (1, 1), 0.25, 3, "uniform", True, 0.125, "zero", "uniform",
             "huge", 1e-9, 200, True, 11),
    # Depthwise per-tensor bias on ties: fma (2.13) vs multiply-then-add (2.14).
    ConvCase(1, 16, 16, 16, (6, 5), (3, 3), (1, 1), (1, 1), (1, 1), 0.0173, 7, "uniform", False, 0.0119, "zero",
             "uniform", "ties", 0.0625, 131, False, 3),
)

CHECK = register(
    OpCheck(
        name="conv2d",
        op="quantized::conv2d",
        cases=conv_cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        budget={"smoke": 0.5, "default": 1.3, "thorough": 0.5},  # default: >= 10^6 outputs
        call=call,
        explain=explain,
    )
)
