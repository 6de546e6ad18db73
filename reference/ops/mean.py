"""aten::mean on a quantized tensor: an integer fast path, or dequantize -> float mean -> quantize."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._arguments import dim_index, flag, int_sequence
from ..numerics import f32, rne
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ._pool_common import qnnpack_average
from ._registry import register_op
from ._tensor_iterator import orders_coincide
from ._validate import check_qtensor
from .dequantize import dequantize
from .quantize_per_tensor import quantize_per_tensor

# sum_stub is registered for the AVX2 build only: Vectorized<float> has 8 lanes and
# vectorized_outer_sum takes 4 vectors (32 columns) per multi_row_sum.
_FLOAT_LANES = 8
_OUTER_ROWS = 4


@register_op("aten::mean")
def mean(
    q: QTensor, dims: Sequence[int], keepdim: bool = False, profile: NumericsProfile = DEFAULT_PROFILE
) -> QTensor:
    """`torch.mean(q, dims, keepdim)` of a per-tensor quantized tensor (`mean_out_quantized_cpu`,
    quantized/cpu/ReduceOps.cpp). Output qparams = input's, memory format contiguous.

    NCHW-contiguous input (also a channels_last one with C == 1 or H*W == 1), `dims` the
    innermost dimensions (`qmean_inner_dim_kernel`):
      `out = nearbyint(f32(float(sum q) / float(n)))`: the raw integers are averaged
      (the zero point cancels), the int64 sum is rounded once to float32, divided once.
    Otherwise (e.g. the channels_last output of a conv, reduced over H and W):
      `x = dequantize(q)`; `s = cascade_sum(x)` (float32, SumKernel.cpp, see
      `_cascade_outer_sum`); `m = f32(s / float(n))`; `out = quantize_per_tensor(m, s_in,
      zp_in)` (FBGEMM quantize: the profile decides where the zero point is added).
      Modelled for 4-d channels_last inputs reduced over (2, 3). Threads do not change it:
      `parallel_dim_reduction` splits the outermost kept dimension (N) when N >= threads,
      and each batch is then summed exactly as on one thread; with N < threads one range
      does all the work.
    torch itself fails (and so does this function, with a ValueError) on the fast path
    with keepdim=False for a channels_last input: it allocates the 2-d result in
    channels_last format.

    Hand-worked, contiguous (1, 1, 2, 2) q = [[1, 2], [4, 4]], dims (2, 3): sum 11,
      f32(11 / 4) = 2.75 -> nearbyint 3

    Under the qnnpack engine a 4-d quint8 input with `dims` exactly (2, 3) is averaged by
    pytorch_qnnpack's global average pooling (`qnnpack_mean`, ReduceOps.cpp ->
    `pytorch_qnnp_create_global_average_pooling_nwc_q8`): `acc = sum (q - zp)` over H*W,
    `out = qnnpack_average(acc, H*W, q)`, contiguous; other dims (also (3, 2) or (-2, -1))
    and qint8 keep the kernels above. Hand-worked, (1, 2, 1, 2) q = [[0, 1]], [[3, 4]],
    zp 1: the fast path rounds 0.5 -> 0 and 3.5 -> 4; qnnpack sums -1 and 5, times 0.5:
    -0.5 -> -0 and 2.5 -> 2, + 1: [1, 3].

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> q = QTensor(np.array([[[[1, 2], [4, 4]]]], np.uint8), 0.1, 5, "quint8")
    >>> mean(q, (2, 3), keepdim=True).int_repr.tolist()
    [[[[3]]]]
    >>> pairs = QTensor(np.array([[[[0, 1]], [[3, 4]]]], np.uint8), 0.1, 1, "quint8")
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> mean(pairs, (2, 3)).int_repr.tolist(), mean(pairs, (2, 3), profile=qnnpack).int_repr.tolist()
    ([[0, 4]], [[1, 3]])
    """
    check_qtensor(q, "q")
    dims = int_sequence(dims, "dims")
    flag(keepdim, "keepdim")
    profile = as_profile(profile)
    if q.per_channel:
        raise ValueError(f"quantized mean needs a per-tensor input, got per-channel axis {q.axis}")
    ndim = q.int_repr.ndim
    wrapped = {dim_index(d, f"dims[{i}]", ndim) for i, d in enumerate(dims)}
    if profile.engine == "qnnpack" and q.dtype is QDtype.quint8 and ndim == 4 and dims == (2, 3):
        return _qnnpack_mean(q, keepdim)
    axes = sorted(wrapped) if len(dims) else list(range(ndim))
    innermost = axes == list(range(ndim - len(axes), ndim))
    if _is_contiguous_nchw(q) and innermost:
        if q.memory_format is MemoryFormat.channels_last and not keepdim:
            raise ValueError(
                f"torch fails on this input: mean over innermost dims without keepdim of a channels_last {q.shape} "
                "tensor that is also NCHW-contiguous (C == 1 or H*W == 1) allocates a 2-d output in channels_last "
                "format ('required rank 4 tensor to use channels_last format')"
            )
        ints = _inner_dim_mean(q.int_repr, len(axes))
        out_shape = q.shape[: ndim - len(axes)] + ((1,) * len(axes) if keepdim else ())
        return QTensor(
            ints.reshape(out_shape).astype(q.dtype.storage), q.scale, q.zero_point, q.dtype,
            memory_format=q.memory_format,
        )
    if not (q.memory_format is MemoryFormat.channels_last and axes == [2, 3]):
        raise NotImplementedError(
            f"quantized mean over dims {tuple(dims)} of a {q.memory_format.value} tensor of shape {q.shape} "
            "takes ATen's float reduction in an order the reference does not model yet"
        )
    n, c, h, w = q.shape
    rows = dequantize(q).transpose(0, 2, 3, 1).reshape(n, h * w, c)  # memory order: (n, hw, c)
    sums = np.stack([_cascade_outer_sum(rows[b]) for b in range(n)])
    means = f32(sums / np.float32(h * w))
    out_shape = (n, c, 1, 1) if keepdim else (n, c)
    result = quantize_per_tensor(means.reshape(out_shape), q.scale, q.zero_point, q.dtype, profile)
    return result


def _qnnpack_mean(q: QTensor, keepdim: bool) -> QTensor:
    """pytorch_qnnpack's global average pooling over H and W (see `mean`); refuses
    (EngineRefusedError) zero channels or an empty image."""
    n, c, h, w = q.shape
    if not c or not h * w:
        raise EngineRefusedError(f"pytorch_qnnpack refuses a global average pooling of {q.shape}")
    acc = q.int_repr.astype(np.int64).sum(axis=(2, 3)) - h * w * q.zero_point
    ints = qnnpack_average(acc, h * w, q)
    return QTensor(ints.reshape((n, c, 1, 1) if keepdim else (n, c)), q.scale, q.zero_point, q.dtype)


def _is_contiguous_nchw(q: QTensor) -> bool:
    """`self.is_contiguous(MemoryFormat::Contiguous)`: size-1 dims' strides are ignored, so a
    channels_last tensor with C == 1 or H*W == 1 counts as contiguous too."""
    return q.memory_format is MemoryFormat.contiguous or orders_coincide(q.shape)


def _inner_dim_mean(ints: np.ndarray, reduced: int) -> np.ndarray:
    """`qmean_inner_dim_kernel`: int64 `hsum`, one float32 rounding, float32 division, nearbyint."""
    rows = ints.reshape(int(np.prod(ints.shape[: ints.ndim - reduced], dtype=np.int64)), -1)
    sums = rows.astype(np.int64).sum(axis=1)
    return rne(f32(f32(sums) / np.float32(rows.shape[1]))).astype(np.int64)


def _cascade_outer_sum(rows: np.ndarray) -> np.ndarray:
    """Column sums of a (size, columns) float32 array as `cascade_sum` forms them when the
    kept dimension (channels) is the contiguous one.

    columns >= 8 (`vectorized_outer_sum`): whole blocks of 32 columns (4 vectors of 8) take
    `multi_row_sum` over all rows; the remaining columns (whole vectors, then scalars: the
    same arithmetic per lane) take `row_sum`.
    columns < 8 (`scalar_outer_sum`): groups of 4 columns take `multi_row_sum`; the last
    `columns % 4` take `row_sum`.
    `row_sum`: the rows as (size // 4, 4): `multi_row_sum` of each of the 4 interleaved
    streams, the `size % 4` leftover rows added into stream 0, then streams 1..3 added to
    stream 0 in order.
    """
    size, columns = rows.shape
    group = _OUTER_ROWS * _FLOAT_LANES if columns >= _FLOAT_LANES else _OUTER_ROWS
    blocked = columns // group * group
    result = np.empty(columns, dtype=np.float32)
    result[:blocked] = _multi_row_sum(rows[:, :blocked])
    rest = rows[:, blocked:]
    ilp = size // 4
    streams = [_multi_row_sum(rest[k : ilp * 4 : 4]) for k in range(4)]
    total = streams[0]
    for i in range(ilp * 4, size):
        total = f32(total + rest[i])
    for k in range(1, 4):
        total = f32(total + streams[k])
    result[blocked:] = total
    return result


def _multi_row_sum(rows: np.ndarray) -> np.ndarray:
    """SumKernel.cpp `multi_row_sum`: float32 partial sums on 4 levels.

    Level 0 adds `step = 2^max(4, ceil(log2(size)) // 4)` rows in order, then is added
    into level 1 (and level 1 into 2 ... while the row index is a multiple of the
    coarser step); leftover rows go into level 0; finally levels 1, 2, 3 are added to
    level 0 in that order. Every add rounds to float32.
    """
    size = rows.shape[0]
    levels = 4
    power = max(4, _ceil_log2(size) // levels)
    step, mask = 1 << power, (1 << power) - 1
    full = size // step * step
    # Level 0 is 0 at the start of each full step, so its value after the step is the
    # sequential float32 running sum of those rows: `np.add.accumulate` adds strictly in
    # order, one float32 rounding per add (0 + r0 = r0: dequantized values are never -0).
    blocks = rows[:full].reshape((size // step, step) + rows.shape[1:])
    steps = np.add.accumulate(blocks, axis=1, dtype=np.float32)[:, -1]
    acc = np.zeros((levels,) + rows.shape[1:], dtype=np.float32)
    i = 0
    for level0 in steps:
        acc[0] = level0
        i += step
        for j in range(1, levels):
            acc[j] = f32(acc[j] + acc[j - 1])
            acc[j - 1] = 0
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = f32(acc[0] + rows[i])
        i += 1
    for j in range(1, levels):
        acc[0] = f32(acc[0] + acc[j])
    return acc[0]


def _ceil_log2(value: int) -> int:
    """`c10::utils::CeilLog2` (0 for values <= 1)."""
    return 0 if value <= 1 else int(value - 1).bit_length()
