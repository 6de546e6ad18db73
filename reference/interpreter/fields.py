"""Strict reading of the fields of a JSON document: a missing field, a wrong type or a value
out of range is a `ModelFileError` naming the field, the value and what was expected. No
coercion: "3" is not an int, `true` is not an int, 1.5 is not an int."""

from __future__ import annotations

import reprlib
from typing import Any, Callable, NoReturn

from .archive import ModelFileError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 6


def short(value: Any) -> str:
    """A repr of `value` short enough for an error message, whatever its size."""
    return _SHORT.repr(value)


def refuse(where: str, value: Any, expected: str) -> NoReturn:
    raise ModelFileError(f"{where} = {short(value)}: expected {expected}")


def required(document: Any, key: str, where: str) -> Any:
    """`document[key]`; `document` must be a JSON object holding `key`."""
    if not isinstance(document, dict):
        refuse(where, document, "an object")
    if key not in document:
        raise ModelFileError(f"{where} lacks the field {key!r}")
    return document[key]


def as_int(value: Any, where: str, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int:
    if type(value) is not int or not minimum <= value <= maximum:
        refuse(where, value, f"an int in [{minimum}, {maximum}]")
    return value


def _exactly(kind: type, expected: str) -> Callable[[Any, str], Any]:
    """A reader `(value, where) -> value` refusing anything but an instance of exactly `kind`."""

    def read(value: Any, where: str) -> Any:
        if type(value) is not kind:
            refuse(where, value, expected)
        return value

    return read


as_bool = _exactly(bool, "true or false")
as_str = _exactly(str, "a string")
as_list = _exactly(list, "a list")
as_object = _exactly(dict, "an object")


def as_name(value: Any, where: str) -> str:
    """A value name: a non-empty string."""
    if type(value) is not str or not value:
        refuse(where, value, "a value name (a non-empty string)")
    return value


def as_names(value: Any, where: str) -> tuple[str, ...]:
    """A list of value names."""
    return tuple(as_name(name, f"{where}[{index}]") for index, name in enumerate(as_list(value, where)))
