"""aten::clamp / aten::hardtanh on quantized tensors against reference.ops.clamp: bounds
quantized by the scalar quantize_val (release-dependent at ties), then an integer clamp.
Bounds are drawn on exact ties (k + 0.5) * scale half of the time, and 1 in 6 from
`SPECIAL_BOUNDS` (NaN, +-inf, beyond the int32 range of quanta, -0.0); 1 in 5 clamps with
both bounds take them in either order (torch.clamp with min > max gives max everywhere;
F.hardtanh refuses, so its bounds stay ordered)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.ops import clamp
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT


@dataclass(frozen=True)
class ClampCase:
    x: QTensorCase
    low: Optional[float]
    high: Optional[float]
    hardtanh: bool = False


def reference(case: ClampCase, profile: NumericsProfile) -> QTensor:
    return clamp(case.x.q, case.low, case.high, profile)


def oracle(case: ClampCase) -> QTensor:
    return oracles.clamp(case.x.q, case.low, case.high, case.hardtanh)


def call(case: ClampCase) -> TargetCall:
    """hardtanh is clamp's kernel under another name: the target sees a clamp."""
    return TargetCall("clamp", dict(**tensor_arguments(case.x.q), low=case.low, high=case.high))


SPECIAL_BOUNDS = (np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9, -0.0)


@st.composite
def _bound(draw: st.DrawFn, scale: float) -> float:
    kind = draw(st.sampled_from(("tie", "tie", "tie", "any", "any", "special")))
    if kind == "tie":
        return float(np.float32((draw(st.integers(-60, 60)) + 0.5) * scale))
    if kind == "special":
        return float(draw(st.sampled_from(SPECIAL_BOUNDS)))
    return draw(st.floats(-8.0, 8.0, width=32))


@st.composite
def cases(draw: st.DrawFn) -> ClampCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    shape, memory_format, _ = draw(shape_format_threads())
    x = draw(qtensor_cases(dtype, shape, memory_format, draw(power_of_two_scales())))
    low, high = sorted((draw(_bound(x.q.scale)), draw(_bound(x.q.scale))))
    which = draw(st.sampled_from(("both", "both", "min", "max", "hardtanh")))
    if which == "min":
        return ClampCase(x, low, None)
    if which == "max":
        return ClampCase(x, None, high)
    if which == "both" and draw(st.sampled_from(range(5))) == 0:
        low, high = high, low
    return ClampCase(x, low, high, which == "hardtanh")


def label(case: ClampCase) -> Iterator[str]:
    yield case.x.q.dtype.label
    yield "hardtanh" if case.hardtanh else "clamp"
    if case.low is not None and case.high is not None and case.low > case.high:
        yield "min>max"
    if any(b is not None and not -1e9 < b < 1e9 for b in (case.low, case.high)):
        yield "special-bound"
    scale = np.float32(case.x.q.scale)
    for bound in (case.low, case.high):
        if bound is not None and np.isfinite(bound):
            with np.errstate(over="ignore"):  # 1e30 / scale overflows float32 to inf: no tie
                t = np.float32(np.float32(bound) * np.float32(np.float32(1) / scale))
            if np.isfinite(t) and t - np.floor(t) == 0.5:
                yield "tie-bound"


CHECK = register(OpCheck(name="clamp", op="aten::clamp", cases=cases(), reference=reference, torch=oracle, label=label,
                         call=call))
