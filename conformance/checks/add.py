"""quantized::add / add_relu against reference.ops.add: 64-element vector blocks (16 for
qint32) and scalar tails in memory order, at::parallel_for ranges with 1 and 2 threads, NCHW and channels_last,
exact ties with odd zero points, and tiny output scales (int32 clamp and wrap); and the
reference's fast kernel (`reference.fast.add`) against the same plain definition."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.numerics import f32
from quantspec.reference.ops import add, dequantize
from quantspec.reference.ops._tensor_iterator import GRAIN_SIZE
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor
from quantspec.reference.quantize_kernels import inverse_scale_f32

from .. import oracles
from ..strategies import QTensorCase, count_exact_ties, one_in, zero_points
from ..targets import TargetCall
from . import OpCheck, register
from ._elementwise_cases import BinaryCase, binary_call, shape_format_threads
from ._pool_cases import EIGHT_BIT, scale_values


def reference(case: BinaryCase, profile: NumericsProfile) -> QTensor:
    return add(case.a.q, case.b.q, case.scale, case.zero_point, case.relu, case.threads, profile)


def fast_kernel(case: BinaryCase, profile: NumericsProfile) -> QTensor:
    return fast.add(case.a.q, case.b.q, case.scale, case.zero_point, case.relu, case.threads, profile)


def oracle(case: BinaryCase) -> QTensor:
    return oracles.add(case.a.q, case.b.q, case.scale, case.zero_point, case.relu, case.threads)


def call(case: BinaryCase) -> TargetCall:
    return binary_call("add", case)


@st.composite
def _scales(draw: st.DrawFn) -> tuple[float, float, float]:
    """(sa, sb, so): power-of-two scales with so coarser than the inputs give exact .5 ties
    of `c * inv`; tiny output scales overflow int32 in the vector path."""
    pick = draw(st.integers(0, 9))  # 0..5 ties (what shrinking goes to), 6..8 any, 9 tiny
    kind = "ties" if pick <= 5 else "any" if pick <= 8 else "tiny"
    if kind == "ties":
        ea, eb = draw(st.integers(-4, 2)), draw(st.integers(-4, 2))
        return 2.0**ea, 2.0**eb, 2.0 ** (min(ea, eb) + draw(st.integers(1, 4)))
    sa, sb = draw(scale_values()), draw(scale_values())
    so = draw(st.floats(1e-12, 1e-8)) if kind == "tiny" else draw(scale_values())
    return sa, sb, so


@st.composite
def cases(draw: st.DrawFn) -> BinaryCase:
    dtype = draw(st.sampled_from(EIGHT_BIT + (QDtype.qint32,)))
    shape, memory_format, threads = draw(shape_format_threads(("flat", "flat", "nd", "threads"), flat_max=None))
    sa, sb, so = draw(_scales())
    za, zb, zo = draw(zero_points(dtype)), draw(zero_points(dtype)), draw(zero_points(dtype))
    b_format = memory_format
    if len(shape) == 4 and draw(one_in(4)):  # mixed layouts: all scalar lambda
        b_format = (
            MemoryFormat.contiguous if memory_format is MemoryFormat.channels_last else MemoryFormat.channels_last
        )
    a = QTensorCase.from_seed(shape, sa, za, dtype, None, memory_format, draw(st.integers(0, 2**32 - 1)))
    b = QTensorCase.from_seed(shape, sb, zb, dtype, None, b_format, draw(st.integers(0, 2**32 - 1)))
    return BinaryCase(a, b, so, zo, draw(st.booleans()), threads)


def label(case: BinaryCase) -> Iterator[str]:
    a, b = case.a.q, case.b.q
    n = a.int_repr.size
    yield a.dtype.label
    yield a.memory_format.value
    if a.memory_format is not b.memory_format:
        yield "mixed-formats"
    block = 16 if a.dtype is QDtype.qint32 else 64
    if case.threads == 2 and n > GRAIN_SIZE:
        yield "2-thread-split"
    elif n % block:
        yield "tail"
    if case.relu:
        yield "relu"
    if case.zero_point % 2:
        yield "odd-zp"
    if case.scale < 1e-7:
        yield "tiny-scale"
    # exact ties of the scalar path's c * inv (c = dequantize_val(a) + dequantize_val(b),
    # what `dequantize` computes): where the rounding order shows
    if count_exact_ties(f32(f32(dequantize(a) + dequantize(b)) * inverse_scale_f32(case.scale))):
        yield "exact-tie"


def _ones(n: int) -> QTensorCase:
    return QTensorCase(QTensor(np.ones((n,), np.uint8), 1.0, 0, QDtype.quint8))


EXAMPLES = (
    # 65 ties: a vector block (1 on both releases) and a scalar tail (2.13: 2, 2.14: 1).
    BinaryCase(_ones(65), _ones(65), 4.0, 1),
    # 255 + 0 at output scale 1e-9: vector min(2.55e11, 2147483520) + zp 200 wraps -> 0; tail 255.
    BinaryCase(QTensorCase(QTensor(np.full((65,), 255, np.uint8), 1.0, 0, QDtype.quint8)),
            QTensorCase(QTensor(np.zeros((65,), np.uint8), 1.0, 0, QDtype.quint8)), 1e-9, 200),
)

CHECK = register(
    OpCheck(
        name="add",
        op="quantized::add",
        cases=cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        call=call,
    )
)
