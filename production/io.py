"""Save and load converted TorchScript models with the fbgemm engine pinned.

FBGEMM or oneDNN is chosen when weights are prepacked, and `torch.jit.load` prepacks again:
a model saved under fbgemm but loaded under the default `x86` engine runs oneDNN conv
kernels, with other numerics. Both calls pin fbgemm and restore the caller's engine.
"""

from __future__ import annotations

import json
import os
import zipfile
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
    """The (C, H, W) input shape `save` recorded in the file, or None if it recorded none.

    `torch.jit.save` writes a zip whose extra files sit at `<archive>/extra/<name>`: the
    entry is read with `zipfile`, without loading (and prepacking) the model.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no TorchScript model file at {name!r}")
    try:
        with zipfile.ZipFile(name) as archive:
            entry = next((e for e in archive.namelist() if e.endswith(f"/extra/{METADATA_FILE}")), None)
            text = archive.read(entry).decode("utf-8") if entry is not None else ""
    except (zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise ValueError(f"{name} is not a readable TorchScript model file (a zip archive): {error}") from error
    if not text:
        return None
    try:
        shape = json.loads(text).get("input_shape")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"{name}: {entry} is not the JSON object quantspec writes ({error})") from error
    if shape is None:
        return None
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ValueError(f"{name}: {entry} records input_shape {shape!r}; expected a list of positive ints (C, H, W)")
    return tuple(shape)
