"""quantized::hardswish: dequantize, x * relu6(x + 3) / 6 in float32, quantize."""

from __future__ import annotations

import numpy as np

from .._arguments import integer
from ..numerics import f32, ieee_float_ops, normal_scale_f32
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, quantize_val
from ._registry import register_op
from ._tensor_iterator import VECTOR_BLOCK_8BIT, vector_body_mask
from ._unary_float import dequantize_vector
from ._validate import check_qnnpack_rows, check_qtensor, output_qparams
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

    Under the qnnpack engine a quint8 input is looked up in pytorch_qnnpack's 256-entry table
    (`_qnnpack_hardswish_table`: the zero point added in float32 before rounding); qint8
    keeps the kernel above. Hand-worked, 64 elements of 3 (scale 1, zp 0) into scale 2,
    zp 1: y = 3, 3 * 0.5 = 1.5; vector lambda cvt(1.5) + 1 = 3; the table lrintf(1.5 + 1) = 2.

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> hardswish(QTensor(np.array([8], np.uint8), 0.5, 0, "quint8"), 0.25, 1).int_repr.tolist()
    [17]
    >>> threes = QTensor(np.full(64, 3, np.uint8), 1.0, 0, "quint8")
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> int(hardswish(threes, 2.0, 1).int_repr[0]), int(hardswish(threes, 2.0, 1, profile=qnnpack).int_repr[0])
    (3, 2)
    """
    check_qtensor(q, "q")
    integer(num_threads, "num_threads", minimum=1)
    profile = as_profile(profile)
    if q.per_channel:
        raise ValueError(f"quantized::hardswish needs a per-tensor input, got per-channel axis {q.axis}")
    out = output_qparams(output_scale, output_zero_point, q.dtype)
    if profile.engine == "qnnpack" and q.dtype is QDtype.quint8:
        check_qnnpack_rows(q.shape, "hardswish")
        table = _qnnpack_hardswish_table(q, out)
        return QTensor(table[q.int_repr], out.scale, out.zero_point, q.dtype, memory_format=q.memory_format)
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


def _qnnpack_hardswish_table(q: QTensor, out: QTensor) -> np.ndarray:
    """pytorch_qnnpack's hardswish table (`qnnpack_hardswish`, qhardswish.cpp ->
    `pytorch_qnnp_create_hardswish_nc_q8`, hardswish.c), applied by `x8lut` in the input's
    memory format. For every byte i, in float32 (SSE2 build: no fma):
      x = f32(float(s) * float(i - zp));  g = clamp(f32(x + 3), 0, 6)  (C comparisons)
      h = f32(f32(x * g) / 6);  t = f32(f32(f32(1.0f / float(s_o)) * h) + float(zp_o))
      table[i] = lrintf(clamp(t, 0, 255))          the zero point added BEFORE rounding
    `clamp` passes NaN (x = -inf times g = 0), which lrintf turns into 0. Scales that are not
    positive normal float32 are refused (EngineRefusedError)."""
    scale = normal_scale_f32(q.scale, "hardswish input scale")
    out_scale = normal_scale_f32(out.scale, "hardswish output scale")
    with ieee_float_ops():
        x = f32(scale * f32(np.arange(256) - q.zero_point))
        gate = f32(x + np.float32(3))
        gate = np.where(gate > 0, gate, np.float32(0))
        gate = np.where(gate < 6, gate, np.float32(6))
        h = f32(f32(x * gate) / np.float32(6))
        t = f32(f32(f32(np.float32(1) / out_scale) * h) + np.float32(out.zero_point))
    t = np.where(t < 0, np.float32(0), t)
    t = np.where(t > 255, np.float32(255), t)
    return np.where(np.isnan(t), 0, np.rint(t)).astype(np.uint8)
