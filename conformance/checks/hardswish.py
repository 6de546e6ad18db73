"""quantized::hardswish against reference.ops.hardswish: fma dequantize + round-then-add-zp
vector blocks of 64 vs dequantize_val + quantize_val scalar tails (profile-dependent at
ties), per thread range, NCHW and channels_last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from hypothesis import strategies as st

from reference.ops import hardswish
from reference.profile import NumericsProfile
from reference.qtensor import QDtype, QTensor

from ..oracles import from_torch, to_torch
from ..strategies import QTensorCase, zero_points
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT, torch_threads
from . import OpCheck, register


@dataclass(frozen=True)
class HardswishCase:
    x: QTensorCase
    scale: float
    zero_point: int
    threads: int = 1


def reference(case: HardswishCase, profile: NumericsProfile) -> QTensor:
    return hardswish(case.x.q, case.scale, case.zero_point, case.threads, profile)


def oracle(case: HardswishCase) -> QTensor:
    with torch_threads(case.threads):
        return from_torch(torch.ops.quantized.hardswish(to_torch(case.x.q), case.scale, case.zero_point))


@st.composite
def cases(draw: st.DrawFn) -> HardswishCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, threads = draw(shape_format_threads())
    x = draw(qtensor_cases(dtype, shape, memory_format, draw(power_of_two_scales())))
    return HardswishCase(x, draw(power_of_two_scales()), draw(zero_points(dtype)), threads)


def label(case: HardswishCase) -> Iterator[str]:
    q = case.x.q
    yield q.dtype.label
    yield q.memory_format.value
    if q.int_repr.size % 64:
        yield "tail"
    if case.threads == 2 and q.int_repr.size > 32768:
        yield "2-thread-split"
    if case.zero_point % 2:
        yield "odd-zp"


EXAMPLES = (
    # x = 3 -> y = 3, / 2 = 1.5 with zp 1: vector rne(1.5) + 1 = 3; tail 2.13 rne(2.5) = 2, 2.14 3.
    HardswishCase(QTensorCase(QTensor(np.full((65,), 3, np.uint8), 1.0, 0, QDtype.quint8)), 2.0, 1),
)

CHECK = register(
    OpCheck(name="hardswish", op="quantized::hardswish", cases=cases(), reference=reference, torch=oracle,
            label=label, examples=EXAMPLES)
)
