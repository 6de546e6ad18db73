"""aten::mean on quantized tensors against reference.ops.mean: the integer fast path
(NCHW-contiguous, innermost dims, incl. channels_last with C == 1 or H*W == 1 and keepdim)
and the channels_last float path (ATen's cascade sum over H*W, FBGEMM re-quantize), with
channel counts around the 32-column blocks (>= 8 channels) and the 4-column groups (< 8
channels, `scalar_outer_sum`), and H*W around the cascade's 16-row steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from hypothesis import strategies as st

from reference.ops import mean
from reference.profile import NumericsProfile
from reference.qtensor import MemoryFormat, QTensor

from ..oracles import from_torch, to_torch
from ..settings import size_scale
from ..strategies import QTensorCase
from ._elementwise_cases import qtensor_cases
from ._pool_cases import EIGHT_BIT, LANE_CHANNELS, torch_threads
from . import OpCheck, register


@dataclass(frozen=True)
class MeanCase:
    x: QTensorCase
    dims: tuple[int, ...]
    keepdim: bool
    threads: int = 1


def reference(case: MeanCase, profile: NumericsProfile) -> QTensor:
    return mean(case.x.q, case.dims, case.keepdim, profile)


def oracle(case: MeanCase) -> QTensor:
    with torch_threads(case.threads):
        return from_torch(torch.mean(to_torch(case.x.q), case.dims, case.keepdim))


@st.composite
def cases(draw: st.DrawFn) -> MeanCase:
    dtype = draw(st.sampled_from(EIGHT_BIT))
    channels = draw(st.sampled_from(LANE_CHANNELS + (4, 5, 6, 96, 100, 128)))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    shape = (draw(st.integers(1, 3 * size_scale())), channels, h, w)
    memory_format = draw(st.sampled_from(tuple(MemoryFormat)))
    x = draw(qtensor_cases(dtype, shape, memory_format))
    nchw_contiguous = memory_format is MemoryFormat.contiguous or channels == 1 or h * w == 1
    dims = draw(st.sampled_from(((2, 3), (3,), (1, 2, 3)))) if memory_format is MemoryFormat.contiguous else (2, 3)
    keepdim = True if (nchw_contiguous and memory_format is MemoryFormat.channels_last) else draw(st.booleans())
    return MeanCase(x, dims, keepdim, draw(st.integers(1, 2)))


def label(case: MeanCase) -> Iterator[str]:
    q = case.x.q
    _, c, h, w = q.shape
    fast = q.memory_format is MemoryFormat.contiguous or c == 1 or h * w == 1
    yield "integer-path" if fast else "float-cascade"
    if not fast and c % 32:
        yield "row_sum-columns"
    if h * w > 16:
        yield "multi-level"


CHECK = register(
    OpCheck(
        name="mean", op="aten::mean", cases=cases(), reference=reference, torch=oracle, label=label,
        budget={"smoke": 1, "default": 8, "thorough": 1},  # default: >= 10^6 means (outputs)
    )
)
