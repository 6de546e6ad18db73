"""aten::hardsigmoid on quantized tensors against reference.ops.hardsigmoid: fixed output
qparams (1/256, zp 0 or -128), fma vs plain dequantization in vector blocks and tails.

Powers of two put few outputs on .5 ties (y * 256 = 128 (x + 3) / 3 needs a factor 3), so
about half the cases take input scales 3 * 2^-e (`TIE_EXPONENTS`): then x + 3 = 3 (k 2^-e + 1),
y * 256 = 2^(7-e) k + 128 exactly, a tie for every k that is 2^(e-8) times an odd number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hypothesis import strategies as st

from quantspec.reference.ops import hardsigmoid
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT

TIE_EXPONENTS = (8, 9, 10)


@dataclass(frozen=True)
class HardsigmoidCase:
    x: QTensorCase
    threads: int = 1


def reference(case: HardsigmoidCase, profile: NumericsProfile) -> QTensor:
    return hardsigmoid(case.x.q, case.threads, profile)


def oracle(case: HardsigmoidCase) -> QTensor:
    return oracles.hardsigmoid(case.x.q, case.threads)


def call(case: HardsigmoidCase) -> TargetCall:
    return TargetCall("hardsigmoid", dict(**tensor_arguments(case.x.q), threads=case.threads))


@st.composite
def cases(draw: st.DrawFn) -> HardsigmoidCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, threads = draw(shape_format_threads())
    tie_scales = st.sampled_from(TIE_EXPONENTS).map(lambda e: 3 * 2.0**-e)
    scale = draw(st.one_of(power_of_two_scales(), tie_scales))
    return HardsigmoidCase(draw(qtensor_cases(dtype, shape, memory_format, scale)), threads)


def label(case: HardsigmoidCase) -> Iterator[str]:
    q = case.x.q
    yield q.dtype.label
    yield q.memory_format.value
    if q.int_repr.size % 64:
        yield "tail"
    if q.scale in {3 * 2.0**-e for e in TIE_EXPONENTS}:
        yield "tie-scale"


CHECK = register(
    OpCheck(name="hardsigmoid", op="aten::hardsigmoid", cases=cases(), reference=reference, torch=oracle, label=label,
            call=call)
)
