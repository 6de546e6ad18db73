"""aten::relu on quantized tensors against reference.ops.relu: max(q, zp), layout kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hypothesis import strategies as st

from quantspec.reference.ops import relu
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._elementwise_cases import qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT


@dataclass(frozen=True)
class ReluCase:
    x: QTensorCase


def reference(case: ReluCase, profile: NumericsProfile) -> QTensor:
    return relu(case.x.q)


def oracle(case: ReluCase) -> QTensor:
    return oracles.relu(case.x.q)


def call(case: ReluCase) -> TargetCall:
    return TargetCall("relu", tensor_arguments(case.x.q))


@st.composite
def cases(draw: st.DrawFn) -> ReluCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, _ = draw(shape_format_threads())
    return ReluCase(draw(qtensor_cases(dtype, shape, memory_format)))


def label(case: ReluCase) -> Iterator[str]:
    yield case.x.q.dtype.label
    yield case.x.q.memory_format.value


CHECK = register(OpCheck(name="relu", op="aten::relu", cases=cases(), reference=reference, torch=oracle, label=label,
                         call=call))
