"""The op registry: one reference function per torch op name it specifies."""

from __future__ import annotations

from typing import Callable

from .._registry import registrar

OPS: dict[str, Callable] = {}

# `@register_op(*torch_names)`: the reference op for the torch op names it defines the semantics of.
register_op = registrar(OPS, "op")
