"""The vector dequantization of ATen's dequantize-compute-quantize kernels (the scalar tail
uses `dequantize`, ATen's `dequantize_val`)."""

from __future__ import annotations

import numpy as np

from ..numerics import f32, fma32, ieee_float_ops
from ..qtensor import QDtype, QTensor


def dequantize_vector(q: QTensor) -> np.ndarray:
    """`Vectorized<quint8/qint8/qint32>::dequantize(scale, zp, scale_zp_premul)` (vec256_qint.h):
    `fma32(float(s), float(q), f32(float(s) * -float(zp)))`, one rounding for the product
    and the premultiplied offset together; `float(q)` rounds for |q| > 2^24 (qint32).

    For 8-bit dtypes the fma is evaluated once per possible value, then looked up (the
    same arithmetic, much faster than an emulated fma per element)."""
    scale = np.float32(q.scale)
    with ieee_float_ops():  # a huge scale times zp overflows to +-inf, as the CPU's multiply does
        premul = f32(scale * -np.float32(q.zero_point))
    if q.dtype is QDtype.qint32:
        return fma32(scale, q.int_repr.astype(np.float32), premul)
    levels = np.arange(q.dtype.qmin, q.dtype.qmax + 1).astype(np.float32)
    return fma32(scale, levels, premul)[q.int_repr.astype(np.intp) - q.dtype.qmin]
