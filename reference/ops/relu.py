"""relu on a quantized tensor: the integers clamped below at the zero point."""

from __future__ import annotations

import numpy as np

from ..qtensor import QTensor
from ._registry import register_op
from ._validate import check_qtensor


@register_op("aten::relu")
def relu(q: QTensor) -> QTensor:
    """`torch.relu` of a quantized tensor (`qrelu_kernel`, QuantizedOpKernels.cpp).

    Formula: `out = max(q, zp)` on the integers; no float step, no rounding. The output
    keeps the input's scale, zero point and memory format (`suggest_memory_format`).
    Vector and scalar lambdas agree, so tails do not matter. Per-channel input: each
    channel's zero point.

    Hand-worked, zp 3: [1, 3, 5] -> [max(1,3), max(3,3), max(5,3)] = [3, 3, 5]

    >>> import numpy as np
    >>> relu(QTensor(np.array([1, 3, 5], np.uint8), 0.5, 3, "quint8")).int_repr.tolist()
    [3, 3, 5]
    """
    check_qtensor(q, "q")
    zero_point = q.zero_point
    if q.per_channel:
        shape = [1] * q.int_repr.ndim
        shape[q.axis] = -1
        zero_point = np.asarray(zero_point).reshape(shape)
    ints = np.maximum(q.int_repr.astype(np.int64), zero_point).astype(q.dtype.storage)
    return QTensor(ints, q.scale, q.zero_point, q.dtype, axis=q.axis, memory_format=q.memory_format)
