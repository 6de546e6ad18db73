"""Each name table (ops, float ops, interpreter kernels) refuses a second entry under a name."""

from __future__ import annotations

from typing import Callable

import pytest

from quantspec.reference.interpreter import kernels
from quantspec.reference.ops import OPS, float_ops, register_op


def _impostor(*args: object, **kwargs: object) -> None:
    """A second function for a name that is already taken."""


@pytest.mark.parametrize(
    "table, register, name, what",
    [
        (OPS, register_op, "quantized::add", "op"),
        (float_ops.FLOAT_OPS, float_ops._float_op, "aten::relu", "float op"),
        (kernels.KERNELS, kernels.kernel, "quantized::conv2d", "kernel"),
    ],
    ids=["OPS", "FLOAT_OPS", "KERNELS"],
)
def test_a_taken_name_is_refused(table: dict, register: Callable, name: str, what: str) -> None:
    first = table[name]
    with pytest.raises(ValueError) as refused:
        register(name)(_impostor)
    message = str(refused.value)
    assert f"{what} {name!r} is registered twice" in message
    assert f"{first.__module__}.{first.__qualname__}" in message
    assert f"{__name__}._impostor" in message
    assert table[name] is first
