"""hardsigmoid on a quantized tensor: dequantize, relu6(x + 3) / 6, quantize with fixed qparams."""

from __future__ import annotations

import numpy as np

from .._arguments import integer
from ..numerics import f32
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, quantize_val
from ._registry import register_op
from ._tensor_iterator import VECTOR_BLOCK_8BIT, vector_body_mask
from ._unary_float import dequantize_vector
from ._validate import check_qtensor
from .dequantize import dequantize

# The fixed output qparams qhardsigmoid_kernel allocates: scale 2^-8, zp 0 (-128 for qint8).
OUTPUT_SCALE = 0.00390625
OUTPUT_ZERO_POINTS = {QDtype.quint8: 0, QDtype.qint8: -128}


@register_op("aten::hardsigmoid")
def hardsigmoid(q: QTensor, num_threads: int = 1, profile: NumericsProfile = DEFAULT_PROFILE) -> QTensor:
    """`F.hardsigmoid` of a quantized tensor (`qhardsigmoid_kernel`, QuantizedOpKernels.cpp).

    Output qparams are fixed: scale 1/256, zero point 0 (quint8) or -128 (qint8).
    Vector lambda: `x = fma32(s, q, f32(s * -zp))`; `y = f32(min(max(f32(x + 3), 0), 6) / 6)`;
      `out = clamp(wrap_int32(cvt_rne(f32(y * 256)) + zp_o))` (`inv = 1.0 / (1/256)`, round then add zp).
    Scalar lambda (the last `n % 64` of each thread's range, memory order):
      `x = f32(s * float(q - zp))`; same y; `out = quantize_val(1/256, zp_o, y)` (profile).
    With zp_o = 0 the two quantizations agree; they differ only in the dequantization.

    Hand-worked, s = 0.5, zp = 2, q = [2, 5, 20]: x = [0, 1.5, 9];
      y = [3/6, 4.5/6, 6/6] = [0.5, 0.75, 1.0] -> * 256 = [128, 192, 256] -> clamp 255

    >>> import numpy as np
    >>> hardsigmoid(QTensor(np.array([2, 5, 20], np.uint8), 0.5, 2, "quint8")).int_repr.tolist()
    [128, 192, 255]
    """
    check_qtensor(q, "q")
    integer(num_threads, "num_threads", minimum=1)
    profile = as_profile(profile)
    if q.per_channel or q.dtype not in OUTPUT_ZERO_POINTS:
        raise ValueError(f"quantized hardsigmoid needs a per-tensor quint8/qint8 input, got {q!r}")
    zero_point = OUTPUT_ZERO_POINTS[q.dtype]
    inv = np.float32(1.0 / np.float32(OUTPUT_SCALE))
    vector = aten_vec_quantize_round_then_add_zp(_hardsigmoid(dequantize_vector(q)), inv, zero_point, q.dtype)
    # scalar tail: dequantize_val (8-bit q - zp never wraps)
    scalar = quantize_val(_hardsigmoid(dequantize(q)), OUTPUT_SCALE, zero_point, q.dtype, profile)
    # qhardsigmoid_stub has only the AVX2 build: its blocks on every x86 CPU.
    use_vector = vector_body_mask(q.shape, q.memory_format, VECTOR_BLOCK_8BIT, num_threads)
    ints = np.where(use_vector, vector, scalar).astype(q.dtype.storage)
    return QTensor(ints, OUTPUT_SCALE, zero_point, q.dtype, memory_format=q.memory_format)


def _hardsigmoid(x: np.ndarray) -> np.ndarray:
    """`min(max(x + 3, 0), 6) / 6`, each step rounded to float32."""
    return f32(np.minimum(np.maximum(f32(x + np.float32(3)), np.float32(0)), np.float32(6)) / np.float32(6))
