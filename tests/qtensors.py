"""Small quantized tensors for hand-worked test cases (NumPy only)."""

from __future__ import annotations

import numpy as np

from quantspec.reference.qtensor import MemoryFormat, QTensor


def q_u8(values, scale=1.0, zero_point=0, memory_format=MemoryFormat.contiguous) -> QTensor:
    """quint8 values with per-tensor qparams."""
    return QTensor(np.array(values, np.uint8), scale, zero_point, "quint8", memory_format=memory_format)


def q_s8(values, scale=1.0, zero_point=0, axis=None) -> QTensor:
    """qint8 values, per-tensor qparams (or per-channel along `axis`)."""
    return QTensor(np.array(values, np.int8), scale, zero_point, "qint8", axis=axis)
