"""The part of torch's `UniformQuantizationObserverBase` every observer here shares."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .._arguments import ArgumentError, ArgumentIndexError, describe, flag, integer, positive_scale, real_number
from ..qtensor import QDtype
from ._qparams import FLOAT32_EPS, QScheme, calculate_qparams, parse_observer_dtype, quant_range

# torch's default `eps=torch.finfo(torch.float32).eps`.
DEFAULT_EPS = FLOAT32_EPS


class UniformObserver:
    """Parameters and qparams arithmetic common to the min/max and histogram observers.

    Args mirror torch's: dtype (quint8, qint8, qint32), qscheme, reduce_range,
    quant_min/quant_max (both or neither), eps (stored as float32, like torch's buffer).
    """

    def __init__(
        self,
        dtype: Union[QDtype, str],
        qscheme: Union[QScheme, str],
        reduce_range: bool,
        quant_min: Optional[int],
        quant_max: Optional[int],
        eps: float,
    ) -> None:
        self.dtype = parse_observer_dtype(dtype)
        self.qscheme = QScheme.parse(qscheme)
        self.reduce_range = flag(reduce_range, "reduce_range")
        self.eps = np.float32(positive_scale(eps, "eps"))
        quant_min = None if quant_min is None else integer(quant_min, "quant_min")
        quant_max = None if quant_max is None else integer(quant_max, "quant_max")
        self.quant_min, self.quant_max, self.has_customized_qrange = quant_range(
            self.dtype, self.reduce_range, quant_min, quant_max
        )
        if self.qscheme.symmetric and self.reduce_range and self.dtype is QDtype.quint8:
            # torch raises NotImplementedError for this combination.
            raise NotImplementedError("Cannot reduce range for symmetric quantization for quint8")

    def _qparams(self, min_val: np.ndarray, max_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return calculate_qparams(
            min_val,
            max_val,
            self.quant_min,
            self.quant_max,
            self.qscheme,
            self.dtype,
            self.eps,
            self.has_customized_qrange,
        )

    def _check_qscheme(self, per_channel: bool) -> None:
        if self.qscheme.per_channel != per_channel:
            kind = "per-channel" if per_channel else "per-tensor"
            raise NotImplementedError(f"{type(self).__name__} needs a {kind} qscheme, got {self.qscheme.value}")


def checked_averaging_constant(value: float) -> float:
    """The moving-average observers' weight of a new batch: a real number in [0, 1] (0 keeps the
    first batch's min/max, as torch does)."""
    constant = real_number(value, "averaging_constant")
    if not 0 <= constant <= 1:
        raise ArgumentError(f"averaging_constant must be in [0, 1], got {constant!r}")
    return constant


def as_observed_float32(x: np.typing.ArrayLike, observer: str) -> np.ndarray:
    """An input as float32, the way min/max observers' `x.to(torch.float32)` converts it
    (float64 and integers round to nearest even); complex and non-numeric inputs are refused."""
    try:
        array = np.asarray(x)
    except ValueError:  # ragged nested sequences
        array = np.asarray(None)
    if array.dtype.kind not in "fiub":
        raise ArgumentError(f"{observer}.observe: x must hold real numbers, got {describe(x)}")
    return array.astype(np.float32, copy=False)


def channel_rows(x: np.ndarray, ch_axis: int, observer: str) -> np.ndarray:
    """torch's per-channel view: swap `ch_axis` with axis 0, flatten the rest -> (C, -1).

    Negative axes count from the end, like the Python list assignment torch does. torch's
    `flatten(start_dim=1)` rejects inputs of fewer than 2 dims, and so does the reference.
    """
    if x.ndim < 2:
        raise ArgumentIndexError(
            f"{observer} needs an input x of at least 2 dims (channels and values), got shape {x.shape}"
        )
    if not -x.ndim <= ch_axis < x.ndim:
        raise ArgumentIndexError(f"{observer}: ch_axis {ch_axis} is out of range for an input of shape {x.shape}")
    return np.swapaxes(x, 0, ch_axis).reshape(x.shape[ch_axis], -1)

