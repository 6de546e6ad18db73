"""What every uniform observer shares: the quantized range and min/max -> (scale, zero point).

Mirrors torch/ao/quantization/observer.py `UniformQuantizationObserverBase` and
utils.py `calculate_qmin_qmax` / `check_min_max_valid` (identical in torch 2.13 and 2.14).
"""

from __future__ import annotations

import enum
import warnings
from typing import Optional, Union

import numpy as np

from ..numerics import cvt_rne, f32, rne, wrap_int32
from ..qtensor import QDtype
from ._aten import aten_maximum_f32, aten_minimum_f32

# torch.finfo(torch.float32).eps, the observers' default eps.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


class QScheme(enum.Enum):
    """torch.qscheme values an observer accepts."""

    per_tensor_affine = "per_tensor_affine"
    per_tensor_symmetric = "per_tensor_symmetric"
    per_channel_affine = "per_channel_affine"
    per_channel_symmetric = "per_channel_symmetric"
    per_channel_affine_float_qparams = "per_channel_affine_float_qparams"

    @classmethod
    def parse(cls, value: Union["QScheme", str]) -> "QScheme":
        """Accept a QScheme or its name (with or without a `torch.` prefix)."""
        if isinstance(value, QScheme):
            return value
        name = str(value).removeprefix("torch.")
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown qscheme {value!r}; expected one of {[m.value for m in cls]}") from None

    @property
    def per_channel(self) -> bool:
        return self.value.startswith("per_channel")

    @property
    def symmetric(self) -> bool:
        return self.value.endswith("symmetric")


def quant_range(
    dtype: QDtype, reduce_range: bool, quant_min: Optional[int], quant_max: Optional[int]
) -> tuple[int, int, bool]:
    """`calculate_qmin_qmax`: the integer range an observer maps onto; returns
    (qmin, qmax, has_customized_qrange).

    Custom ranges (both given) must contain 0, be non-empty and (qint8) span <= 256
    values; reduce_range then halves both ends with floor division. Otherwise the
    dtype's full range, or with reduce_range 0..127 (quint8) / -64..63 (qint8).

    >>> quant_range(QDtype.quint8, True, None, None)
    (0, 127, False)
    >>> quant_range(QDtype.qint8, True, -127, 127)  # -127 // 2 = -64, 127 // 2 = 63
    (-64, 63, True)
    """
    customized = quant_min is not None and quant_max is not None
    if customized:
        if not quant_min <= 0 <= quant_max:
            raise ValueError(f"quant_min={quant_min}, quant_max={quant_max}: the range must include 0")
        if quant_min >= quant_max:
            raise ValueError(f"quant_min={quant_min} must be strictly less than quant_max={quant_max}")
        span = quant_max - quant_min + 1
        if dtype is QDtype.qint8 and span > 256 or dtype is QDtype.qint32 and span > 2**32:
            raise ValueError(f"quant range [{quant_min}, {quant_max}] has {span} values, more than {dtype.label} holds")
        if reduce_range:
            return quant_min // 2, quant_max // 2, True
        return quant_min, quant_max, True
    if dtype is QDtype.qint8:
        return (-64, 63, False) if reduce_range else (-128, 127, False)
    if dtype is QDtype.quint8:
        return (0, 127, False) if reduce_range else (0, 255, False)
    return -(2**31), 2**31 - 1, False


def default_qparams(message: str) -> tuple[np.ndarray, np.ndarray]:
    """torch's answer for an observer that saw nothing: scale [1.0], zero point [0], and a warning."""
    warnings.warn(f"{message}; returning the default scale 1.0 and zero point 0", UserWarning, stacklevel=3)
    return np.array([1.0], np.float32), np.array([0], np.int64)


def calculate_qparams(
    min_val: np.ndarray,
    max_val: np.ndarray,
    qmin: int,
    qmax: int,
    qscheme: QScheme,
    dtype: QDtype,
    eps: np.float32,
    customized_range: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """`UniformQuantizationObserverBase._calculate_qparams`, float32 tensor steps.

    `neg = minimum(min, 0)`, `pos = maximum(max, 0)`; minimum/maximum are ATen's
    (`_aten.aten_minimum_f32`): NaN propagates as a canonical NaN whose bits depend on
    the channel's position (all-ones in the 16-wide vector body, 0x7FC00000 after).
    symmetric: `scale = maximum(f32(maximum(-neg, pos) / f32((qmax - qmin) / 2)), eps)`;
      zero point 0, or for quint8 128 (custom range: (qmin + qmax) // 2).
    affine: `scale = maximum(f32(f32(pos - neg) / f32(qmax - qmin)), eps)`;
      `zp = clamp(wrap_int32(qmin - int32(rne(f32(neg / scale)))), qmin, qmax)`; the
      float -> int32 conversion of NaN or out-of-range gives INT32_MIN (cvttps2dq).
    per_channel_affine_float_qparams: `scale = f32(f32(max - min) / f32(qmax - qmin))`,
      replaced by 1 where not > eps; zero point `f32(f32(-1 * min) / scale)` (a float).
    Returns float32 scales and int64 zero points (float32 for float_qparams), shape (1,)
    per tensor, (C,) per channel.

    Hand-worked, affine quint8 0..255, min -1, max 2: scale = f32(3 / 255) = 0.011764706;
    -1 / 0.011764706 = -85.0 -> zp = 0 - (-85) = 85.

    >>> s, z = calculate_qparams(np.float32(-1), np.float32(2), 0, 255, QScheme.per_tensor_affine,
    ...                          QDtype.quint8, np.float32(FLOAT32_EPS), False)
    >>> float(s[0]) == float(np.float32(3) / np.float32(255)), int(z[0])
    (True, 85)
    """
    min_val = np.asarray(min_val, np.float32)
    max_val = np.asarray(max_val, np.float32)
    if np.any(min_val > max_val):
        raise ValueError(f"min {min_val} should be less than max {max_val}")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if qscheme is QScheme.per_channel_affine_float_qparams:
            scale = f32(f32(max_val - min_val) / np.float32(qmax - qmin))
            scale = np.where(scale > eps, scale, np.float32(1)).astype(np.float32)
            zero_point = f32(f32(np.float32(-1) * min_val) / scale)
            return np.atleast_1d(scale), np.atleast_1d(zero_point)
        neg = aten_minimum_f32(min_val, np.float32(0))
        pos = aten_maximum_f32(max_val, np.float32(0))
        if qscheme.symmetric:
            scale = aten_maximum_f32(f32(aten_maximum_f32(-neg, pos) / np.float32((qmax - qmin) / 2)), eps)
            zero_point = np.zeros(scale.shape, np.int64)
            if dtype is QDtype.quint8:
                zero_point[...] = (qmin + qmax) // 2 if customized_range else 128
        else:
            scale = aten_maximum_f32(f32(f32(pos - neg) / np.float32(qmax - qmin)), eps)
            # torch.round -> .to(torch.int): an exact integer, or INT32_MIN for NaN/overflow.
            rounded = cvt_rne(rne(f32(neg / scale)))
            zero_point = np.clip(wrap_int32(qmin - rounded.astype(np.int64)), qmin, qmax).astype(np.int64)
    return np.atleast_1d(scale).astype(np.float32), np.atleast_1d(zero_point)


def parse_observer_dtype(dtype: Union[QDtype, str]) -> QDtype:
    """The observer's quantized dtype (torch also allows int8/uint8 and friends; the
    reference specifies quint8, qint8 and qint32)."""
    if isinstance(dtype, QDtype):
        return dtype
    return QDtype.parse(str(dtype).removeprefix("torch."))
