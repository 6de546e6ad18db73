"""Cases shared by the add, pooling and cat checks: 4-d quantized inputs that reach the
kernels' hard spots, printed as pasteable literals, and the pooling checks' labels.

Channel counts hit every vector split these kernels have: 8-lane blocks (AVX2 NHWC
adaptive pool, cat), 16-lane blocks (AVX512 NHWC avg pool), 32-channel blocks (cat), and
the scalar tails after each; C == 1 and H*W == 1 make NCHW inputs take the NHWC kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.ops._pool_common import pooling_output_size, takes_nhwc_kernel
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from ..settings import size_scale
from ..strategies import QTensorCase, zero_points

EIGHT_BIT = (QDtype.quint8, QDtype.qint8)
LANE_CHANNELS = (1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 32, 33, 40, 47, 48, 64, 65)


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
) -> QTensorCase:
    """A per-tensor 4-d QTensor whose integers come from `strategies.int_values` (uniform,
    range ends, values near the zero point) for a drawn seed: it prints as a rebuild recipe."""
    zp = draw(zero_points(dtype)) if zero_point is None else zero_point
    s = draw(scale_values()) if scale is None else scale
    seed = draw(st.integers(0, 2**32 - 1))
    return QTensorCase.from_seed(shape, s, zp, dtype, None, memory_format, seed)


@st.composite
def pool_shapes(draw: st.DrawFn, max_side: int = 10) -> tuple[int, int, int, int]:
    """(N, C, H, W): lane-hitting channel counts, sometimes C == 1 or H == W == 1.

    The channel count and shape kind come from a drawn seed, so that small budgets still
    spread over every lane split (Hypothesis alone favours the first, simplest choices).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = int(rng.choice(LANE_CHANNELS))
    kind = rng.choice(("any", "any", "any", "hw1", "c1"))
    batch = st.integers(1, 2 * size_scale())  # more images per case under default/thorough
    if kind == "hw1":
        return draw(batch), channels, 1, 1
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return draw(batch), 1 if kind == "c1" else channels, height, width


@st.composite
def pool_inputs(draw: st.DrawFn) -> QTensorCase:
    """A 4-d quint8/qint8 input for the pooling ops, NCHW or channels_last."""
    dtype = draw(st.sampled_from(EIGHT_BIT))
    memory_format = draw(st.sampled_from(tuple(MemoryFormat)))
    return draw(nchw_qtensors(dtype, draw(pool_shapes()), memory_format))


@dataclass(frozen=True)
class PoolCase:
    """One pooling call: the input, the op's keyword arguments and torch's thread count."""

    input: QTensorCase
    kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @property
    def x(self) -> QTensor:
        return self.input.q


def pool_output_hw(x: QTensor, kwargs: dict[str, Any]) -> tuple[int, int]:
    """(OH, OW) of max_pool2d / avg_pool2d of `x` with these keyword arguments (no
    "dilation": 1)."""
    dilation = kwargs.get("dilation", (1, 1))

    def size(i: int) -> int:
        return pooling_output_size(x.shape[2 + i], kwargs["kernel_size"][i], kwargs["padding"][i], kwargs["stride"][i],
                                   dilation[i], kwargs["ceil_mode"])

    return size(0), size(1)


def pool_labels(x: QTensor, output_hw: tuple[int, int]) -> Iterator[str]:
    """Coverage buckets every pooling check reports, from the input and the output's
    (OH, OW) alone: labels must not cost a reference run."""
    _, channels, height, width = x.shape
    yield x.dtype.label
    yield x.memory_format.value
    nhwc = takes_nhwc_kernel(x)
    yield "nhwc-kernel" if nhwc else "nchw-kernel"
    if x.memory_format is MemoryFormat.contiguous and nhwc:
        yield "routed-nhwc"
        if height * width == 1 and channels > 1 and output_hw[0] * output_hw[1] > 1:
            yield "hw1-scrambled"
    if x.zero_point % 2:
        yield "odd-zp"
    for lanes in (8, 16):
        if channels % lanes and channels > lanes:
            yield f"lanes{lanes}+tail"
