"""The error every public function raises for a bad argument, and the scalar checks behind it.

A top-level module (NumPy only) so that `qtensor`, `profile`, the ops and the observers all
use the same checks; array- and QTensor-level checks of the ops live in `ops/_validate.py`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


class ArgumentError(ValueError, TypeError):
    """A public function was called with a bad argument. The message names the argument, the
    value given and what was expected. Both a ValueError and a TypeError, so callers that
    catch either (as for torch's or NumPy's errors) keep working."""


class ArgumentIndexError(ArgumentError, IndexError):
    """An axis or dim out of range; also an IndexError, the error torch raises for it."""


def describe(value: Any) -> str:
    """`value` for an error message: its repr (shortened) and, when that hides it, its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text if isinstance(value, (bool, int, float, str, type(None))) else f"{text} ({type(value).__name__})"


def _scalar(value: Any) -> Any:
    """The Python number inside a 0-d array or NumPy scalar; other values unchanged."""
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        return value.item()
    return value


def real_number(value: Any, name: str) -> float:
    """A real number (Python, NumPy scalar or 0-d array; never a bool or string) as a float."""
    if type(value) is float or type(value) is int:  # the common case, without ABC checks (bool is not int)
        return float(value)
    number = _scalar(value)
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise ArgumentError(f"{name} must be a real number, got {describe(value)}")
    return float(number)


def is_scale(value: float) -> bool:
    """Whether a real number can be a quantization scale: finite and positive (NaN is not)."""
    return math.isfinite(value) and value > 0  # math, not np.isfinite: ~20x faster on a float


def positive_scale(value: Any, name: str) -> float:
    """A quantization scale: a finite, positive real number."""
    scale = real_number(value, name)
    if not is_scale(scale):
        raise ArgumentError(f"{name} must be finite and positive, got {scale!r}")
    return scale


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """An integer (Python, NumPy scalar or 0-d array; never a bool, float or string), >= `minimum`."""
    number = value
    if type(number) is not int:  # the common case skips the ABC checks (type(True) is bool, not int)
        number = _scalar(value)
        if isinstance(number, bool) or not isinstance(number, numbers.Integral):
            raise ArgumentError(f"{name} must be an integer, got {describe(value)}")
    if minimum is not None and number < minimum:
        raise ArgumentError(f"{name} must be >= {minimum}, got {number}")
    return int(number)


def integral_number(value: Any, name: str) -> int:
    """A zero point: an integer, or a real number with an integral value (observers compute
    zero points in float); never a bool or string."""
    number = real_number(value, name)
    if not number.is_integer():
        raise ArgumentError(f"{name} must be an integer scalar, got {describe(value)}")
    return int(number)


def flag(value: Any, name: str) -> bool:
    """A bool (Python or NumPy); 0/1 and strings are refused rather than guessed at."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be a bool, got {describe(value)}")
    return bool(value)


def dim_index(value: Any, name: str, ndim: int) -> int:
    """A dim of a tensor of `ndim` dims, negative counting from the end; returned in [0, ndim)."""
    dim = integer(value, name)
    if not -ndim <= dim < max(ndim, 1):
        raise ArgumentIndexError(f"{name}={dim} is out of range for a tensor of {ndim} dims")
    return dim % max(ndim, 1)


def int_sequence(
    value: Any, name: str, minimum: int | None = None, expected: str = "a sequence of ints"
) -> tuple[int, ...]:
    """Integers (>= `minimum`) of any number: a list, tuple or 1-d integer array."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(f"{name} must be {expected}, got {describe(value)}")
    if all(type(item) is int for item in value) and (minimum is None or min(value, default=minimum) >= minimum):
        return tuple(value)  # the common case, without naming each item
    return tuple(integer(item, f"{name}[{i}]", minimum) for i, item in enumerate(value))


def int_tuple(value: Any, name: str, length: int, minimum: int | None = None) -> tuple[int, ...]:
    """`length` integers (>= `minimum`): an int (repeated) or a sequence of exactly `length`."""
    if isinstance(value, (numbers.Integral, np.integer)):
        value = [value] * length
    items = int_sequence(value, name, minimum, f"an int or a sequence of {length} ints")
    if len(items) != length:
        raise ArgumentError(f"{name} must have {length} entries, got {describe(value)}")
    return items
