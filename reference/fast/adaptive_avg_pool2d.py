"""`quantspec.reference.ops.adaptive_avg_pool2d`, fast: window sums in the input's memory order
(a global pool of NHWC memory: one reduction over the pixels; small images: one float32 product
with a 0/1 window matrix; else rows first, one sum per output row band, then columns), and the
output stage looked up in a table of the plain formula (`pool_tables`).

Exact: integer sums in any order are the plain op's prefix-sum window sums (in a type that
holds every sum of the window's taps: `pool_tables.sum_dtype`); the output stage is the plain
op's formula, evaluated on every sum a window class (its height and width) can produce.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import numpy as np

from ..ops._pool_common import nhwc_kernel_result, takes_nhwc_kernel
from ..ops.adaptive_avg_pool2d import (
    NHWC_VECTOR_CHANNELS,
    average_nchw,
    axis_windows,
    checked_arguments,
    nhwc_scalar_tail,
    nhwc_vector_lanes,
    takes_qnnpack_kernel,
)
from ..ops.avg_pool2d import qnnpack_avg_pool2d
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QTensor, memory_format_of
from .avg_pool2d import look_up
from .pool_tables import (
    TABLE_MAX_ENTRIES,
    formula_tables,
    read_only,
    sum_dtype,
    sum_range,
    table_index,
    window_classes,
)


def adaptive_avg_pool2d(
    x: QTensor, output_size: Union[int, Sequence[int]], profile: NumericsProfile = DEFAULT_PROFILE
) -> QTensor:
    """`quantspec.reference.ops.adaptive_avg_pool2d` (same arguments and result), fast.

    >>> q = QTensor(np.array([[[[0, 1]], [[3, 4]]]], np.uint8), 0.1, 1, "quint8")
    >>> adaptive_avg_pool2d(q, 1).int_repr.ravel().tolist()  # ops.adaptive_avg_pool2d's case
    [0, 4]
    """
    (out_h, out_w), profile = checked_arguments(x, output_size, profile)
    _, channels, height, width = x.shape
    if takes_qnnpack_kernel(x, (out_h, out_w), profile):
        window = (height // out_h, width // out_w)
        return qnnpack_avg_pool2d(x, window, window, (0, 0))
    rows, cols, (k_h, k_w), classes, class_index, band_matrix = _windows(height, width, out_h, out_w)
    taps = tuple(h * w for h, w in classes)
    channels_last_memory = memory_format_of(x.int_repr) is MemoryFormat.channels_last
    if (out_h, out_w) == (1, 1) and channels_last_memory:  # global pooling of NHWC memory: one reduction
        pixels = x.int_repr.transpose(0, 2, 3, 1).reshape(x.shape[0], height * width, channels)
        sums, (h_axis, w_axis) = pixels.sum(axis=1, dtype=sum_dtype(x.dtype, max(taps)))[:, None, None, :], (1, 2)
    elif band_matrix is not None and max(taps) * 256 <= 2**24:
        sums, (h_axis, w_axis) = matmul_sums(x.int_repr, band_matrix, (out_h, out_w))
    else:
        sums, (h_axis, w_axis) = band_sums(x.int_repr, rows, cols, sum_dtype(x.dtype, max(taps)))
    nhwc = takes_nhwc_kernel(x)
    lowest, span = sum_range(x.dtype, max(taps))
    qparams = (x.scale, x.zero_point, x.dtype)
    vector_channels = channels // NHWC_VECTOR_CHANNELS * NHWC_VECTOR_CHANNELS if nhwc else channels
    if len(classes) * span > TABLE_MAX_ENTRIES:  # too many sums to tabulate: the plain formula on these sums
        logical = sums.transpose(0, 3, 1, 2) if h_axis == 1 else sums
        if nhwc:
            ints = np.where(
                (np.arange(channels) < vector_channels)[None, :, None, None],
                nhwc_vector_lanes(logical, k_h * k_w, x, profile),
                nhwc_scalar_tail(logical, k_h * k_w, x, profile),
            )
        else:
            ints = average_nchw(logical, k_h, k_w, x)
    else:
        index = table_index(sums, class_index, lowest, span, (h_axis, w_axis))
        tables = formula_tables((_nhwc_vector, _nhwc_scalar) if nhwc else (_nchw,), classes, taps, qparams, profile)
        vector, scalar = tables[0], tables[-1]
        ints = look_up(vector, scalar, index, vector_channels, h_axis == 1)
        ints = ints.transpose(0, 3, 1, 2) if h_axis == 1 else ints
    if nhwc:
        ints, memory_format = nhwc_kernel_result(ints, x)
    else:
        memory_format = x.memory_format
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


# Up to this many (window, pixel) entries the window sums are one float32 matrix product.
BAND_MATRIX_MAX_ENTRIES = 1 << 16


@functools.lru_cache(maxsize=64)  # band matrices up to 256 KB each
def _windows(height: int, width: int, out_h: int, out_w: int) -> tuple:
    """The plain op's windows (rows, columns), their heights (OH, 1) and widths (1, OW), their
    classes (`window_classes`), and for small images the 0/1 band matrix `matmul_sums` takes
    (else None); cached, as a model pools one shape again and again."""
    rows, cols = axis_windows(height, out_h), axis_windows(width, out_w)
    k_h, k_w = (rows[1] - rows[0])[:, None], (cols[1] - cols[0])[None, :]
    classes, class_index = window_classes(k_h, k_w)
    read_only(*rows, *cols, k_h, k_w)
    band_matrix = None
    if out_h * out_w * height * width <= BAND_MATRIX_MAX_ENTRIES:
        row_bands, col_bands = (
            (np.arange(size)[None, :] >= start[:, None]) & (np.arange(size)[None, :] < end[:, None])
            for size, (start, end) in ((height, rows), (width, cols))
        )
        band_matrix = np.kron(row_bands, col_bands).astype(np.float32)  # (OH*OW, H*W)
        read_only(band_matrix)
    return rows, cols, (k_h, k_w), classes, class_index, band_matrix


def matmul_sums(
    values: np.ndarray, band_matrix: np.ndarray, out_size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """Every window's sum of `values` (NCHW-indexed) as one float32 product with the 0/1 matrix
    of window (row) x pixel (column) in its memory order, and the result's (H, W) axes.
    Exact when every window holds at most 2^16 taps: each partial sum is then an integer of
    magnitude at most 2^16 * 255 < 2^24, which float32 holds exactly, in whatever order BLAS adds."""
    n, c, h, w = values.shape
    if memory_format_of(values) is MemoryFormat.channels_last:
        pixels = values.transpose(0, 2, 3, 1).reshape(n, h * w, c).astype(np.float32)
        return np.matmul(band_matrix, pixels).reshape(n, *out_size, c), (1, 2)
    pixels = values.reshape(n * c, h * w).astype(np.float32)
    return (pixels @ band_matrix.T).reshape(n, c, *out_size), (2, 3)


def band_sums(
    values: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray], dtype: np.dtype
) -> tuple[np.ndarray, tuple[int, int]]:
    """The integer sum (in `dtype`, which must hold every sum) of every window rows
    [rows[0][i], rows[1][i]) x columns [cols[0][j], cols[1][j]) of `values` (NCHW-indexed), in
    its memory order, and the result's (H, W) axes."""
    channels_last = memory_format_of(values) is MemoryFormat.channels_last
    work = values.transpose(0, 2, 3, 1) if channels_last else values
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    return _sum_bands(_sum_bands(work, rows, h_axis, dtype), cols, w_axis, dtype), (h_axis, w_axis)


def _sum_bands(values: np.ndarray, bands: tuple[np.ndarray, np.ndarray], axis: int, dtype: np.dtype) -> np.ndarray:
    """Sums of `values` over each band [start, end) along `axis`, stacked along it."""
    band = [slice(None)] * values.ndim
    parts = []
    for start, end in zip(bands[0].tolist(), bands[1].tolist()):
        band[axis] = slice(start, end)
        parts.append(values[tuple(band)].sum(axis=axis, dtype=dtype, keepdims=True))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)


# The plain output stages as functions of the raw window sum and the window class (k_h, k_w).
def _nhwc_vector(sums: np.ndarray, k_h: np.ndarray, k_w: np.ndarray, x: QTensor, profile: NumericsProfile):
    return nhwc_vector_lanes(sums, k_h * k_w, x, profile)


def _nhwc_scalar(sums: np.ndarray, k_h: np.ndarray, k_w: np.ndarray, x: QTensor, profile: NumericsProfile):
    return nhwc_scalar_tail(sums, k_h * k_w, x, profile)


def _nchw(sums: np.ndarray, k_h: np.ndarray, k_w: np.ndarray, x: QTensor, profile: NumericsProfile):
    return average_nchw(sums, k_h, k_w, x)
