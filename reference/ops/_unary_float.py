"""The two dequantizations of ATen's dequantize-compute-quantize kernels."""

from __future__ import annotations

import numpy as np

from ..numerics import f32, fma32
from ..qtensor import QTensor


def dequantize_vector(q: QTensor) -> np.ndarray:
    """`Vectorized<quint8/qint8>::dequantize(scale, zp, scale_zp_premul)` (vec256_qint.h):
    `fma32(float(s), float(q), f32(float(s) * -float(zp)))`, one rounding for the product
    and the premultiplied offset together."""
    scale = np.float32(q.scale)
    premul = f32(scale * -np.float32(q.zero_point))
    return fma32(scale, q.int_repr.astype(np.float32), premul)


def dequantize_scalar(q: QTensor) -> np.ndarray:
    """`at::native::dequantize_val`: `f32(float(s) * float(q - zp))`, the difference exact."""
    return f32(np.float32(q.scale) * (q.int_repr.astype(np.int64) - q.zero_point).astype(np.float32))
