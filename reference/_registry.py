"""Name -> function tables filled by decorators: the op registry `ops.OPS`, the float ops
`ops.float_ops.FLOAT_OPS` and the interpreter's `KERNELS`. A top-level module so that the
ops and the interpreter both import it (`ops/` never imports `interpreter/`)."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F], what: str) -> Callable[..., Callable[[F], F]]:
    """A decorator factory `register(*names)` that enters the decorated function into `table`
    under each name. A name already there raises ValueError naming it and both owners
    (otherwise the later entry would silently replace the earlier); `what` says what the
    table holds in that message.

    >>> table = {}
    >>> register = registrar(table, "op")
    >>> register("magnitude")(abs)
    <built-in function abs>
    >>> register("magnitude")(round)
    Traceback (most recent call last):
    ...
    ValueError: op 'magnitude' is registered twice (builtins.abs, builtins.round)
    """

    def register(*names: str) -> Callable[[F], F]:
        """Enter the decorated function under each of `names`; a name already taken raises ValueError."""

        def decorate(function: F) -> F:
            for name in names:
                if name in table:
                    raise ValueError(f"{what} {name!r} is registered twice ({_owner(table[name])}, {_owner(function)})")
                table[name] = function
            return function

        return decorate

    return register


def _owner(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"
