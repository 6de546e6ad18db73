"""The quantized tensor: integers plus the parameters that give them meaning."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ._arguments import ArgumentError, describe, integer, integral_number, is_scale, positive_scale


class QDtype(enum.Enum):
    """Quantized dtypes, with their integer range and NumPy storage type."""

    quint8 = ("quint8", np.uint8, 0, 255)
    qint8 = ("qint8", np.int8, -128, 127)
    qint32 = ("qint32", np.int32, -(2**31), 2**31 - 1)

    def __init__(self, label: str, storage: type, qmin: int, qmax: int) -> None:
        self.label = label
        self.storage = np.dtype(storage)
        self.qmin = qmin
        self.qmax = qmax

    @classmethod
    def parse(cls, value: Union["QDtype", str]) -> "QDtype":
        """Accept a QDtype or its name ("quint8", "qint8", "qint32")."""
        if isinstance(value, cls):  # before building the message: every QTensor parses its dtype
            return value
        labels = {member.label: member for member in cls}
        message = f"unknown quantized dtype {describe(value)}: dtype must be a QDtype or one of {list(labels)}"
        return _member(cls, value, labels, message)


class MemoryFormat(enum.Enum):
    """Physical layout of a 4-d tensor. Quantized kernels walk memory in this order
    (vector chunks and scalar tails follow it), so it changes results at ties."""

    contiguous = "contiguous"
    channels_last = "channels_last"

    @classmethod
    def parse(cls, value: Union["MemoryFormat", str]) -> "MemoryFormat":
        """Accept a MemoryFormat or its name ("contiguous", "channels_last")."""
        if isinstance(value, cls):
            return value
        names = {member.value: member for member in cls}
        message = f"memory_format must be a MemoryFormat or one of {list(names)}, got {describe(value)}"
        return _member(cls, value, names, message)


def _member(cls: type, value: object, by_name: dict, message: str) -> object:
    """`value` if it is a `cls`, else the member named `value` (hashable names only), else ArgumentError(message)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in by_name:
        return by_name[value]
    raise ArgumentError(message)


def memory_format_of(values: np.ndarray) -> MemoryFormat:
    """torch's layout test on NumPy strides: channels_last when a 4-d array is NHWC-dense and
    not NCHW-dense (`is_contiguous(channels_last) and not is_contiguous()`).

    >>> nhwc = np.zeros((1, 3, 4, 2), np.float32)
    >>> memory_format_of(nhwc.transpose(0, 3, 1, 2)).value, memory_format_of(nhwc).value
    ('channels_last', 'contiguous')
    """
    if values.ndim == 4 and not values.flags.c_contiguous and values.transpose(0, 2, 3, 1).flags.c_contiguous:
        return MemoryFormat.channels_last
    return MemoryFormat.contiguous


def in_memory_format(values: np.ndarray, memory_format: MemoryFormat) -> np.ndarray:
    """The 4-d NCHW `values` laid out in `memory_format` (channels_last: NHWC strides, a copy)."""
    if memory_format is MemoryFormat.channels_last:
        return np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return values


@dataclass(frozen=True, eq=False)
class QTensor:
    """A quantized tensor.

    Attributes:
        int_repr: the integers, in logical (NCHW) index order, stored as uint8/int8/int32.
        scale: a float (per-tensor) or a float64 array (per-channel along `axis`).
            ATen stores scales as double; kernels mostly read `float(scale)`.
        zero_point: an int (per-tensor) or an int64 array (per-channel).
        dtype: the quantized dtype.
        axis: the channel axis for per-channel qparams, else None.
        memory_format: the physical layout the producing kernel wrote.
    """

    int_repr: np.ndarray
    scale: Union[float, np.ndarray]
    zero_point: Union[int, np.ndarray]
    dtype: QDtype
    axis: Optional[int] = None
    memory_format: MemoryFormat = MemoryFormat.contiguous

    def __post_init__(self) -> None:
        if self._canonical():
            return
        dtype = QDtype.parse(self.dtype)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "int_repr", _checked_int_repr(self.int_repr, dtype))
        object.__setattr__(self, "memory_format", MemoryFormat.parse(self.memory_format))
        if self.axis is None:
            object.__setattr__(self, "scale", checked_scale(self.scale, "scale"))
            object.__setattr__(self, "zero_point", checked_zero_point(self.zero_point, dtype, "zero_point"))
        else:
            scales, zero_points, axis = check_per_channel_qparams(
                self.scale, self.zero_point, self.axis, self.int_repr.shape, dtype
            )
            object.__setattr__(self, "scale", scales)
            object.__setattr__(self, "zero_point", zero_points)
            object.__setattr__(self, "axis", axis)
        if self.memory_format is MemoryFormat.channels_last and self.int_repr.ndim != 4:
            raise ArgumentError(f"memory_format channels_last needs a 4-d tensor, got shape {self.int_repr.shape}")

    def _canonical(self) -> bool:
        """Whether the fields are already what the checks below would make of them (a kernel's
        output: its array, a QDtype, a float scale, an int zero point): then nothing needs
        converting, and these few tests replace the general checks (half the cost of a
        small op's result)."""
        values, dtype, zero_point = self.int_repr, self.dtype, self.zero_point
        return (
            type(values) is np.ndarray
            and type(dtype) is QDtype
            and values.dtype == dtype.storage
            and self.axis is None
            and type(self.scale) is float
            and is_scale(self.scale)
            and type(zero_point) is int
            and dtype.qmin <= zero_point <= dtype.qmax
            and (self.memory_format is MemoryFormat.contiguous
                 or (self.memory_format is MemoryFormat.channels_last and values.ndim == 4))
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.int_repr.shape

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def __repr__(self) -> str:
        qparams = f"scale={self.scale!r}, zero_point={self.zero_point!r}"
        if self.per_channel:
            qparams += f", axis={self.axis}"
        return f"QTensor(shape={self.shape}, dtype={self.dtype.label}, {qparams}, {self.memory_format.value})"


def _checked_int_repr(values: np.ndarray, dtype: QDtype) -> np.ndarray:
    if isinstance(values, (str, bytes)) or values is None:
        raise ArgumentError(f"int_repr must be an integer array, got {describe(values)}")
    values = np.asarray(values)
    if values.dtype == dtype.storage:
        return values
    if not np.issubdtype(values.dtype, np.integer):
        raise ArgumentError(f"int_repr must hold integers for {dtype.label}, got dtype {values.dtype}")
    if values.size and (values.min() < dtype.qmin or values.max() > dtype.qmax):
        raise ArgumentError(
            f"int_repr values span [{values.min()}, {values.max()}], outside {dtype.label}'s "
            f"[{dtype.qmin}, {dtype.qmax}]"
        )
    return values.astype(dtype.storage)


def checked_scale(scale: float, name: str) -> float:
    """A per-tensor scale (argument `name`): a finite positive real number, as a float."""
    if isinstance(scale, (list, tuple, np.ndarray)) and np.ndim(scale) != 0:
        raise ArgumentError(f"per-tensor {name} must be a scalar, got shape {np.shape(scale)} (axis= is per-channel)")
    return positive_scale(scale, name)


def checked_zero_point(zero_point: int, dtype: QDtype, name: str) -> int:
    """A per-tensor zero point (argument `name`): an integer in `dtype`'s range."""
    value = integral_number(zero_point, name)
    if not dtype.qmin <= value <= dtype.qmax:
        raise ArgumentError(f"{name} {value} is outside {dtype.label}'s range [{dtype.qmin}, {dtype.qmax}]")
    return value


def check_per_channel_qparams(
    scales: np.typing.ArrayLike,
    zero_points: np.typing.ArrayLike,
    axis: int,
    shape: tuple[int, ...],
    dtype: QDtype,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate per-channel qparams against a tensor shape; return (scales, zero_points, axis)."""
    ndim = len(shape)
    axis = integer(axis, "axis")
    if not -ndim <= axis < ndim or ndim == 0:
        raise ArgumentError(f"axis {axis} is out of range for a tensor of shape {shape}")
    axis = axis % ndim
    scales = _real_array(scales, "scales").astype(np.float64)
    zero_points_in = _real_array(zero_points, "zero_points")
    channels = shape[axis]
    if scales.shape != (channels,) or zero_points_in.shape != (channels,):
        raise ArgumentError(
            f"per-channel qparams need {channels} scales and zero points (shape[{axis}] of {shape}), "
            f"got scales {scales.shape} and zero_points {zero_points_in.shape}"
        )
    bad_scale = ~(np.isfinite(scales) & (scales > 0))
    if bad_scale.any():
        index = int(np.argmax(bad_scale))
        raise ArgumentError(f"scales must be finite and positive; scales[{index}] = {float(scales[index])!r}")
    if not np.issubdtype(zero_points_in.dtype, np.integer):
        if not np.all(np.mod(zero_points_in, 1) == 0):
            raise ArgumentError(f"zero_points must be integers, got {zero_points_in!r}")
    zero_points_out = zero_points_in.astype(np.int64)
    bad_zp = (zero_points_out < dtype.qmin) | (zero_points_out > dtype.qmax)
    if bad_zp.any():
        index = int(np.argmax(bad_zp))
        raise ArgumentError(
            f"zero_points[{index}] = {zero_points_out[index]} is outside {dtype.label}'s range "
            f"[{dtype.qmin}, {dtype.qmax}]"
        )
    return scales, zero_points_out, axis


def _real_array(values: np.typing.ArrayLike, name: str) -> np.ndarray:
    """Per-channel qparams as an array of real numbers; strings and bools are not converted."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ArgumentError(f"{name} must hold real numbers, got {describe(values)} of dtype {array.dtype}")
    return array
