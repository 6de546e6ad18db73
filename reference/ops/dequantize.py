"""dequantize: quantized integers -> float32."""

from __future__ import annotations

import numpy as np

from ..numerics import f32
from ..qtensor import QTensor
from ._registry import register_op


@register_op("aten::dequantize")
def dequantize(q: QTensor) -> np.ndarray:
    """Return the float32 values a quantized tensor stands for (`Tensor.dequantize`).

    per-tensor (`fbgemm::Dequantize`, QuantUtils.cc): `f32(float(scale) * float(q - zp))`,
    the difference is exact and the product rounds once in float32.
    per-channel (`dequantize_tensor_per_channel_affine`): `f32(double(q - zp) * scale)`,
    the product is formed in double from the double scale and rounded once to float32.

    Hand-worked, per-tensor, scale 0.1 (float 0.100000001490116...), zp 3, q = 5:
      float(5 - 3) = 2.0; 2.0 * 0.1f = 0.2f exactly (a power-of-two multiple of 0.1f)

    >>> from reference.qtensor import QTensor
    >>> import numpy as np
    >>> dequantize(QTensor(np.array([5], np.uint8), 0.1, 3, "quint8")).tolist() == [np.float32(0.1) * 2]
    True
    """
    centered = q.int_repr.astype(np.int64) - _broadcast(q.zero_point, q)
    if q.per_channel:
        return f32(centered.astype(np.float64) * _broadcast(q.scale, q))
    return f32(np.float32(q.scale) * centered.astype(np.float32))


def _broadcast(values: np.ndarray | int | float, q: QTensor) -> np.ndarray:
    """Per-channel qparams as a column along the channel axis (scalars pass through)."""
    if not q.per_channel:
        return np.asarray(values)
    shape = [1] * q.int_repr.ndim
    shape[q.axis] = -1
    return np.asarray(values).reshape(shape)
