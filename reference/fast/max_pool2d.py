"""`quantspec.reference.ops.max_pool2d`, fast: the window maximum taken separably, first over
each window's kH rows (whole padded rows at a time: long contiguous runs), then over its kW
columns, in the input's memory order.

Exact: the integer maximum is associative and commutative, so the maximum over a window's
kH x kW taps equals the maximum over its columns of each column's maximum over its rows;
the padded input (lowest value, or pytorch_qnnpack's edge pixels) is the plain op's.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..ops.max_pool2d import IntOrPair, checked_arguments, padded_in_memory_order, pooled_qtensor
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import QTensor


def max_pool2d(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair] = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantspec.reference.ops.max_pool2d` (same arguments and result), fast.

    >>> q = QTensor(np.array([[[[1, 5, 2], [7, 0, 3]]]], np.uint8), 0.5, 3, "quint8")
    >>> max_pool2d(q, 2, stride=1).int_repr.tolist()  # ops.max_pool2d's case
    [[[[7, 5]]]]
    """
    window, qnnpack = checked_arguments(x, kernel_size, stride, padding, dilation, ceil_mode, profile)
    (kh, kw), (sh, sw), _, (dh, dw), (oh, ow) = window
    padded, (h_axis, w_axis) = padded_in_memory_order(x.int_repr, *window, edge_padding=qnnpack)
    row_max = _max_of_taps(padded, h_axis, kh, dh, sh, oh)
    result = _max_of_taps(row_max, w_axis, kw, dw, sw, ow)
    return pooled_qtensor(result.transpose(0, 3, 1, 2) if h_axis == 1 else result, x, qnnpack)


def _max_of_taps(values: np.ndarray, axis: int, kernel: int, dilation: int, stride: int, count: int) -> np.ndarray:
    """Along `axis`: output i is the maximum of `values` at i*stride + t*dilation, t < kernel."""
    taps = []
    for t in range(kernel):
        tap = [slice(None)] * values.ndim
        tap[axis] = slice(t * dilation, t * dilation + (count - 1) * stride + 1, stride)
        taps.append(values[tuple(tap)])
    if kernel == 1:
        return taps[0].copy()
    result = np.maximum(taps[0], taps[1])
    for view in taps[2:]:
        np.maximum(result, view, out=result)
    return result
