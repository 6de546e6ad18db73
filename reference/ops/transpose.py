"""transpose of a quantized tensor: a view with two dimensions swapped."""

from __future__ import annotations

import numpy as np

from .._arguments import ArgumentError, dim_index
from ..qtensor import MemoryFormat, QTensor
from ._registry import register_op
from ._validate import check_qtensor


@register_op("aten::transpose")
def transpose(q: QTensor, dim0: int, dim1: int) -> QTensor:
    """`q.transpose(dim0, dim1)` (`at::transpose`, a strided view): integers and qparams
    unchanged, no arithmetic. A per-channel axis follows its dimension.

    The result is a strided view in torch; `QTensor` records it as `contiguous` in its
    new logical order. Kernels that care about the walk order call `.contiguous()` on
    it first (the channel shuffle does), which gives exactly that layout.

    >>> import numpy as np
    >>> q = QTensor(np.arange(6, dtype=np.uint8).reshape(2, 3), 0.5, 1, "quint8")
    >>> transpose(q, 0, 1).int_repr.tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    check_qtensor(q, "q")
    ndim = q.int_repr.ndim
    if ndim == 0:
        raise ArgumentError("transpose expects q of at least 1 dim, got a 0-d tensor")
    d0, d1 = dim_index(dim0, "dim0", ndim), dim_index(dim1, "dim1", ndim)
    ints = np.swapaxes(q.int_repr, d0, d1)
    axis = q.axis
    if axis is not None:
        axis = d1 if axis == d0 else d0 if axis == d1 else axis
    return QTensor(ints, q.scale, q.zero_point, q.dtype, axis=axis, memory_format=MemoryFormat.contiguous)
