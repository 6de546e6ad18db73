"""quantized::cat and torch.cat on quantized tensors against reference.ops.cat: the NHWC
fast path (copy for equal qparams, 32/8-channel vector blocks, scalar tail; also reached by
NCHW inputs with C == 1 or H*W == 1), the generic dequantize-cat-quantize path, other dims;
and the reference's fast kernel (`reference.fast.cat`) against the same plain definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.ops import cat
from quantspec.reference.ops._pool_common import takes_nhwc_kernel
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..settings import size_scale
from ..strategies import QTensorCase, one_in, zero_points
from ..targets import TargetCall
from . import OpCheck, register
from ._pool_cases import EIGHT_BIT, LANE_CHANNELS, scale_values


@dataclass(frozen=True)
class CatCase:
    """Inputs, dim and output qparams (None: torch.cat, which uses tensors[0]'s)."""

    inputs: tuple[QTensorCase, ...]
    dim: int
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    threads: int = 1

    @property
    def tensors(self) -> list[QTensor]:
        return [case.q for case in self.inputs]


def reference(case: CatCase, profile: NumericsProfile) -> QTensor:
    return cat(case.tensors, case.dim, case.scale, case.zero_point, profile)


def fast_kernel(case: CatCase, profile: NumericsProfile) -> QTensor:
    return fast.cat(case.tensors, case.dim, case.scale, case.zero_point, profile)


def oracle(case: CatCase) -> QTensor:
    return oracles.cat(case.tensors, case.dim, case.scale, case.zero_point, case.threads)


def call(case: CatCase) -> TargetCall:
    tensors = case.tensors
    return TargetCall("cat", dict(
        tensors=[t.int_repr for t in tensors], scales=[float(t.scale) for t in tensors],
        zero_points=[int(t.zero_point) for t in tensors], dtype=tensors[0].dtype.label,
        channels_last=[t.memory_format is MemoryFormat.channels_last for t in tensors], dim=case.dim,
        scale=None if case.scale is None else float(case.scale),
        zero_point=None if case.zero_point is None else int(case.zero_point), threads=case.threads,
    ))


@st.composite
def cases(draw: st.DrawFn) -> CatCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(1, 4))
    # dim and layout from the seed: Hypothesis alone would favour the first choices.
    dim = int(rng.choice((1, 0, 2, 3, -1), p=(0.6, 0.1, 0.1, 0.1, 0.1)))
    hw1 = rng.random() < 0.2
    n = draw(st.integers(1, 2 * size_scale()))
    h = 1 if hw1 else draw(st.integers(1, 6))
    w = 1 if hw1 else draw(st.integers(1, 6))
    layout = str(rng.choice(("channels_last", "contiguous", "mixed"), p=(0.5, 0.25, 0.25)))
    out_scale, out_zp = draw(_pow2_or_any_scale()), draw(zero_points(dtype))
    common_channels = int(rng.choice(LANE_CHANNELS))
    tensors = []
    for index in range(count):
        shape = [n, int(rng.choice(LANE_CHANNELS)) if dim == 1 else common_channels, h, w]
        if dim != 1:
            shape[dim % 4] = draw(st.integers(1, 4))
        if draw(one_in(4)):  # the output's qparams: copied on the NHWC path
            scale, zp = out_scale, out_zp
        else:
            scale, zp = draw(_pow2_or_any_scale()), draw(zero_points(dtype))
        memory_format = _format(layout, index)
        tensors.append(
            QTensorCase.from_seed(tuple(shape), scale, zp, dtype, None, memory_format, int(rng.integers(2**32)))
        )
    use_torch_cat = draw(one_in(5))
    return CatCase(
        tuple(tensors),
        dim,
        None if use_torch_cat else out_scale,
        None if use_torch_cat else out_zp,
        draw(st.integers(1, 2)),
    )


def _pow2_or_any_scale() -> st.SearchStrategy[float]:
    """Powers of two make dequantized values land on .5 ties of the output scale."""
    return st.one_of(st.integers(-4, 2).map(lambda e: 2.0**e), scale_values())


def _format(layout: str, index: int) -> MemoryFormat:
    if layout == "mixed":
        return MemoryFormat.channels_last if index % 2 == 0 else MemoryFormat.contiguous
    return MemoryFormat(layout)


def label(case: CatCase) -> Iterator[str]:
    first = case.tensors[0]
    yield first.dtype.label
    nhwc = case.dim % 4 == 1 and all(takes_nhwc_kernel(t) for t in case.tensors)
    yield "nhwc-path" if nhwc else "generic-path"
    if nhwc and any(t.memory_format is MemoryFormat.contiguous for t in case.tensors):
        yield "routed-nhwc"
    scale = first.scale if case.scale is None else case.scale
    zp = first.zero_point if case.zero_point is None else case.zero_point
    if any(t.scale == scale and t.zero_point == zp for t in case.tensors):
        yield "copy"
    if nhwc and any(t.shape[1] % 8 for t in case.tensors):
        yield "scalar-tail"
    if case.scale is None:
        yield "torch.cat"
    if zp % 2:
        yield "odd-zp"


def _twos(channels: int, memory_format: MemoryFormat) -> QTensorCase:
    return QTensorCase(
        QTensor(np.full((1, channels, 1, 2), 2, np.uint8), 0.25, 0, QDtype.quint8, memory_format=memory_format)
    )


EXAMPLES = (
    # 9 NHWC channels of 0.5 into scale 1, zp 1: 8 vector lanes round first (1), the 9th is
    # the scalar tail (2.13: 2, 2.14: 1); the NCHW twin takes the generic path (2.13: 2).
    CatCase((_twos(9, MemoryFormat.channels_last),), 1, 1.0, 1),
    CatCase((_twos(9, MemoryFormat.contiguous),), 1, 1.0, 1),
    CatCase((_twos(1, MemoryFormat.contiguous), _twos(33, MemoryFormat.channels_last)), 1, 1.0, 1),
)

CHECK = register(
    OpCheck(
        name="cat",
        op="quantized::cat",
        cases=cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        call=call,
        budget={"smoke": 1, "default": 1.2, "thorough": 1},  # default: >= 10^6 outputs
    )
)
