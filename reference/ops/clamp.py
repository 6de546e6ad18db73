"""clamp on a quantized tensor: bounds quantized once, then an integer clamp."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import QTensor
from ..quantize_kernels import quantize_val
from ._registry import register_op


@register_op("aten::clamp")
def clamp(
    q: QTensor,
    min_value: Optional[float] = None,
    max_value: Optional[float] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.clamp` of a per-tensor quantized tensor (`qclamp_kernel`, `qclamp_min_kernel`,
    `qclamp_max_kernel` in QuantizedOpKernels.cpp).

    Formula: each bound becomes an integer with the SCALAR `quantize_val(scale, zp,
    float(bound))` (the Scalar is narrowed to float first; the profile decides where zp
    is added: 2.13 `rne(f32(zp + f32(b*inv)))`, 2.14 `f32(zp + rne(f32(b*inv)))`), then
    `out = min(max(q, min_q), max_q)` on the integers. Output keeps scale, zero point
    and memory format. Vector and scalar lambdas agree (integer min/max).

    Hand-worked, scale 0.5, zp 3, min 0.0, max 1.25 (quint8):
      min_q = 3 + rne(0/0.5) = 3; max_q: 1.25 * 2 = 2.5 -> 2.13: rne(3 + 2.5) = rne(5.5) = 6,
      2.14: 3 + rne(2.5) = 3 + 2 = 5.  q = [0, 4, 9] -> 2.13 [3, 4, 6]; 2.14 [3, 4, 5]

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> q = QTensor(np.array([0, 4, 9], np.uint8), 0.5, 3, "quint8")
    >>> clamp(q, 0.0, 1.25).int_repr.tolist()
    [3, 4, 6]
    >>> clamp(q, 0.0, 1.25, get_profile("torch2.14-avx2-fbgemm")).int_repr.tolist()
    [3, 4, 5]
    """
    if q.per_channel:
        raise ValueError(f"quantized clamp needs a per-tensor quantized input, got per-channel axis {q.axis}")
    if min_value is None and max_value is None:
        raise ValueError("clamp needs at least one of min_value and max_value")
    ints = q.int_repr.astype(np.int64)
    if min_value is not None:
        ints = np.maximum(ints, _quantized_bound(min_value, q, profile))
    if max_value is not None:
        ints = np.minimum(ints, _quantized_bound(max_value, q, profile))
    return QTensor(ints.astype(q.dtype.storage), q.scale, q.zero_point, q.dtype, memory_format=q.memory_format)


def _quantized_bound(bound: float, q: QTensor, profile: NumericsProfile) -> int:
    """`quantize_val<T>(q_scale, q_zero_point, Scalar.to<float>())`."""
    value = np.float32(bound)  # Scalar::to<float>(): one float32 rounding
    return int(quantize_val(np.array([value]), q.scale, q.zero_point, q.dtype, profile)[0])
