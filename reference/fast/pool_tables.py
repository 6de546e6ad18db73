"""What the fast average-pooling kernels share: window sums in the input's memory order, and
output stages looked up in tables instead of evaluated per output.

Why a table is exact: an average-pooling output stage (`ops.avg_pool2d`, `ops.adaptive_avg_pool2d`)
is an element-wise function of the window's integer sum and of its window's few parameters
(valid taps, divisor or window height and width): the same sum in a window of the same class
gives the same integer wherever it sits (in the NHWC kernels, within the same channel class:
vector lanes or scalar tail). A table holds the plain formula evaluated once on EVERY sum a
window class can produce (`qmin * taps ... qmax * taps`), so looking a sum up returns what
the plain formula returns for it. Tables are cached per (window classes, qparams, profile):
a model's pooling node builds its tables once.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np

from ..profile import NumericsProfile
from ..qtensor import QDtype, QTensor

# Beyond this many entries a table costs more to build than evaluating the formula on a
# typical output; the kernels then evaluate the plain formula on their sums directly.
TABLE_MAX_ENTRIES = 1 << 16

# formula(sums, *class parameters as columns, qparams QTensor, profile) -> integers
Formula = Callable[..., np.ndarray]


def window_classes(*parameters: np.ndarray) -> tuple[tuple[tuple[int, ...], ...], Optional[np.ndarray]]:
    """The distinct tuples of per-window `parameters` (arrays broadcasting to one shape, e.g.
    (OH, OW)), and each window's index into them (that shape, intp; None for one class)."""
    broadcast = np.broadcast_arrays(*parameters)
    stacked = np.stack([p.ravel() for p in broadcast], axis=1)
    if (stacked == stacked[:1]).all():  # every window alike (no padding): one class
        return (tuple(int(v) for v in stacked[0]),), None
    classes, index = np.unique(stacked, axis=0, return_inverse=True)
    class_index = index.reshape(broadcast[0].shape).astype(np.intp)
    class_index.setflags(write=False)
    return tuple(tuple(int(v) for v in row) for row in classes), class_index


@functools.lru_cache(maxsize=256)
def sum_dtype(dtype: QDtype, taps: int) -> np.dtype:
    """The narrowest integer type holding every sum of `taps` integers of `dtype` (NumPy sums
    narrow types faster)."""
    lowest, span = sum_range(dtype, taps)
    for candidate in (np.uint16, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= lowest and lowest + span - 1 <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """`arrays`, made read-only (they are cached and shared)."""
    for array in arrays:
        array.setflags(write=False)
    return arrays


def sum_range(dtype: QDtype, taps: int) -> tuple[int, int]:
    """The lowest sum `taps` integers of `dtype` can have, and how many sums there are."""
    return dtype.qmin * taps, (dtype.qmax - dtype.qmin) * taps + 1


@functools.lru_cache(maxsize=256)
def formula_tables(
    formulas: tuple[Formula, ...],
    classes: tuple[tuple[int, ...], ...],
    taps_per_class: tuple[int, ...],
    qparams: tuple[float, int, QDtype],
    profile: NumericsProfile,
) -> tuple[np.ndarray, ...]:
    """Each formula on every sum of every class, flat (read-only): entry `c * span + (s - lowest)`
    holds the result for sum `s` in class `c` (`sum_range(dtype, max(taps_per_class))`)."""
    scale, zero_point, dtype = qparams
    lowest, span = sum_range(dtype, max(taps_per_class))
    sums = np.arange(lowest, lowest + span, dtype=np.int64)[None, :]
    columns = [np.array(column, dtype=np.int64)[:, None] for column in zip(*classes)]
    x = QTensor(np.zeros((0,), dtype.storage), scale, zero_point, dtype)
    return read_only(*(np.ascontiguousarray(formula(sums, *columns, x, profile)).ravel() for formula in formulas))


def table_index(
    sums: np.ndarray, class_index: Optional[np.ndarray], lowest: int, span: int, class_axes: tuple[int, int]
) -> np.ndarray:
    """Each output's table entry: `class * span + (sum - lowest)`; `sums` in memory order,
    `class_index` (OH, OW) placed on its `class_axes`."""
    if class_index is None and lowest == 0 and sums.dtype.kind == "u":  # take converts them to intp
        return sums
    index = sums.astype(np.intp)
    index -= lowest
    if class_index is not None:
        shape = [1] * sums.ndim
        shape[class_axes[0]], shape[class_axes[1]] = class_index.shape
        index += class_index.reshape(shape) * span
    return index
