"""torch.quantize_per_channel (quint8, qint8, qint32) against reference.ops.quantize_per_channel."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from quantspec.reference.ops import quantize_per_channel
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QDtype, QTensor

from .. import oracles
from ..strategies import FloatArrayCase, case_exact_ties, per_channel_float_arrays
from ..targets import TargetCall
from . import OpCheck, register


def reference(case: FloatArrayCase, profile: NumericsProfile) -> QTensor:
    return quantize_per_channel(case.x, case.scale, case.zero_point, case.axis, case.dtype, profile)


def oracle(case: FloatArrayCase) -> QTensor:
    return oracles.quantize_per_channel(case.x, case.scale, case.zero_point, case.axis, case.dtype)


def call(case: FloatArrayCase) -> TargetCall:
    return TargetCall("quantize_per_channel", dict(
        x=case.x, scale=np.asarray(case.scale, np.float64), zero_point=np.asarray(case.zero_point, np.int64),
        axis=int(case.axis), dtype=case.dtype.label,
    ))


def label(case: FloatArrayCase) -> Iterator[str]:
    yield case.dtype.label
    yield f"axis{case.axis}of{case.x.ndim}"
    if case_exact_ties(case):
        yield "exact-tie"


EXAMPLES = (
    # The docstring example: 2.13 [[0], [2]] (zp before rounding), 2.14 [[0], [3]] (round first).
    FloatArrayCase(np.array([[0.25], [3.0]], np.float32), np.array([0.5, 2.0]), np.array([0, 1]), QDtype.qint8, axis=0),
    # NaN gives 0 for 8-bit types (clamp passes NaN, the cast gives INT32_MIN's low byte).
    FloatArrayCase(
        np.array([[np.nan, np.inf, -np.inf], [np.nan, 0.5, 1.5]], np.float32),
        np.array([1.0, 1.0]), np.array([3, 255]), QDtype.quint8, axis=0,
    ),
)

CHECK = register(
    OpCheck(
        name="quantize_per_channel",
        op="aten::quantize_per_channel",
        cases=per_channel_float_arrays(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=EXAMPLES,
        call=call,
    )
)
