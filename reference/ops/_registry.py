"""The op registry: one reference function per torch op name it specifies."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

OPS: dict[str, Callable] = {}


def register_op(*torch_names: str) -> Callable[[F], F]:
    """Register a reference op under the torch op names it defines the semantics of."""

    def decorate(function: F) -> F:
        for name in torch_names:
            if name in OPS:
                raise ValueError(f"op {name!r} is registered twice ({OPS[name].__module__}, {function.__module__})")
            OPS[name] = function
        return function

    return decorate
