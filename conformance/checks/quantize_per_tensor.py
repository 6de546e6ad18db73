"""torch.quantize_per_tensor (quint8, qint8, qint32) against reference.ops.quantize_per_tensor."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.ops import quantize_per_tensor
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QDtype, QTensor

from .. import oracles
from ..strategies import FloatArrayCase, case_exact_ties, float_arrays, mostly, qparams, shapes
from ..targets import TargetCall
from . import OpCheck, explained, register


def reference(case: FloatArrayCase, profile: NumericsProfile) -> QTensor:
    return quantize_per_tensor(case.x, case.scale, case.zero_point, case.dtype, profile)


def oracle(case: FloatArrayCase) -> QTensor:
    return oracles.quantize_per_tensor(case.x, case.scale, case.zero_point, case.dtype)


def call(case: FloatArrayCase) -> TargetCall:
    return TargetCall("quantize_per_tensor", dict(x=case.x, scale=float(case.scale),
                                                  zero_point=int(case.zero_point), dtype=case.dtype.label))


def explain(case: FloatArrayCase, profile: NumericsProfile) -> dict[str, np.ndarray]:
    """8-bit dtypes: the float32 value the kernel rounds ("before_rounding")."""
    return explained(lambda: reference(case, profile))


def label(case: FloatArrayCase) -> Iterator[str]:
    yield case.dtype.label
    yield "tail8" if case.x.size % 8 else "vector8"  # FBGEMM's AVX2 loop; the rest is masked
    if np.log2(case.scale).is_integer():
        yield "pow2-scale"
    if case.zero_point % 2:
        yield "odd-zp"
    if case_exact_ties(case):
        yield "exact-tie"


EXAMPLES = (
    # The release tie example: 2.13 [2, 2, 4, 0], 2.14 [1, 3, 3, 1].
    FloatArrayCase(np.array([0.5, 1.5, 2.5, -0.5], np.float32), 1.0, 1, QDtype.quint8),
    # NaN/+-inf with zp >= 128: 2.14's int32 add wraps them to 0 (quint8).
    FloatArrayCase(np.array([np.nan, np.inf, -np.inf, 3e38, 1.0], np.float32), 0.5, 200, QDtype.quint8),
    FloatArrayCase(np.array([np.nan, np.inf, -np.inf, -3e38, 1.0], np.float32), 0.5, -100, QDtype.qint8),
    # qint32: the float add of a zero point beyond 2^24 rounds.
    FloatArrayCase(np.array([0.5, 1.5, 3.0, np.nan, np.inf, -np.inf], np.float32), 1.0, 2**24 + 1, QDtype.qint32),
)


@st.composite
def cases(draw: st.DrawFn) -> FloatArrayCase:
    """Ordinary scales on arrays up to 16k elements; extreme scales (mostly saturating
    outputs) on arrays of at most 128, so they do not dominate the element count."""
    if draw(mostly(st.just(False), st.just(True), 4)):
        return draw(float_arrays(draw(qparams(extreme=True)), shapes(max_elements=128)))
    return draw(float_arrays(draw(qparams(extreme=False))))


CHECK = register(
    OpCheck(
        name="quantize_per_tensor",
        op="aten::quantize_per_tensor",
        cases=cases(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=EXAMPLES,
        call=call,
        explain=explain,
    )
)
