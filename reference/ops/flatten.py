"""flatten on quantized tensors: integers and qparams unchanged."""

from __future__ import annotations

import numpy as np

from .._arguments import dim_index
from ..qtensor import QTensor
from ._registry import register_op
from ._validate import check_qtensor
from .reshape import reshape


@register_op("aten::flatten")
def flatten(x: QTensor, start_dim: int = 0, end_dim: int = -1) -> QTensor:
    """`torch.flatten(x, start_dim, end_dim)` on a per-tensor quantized tensor.

    No arithmetic: dims `start_dim..end_dim` merge in logical (row-major NCHW) order, the
    integers, scale and zero point are kept (a channels_last input is copied into NCHW
    order first, as `reshape` does). Same in every profile.

    Hand-worked: shape (2, 3, 1, 1) with start_dim 1 -> (2, 3).

    >>> import numpy as np
    >>> q = QTensor(np.arange(6, dtype=np.uint8).reshape(2, 3, 1, 1), 0.5, 3, "quint8")
    >>> flatten(q, 1).int_repr.tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    check_qtensor(x, "x")
    ndim = max(x.int_repr.ndim, 1)
    start, end = dim_index(start_dim, "start_dim", ndim), dim_index(end_dim, "end_dim", ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (int(np.prod(x.shape[start : end + 1], dtype=np.int64)),) + x.shape[end + 1 :]
    return reshape(x, shape)
