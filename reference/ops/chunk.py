"""chunk of a quantized tensor: views of equal slices along one dimension."""

from __future__ import annotations

from .._arguments import ArgumentError, dim_index, integer
from ..qtensor import QTensor
from ._registry import register_op
from ._validate import check_qtensor


@register_op("aten::chunk")
def chunk(q: QTensor, chunks: int, dim: int = 0) -> list[QTensor]:
    """`q.chunk(chunks, dim)` (`at::chunk` -> `split` with size `ceil(n / chunks)`): views,
    integers and qparams unchanged; the last chunk may be smaller and fewer than `chunks`
    may come back (as torch does). Each view keeps the input's memory format (a channel
    slice of a channels_last tensor is still walked in NHWC order).

    Hand-worked, 5 elements in 2 chunks: size ceil(5 / 2) = 3 -> [0, 1, 2], [3, 4]

    >>> import numpy as np
    >>> q = QTensor(np.arange(5, dtype=np.uint8), 1.0, 0, "quint8")
    >>> [c.int_repr.tolist() for c in chunk(q, 2)]
    [[0, 1, 2], [3, 4]]
    """
    check_qtensor(q, "q")
    chunks = integer(chunks, "chunks", minimum=1)
    ndim = q.int_repr.ndim
    if ndim == 0:
        raise ArgumentError("chunk expects q of at least 1 dim, got a 0-d tensor")
    dim = dim_index(dim, "dim", ndim)
    if q.axis == dim:
        raise ValueError(f"chunk along the per-channel axis {dim} is not supported")
    length = q.shape[dim]
    size = max(1, -(-length // chunks))
    pieces = []
    for start in range(0, max(length, 1), size):
        index = [slice(None)] * ndim
        index[dim] = slice(start, start + size)
        ints = q.int_repr[tuple(index)]
        pieces.append(QTensor(ints, q.scale, q.zero_point, q.dtype, axis=q.axis, memory_format=q.memory_format))
    return pieces
