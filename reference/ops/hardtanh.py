"""hardtanh (ReLU6) on a quantized tensor: a quantized clamp."""

from __future__ import annotations

from .._arguments import real_number
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QTensor
from ._registry import register_op
from ._validate import check_qtensor
from .clamp import clamp


@register_op("aten::hardtanh")
def hardtanh(
    q: QTensor, min_value: float = -1.0, max_value: float = 1.0, profile: NumericsProfile = DEFAULT_PROFILE
) -> QTensor:
    """`F.hardtanh` of a quantized tensor (`hardtanh_quantized_cpu` -> `quantized_clamp_impl`
    -> `qclamp_kernel`): exactly `clamp(q, min_value, max_value)`; nn.ReLU6 is
    `hardtanh(q, 0.0, 6.0)`. See `clamp` for the bound quantization (scalar
    `quantize_val`, profile-dependent at ties), the integer clamp, and the qnnpack engine's
    permuted channels_last output (hardtanh shares it).

    Hand-worked, scale 0.05, zp 10: min_q = 10 + rne(0) = 10; max_q: 6.0 * f32(1/0.05)
    = 6 * 20 = 120 (f32(1/0.05f) = 20 exactly here) -> 130. q = [0, 50, 200] -> [10, 50, 130]

    >>> import numpy as np
    >>> hardtanh(QTensor(np.array([0, 50, 200], np.uint8), 0.05, 10, "quint8"), 0.0, 6.0).int_repr.tolist()
    [10, 50, 130]
    """
    return clamp(q, *checked_arguments(q, min_value, max_value, profile))


def checked_arguments(
    q: QTensor, min_value: float, max_value: float, profile: NumericsProfile
) -> tuple[float, float, NumericsProfile]:
    """`hardtanh`'s own checks (ArgumentError naming the argument; both bounds are required,
    unlike clamp's): the bounds as floats and the profile."""
    check_qtensor(q, "q")
    return real_number(min_value, "min_value"), real_number(max_value, "max_value"), as_profile(profile)
