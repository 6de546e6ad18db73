"""aten::mean on quantized tensors against reference.ops.mean: the integer fast path
(NCHW-contiguous, innermost dims, incl. channels_last with C == 1 or H*W == 1 and keepdim)
and the channels_last float path (ATen's cascade sum over H*W, FBGEMM re-quantize), with
channel counts around the 32-column blocks (>= 8 channels) and the 4-column groups (< 8
channels, `scalar_outer_sum`), and H*W around the cascade's 16-row steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.ops import mean
from quantspec.reference.ops._tensor_iterator import orders_coincide
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..settings import size_scale
from ..strategies import QTensorCase, one_in
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._elementwise_cases import qtensor_cases
from ._pool_cases import EIGHT_BIT, LANE_CHANNELS

# H*W from here on reaches multi_row_sum's fourth level (16-row steps: 16, 256, 4096).
LEVEL3_ROWS = 4096
BIG_CHANNELS = (1, 2, 3, 4, 5, 7, 8, 9, 17, 33)  # lane splits; few, so big H*W stays <= 2 * 10^5 elements
# {H: W range}: 64 x 62..128 is 3968..8192 rows; 128 x 126..150 is 16128..19200, where each of
# row_sum's four streams passes 4096 rows too.
BIG_WIDTHS = {64: (62, 128), 128: (126, 150)}


@dataclass(frozen=True)
class MeanCase:
    """torch.mean(x, dims, keepdim) on `threads` threads; `tie_sums` nudges x's integers
    (deterministically, see `nudge_to_tie_sums`) so every reduced group's mean is a .5 tie."""

    x: QTensorCase
    dims: tuple[int, ...]
    keepdim: bool
    threads: int = 1
    tie_sums: bool = False

    @property
    def q(self) -> QTensor:
        return nudge_to_tie_sums(self.x.q, self.dims) if self.tie_sums else self.x.q


def nudge_to_tie_sums(q: QTensor, dims: tuple[int, ...]) -> QTensor:
    """`q` with each group reduced over the innermost `dims` moved by +-1 steps (first
    movable elements in logical order first) until its sum is n/2 modulo its size n: the
    exact mean is then k + 0.5, and so is `sum (q - zp) / n` (zp * n is 0 modulo n).
    Odd n cannot tie; those groups are returned unchanged."""
    n = int(np.prod([q.shape[d] for d in dims]))
    if n % 2:
        return q
    rows = q.int_repr.reshape(-1, n).astype(np.int64)
    lo, hi = q.dtype.qmin, q.dtype.qmax
    delta = n // 2 - rows.sum(axis=1) % n  # in (-n/2, n/2]
    # Go the other way (delta -+ n) when one side lacks room: the other then has plenty.
    delta = np.where((delta > 0) & ((hi - rows).sum(axis=1) < delta), delta - n, delta)
    delta = np.where((delta < 0) & ((rows - lo).sum(axis=1) < -delta), delta + n, delta)
    while delta.any():
        step = np.sign(delta)[:, None]
        movable = np.where(step > 0, rows < hi, rows > lo) & (step != 0)
        move = movable & (np.cumsum(movable, axis=1) <= np.abs(delta)[:, None])
        rows += step * move
        delta -= step[:, 0] * move.sum(axis=1)
    ints = rows.reshape(q.shape).astype(q.dtype.storage)
    return QTensor(ints, q.scale, q.zero_point, q.dtype, memory_format=q.memory_format)


def reference(case: MeanCase, profile: NumericsProfile) -> QTensor:
    return mean(case.q, case.dims, case.keepdim, profile)


def oracle(case: MeanCase) -> QTensor:
    return oracles.mean(case.q, case.dims, case.keepdim, case.threads)


def call(case: MeanCase) -> TargetCall:
    return TargetCall("mean", dict(**tensor_arguments(case.q), dims=list(case.dims), keepdim=case.keepdim,
                                   threads=case.threads))


@st.composite
def cases(draw: st.DrawFn) -> MeanCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    if draw(one_in(12)):  # 1 in 12: H*W past 4096, N = 1
        channels = draw(st.sampled_from(BIG_CHANNELS))
        height = draw(st.sampled_from(tuple(BIG_WIDTHS))) if channels <= 9 else 64
        shape = (1, channels, height, draw(st.integers(*BIG_WIDTHS[height])))
    else:
        channels = draw(st.sampled_from(LANE_CHANNELS + (4, 5, 6, 96, 100, 128)))
        shape = (draw(st.integers(1, 3 * size_scale())), channels, draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    h, w = shape[2:]
    memory_format = draw(st.sampled_from(tuple(MemoryFormat)))
    x = draw(qtensor_cases(dtype, shape, memory_format))
    nchw_contiguous = memory_format is MemoryFormat.contiguous or orders_coincide(shape)
    dims = draw(st.sampled_from(((2, 3), (3,), (1, 2, 3)))) if memory_format is MemoryFormat.contiguous else (2, 3)
    keepdim = True if (nchw_contiguous and memory_format is MemoryFormat.channels_last) else draw(st.booleans())
    return MeanCase(x, dims, keepdim, draw(st.integers(1, 2)), draw(st.booleans()))


def label(case: MeanCase) -> Iterator[str]:
    q = case.q
    _, c, h, w = q.shape
    fast = q.memory_format is MemoryFormat.contiguous or orders_coincide(q.shape)
    yield "integer-path" if fast else "float-cascade"
    if not fast and c % 32:
        yield "row_sum-columns"
    if h * w > 16:
        yield "multi-level"
    if not fast and h * w >= LEVEL3_ROWS:
        yield "hw>=4096"
    if case.tie_sums and int(np.prod([q.shape[d] for d in case.dims])) % 2 == 0:
        yield "tie-sums"


def _tie_case(shape: tuple[int, int, int, int], scale: float, zero_point: int, dtype: QDtype, seed: int) -> MeanCase:
    x = QTensorCase.from_seed(shape, scale, zero_point, dtype, None, MemoryFormat.channels_last, seed)
    return MeanCase(x, (2, 3), True, 2, True)


# Level-3 partial sums next to lower-level ones, on tie sums with scales that are not powers
# of two (so the summation order decides). A cascade with only three levels gets 1 of 3,
# 4 of 33 and 2 of 10 of these outputs wrong (torch 2.13.0).
EXAMPLES = (
    _tie_case((1, 3, 128, 150), 0.1, 37, QDtype.quint8, 1),  # row_sum: 4 streams of 4800 rows
    _tie_case((1, 33, 64, 70), 0.1, 11, QDtype.qint8, 4),  # one 32-column block over 4480 rows, then row_sum
    _tie_case((2, 5, 64, 80), 0.1, 11, QDtype.quint8, 5),  # scalar_outer_sum: a 4-column group, then row_sum
)

CHECK = register(
    OpCheck(
        name="mean", op="aten::mean", cases=cases(), reference=reference, torch=oracle, label=label,
        examples=EXAMPLES,
        call=call,
        budget={"smoke": 1, "default": 8, "thorough": 1},  # default: >= 10^6 means (outputs)
    )
)
