"""quantized::hardswish: dequantize, x * relu6(x + 3) / 6 in float32, quantize."""

from __future__ import annotations

import numpy as np

from ..numerics import f32
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, quantize_val
from ._registry import register_op
from ._tensor_iterator import VECTOR_BLOCK_8BIT, vector_body_mask
from ._unary_float import dequantize_vector
from .dequantize import dequantize


@register_op("quantized::hardswish")
def hardswish(
    q: QTensor,
    output_scale: float,
    output_zero_point: int,
    num_threads: int = 1,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.hardswish(q, scale, zp)` (`qhardswish_kernel`, QuantizedOpKernels.cpp).

    Vector lambda (body of each thread's range, memory order):
      `x = fma32(float(s), float(q), f32(float(s) * -float(zp)))` (`Vectorized::dequantize`);
      `y = f32(f32(x * min(max(f32(x + 3), 0), 6)) / 6)`;
      `out = clamp(wrap_int32(cvt_rne(min(f32(y * inv), 2147483520.0f)) + zp_o))`,
      `inv = f32(1.0 / double(s_o))` (round, then add zp: `Vectorized::quantize`).
    Scalar lambda (the last `n % 64` of each range):
      `x = f32(float(s) * float(q - zp))` (`dequantize_val`); same y;
      `out = quantize_val(s_o, zp_o, y)` (profile: 2.13 zp before rounding, 2.14 after).
    Output: given qparams, input's memory format.

    Hand-worked, s = 0.5, zp = 0, s_o = 0.25, zp_o = 1, q = [8] (a 1-element tensor is
    all tail): x = 4; y = 4 * min(max(7, 0), 6) / 6 = 4; 4 / 0.25 = 16; 2.13: rne(1 + 16) = 17

    >>> import numpy as np
    >>> hardswish(QTensor(np.array([8], np.uint8), 0.5, 0, "quint8"), 0.25, 1).int_repr.tolist()
    [17]
    """
    if q.per_channel:
        raise ValueError(f"quantized::hardswish needs a per-tensor input, got per-channel axis {q.axis}")
    out = QTensor(np.zeros((0,), q.dtype.storage), output_scale, output_zero_point, q.dtype)
    inv = np.float32(1.0 / out.scale)  # double division, then narrowed
    vector = aten_vec_quantize_round_then_add_zp(_hardswish(dequantize_vector(q)), inv, out.zero_point, q.dtype)
    # scalar tail: dequantize_val (8-bit q - zp never wraps)
    scalar = quantize_val(_hardswish(dequantize(q)), out.scale, out.zero_point, q.dtype, profile)
    # qhardswish_stub has only the AVX2 build: its blocks on every x86 CPU.
    use_vector = vector_body_mask(q.shape, q.memory_format, VECTOR_BLOCK_8BIT, num_threads)
    ints = np.where(use_vector, vector, scalar).astype(q.dtype.storage)
    return QTensor(ints, out.scale, out.zero_point, q.dtype, memory_format=q.memory_format)


def _hardswish(x: np.ndarray) -> np.ndarray:
    """`x * min(max(x + 3, 0), 6) / 6`, each step rounded to float32 (no fma: no add follows a product)."""
    gate = np.minimum(np.maximum(f32(x + np.float32(3)), np.float32(0)), np.float32(6))
    return f32(f32(x * gate) / np.float32(6))
