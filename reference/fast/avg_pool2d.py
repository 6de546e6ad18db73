"""`quantspec.reference.ops.avg_pool2d`, fast: each window's sum as the sum of its kH x kW taps
(strided views of the zero-padded input, in its memory order), the output stage looked up in a
table of the plain formula (`pool_tables`).

Exact: the taps of a window are its valid inputs plus padding zeros, which add nothing, so the
integer tap sum (in a type holding every sum of kH * kW taps: `pool_tables.sum_dtype`) is the
plain op's prefix-sum window sum; the output
stage is the plain op's formula, evaluated on every sum a window class can produce.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from ..ops._pool_common import nhwc_kernel_result, takes_nhwc_kernel
from ..ops.avg_pool2d import (
    IntOrPair,
    checked_arguments,
    nhwc_scalar_tail,
    nhwc_vector_channels,
    nhwc_vector_lanes,
    qnnpack_avg_pool2d,
    requantize_nchw,
    requantize_nhwc,
    window_geometry,
)
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor, memory_format_of
from .pool_tables import (
    TABLE_MAX_ENTRIES,
    formula_tables,
    read_only,
    sum_dtype,
    sum_range,
    table_index,
    window_classes,
)


def avg_pool2d(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair] = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantspec.reference.ops.avg_pool2d` (same arguments and result), fast.

    >>> q = QTensor(np.array([[[[0, 1], [2, 2]]]], np.uint8), 0.1, 1, "quint8")
    >>> avg_pool2d(q, 2).int_repr.tolist()  # ops.avg_pool2d's case
    [[[[1]]]]
    """
    kernel, strides, pad, profile = checked_arguments(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, profile
    )
    if profile.engine == "qnnpack" and x.dtype is QDtype.quint8 and not ceil_mode:
        return qnnpack_avg_pool2d(x, kernel, strides, pad)
    size, divisor, classes, class_index = _windows(
        x.shape[2:], kernel, strides, pad, ceil_mode, count_include_pad, divisor_override
    )
    taps = tuple(c[0] for c in classes)
    sums, (h_axis, w_axis) = tap_sums(x.int_repr, kernel, strides, pad, divisor.shape, sum_dtype(x.dtype, max(taps)))
    nhwc = takes_nhwc_kernel(x)
    lowest, span = sum_range(x.dtype, max(taps))
    qparams = (x.scale, x.zero_point, x.dtype)
    if len(classes) * span > TABLE_MAX_ENTRIES:  # too many sums to tabulate: the plain formula on these sums
        logical = sums.transpose(0, 3, 1, 2) if h_axis == 1 else sums
        acc = logical - size * x.zero_point
        ints = requantize_nhwc(acc, divisor, x, profile) if nhwc else requantize_nchw(acc, divisor, x)
    else:
        index = table_index(sums, class_index, lowest, span, (h_axis, w_axis))
        if nhwc:
            vector, scalar = formula_tables((_nhwc_vector, _nhwc_scalar), classes, taps, qparams, profile)
            ints = look_up(vector, scalar, index, nhwc_vector_channels(x.shape[1], profile), h_axis == 1)
        else:
            ints = formula_tables((_nchw,), classes, taps, qparams, profile)[0].take(index)
        ints = ints.transpose(0, 3, 1, 2) if h_axis == 1 else ints
    if nhwc:
        ints, memory_format = nhwc_kernel_result(ints, x)
    else:
        memory_format = x.memory_format
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


@functools.lru_cache(maxsize=256)
def _windows(
    height_width: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
) -> tuple:
    """Each window's valid taps and divisor (OH, OW), and their classes (`window_classes`);
    cached, as a model pools one shape again and again."""
    rows, cols, divisor = window_geometry(
        (0, 0) + tuple(height_width), kernel, stride, pad, ceil_mode, count_include_pad, divisor_override
    )
    size = (rows[1] - rows[0])[:, None] * (cols[1] - cols[0])[None, :]
    classes, class_index = window_classes(size, divisor)
    read_only(size, divisor)
    return size, divisor, classes, class_index


def tap_sums(
    values: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_size: tuple[int, int],
    dtype: np.dtype,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Every window's integer sum (in `dtype`, which must hold every sum of kH * kW taps) in
    `values`' memory order, and its (H, W) axes: the sum of the kernel's taps, each a strided
    view of the input zero-padded by `pad` (top, left) and as far as the last window reaches
    (bottom, right: ceil mode)."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, pad, out_size
    channels_last = memory_format_of(values) is MemoryFormat.channels_last
    work = values.transpose(0, 2, 3, 1) if channels_last else values
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    height, width = work.shape[h_axis], work.shape[w_axis]
    padded_h = max(height + ph, (oh - 1) * sh + kh)
    padded_w = max(width + pw, (ow - 1) * sw + kw)
    if (ph, pw) != (0, 0) or (padded_h, padded_w) != (height, width):
        shape = list(work.shape)
        shape[h_axis], shape[w_axis] = padded_h, padded_w
        padded = np.zeros(shape, work.dtype)
        interior = [slice(None)] * 4
        interior[h_axis], interior[w_axis] = slice(ph, ph + height), slice(pw, pw + width)
        padded[tuple(interior)] = work
        work = padded
    sums = None
    for i in range(kh):
        for j in range(kw):
            tap = [slice(None)] * 4
            tap[h_axis] = slice(i, i + (oh - 1) * sh + 1, sh)
            tap[w_axis] = slice(j, j + (ow - 1) * sw + 1, sw)
            if sums is None:
                sums = work[tuple(tap)].astype(dtype)
            else:
                sums += work[tuple(tap)]
    return sums, (h_axis, w_axis)


def look_up(
    vector: np.ndarray, scalar: np.ndarray, index: np.ndarray, vector_channels: int, channels_last: bool
) -> np.ndarray:
    """Table `vector` at `index` for the first `vector_channels` channels, table `scalar` for the rest."""
    channel_axis = 3 if channels_last else 1
    if vector_channels == index.shape[channel_axis]:
        return vector.take(index)
    ints = np.empty(index.shape, vector.dtype)
    for table, channels in ((vector, slice(None, vector_channels)), (scalar, slice(vector_channels, None))):
        part = [slice(None)] * 4
        part[channel_axis] = channels
        ints[tuple(part)] = table.take(index[tuple(part)])
    return ints


# The plain output stages as functions of the raw window sum and the window class (size, divisor).
def _nhwc_vector(sums: np.ndarray, size: np.ndarray, divisor: np.ndarray, x: QTensor, profile: NumericsProfile):
    return nhwc_vector_lanes(sums - size * x.zero_point, divisor, x)


def _nhwc_scalar(sums: np.ndarray, size: np.ndarray, divisor: np.ndarray, x: QTensor, profile: NumericsProfile):
    return nhwc_scalar_tail(sums - size * x.zero_point, divisor, x, profile)


def _nchw(sums: np.ndarray, size: np.ndarray, divisor: np.ndarray, x: QTensor, profile: NumericsProfile):
    return requantize_nchw(sums - size * x.zero_point, divisor, x)
