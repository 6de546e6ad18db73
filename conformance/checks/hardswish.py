"""quantized::hardswish against reference.ops.hardswish: fma dequantize + round-then-add-zp
vector blocks of 64 vs dequantize_val + quantize_val scalar tails (profile-dependent at
ties), per thread range, NCHW and channels_last.

Scales (`scale_pairs`) reach from exact ties (powers of two; s_out = s_in^2 puts x = 3 s_in
on y / s_out = 7.5 for s_in = 1/4) down to output scales 10^-10..10^-5 of the input's, where
inputs near -3 give tiny in-range outputs and `y * inv` of the largest passes 2^31: the
vector path clamps to 2147483520 and its zero-point add wraps (qmin for zp >= 128), the
scalar tail saturates. The vacuity rule counts outputs strictly inside the range whose
hardswish value is not 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.numerics import f32
from quantspec.reference.ops import dequantize, hardswish
from quantspec.reference.ops._unary_float import dequantize_vector
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase, zero_points
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT


@dataclass(frozen=True)
class HardswishCase:
    x: QTensorCase
    scale: float
    zero_point: int
    threads: int = 1


def reference(case: HardswishCase, profile: NumericsProfile) -> QTensor:
    return hardswish(case.x.q, case.scale, case.zero_point, case.threads, profile)


def oracle(case: HardswishCase) -> QTensor:
    return oracles.hardswish(case.x.q, case.scale, case.zero_point, case.threads)


def call(case: HardswishCase) -> TargetCall:
    return TargetCall("hardswish", dict(**tensor_arguments(case.x.q, "x_"), scale=float(case.scale),
                                        zero_point=int(case.zero_point), threads=case.threads))


@st.composite
def scale_pairs(draw: st.DrawFn) -> tuple[float, float]:
    """(input scale, output scale), the kind drawn uniformly (`st.integers` favours its ends):

    4 in 10 powers of two (exact ties); 2 in 10 `s_in * 2^-e`, e <= 8 (exact for a power-of-two
    s_in; s_out = s_in^2 among them); 3 in 10 `s_in * 10^u`, u in [-2.5, 0] (the smallest
    nonzero |y|, about s_in / 2, still lands in range); 1 in 10 tiny: s_in = 3 / m and
    s_out = 10^u, u in [-9.5, -6.5] (s_out / s_in from ~10^-10 to ~10^-5). There x = -m s_in
    dequantizes to within float32 ulps of -3, so the gate x + 3 is 0 or a few 2^-22 and
    y ~ 10^-7 requantizes in range (the vector's fma dequantization and the tail's differ
    exactly there), while the largest y pass 2^31 quanta (vector: clamp and zp wrap)."""
    pick = draw(st.sampled_from(range(10)))
    if pick == 9:
        return 3.0 / draw(st.integers(5, 120)), 10.0 ** draw(st.floats(-9.5, -6.5))
    s_in = draw(power_of_two_scales())
    if pick < 4:
        return s_in, draw(power_of_two_scales())
    if pick < 6:
        return s_in, s_in * 2.0 ** -draw(st.integers(0, 8))
    return s_in, s_in * 10.0 ** draw(st.floats(-2.5, 0))


@st.composite
def cases(draw: st.DrawFn) -> HardswishCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, threads = draw(shape_format_threads())
    s_in, s_out = draw(scale_pairs())
    x = draw(qtensor_cases(dtype, shape, memory_format, s_in))
    return HardswishCase(x, s_out, draw(zero_points(dtype)), threads)


def informative(case: HardswishCase, out: QTensor) -> int:
    """Outputs strictly inside (qmin, qmax) whose hardswish value is nonzero under either of
    the kernel's dequantizations (x != 0 and f32(x + 3) > 0): a zero quantizes to the zero
    point at any output scale and tells nothing about the requantization."""
    nonzero = np.zeros(out.int_repr.shape, bool)
    for x in (dequantize_vector(case.x.q), dequantize(case.x.q)):
        nonzero |= (x != 0) & (f32(x + np.float32(3)) > 0)
    inside = (out.int_repr > out.dtype.qmin) & (out.int_repr < out.dtype.qmax)
    return int(np.count_nonzero(nonzero & inside))


def label(case: HardswishCase) -> Iterator[str]:
    q = case.x.q
    yield q.dtype.label
    yield q.memory_format.value
    ratio = case.scale / q.scale
    if ratio < 1e-6:
        yield "out/in<1e-6"
    elif ratio < 1e-2:
        yield "out/in<1e-2"
    if q.int_repr.size % 64:
        yield "tail"
    if case.threads == 2 and q.int_repr.size > 32768:
        yield "2-thread-split"
    if case.zero_point % 2:
        yield "odd-zp"


EXAMPLES = (
    # x = 3 -> y = 3, / 2 = 1.5 with zp 1: vector rne(1.5) + 1 = 3; tail 2.13 rne(2.5) = 2, 2.14 3.
    HardswishCase(QTensorCase(QTensor(np.full((65,), 3, np.uint8), 1.0, 0, QDtype.quint8)), 2.0, 1),
    # s_out = s_in^2: x = 0.75 -> y = f32(0.75 * 3.75) / 6 = 0.46875, * 16 = 7.5, zp 1:
    # vector rne(7.5) + 1 = 9; tail 2.13 rne(8.5) = 8, 2.14 rne(7.5) + 1 = 9.
    HardswishCase(QTensorCase(QTensor(np.full((65,), 3, np.uint8), 0.25, 0, QDtype.quint8)), 0.0625, 1),
    # s_out = 1e-8 s_in: x = 255 -> y * inv = 2.55e10: vector min(., 2147483520) + 200 wraps
    # past 2^31 - 1 to a negative int32 -> 0; the tail (1 element) saturates to 255.
    HardswishCase(QTensorCase(QTensor(np.full((65,), 255, np.uint8), 1.0, 0, QDtype.quint8)), 1e-8, 200),
    # s_in = 3/9, q - zp = 93 - 102: vector x = fma(f32(1/3), 93, f32(f32(1/3) * -102) = -34)
    # = -2.99999908 -> float32 -3 + 2^-20; gate 2^-20; y = f32(x * 2^-20) / 6 = -4.768e-7,
    # * 1e8 = -47.7 -> -48 + 101 = 53. The tail's x = f32(f32(1/3) * -9) = -3: y = 0 -> 101.
    HardswishCase(QTensorCase(QTensor(np.full((65,), 93, np.uint8), 3.0 / 9, 102, QDtype.quint8)), 1e-8, 101),
)

CHECK = register(
    OpCheck(name="hardswish", op="quantized::hardswish", cases=cases(), reference=reference, torch=oracle,
            label=label, examples=EXAMPLES, informative=informative, call=call)
)
