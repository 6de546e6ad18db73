"""aten::hardsigmoid on quantized tensors against reference.ops.hardsigmoid: fixed output
qparams (1/256, zp 0 or -128), fma vs plain dequantization in vector blocks and tails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from hypothesis import strategies as st

from reference.ops import hardsigmoid
from reference.profile import NumericsProfile
from reference.qtensor import QTensor

from ..oracles import from_torch, to_torch
from ..strategies import QTensorCase
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT, torch_threads
from . import OpCheck, register


@dataclass(frozen=True)
class HardsigmoidCase:
    x: QTensorCase
    threads: int = 1


def reference(case: HardsigmoidCase, profile: NumericsProfile) -> QTensor:
    return hardsigmoid(case.x.q, case.threads, profile)


def oracle(case: HardsigmoidCase) -> QTensor:
    with torch_threads(case.threads):
        return from_torch(torch.nn.functional.hardsigmoid(to_torch(case.x.q)))


@st.composite
def cases(draw: st.DrawFn) -> HardsigmoidCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, threads = draw(shape_format_threads())
    return HardsigmoidCase(draw(qtensor_cases(dtype, shape, memory_format, draw(power_of_two_scales()))), threads)


def label(case: HardsigmoidCase) -> Iterator[str]:
    q = case.x.q
    yield q.dtype.label
    yield q.memory_format.value
    if q.int_repr.size % 64:
        yield "tail"


CHECK = register(
    OpCheck(name="hardsigmoid", op="aten::hardsigmoid", cases=cases(), reference=reference, torch=oracle, label=label)
)
