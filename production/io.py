"""Save and load converted TorchScript models with the fbgemm engine pinned.

FBGEMM or oneDNN is chosen when weights are prepacked, and `torch.jit.load` prepacks again:
a model saved under fbgemm but loaded under the default `x86` engine runs oneDNN conv
kernels, with other numerics. Both calls pin fbgemm and restore the caller's engine.
"""

from __future__ import annotations

import os

import torch

from .environment import fbgemm_engine, known_deprecations_silenced


def save(model: torch.jit.ScriptModule, path: str | os.PathLike[str]) -> None:
    """`torch.jit.save(model, path)` under the fbgemm engine, known deprecations silenced."""
    if not isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"save expects a TorchScript module (the result of quantize_jit), got {type(model).__name__}")
    with known_deprecations_silenced(), fbgemm_engine():
        torch.jit.save(model, os.fspath(path))


def load(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """`torch.jit.load(path)` on CPU under the fbgemm engine (so packed weights are
    fbgemm's), known deprecations silenced."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TorchScript model file at {os.fspath(path)!r}")
    with known_deprecations_silenced(), fbgemm_engine():
        return torch.jit.load(os.fspath(path), map_location="cpu")
