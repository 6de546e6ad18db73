"""Input checks shared by the ops: clear errors instead of silent conversions."""

from __future__ import annotations

import numpy as np

from ..profile import EngineRefusedError


def as_float32_array(x: np.typing.ArrayLike, name: str) -> np.ndarray:
    """Return `x` as a float32 array.

    Lists and Python scalars are converted; an ndarray of another dtype is refused,
    because narrowing float64 to float32 is a rounding step torch would not do for you.
    """
    if isinstance(x, np.ndarray) and x.dtype != np.float32:
        raise TypeError(f"{name} must be a float32 array, got dtype {x.dtype}; convert it explicitly first")
    array = np.asarray(x, dtype=np.float32)
    return array


def checked_bias(bias: np.typing.ArrayLike | None, out_channels: int) -> np.ndarray | None:
    """A conv or linear bias: None, or float32 of shape (out_channels,)."""
    if bias is None:
        return None
    bias32 = as_float32_array(bias, "bias")
    if bias32.shape != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {bias32.shape}")
    return bias32


def check_qnnpack_rows(shape: tuple[int, ...], op: str) -> None:
    """pytorch_qnnpack's element-wise operators (add, clamp, hardswish) see a tensor as
    size(0) rows of numel / size(0) elements: they refuse a 0-d tensor and empty rows
    (EngineRefusedError; torch: "Got empty input tensor", "number of channels must be non-zero")."""
    if len(shape) == 0 or (shape[0] and not np.prod(shape)):
        raise EngineRefusedError(f"pytorch_qnnpack's {op} refuses a tensor of shape {shape}")
