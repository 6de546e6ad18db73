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
import torch
from hypothesis import assume
from hypothesis import strategies as st

from quantspec.production.environment import detect_cpu_features, hardware_cpu_features
from quantspec.reference import fast
from quantspec.reference.fast.conv2d import WINOGRAD_MIN_PIXELS
from quantspec.reference.ops import conv2d, conv_path
from quantspec.reference.ops.conv2d import groups_together
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QDtype, QTensor

from ..oracles import from_torch, to_torch
from ..settings import size_scale
from . import OpCheck, register

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
        rng = np.random.default_rng(self.seed)
        x = QTensor(
            activation_ints(rng, (self.batch, self.in_channels) + self.size, self.act_kind, self.act_zero_point),
            self.act_scale, self.act_zero_point, QDtype.quint8,
        )
        w_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel
        weight = weight_tensor(rng, w_shape, self.w_kind, self.w_per_channel, self.w_scale, self.w_zero_point_kind)
        bias = bias_values(rng, self.out_channels, self.bias_kind, x, weight)
        return x, weight, bias, output_scale(self.out_scale_rel, x, weight, self.depth)

    def path(self, cpu: str = HARDWARE_CPU) -> str:
        """The FBGEMM path of this configuration on a CPU with these features."""
        profile = NumericsProfile("2.13", cpu)
        return conv_path(self.in_channels, self.out_channels, self.kernel, self.stride, self.padding,
                         self.dilation, self.groups, profile)


# --- array expansion (shared with checks/linear.py) -------------------------------------------

ACT_KINDS = ("uniform", "low", "high", "edges")
W_KINDS = ("uniform", "extreme", "small")
BIAS_KINDS = ("none", "normal", "normal", "ties", "ties", "huge")  # sampled uniformly: huge 1 in 6


def activation_ints(rng: np.random.Generator, shape: tuple[int, ...], kind: str, zero_point: int) -> np.ndarray:
    """quint8 integers: uniform; low (0..127, reduce_range: never saturates); high
    (200..255: saturates u8 x s8 pairs); edges (0, 255, zp and neighbours)."""
    if kind == "low":
        ints = rng.integers(0, 128, shape)
    elif kind == "high":
        ints = rng.integers(200, 256, shape)
    elif kind == "edges":
        ints = rng.choice([0, 1, 254, 255, zero_point, min(zero_point + 1, 255)], shape)
    else:
        ints = rng.integers(0, 256, shape)
    return ints.astype(np.uint8)


def weight_tensor(
    rng: np.random.Generator, shape: tuple[int, ...], kind: str, per_channel: bool, scale: float, zp_kind: str
) -> QTensor:
    """qint8 weights: uniform, extreme (+-127/-128 runs of one sign per channel), small."""
    if kind == "extreme":
        signs = rng.choice([-1, 1], (shape[0],) + (1,) * (len(shape) - 1))
        ints = np.where(signs > 0, rng.choice([127, 126], shape), rng.choice([-128, -127], shape))
        ints = np.where(rng.random(shape) < 0.1, rng.integers(-128, 128, shape), ints)
    elif kind == "small":
        ints = rng.integers(-8, 9, shape)
    else:
        ints = rng.integers(-128, 128, shape)
    ints = ints.astype(np.int8)
    channels = shape[0]
    if not per_channel:
        zp = 0 if zp_kind == "zero" else int(rng.integers(-9, 10)) | 1
        return QTensor(ints, scale, zp, QDtype.qint8)
    scales = scale * 2.0 ** rng.integers(-2, 3, channels) * np.where(rng.random(channels) < 0.5, 1.0, rng.uniform(0.5, 1.0, channels))
    zps = np.zeros(channels, np.int64) if zp_kind == "zero" else rng.integers(-9, 10, channels) | 1
    return QTensor(ints, scales, zps, QDtype.qint8, axis=0)


def bias_values(rng: np.random.Generator, channels: int, kind: str, x: QTensor, weight: QTensor) -> Optional[np.ndarray]:
    """float32 bias: none; normal (a few hundred quanta); ties ((k + 1/2) * act_scale * w_scale,
    so bias / atws lands on or next to a half and the fma-vs-separate rounding shows);
    huge (|bias| ~ 1e30 and +-inf, NaN: the INT32_MIN pitfall)."""
    if kind == "none":
        return None
    atws = np.float64(np.float32(x.scale)) * np.asarray(weight.scale, np.float64)
    if kind == "ties":
        k = rng.integers(-2000, 2000, channels) + 0.5
        return (k * atws).astype(np.float32)
    if kind == "huge":
        return rng.choice(np.array([1e30, -1e30, np.inf, -np.inf, np.nan, 1.0], np.float32), channels)
    return (rng.normal(0, 300, channels) * atws).astype(np.float32)


def output_scale(relative: float, x: QTensor, weight: QTensor, depth: int) -> float:
    """`relative` times a scale that spreads typical outputs over ~100 quanta; relative
    1e-9 gives the tiny scales of the INT32_MIN pitfall.

    A typical |acc| is sqrt(K) * rms(a - a_zp) * rms(w - w_zp) when the centered values
    average to zero, and K * |mean(a - a_zp)| * |mean(w_c - w_zp_c)| when they do not
    (high activations with one-signed weight channels: the |acc| > 2^24 cases).
    """
    a = x.int_repr.astype(np.float64) - x.zero_point
    w_zp = np.asarray(weight.zero_point, np.float64).reshape((-1,) + (1,) * (weight.int_repr.ndim - 1))
    w = weight.int_repr.astype(np.float64) - (w_zp if weight.per_channel else weight.zero_point)
    w_rows = w.reshape(w.shape[0], -1)
    random_part = np.sqrt(depth) * np.sqrt(np.mean(a * a)) * np.sqrt(np.mean(w_rows * w_rows))
    biased_part = depth * abs(float(a.mean())) * float(np.abs(w_rows.mean(axis=1)).mean())
    spread = max(random_part + biased_part, 1.0) / 50
    return float(relative * x.scale * float(np.mean(weight.scale)) * spread)


# --- labels (shared with checks/linear.py) ------------------------------------------------------
# From the case's parameters alone: rebuilding the arrays to measure would cost more than the op.

HIGH_ACT_MEAN = 227.5  # "high" activations: uniform 200..255
EXTREME_W_MEAN = 113.8  # "extreme" weights: 90% |w| in {126, 127} (or 127, 128), one sign per channel; 10% uniform


def pairs_saturate(act_kind: str, w_kind: str, depth: int) -> bool:
    """Whether the drawn kinds saturate int16 pairs by construction: "high" activations
    (>= 200) times two same-signed "extreme" weights (|w| >= 126) give |pair| >= 50400 >
    32767. Other kinds saturate pairs by chance (uniform weights, padding with a_zp > 127);
    those cases are not counted."""
    return act_kind == "high" and w_kind == "extreme" and depth >= 2


def typical_acc_above_2_24(act_kind: str, act_zero_point: int, w_kind: str, depth: int) -> bool:
    """Whether a typical |acc| of the drawn kinds exceeds 2^24, where `f32(acc)` rounds:
    K * mean(a - a_zp) * mean|w| for "high" activations over one-signed "extreme" weights
    (other kinds center near zero and stay far below). Cases within a few percent of the
    threshold may land on either side."""
    return act_kind == "high" and w_kind == "extreme" and depth * (HIGH_ACT_MEAN - act_zero_point) * EXTREME_W_MEAN > 2**24


ACT_RANGES = {"uniform": (0, 255), "low": (0, 127), "high": (200, 255), "edges": (0, 255)}
W_MAX_ABS = {"uniform": 128, "extreme": 128, "small": 8}  # before the weight zero point (|zp| <= 9)
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

def input_scales() -> st.SearchStrategy[float]:
    """Activation and weight scales: powers of two (exact products) and ordinary values."""
    return st.one_of(st.integers(-10, -2).map(lambda e: 2.0**e), st.floats(1e-3, 0.2))


def out_scale_factors() -> st.SearchStrategy[float]:
    """Relative output scales (see `output_scale`): ordinary, or (1 in 10) tiny: INT32_MIN."""
    ordinary = st.one_of(st.floats(0.25, 4.0), st.integers(-2, 2).map(lambda e: 2.0**e))
    tiny = st.sampled_from([1e-9, 1e-12])
    return st.tuples(st.sampled_from(range(10)), ordinary, tiny).map(lambda t: t[2] if t[0] == 5 else t[1])


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
    case = ConvCase(
        batch=draw(st.integers(1, 2 * size_scale())), size=size, **shape,
        act_scale=draw(input_scales()),
        act_zero_point=0 if deep else draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 128, 129, 255]))),
        act_kind="high" if deep else draw(st.sampled_from(ACT_KINDS)),
        w_per_channel=draw(st.booleans()), w_scale=draw(input_scales()),
        w_zero_point_kind=draw(st.sampled_from(["zero", "zero", "odd"])),
        w_kind="extreme" if deep else draw(st.sampled_from(W_KINDS)),
        bias_kind=draw(st.sampled_from(BIAS_KINDS)), out_scale_rel=draw(out_scale_factors()),
        out_zero_point=draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 1, 127, 255]))),
        relu=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )
    path = case.path()
    if target not in ("im2col", "deep", "winograd"):
        assert path == target, f"{case!r} takes {path}, not {target}"
    c_per_g = case.in_channels // case.groups
    assume(not (path == "groupwise" and case.groups % groups_together(c_per_g, HARDWARE_CPU != "avx2")))  # FBGEMM defect, see module doc
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


def oracle(case: ConvCase) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    packed = torch.ops.quantized.conv2d_prepack(
        to_torch(weight), None if bias is None else torch.from_numpy(bias),
        list(case.stride), list(case.padding), list(case.dilation), case.groups,
    )
    op = torch.ops.quantized.conv2d_relu if case.relu else torch.ops.quantized.conv2d
    return from_torch(op(to_torch(x), packed, out_scale, case.out_zero_point))


def label(case: ConvCase) -> Iterator[str]:
    path = case.path()
    yield path
    if takes_winograd(case):
        yield "winograd"
    yield "per-channel" if case.w_per_channel else "per-tensor"
    yield f"bias-{case.bias_kind}"
    if case.relu:
        yield "relu"
    if case.w_zero_point_kind == "odd":
        yield "w-zp"
    if case.out_scale_rel < 1e-6:
        yield "tiny-out-scale"
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
    ConvCase(1, 16, 16, 16, (6, 5), (3, 3), (1, 1), (1, 1), (1, 1), 0.0173, 7, "uniform", False, 0.0119, "zero", "uniform",
             "ties", 0.0625, 131, False, 3),
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
    )
)
