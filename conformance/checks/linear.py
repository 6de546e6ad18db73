"""quantized::linear / linear_relu (fbgemm) against reference.ops.linear; and the reference's
fast kernel (`reference.fast.linear`) against the same plain definition.

The GEMM is `fbgemmPacked` with `PackAWithRowOffset`: exact int32 on AVX512-VNNI, int16
saturation of adjacent K pairs without VNNI. Cases: any leading dims, K from 1 to ~1100
(|acc| > 2^24 with high activations and extreme weights), output features that end in
vector tails, per-tensor/per-channel weights with zero or odd zero points, bias kinds
(none, normal, on requantization ties, huge/inf/NaN), tiny output scales, relu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.ops import linear
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import oracles
from ..settings import size_scale
from ..strategies import one_in
from ..targets import TargetCall
from . import OpCheck, explained, register
from ._gemm_cases import (
    gemm_operands,
    gemm_qparams,
    gemm_weight_arguments,
    pairs_saturate,
    qparam_labels,
    typical_acc_above_2_24,
)


@dataclass(frozen=True)
class LinearCase:
    """A linear case: structure and qparams as drawn; arrays expand from `seed` (`arrays()`)."""

    leading: tuple[int, ...]
    in_features: int
    out_features: int
    act_scale: float
    act_zero_point: int
    act_kind: str
    w_per_channel: bool
    w_scale: float
    w_zero_point_kind: str
    w_kind: str
    bias_kind: str
    out_scale_rel: float
    out_zero_point: int
    relu: bool
    seed: int

    def arrays(self) -> tuple[QTensor, QTensor, Optional[np.ndarray], float]:
        """(x, weight, bias, output_scale), deterministic for the case."""
        x_shape = self.leading + (self.in_features,)
        return gemm_operands(self, x_shape, (self.out_features, self.in_features), self.in_features)


@st.composite
def leading_dims(draw: st.DrawFn) -> tuple[int, ...]:
    """1-3 leading dims of 1..6; under default/thorough the first is multiplied by up to
    `size_scale()` (more rows per case; smoke draws exactly as before)."""
    dims = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    if size_scale() > 1:
        dims[0] *= draw(st.integers(1, size_scale()))
    return tuple(dims)


@st.composite
def linear_cases(draw: st.DrawFn) -> LinearCase:
    """A LinearCase; one in four is "deep" (K 600..1100, activations 200..255 with zero
    point 0, extreme weights: |acc| > 2^24)."""
    deep = draw(one_in(4))
    in_features = st.integers(600, 1100) if deep else st.one_of(st.integers(1, 64), st.integers(64, 1100))
    return LinearCase(
        leading=draw(leading_dims()),
        in_features=draw(in_features),
        out_features=draw(st.integers(1, 80)),
        **draw(gemm_qparams(deep)),
    )


def reference(case: LinearCase, profile: NumericsProfile) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return linear(x, weight, bias, out_scale, case.out_zero_point, case.relu, profile)


def fast_kernel(case: LinearCase, profile: NumericsProfile) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return fast.linear(x, weight, bias, out_scale, case.out_zero_point, case.relu, profile)


def call(case: LinearCase) -> TargetCall:
    x, weight, bias, out_scale = case.arrays()
    return TargetCall("linear", dict(
        x=x.int_repr, x_scale=x.scale, x_zero_point=x.zero_point, **gemm_weight_arguments(weight), bias=bias,
        scale=out_scale, zero_point=case.out_zero_point, relu=case.relu,
    ))


def explain(case: LinearCase, profile: NumericsProfile) -> dict[str, np.ndarray]:
    """fbgemm: the int32 accumulator, the requantized float32 and its rounding per output."""
    return explained(lambda: reference(case, profile))


def oracle(case: LinearCase) -> QTensor:
    x, weight, bias, out_scale = case.arrays()
    return oracles.linear(x, weight, bias, out_scale, case.out_zero_point, case.relu)


def label(case: LinearCase) -> Iterator[str]:
    yield from qparam_labels(case)
    if case.out_features % 8:
        yield "n-tail"
    if pairs_saturate(case.act_kind, case.w_kind, case.in_features):
        yield "sat-pairs"
    if typical_acc_above_2_24(case.act_kind, case.act_zero_point, case.w_kind, case.in_features):
        yield "acc>2^24"


EXAMPLES = (
    # Pair saturation without VNNI: 255 * 127 * 2 = 64770 -> 32767 per pair.
    LinearCase((2,), 6, 3, 0.5, 0, "high", False, 0.25, "zero", "extreme", "normal", 1.0, 10, False, 5),
    # INT32_MIN pitfall: tiny output scale; relu lower bound.
    LinearCase((1, 3), 17, 9, 0.125, 129, "uniform", True, 0.0625, "odd", "uniform", "huge", 1e-9, 77, True, 9),
)

CHECK = register(
    OpCheck(
        name="linear",
        op="quantized::linear",
        cases=linear_cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        budget={"smoke": 0.5, "default": 1.75, "thorough": 0.5},  # default: >= 10^6 outputs
        call=call,
        explain=explain,
    )
)
