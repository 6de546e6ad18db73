"""quantized::mul / mul_relu against reference.ops.mul: 64-element vector blocks and scalar
tails in memory order (they differ only beyond int32), 1 and 2 threads, NCHW and
channels_last, broadcast gates (SE blocks), power-of-two scales for exact ties, tiny output
scales that overflow int32."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.ops import mul
from quantspec.reference.ops._tensor_iterator import GRAIN_SIZE
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase, one_in, zero_points
from ..targets import TargetCall
from . import OpCheck, register
from ._elementwise_cases import BinaryCase, binary_call, power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT


def reference(case: BinaryCase, profile: NumericsProfile) -> QTensor:
    return mul(case.a.q, case.b.q, case.scale, case.zero_point, case.relu, case.threads)


def oracle(case: BinaryCase) -> QTensor:
    return oracles.mul(case.a.q, case.b.q, case.scale, case.zero_point, case.relu, case.threads)


def call(case: BinaryCase) -> TargetCall:
    return binary_call("mul", case)


@st.composite
def cases(draw: st.DrawFn) -> BinaryCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, threads = draw(shape_format_threads())
    a = draw(qtensor_cases(dtype, shape, memory_format, draw(power_of_two_scales())))
    gate = len(shape) == 4 and draw(one_in(4))
    b_shape = (shape[0], shape[1], 1, 1) if gate else shape
    b_format = memory_format
    if len(shape) == 4 and not gate and draw(one_in(4)):  # mixed layouts: all scalar lambda
        b_format = (
            MemoryFormat.contiguous if memory_format is MemoryFormat.channels_last else MemoryFormat.channels_last
        )
    b = draw(qtensor_cases(dtype, b_shape, b_format, draw(power_of_two_scales())))
    tiny = draw(one_in(10))
    scale = draw(st.floats(1e-9, 1e-6)) if tiny else draw(power_of_two_scales())
    return BinaryCase(a, b, scale, draw(zero_points(dtype)), draw(st.booleans()), threads)


def label(case: BinaryCase) -> Iterator[str]:
    a, b = case.a.q, case.b.q
    yield a.dtype.label
    yield a.memory_format.value
    if a.shape != b.shape:
        yield "broadcast-gate"
    elif a.int_repr.size % 64:
        yield "tail"
    if case.threads == 2 and a.int_repr.size > GRAIN_SIZE:
        yield "2-thread-split"
    if case.relu:
        yield "relu"
    if a.shape == b.shape and a.memory_format is not b.memory_format:
        yield "mixed-formats"
    if case.scale < 1e-5:
        yield "tiny-scale"
    c = (a.int_repr.astype(np.int64) - a.zero_point) * (b.int_repr.astype(np.int64) - b.zero_point)
    mult = np.float32(
        np.float32(np.float32(a.scale) * np.float32(b.scale)) * np.float32(np.float32(1) / np.float32(case.scale))
    )
    t = (c.astype(np.float32) * mult).astype(np.float32)
    if np.any(t - np.floor(t) == 0.5):
        yield "exact-tie"


def _full(n: int, value: int) -> QTensorCase:
    return QTensorCase(QTensor(np.full((n,), value, np.uint8), 1.0, 0, QDtype.quint8))


EXAMPLES = (
    # 65 x (255 * 255) at output scale 2^-20: vector block overflows int32 -> 0, scalar tail -> 255.
    BinaryCase(_full(65, 255), _full(65, 255), 2.0**-20, 0),
    # Found by the default profile: a broadcast gate on a 2-element row. The row is all
    # scalar tail (lrintf saturates: 255), not vector (int32 overflow -> 0).
    BinaryCase(
        QTensorCase(QTensor(np.array([217, 0], dtype=np.uint8).reshape((1, 1, 1, 2)), 1.0, 1, QDtype.quint8)),
        QTensorCase(QTensor(np.array([217], dtype=np.uint8).reshape((1, 1, 1, 1)), 1.0, 1, QDtype.quint8)),
        1e-09, 1,
    ),
    # Found in review: a NCHW, b channels_last (C, H*W > 1): torch runs every element through
    # the scalar lambda (basic_loop), so 255*255*2^-20 saturates to 255 instead of overflowing.
    BinaryCase(
        QTensorCase(QTensor(np.full((1, 3, 5, 30), 255, np.uint8), 1.0, 0, QDtype.quint8)),
        QTensorCase(QTensor(np.full((1, 3, 5, 30), 255, np.uint8), 1.0, 0, QDtype.quint8,
                            memory_format=MemoryFormat.channels_last)),
        2.0**-20, 0,
    ),
)

CHECK = register(
    OpCheck(
        name="mul",
        op="quantized::mul",
        cases=cases(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=EXAMPLES,
        call=call,
    )
)
