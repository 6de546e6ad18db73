"""dequantize: quantized integers -> float32."""

from __future__ import annotations

import numpy as np

from ..numerics import f32, ieee_float_ops, wrap_int32
from ..qtensor import QTensor
from ._registry import register_op
from ._validate import check_qtensor


@register_op("aten::dequantize")
def dequantize(q: QTensor) -> np.ndarray:
    """Return the float32 values a quantized tensor stands for (`Tensor.dequantize`).

    per-tensor (`fbgemm::Dequantize<T>`, QuantUtils.h, via ATen's
    `dequantize_tensor_per_tensor_affine_cpu`): `scale * (src - zero_point)` with `src`
    and `zero_point` int32: the difference WRAPS in int32 (qint32 with q - zp outside
    int32), converts to float32 (rounds when |q - zp| > 2^24) and is multiplied by
    `float(scale)`, one float32 rounding: `f32(float(scale) * f32(wrap_int32(q - zp)))`.

    per-channel (ATen `dequantize_per_channel_affine_kernel`):
    `(static_cast<float>(q) - zero_points[c]) * scales[c]` with int64 zero points and
    double scales: q and zp each convert to float32, their difference rounds in float32,
    the product is a double multiply (rounds to double) stored as float32 (rounds again):
    `f32(double(f32(float(q) - float(zp))) * scale_c)`. No wrap-around.

    Hand-worked, per-tensor, scale 0.1 (float 0.100000001490116...), zp 3, q = 5:
      float(5 - 3) = 2.0; 2.0 * 0.1f = 0.2f exactly (a power-of-two multiple of 0.1f)
    Hand-worked, qint32, scale 0.5, zp -5, q = 2^31 - 1:
      per-tensor: q - zp = 2^31 + 4 wraps to -2^31 + 4 -> float -2147483648.0 -> * 0.5 = -1073741824.0
      per-channel: float(q) = 2147483648.0, float(-5) = -5.0, difference 2147483653 rounds
      to 2147483648.0 in float32 -> * 0.5 = 1073741824.0

    >>> from quantspec.reference.qtensor import QTensor
    >>> import numpy as np
    >>> dequantize(QTensor(np.array([5], np.uint8), 0.1, 3, "quint8")).tolist() == [np.float32(0.1) * 2]
    True
    >>> dequantize(QTensor(np.array([2**31 - 1], np.int32), 0.5, -5, "qint32")).tolist()
    [-1073741824.0]
    >>> dequantize(QTensor(np.array([2**31 - 1], np.int32), [0.5], [-5], "qint32", axis=0)).tolist()
    [1073741824.0]
    """
    check_qtensor(q, "q")
    with ieee_float_ops():  # huge scales overflow to +-inf, as in float32 hardware
        if q.per_channel:
            centered = f32(f32(q.int_repr) - f32(_column(q.zero_point, q)))
            return f32(centered.astype(np.float64) * _column(q.scale, q))
        centered = wrap_int32(q.int_repr.astype(np.int64) - q.zero_point)
        return f32(np.float32(q.scale) * f32(centered))


def _column(values: np.ndarray, q: QTensor) -> np.ndarray:
    """Per-channel qparams as a column along the channel axis."""
    shape = [1] * q.int_repr.ndim
    shape[q.axis] = -1
    return np.asarray(values).reshape(shape)
