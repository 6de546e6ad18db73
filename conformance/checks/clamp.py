"""aten::clamp / aten::hardtanh on quantized tensors against reference.ops.clamp: bounds
quantized by the scalar quantize_val (release-dependent at ties), then an integer clamp.
Bounds are drawn on exact ties (k + 0.5) * scale half of the time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from hypothesis import strategies as st

from reference.ops import clamp
from reference.profile import NumericsProfile
from reference.qtensor import QTensor

from ..oracles import from_torch, to_torch
from ..strategies import QTensorCase
from ._elementwise_cases import power_of_two_scales, qtensor_cases, shape_format_threads
from ._pool_cases import EIGHT_BIT
from . import OpCheck, register


@dataclass(frozen=True)
class ClampCase:
    x: QTensorCase
    low: Optional[float]
    high: Optional[float]
    hardtanh: bool = False


def reference(case: ClampCase, profile: NumericsProfile) -> QTensor:
    return clamp(case.x.q, case.low, case.high, profile)


def oracle(case: ClampCase) -> QTensor:
    x = to_torch(case.x.q)
    if case.hardtanh:
        return from_torch(torch.nn.functional.hardtanh(x, case.low, case.high))
    return from_torch(torch.clamp(x, case.low, case.high))


@st.composite
def _bound(draw: st.DrawFn, scale: float) -> float:
    if draw(st.booleans()):
        return float(np.float32((draw(st.integers(-60, 60)) + 0.5) * scale))
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
    return ClampCase(x, low, high, which == "hardtanh")


def label(case: ClampCase) -> Iterator[str]:
    yield case.x.q.dtype.label
    yield "hardtanh" if case.hardtanh else "clamp"
    scale = np.float32(case.x.q.scale)
    for bound in (case.low, case.high):
        if bound is not None:
            t = np.float32(np.float32(bound) * np.float32(np.float32(1) / scale))
            if t - np.floor(t) == 0.5:
                yield "tie-bound"


CHECK = register(OpCheck(name="clamp", op="aten::clamp", cases=cases(), reference=reference, torch=oracle, label=label))
