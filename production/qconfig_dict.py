"""qconfig_dict checking and resolution, as torch's graph mode resolves it.

torch (`fillQConfigMap` in torch/csrc/jit/passes/quantization/insert_observers.cpp) walks
the module tree from the root: a module takes the qconfig stored under its dotted name if
there is one (None included, which leaves it float), else its parent's; the root's name is
"". A key naming no submodule is silently ignored there; here it is an error.
"""

from __future__ import annotations

import difflib
from typing import Mapping, Optional

from torch import nn
from torch.ao.quantization import QConfig, get_default_qconfig

QConfigDict = Mapping[str, Optional[QConfig]]


def check_qconfig_dict(model: nn.Module, qconfig_dict: QConfigDict) -> None:
    """Raise if a key is not a string naming `model` ("" or a dotted submodule name), or a
    value is neither a QConfig nor None. Unknown keys list the closest existing names."""
    names = [name for name, _ in model.named_modules()]
    known = set(names)
    for key, value in qconfig_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"qconfig_dict keys must be submodule names (str), got {key!r}")
        if key not in known:
            close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
            hint = (
                f"closest: {', '.join(repr(name) for name in close)}"
                if close
                else f"submodules: {', '.join(repr(n) for n in names[1:6])}..."
            )
            raise KeyError(f"qconfig_dict key {key!r} names no submodule of {model_name(model)} ({hint})")
        if value is not None and not isinstance(value, QConfig):
            raise TypeError(f"qconfig_dict[{key!r}] must be a QConfig or None, got {type(value).__name__}")


def model_name(model: nn.Module) -> str:
    """The class name a user wrote (`original_name` for a scripted module)."""
    return str(getattr(model, "original_name", type(model).__name__))


def resolve_qconfig(model: nn.Module, qconfig_dict: QConfigDict) -> dict[str, Optional[QConfig]]:
    """The qconfig every module of `model` gets (dotted name -> QConfig, or None = float),
    by torch's rule: its own entry if present, else its parent's; the root is ""."""
    check_qconfig_dict(model, qconfig_dict)
    resolved: dict[str, Optional[QConfig]] = {}
    pending: list[tuple[str, nn.Module, Optional[QConfig]]] = [("", model, None)]
    while pending:
        name, module, inherited = pending.pop()
        qconfig = qconfig_dict[name] if name in qconfig_dict else inherited
        resolved[name] = qconfig
        for child_name, child in module.named_children():
            pending.append((f"{name}.{child_name}" if name else child_name, child, qconfig))
    return resolved


def float_modules(model: nn.Module, qconfig_dict: QConfigDict) -> list[str]:
    """Dotted names of the modules torch leaves float (resolved qconfig None), in tree order."""
    resolved = resolve_qconfig(model, qconfig_dict)
    return [name for name, _ in model.named_modules() if resolved[name] is None]


def with_engine_preset(qconfig_dict: QConfigDict, engine: str) -> dict[str, Optional[QConfig]]:
    """`qconfig_dict` with every quantized entry replaced by torch's `get_default_qconfig(engine)`
    and every float entry (None) kept: a model's exclusions under another engine's preset, as
    torch's tutorial pairs an engine with its preset."""
    preset = get_default_qconfig(engine)
    return {key: None if value is None else preset for key, value in qconfig_dict.items()}
