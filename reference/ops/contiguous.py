"""contiguous of a quantized tensor: a copy into the requested memory format."""

from __future__ import annotations

import numpy as np

from ..qtensor import MemoryFormat, QTensor
from ._registry import register_op
from ._validate import check_qtensor

# TorchScript passes torch.memory_format as these integers (c10::MemoryFormat).
MEMORY_FORMAT_CODES = {0: "contiguous", 1: "preserve", 2: "channels_last"}


@register_op("aten::contiguous")
def contiguous(q: QTensor, memory_format: int = 0) -> QTensor:
    """`q.contiguous(memory_format)`: the same integers and qparams laid out densely in
    `memory_format` (0 torch.contiguous_format, 1 preserve_format, 2 channels_last). A
    copy, no arithmetic; it fixes the walk order of the kernels that follow.

    >>> import numpy as np
    >>> q = QTensor(np.zeros((1, 2, 2, 2), np.uint8), 1.0, 0, "quint8", memory_format=MemoryFormat.channels_last)
    >>> contiguous(q).memory_format.value
    'contiguous'
    """
    check_qtensor(q, "q")
    if memory_format not in MEMORY_FORMAT_CODES:
        raise ValueError(f"unsupported memory_format code {memory_format}; expected one of {MEMORY_FORMAT_CODES}")
    name = MEMORY_FORMAT_CODES[memory_format]
    layout = q.memory_format if name == "preserve" else MemoryFormat(name)
    return QTensor(np.ascontiguousarray(q.int_repr), q.scale, q.zero_point, q.dtype, axis=q.axis, memory_format=layout)
