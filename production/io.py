"""Save and load converted TorchScript models with the fbgemm engine pinned.

FBGEMM or oneDNN is chosen when weights are prepacked, and `torch.jit.load` prepacks again:
a model saved under fbgemm but loaded under the default `x86` engine runs oneDNN conv
kernels, with other numerics. Both calls pin fbgemm and restore the caller's engine.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import torch

from .environment import fbgemm_engine, known_deprecations_silenced


# An extra file inside the TorchScript zip: what quantspec knows about the model that
# TorchScript does not record (the input shape it was calibrated on).
METADATA_FILE = "quantspec.json"


def save(
    model: torch.jit.ScriptModule, path: str | os.PathLike[str], input_shape: Optional[Sequence[int]] = None
) -> None:
    """`torch.jit.save(model, path)` under the fbgemm engine, known deprecations silenced.

    `input_shape` (C, H, W), when given, is stored beside the model so that `verify` and
    `export` can use it without being told (`input_shape(path)` reads it back).
    """
    if not isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"save expects a TorchScript module (the result of quantize_jit), got {type(model).__name__}")
    metadata = {"input_shape": [int(d) for d in input_shape]} if input_shape is not None else {}
    with known_deprecations_silenced(), fbgemm_engine():
        torch.jit.save(model, os.fspath(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


def load(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """`torch.jit.load(path)` on CPU under the fbgemm engine (so packed weights are
    fbgemm's), known deprecations silenced."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TorchScript model file at {os.fspath(path)!r}")
    with known_deprecations_silenced(), fbgemm_engine():
        return torch.jit.load(os.fspath(path), map_location="cpu")


def input_shape(path: str | os.PathLike[str]) -> Optional[tuple[int, ...]]:
    """The (C, H, W) input shape `save` recorded in the file, or None if it recorded none."""
    extra = {METADATA_FILE: ""}
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TorchScript model file at {os.fspath(path)!r}")
    with known_deprecations_silenced(), fbgemm_engine():
        torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
    if not extra[METADATA_FILE]:
        return None
    shape = json.loads(extra[METADATA_FILE]).get("input_shape")
    return tuple(shape) if shape else None
