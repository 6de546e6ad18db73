"""quantize_per_channel: float32 -> integers with one scale and zero point per channel."""

from __future__ import annotations

import numpy as np

from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor, check_per_channel_qparams
from ..quantize_kernels import quantize_val
from ._registry import register_op
from ._validate import as_float32_array


@register_op("aten::quantize_per_channel")
def quantize_per_channel(
    x: np.typing.ArrayLike,
    scales: np.typing.ArrayLike,
    zero_points: np.typing.ArrayLike,
    axis: int,
    dtype: QDtype | str,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """Quantize along `axis` with per-channel qparams (`torch.quantize_per_channel`).

    Every element goes through ATen's scalar `quantize_val` (`quantize_tensor_per_channel_affine`
    has no vector path): `t = f32(x * f32(1/float(scale_c)))`, then 2.13 `rne(f32(zp_c + t))`,
    2.14 `f32(zp_c + rne(t))`, clamped in double (NaN gives 0 for 8-bit types).

    Hand-worked, channel 0 scale 0.5 zp 0, channel 1 scale 2.0 zp 1, qint8:
      [0.25, 3.0]: inv 2.0 -> t = 0.5 -> rne 0;   inv 0.5 -> t = 1.5, 1 + 1.5 = 2.5 -> rne 2

    >>> quantize_per_channel([[0.25], [3.0]], [0.5, 2.0], [0, 1], 0, "qint8").int_repr.tolist()
    [[0], [2]]
    """
    profile = as_profile(profile)
    dtype = QDtype.parse(dtype)
    values = as_float32_array(x, "x")
    scales, zps, axis = check_per_channel_qparams(scales, zero_points, axis, values.shape, dtype)
    broadcast = [1] * values.ndim
    broadcast[axis] = -1
    ints = quantize_val(values, scales.reshape(broadcast), zps.reshape(broadcast), dtype, profile)
    return QTensor(ints, scales, zps, dtype, axis=axis)
