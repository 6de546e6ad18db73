"""Save and load converted TorchScript models with the quantized engine pinned (fbgemm unless told).

FBGEMM or oneDNN is chosen when weights are prepacked, and `torch.jit.load` prepacks again:
a model saved under fbgemm but loaded under the default `x86` engine runs oneDNN conv
kernels, with other numerics. Both calls pin the engine and restore the caller's.

Loading a TorchScript file runs code the file contains (its TorchScript, and pickled
objects): load only files from sources you trust. The portable model file
(`production.export`, `reference.load`: JSON and arrays, no pickle, no code) is the format
to exchange with people you do not trust.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import Optional, Sequence

import torch

from .environment import ENGINE, known_deprecations_silenced, quantized_engine
from .outputs import atomic_output

# An extra file inside the TorchScript zip: what quantspec knows about the model that
# TorchScript does not record (the input shape it was calibrated on).
METADATA_FILE = "quantspec.json"


def save(
    model: torch.jit.ScriptModule,
    path: str | os.PathLike[str],
    input_shape: Optional[Sequence[int]] = None,
    engine: str = ENGINE,
) -> None:
    """`torch.jit.save(model, path)` under `engine` (the one it was converted under), known deprecations silenced;
    written atomically (`outputs.atomic_output`), so an interrupted save leaves no partial file.

    `input_shape` (C, H, W), when given, is stored beside the model so that `verify` and
    `export` can use it without being told (`input_shape(path)` reads it back).
    """
    if not isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"save expects a TorchScript module (the result of quantize_jit), got {type(model).__name__}")
    metadata = {"input_shape": [int(d) for d in input_shape]} if input_shape is not None else {}
    with known_deprecations_silenced(), quantized_engine(engine), atomic_output(path) as temporary:
        torch.jit.save(model, os.fspath(temporary), _extra_files={METADATA_FILE: json.dumps(metadata)})


def load(path: str | os.PathLike[str], engine: str = ENGINE) -> torch.jit.ScriptModule:
    """`torch.jit.load(path)` on CPU under `engine` (the load prepacks the weights: they are
    `engine`'s), known deprecations silenced. Runs the file's code: trusted files only.

    Raises FileNotFoundError for a missing file and ValueError, with torch's explanation in
    one line (`torch_error_line`), for a file torch cannot load.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TorchScript model file at {os.fspath(path)!r}")
    with known_deprecations_silenced(), quantized_engine(engine):  # outside the try: a bad engine is its own error
        try:
            return torch.jit.load(os.fspath(path), map_location="cpu")
        except Exception as error:  # whatever a damaged or foreign file makes torch raise
            explanation = torch_error_line(error)
            raise ValueError(f"{os.fspath(path)} is not a TorchScript model torch can load: {explanation}") from error


# `File "code/__torch__/m.py", line 19` in torch's errors: where in the file's code it failed.
_CODE_LOCATION = re.compile(r'File "([^"]*)", line (\d+)')


def torch_error_line(error: BaseException) -> str:
    """A (TorchScript) error of torch as one line that still explains it.

    An error raised while running a model ends with the failing op's own message after the
    TorchScript tracebacks; that last line is kept. An error raised while compiling a file's
    code (unknown op, syntax) starts with the explanation, then quotes the code, ending in a
    `~~~~ <--- HERE` marker: the explanation is kept with the code location.
    """
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if "Traceback of TorchScript" in text:
        return lines[-1]
    message: list[str] = []
    for line in lines:
        location = _CODE_LOCATION.search(line)
        if location:
            return f"{' '.join(message)} ({location[1]}, line {location[2]})".lstrip()
        if line != "The original call is:":
            message.append(line.removesuffix(" here:"))
    return " ".join(message)


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
