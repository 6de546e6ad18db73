"""reshape / view on quantized tensors: integers and qparams unchanged."""

from __future__ import annotations

from typing import Sequence

from .._arguments import ArgumentError, int_sequence
from ..qtensor import MemoryFormat, QTensor
from ._registry import register_op
from ._validate import check_qtensor


@register_op("aten::reshape", "aten::view")
def reshape(x: QTensor, shape: Sequence[int]) -> QTensor:
    """`x.reshape(shape)` / `x.view(shape)` on a per-tensor quantized tensor.

    No arithmetic: the integers are re-indexed in logical (row-major NCHW) order and the
    scale, zero point and dtype are kept; one entry may be -1. The result is contiguous
    (a channels_last input keeps its format only when the shape is unchanged). torch's
    `view` refuses a channels_last input whose strides cannot be viewed; `reshape` copies.
    Same in every profile.

    Hand-worked: (1, 2, 2, 1) -> (-1,) lists the integers row-major: [5, 6, 7, 8].

    >>> import numpy as np
    >>> q = QTensor(np.array([5, 6, 7, 8], np.uint8).reshape(1, 2, 2, 1), 0.1, 0, "quint8")
    >>> reshape(q, (-1,)).int_repr.tolist()
    [5, 6, 7, 8]
    """
    check_qtensor(x, "x")
    target = int_sequence(shape, "shape", minimum=-1)
    if x.per_channel:
        raise ValueError(f"reshape: per-channel inputs (axis={x.axis}) are not specified")
    try:
        ints = x.int_repr.reshape(target)
    except ValueError:
        raise ArgumentError(
            f"reshape: cannot reshape x of shape {x.shape} ({x.int_repr.size} elements) to shape {target}"
        ) from None
    same_shape = ints.shape == x.shape
    memory_format = x.memory_format if same_shape else MemoryFormat.contiguous
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)
