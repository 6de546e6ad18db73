"""Cases shared by the add, pooling and cat checks: 4-d quantized inputs that reach the
kernels' hard spots, printed as pasteable literals, and a thread-count guard for torch.

Channel counts hit every vector split these kernels have: 8-lane blocks (AVX2 NHWC
adaptive pool, cat), 16-lane blocks (AVX512 NHWC avg pool), 32-channel blocks (cat), and
the scalar tails after each; C == 1 and H*W == 1 make NCHW inputs take the NHWC kernels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from hypothesis import strategies as st

from reference.qtensor import MemoryFormat, QDtype, QTensor

from ..strategies import format_array, int_values, zero_points

EIGHT_BIT = (QDtype.quint8, QDtype.qint8)
LANE_CHANNELS = (1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 32, 33, 40, 47, 48, 64, 65)


def qtensor_literal(q: QTensor) -> str:
    """A QTensor as a constructor call (integers listed when small)."""
    return (
        f"QTensor({format_array(q.int_repr, limit=256)}, {q.scale!r}, {q.zero_point!r}, QDtype.{q.dtype.label}, "
        f"memory_format=MemoryFormat.{q.memory_format.value})"
    )


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with `count` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def scale_values() -> st.SearchStrategy[float]:
    """Double scales: powers of two (exact ties downstream) or ordinary values."""
    return st.one_of(st.integers(-10, 6).map(lambda e: 2.0**e), st.floats(1e-3, 10.0))


@st.composite
def nchw_qtensors(
    draw: st.DrawFn,
    dtype: QDtype,
    shape: tuple[int, int, int, int],
    memory_format: MemoryFormat,
    scale: float | None = None,
    zero_point: int | None = None,
) -> QTensor:
    """A per-tensor 4-d QTensor with integers from `strategies.int_values` (uniform, range
    ends, values near the zero point)."""
    zp = draw(zero_points(dtype)) if zero_point is None else zero_point
    s = draw(scale_values()) if scale is None else scale
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ints = int_values(rng, int(np.prod(shape)), dtype, np.int64(zp)).reshape(shape)
    return QTensor(ints, s, zp, dtype, memory_format=memory_format)


@st.composite
def pool_shapes(draw: st.DrawFn, max_side: int = 10) -> tuple[int, int, int, int]:
    """(N, C, H, W): lane-hitting channel counts, sometimes C == 1 or H == W == 1.

    The channel count and shape kind come from a drawn seed, so that small budgets still
    spread over every lane split (Hypothesis alone favours the first, simplest choices).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = int(rng.choice(LANE_CHANNELS))
    kind = rng.choice(("any", "any", "any", "hw1", "c1"))
    if kind == "hw1":
        return draw(st.integers(1, 2)), channels, 1, 1
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return draw(st.integers(1, 2)), 1 if kind == "c1" else channels, height, width


@st.composite
def pool_inputs(draw: st.DrawFn) -> QTensor:
    """A 4-d quint8/qint8 input for the pooling ops, NCHW or channels_last."""
    dtype = draw(st.sampled_from(EIGHT_BIT))
    memory_format = draw(st.sampled_from(tuple(MemoryFormat)))
    return draw(nchw_qtensors(dtype, draw(pool_shapes()), memory_format))


@dataclass(frozen=True)
class PoolCase:
    """One pooling call: the input, the op's keyword arguments and torch's thread count."""

    x: QTensor
    kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    def __repr__(self) -> str:
        return f"PoolCase(x={qtensor_literal(self.x)}, kwargs={self.kwargs!r}, threads={self.threads})"


def pool_labels(x: QTensor, out: QTensor) -> Iterator[str]:
    """Coverage buckets every pooling check reports."""
    _, channels, height, width = x.shape
    yield x.dtype.label
    yield x.memory_format.value
    nhwc = x.memory_format is MemoryFormat.channels_last or channels == 1 or height * width == 1
    yield "nhwc-kernel" if nhwc else "nchw-kernel"
    if x.memory_format is MemoryFormat.contiguous and nhwc:
        yield "routed-nhwc"
        if height * width == 1 and channels > 1 and out.shape[2] * out.shape[3] > 1:
            yield "hw1-scrambled"
    if x.zero_point % 2:
        yield "odd-zp"
    for lanes in (8, 16):
        if channels % lanes and channels > lanes:
            yield f"lanes{lanes}+tail"
