"""Shared case drawing for the element-wise model ops (mul, hardswish, hardsigmoid, clamp,
relu) and mean: shapes whose memory-order walk hits every vector tail, 2-thread splits,
NCHW and channels_last, and scales that put results on exact .5 ties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hypothesis import strategies as st

from quantspec.reference.ops._tensor_iterator import GRAIN_SIZE
from quantspec.reference.qtensor import MemoryFormat, QDtype

from ..strategies import QTensorCase, tail_lengths, zero_points
from ..targets import TargetCall
from ._pool_cases import scale_values


@dataclass(frozen=True)
class BinaryCase:
    """Operands, output qparams, relu and torch's thread count of quantized::add / mul
    (prints as a rebuild recipe)."""

    a: QTensorCase
    b: QTensorCase
    scale: float
    zero_point: int
    relu: bool = False
    threads: int = 1


def binary_call(op: str, case: BinaryCase) -> TargetCall:
    """add's or mul's case as a target call."""
    a, b = case.a.q, case.b.q
    return TargetCall(op, dict(
        a=a.int_repr, a_scale=float(a.scale), a_zero_point=int(a.zero_point), b=b.int_repr, b_scale=float(b.scale),
        b_zero_point=int(b.zero_point), scale=float(case.scale), zero_point=int(case.zero_point),
        dtype=a.dtype.label, relu=case.relu, a_channels_last=a.memory_format is MemoryFormat.channels_last,
        b_channels_last=b.memory_format is MemoryFormat.channels_last, threads=case.threads,
    ))


@st.composite
def shape_format_threads(
    draw: st.DrawFn, kinds: tuple[str, ...] = ("flat", "nd", "nd", "threads"), flat_max: Optional[int] = 4096
) -> tuple[tuple[int, ...], MemoryFormat, int]:
    """(shape, memory format, torch threads), drawn from `kinds`: "flat" tail lengths (up to
    `flat_max` elements; None for the strategies' default), "nd" small 4-d tensors in either
    layout, or "threads" a length above GRAIN_SIZE on 2 threads (two ranges, each with its own tail)."""
    kind = draw(st.sampled_from(kinds))
    if kind == "threads":
        return (GRAIN_SIZE + draw(tail_lengths(GRAIN_SIZE + 4096)),), MemoryFormat.contiguous, 2
    if kind == "nd":
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
        return shape, draw(st.sampled_from(tuple(MemoryFormat))), draw(st.integers(1, 2))
    flat = tail_lengths() if flat_max is None else tail_lengths(flat_max)
    return (draw(flat),), MemoryFormat.contiguous, draw(st.integers(1, 2))


@st.composite
def qtensor_cases(
    draw: st.DrawFn, dtype: QDtype, shape: tuple[int, ...], memory_format: MemoryFormat, scale: float | None = None
) -> QTensorCase:
    """A per-tensor QTensor (integers from a drawn seed, so it prints as a rebuild recipe)."""
    s = draw(scale_values()) if scale is None else scale
    return QTensorCase.from_seed(
        shape, s, draw(zero_points(dtype)), dtype, None, memory_format, draw(st.integers(0, 2**32 - 1))
    )


@st.composite
def power_of_two_scales(draw: st.DrawFn) -> float:
    """Mostly powers of two (exact ties downstream), sometimes ordinary values."""
    return draw(
        st.one_of(st.integers(-8, 4).map(lambda e: 2.0**e), st.integers(-8, 4).map(lambda e: 2.0**e), scale_values())
    )
