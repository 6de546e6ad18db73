"""quantize_per_tensor: float32 -> quint8 / qint8 / qint32 with one scale and zero point."""

from __future__ import annotations

import numpy as np

from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor
from ..quantize_kernels import fbgemm_quantize_u8s8, quantize_val
from ._registry import register_op
from ._validate import as_float32_array


@register_op("aten::quantize_per_tensor")
def quantize_per_tensor(
    x: np.typing.ArrayLike,
    scale: float,
    zero_point: int,
    dtype: QDtype | str,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """Quantize a float32 array with one scale and zero point (`torch.quantize_per_tensor`).

    quint8/qint8 run FBGEMM's vector `Quantize` (`quantize_kernels.fbgemm_quantize_u8s8`):
    torch 2.13 adds the zero point before rounding in one fma, torch 2.14 after.
    qint32 (precision 32, no vector path) runs FBGEMM's scalar `Quantize<int32_t>` element
    by element: the `quantize_kernels.quantize_val` formula.

    Hand-worked, scale 1.0, zero point 1, quint8 (inv = 1.0f):
      2.13: fma32(x, 1, 1) = [1.5, 2.5, 3.5, 0.5] -> rne -> [2, 2, 4, 0]
      2.14: rne(x) = [0, 2, 2, -0] -> +1 -> [1, 3, 3, 1]

    >>> from quantspec.reference.profile import get_profile
    >>> quantize_per_tensor([0.5, 1.5, 2.5, -0.5], 1.0, 1, "quint8").int_repr.tolist()
    [2, 2, 4, 0]
    >>> q = quantize_per_tensor([0.5, 1.5, 2.5, -0.5], 1.0, 1, "quint8", get_profile("torch2.14-avx2-fbgemm"))
    >>> q.int_repr.tolist()
    [1, 3, 3, 1]
    """
    profile = as_profile(profile)
    dtype = QDtype.parse(dtype)
    values = as_float32_array(x, "x")
    # Build the output's qparams first: QTensor validates scale and zero point.
    qparams = QTensor(np.zeros((0,), dtype.storage), scale, zero_point, dtype)
    flat = values.reshape(-1)  # the kernels work on 1-d runs; a 0-d input is one element
    if dtype is QDtype.qint32:
        ints = quantize_val(flat, qparams.scale, qparams.zero_point, dtype, profile)
    else:
        ints = fbgemm_quantize_u8s8(flat, qparams.scale, qparams.zero_point, dtype, profile)
    return QTensor(ints.reshape(values.shape), qparams.scale, qparams.zero_point, dtype)
