"""clamp on a quantized tensor: bounds quantized once, then an integer clamp."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .._arguments import real_number
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor
from ..quantize_kernels import quantize_val
from ._registry import register_op
from ._tensor_iterator import to_memory_order
from ._validate import check_qnnpack_rows, check_qtensor


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

    min above max: min_q = 3 + rne(2.0 * 2) = 7, max_q = 3 + rne(1.0 * 2) = 5, and
    min(max(q, 7), 5) = 5 everywhere.

    >>> clamp(q, 2.0, 1.0).int_repr.tolist()
    [5, 5, 5]

    Under the qnnpack engine both bounds are required (any dtype; EngineRefusedError), and
    a quint8 input takes pytorch_qnnpack's clamp (`_qnnpack_clamp`): the same integers, but
    a channels_last input comes back permuted. Hand-worked, 0..11 as a (1, 3, 2, 2)
    channels_last tensor (NHWC memory 0, 4, 8, 1, 5, 9, ...), clamp(0, 100): the memory is
    written out as NCHW.

    >>> from quantspec.reference.qtensor import MemoryFormat
    >>> ints = np.arange(12, dtype=np.uint8).reshape(1, 3, 2, 2)
    >>> x = QTensor(ints, 1.0, 0, "quint8", memory_format=MemoryFormat.channels_last)
    >>> clamp(x, 0.0, 100.0, get_profile("torch2.13-avx2-qnnpack")).int_repr.ravel().tolist()
    [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    """
    min_value, max_value, profile = checked_arguments(q, min_value, max_value, profile)
    low = None if min_value is None else quantized_bound(min_value, q.scale, q.zero_point, q.dtype, profile)
    high = None if max_value is None else quantized_bound(max_value, q.scale, q.zero_point, q.dtype, profile)
    return clamped(q, low, high, profile)


def checked_arguments(
    q: QTensor, min_value: Optional[float], max_value: Optional[float], profile: NumericsProfile
) -> tuple[Optional[float], Optional[float], NumericsProfile]:
    """`clamp`'s checks (ArgumentError, ValueError, EngineRefusedError naming the argument):
    the bounds as floats (or None) and the profile."""
    check_qtensor(q, "q")
    min_value = None if min_value is None else real_number(min_value, "min_value")
    max_value = None if max_value is None else real_number(max_value, "max_value")
    profile = as_profile(profile)
    if q.per_channel:
        raise ValueError(f"quantized clamp needs a per-tensor quantized input, got per-channel axis {q.axis}")
    if profile.engine == "qnnpack" and (min_value is None or max_value is None):
        raise EngineRefusedError("under the qnnpack engine torch needs both min and max for a quantized clamp")
    if min_value is None and max_value is None:
        raise ValueError("clamp needs at least one of min_value and max_value")
    return min_value, max_value, profile


def clamped(q: QTensor, low: Optional[int], high: Optional[int], profile: NumericsProfile) -> QTensor:
    """`clamp` of checked arguments to the quantized bounds `low`, `high` (`quantized_bound`;
    None where a bound is absent)."""
    if profile.engine == "qnnpack" and q.dtype is QDtype.quint8:
        return _qnnpack_clamp(q, low, high)
    # The bounds are integers of q's dtype (quantize_val saturates), so the clamp runs on the
    # stored integers, bounds of the same dtype (np.clip keeps the dtype and memory layout,
    # and where low > high it gives high everywhere, as min(max(q, low), high) does).
    low = None if low is None else q.dtype.storage.type(low)
    high = None if high is None else q.dtype.storage.type(high)
    return QTensor(np.clip(q.int_repr, low, high), q.scale, q.zero_point, q.dtype, memory_format=q.memory_format)


def _qnnpack_clamp(q: QTensor, low: int, high: int) -> QTensor:
    """`qnnpack_clamp` (qclamp.cpp) -> pytorch_qnnpack's `u8clamp`: bounds quantized as ATen's
    (`quantized_bound`), `min(max(q, min_q), max_q)` over the input's memory (made contiguous
    in its suggested format). The output is allocated NCHW-contiguous
    (`_empty_affine_quantized(sizes, options)` keeps no memory format) and written in the
    input's memory order, so a channels_last input (C > 1, H*W > 1) comes back permuted:
    the result's NCHW memory holds the clamped NHWC memory (torch's bug, reproduced).
    Refused (EngineRefusedError): min_q > max_q, empty rows (`check_qnnpack_rows`)."""
    check_qnnpack_rows(q.shape, "clamp")
    if low > high:
        raise EngineRefusedError(f"pytorch_qnnpack refuses a clamp to [{low}, {high}]: min above max")
    memory = np.clip(to_memory_order(q.int_repr, q.memory_format), low, high)
    return QTensor(memory.reshape(q.shape), q.scale, q.zero_point, q.dtype)


def quantized_bound(bound: float, scale: float, zero_point: int, dtype: QDtype, profile: NumericsProfile) -> int:
    """A clamp bound as an integer of `dtype`: `quantize_val<T>(q_scale, q_zero_point,
    Scalar.to<float>())`, the scalar `quantize_val` (see `clamp`)."""
    value = np.float32(bound)  # Scalar::to<float>(): one float32 rounding
    return int(quantize_val(np.array([value]), scale, zero_point, dtype, profile)[0])
