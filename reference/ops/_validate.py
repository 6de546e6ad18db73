"""Input checks shared by the ops: clear errors instead of silent conversions."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arguments import ArgumentError, describe
from ..profile import EngineRefusedError
from ..qtensor import QDtype, QTensor, checked_scale, checked_zero_point


def as_float32_array(x: np.typing.ArrayLike, name: str) -> np.ndarray:
    """Return `x` as a float32 array.

    Lists and Python scalars are converted; an ndarray of another dtype is refused,
    because narrowing float64 to float32 is a rounding step torch would not do for you.
    """
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise ArgumentError(f"{name} must be a float32 array, got dtype {x.dtype}; convert it explicitly first")
        return x
    try:
        kind = np.asarray(x).dtype.kind
    except ValueError:  # ragged nested sequences
        kind = "O"
    if kind not in "iuf":  # strings, None, bools, objects and ragged lists are not numbers
        raise ArgumentError(f"{name} must be a float32 array or real numbers, got {describe(x)}")
    return np.asarray(x, dtype=np.float32)


def checked_bias(bias: np.typing.ArrayLike | None, out_channels: int) -> np.ndarray | None:
    """A conv or linear bias: None, or float32 of shape (out_channels,)."""
    if bias is None:
        return None
    bias32 = as_float32_array(bias, "bias")
    if bias32.shape != (out_channels,):
        raise ArgumentError(f"bias must have shape ({out_channels},), got {bias32.shape}")
    return bias32


def check_qtensor(value: Any, name: str) -> QTensor:
    """`value` if it is a QTensor, else ArgumentError naming `name`."""
    if not isinstance(value, QTensor):
        raise ArgumentError(f"{name} must be a QTensor, got {describe(value)}")
    return value


def output_qparams(output_scale: float, output_zero_point: int, dtype: QDtype) -> QTensor:
    """An empty QTensor carrying an op's validated output scale and zero point."""
    scale = checked_scale(output_scale, "output_scale")
    zero_point = checked_zero_point(output_zero_point, dtype, "output_zero_point")
    return QTensor(np.zeros((0,), dtype.storage), scale, zero_point, dtype)


def broadcast_shape(a: QTensor, b: QTensor, op: str) -> tuple[int, ...]:
    """The shape `a` and `b` broadcast to; ArgumentError naming both, not NumPy's, when they do not."""
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ArgumentError(f"{op}: shapes of a {a.shape} and b {b.shape} do not broadcast") from None


def check_qnnpack_rows(shape: tuple[int, ...], op: str) -> None:
    """pytorch_qnnpack's element-wise operators (add, clamp, hardswish) see a tensor as
    size(0) rows of numel / size(0) elements: they refuse a 0-d tensor and empty rows
    (EngineRefusedError; torch: "Got empty input tensor", "number of channels must be non-zero")."""
    if len(shape) == 0 or (shape[0] and not np.prod(shape)):
        raise EngineRefusedError(f"pytorch_qnnpack's {op} refuses a tensor of shape {shape}")
