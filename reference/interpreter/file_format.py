"""The portable converted-model file: one zip, JSON for structure, .npz for arrays.

Layout (format version 1):

* `manifest.json`: `{"format": "quantspec-model", "format_version": 1,
  "payload_sha256": <hex>}`: the sha256 of `graph.json`'s bytes followed by
  `arrays.npz`'s bytes.
* `graph.json`: the graph (inputs, outputs, nodes with kinds, inputs, outputs, source
  lines and nested blocks), every constant and packed weight (encoded values, see
  `encode_value`), the numerics profile and the torch release it was converted under.
* `arrays.npz`: every array the graph refers to by key (integer weights, float biases,
  per-channel scales and zero points, tensor constants), read with
  `np.load(..., allow_pickle=False)`.

No pickle anywhere: the reader trusts nothing but JSON and raw NumPy arrays.
Writing needs no torch either: `production.export` turns torch objects into the value
types below and calls `write_model_file`.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..fast.conv2d import ConvWeights, prepare_conv_weight
from ..fast.gemm import GemmWeights
from ..fast.linear import prepare_linear_weight
from ..qtensor import MemoryFormat, QDtype, QTensor, in_memory_format, memory_format_of

FORMAT_NAME = "quantspec-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH = "graph.json"
ARRAYS = "arrays.npz"


class ModelFileError(ValueError):
    """A model file that is missing, truncated, tampered with or from a future format."""


@dataclass(frozen=True)
class PackedConv:
    """What `Conv2dPackedParamsBase.unpack()` and its geometry accessors give."""

    weight: QTensor
    bias: np.ndarray | None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    transposed: bool = False
    output_padding: tuple[int, ...] = (0, 0)

    @cached_property
    def prepared(self) -> ConvWeights:
        """The weight as the reference's GEMM paths use it, formed on first use and kept with
        the loaded model (as torch keeps its prepacked weight), not formed again per run."""
        return prepare_conv_weight(self.weight, self.groups, self.stride, self.dilation)


@dataclass(frozen=True)
class PackedLinear:
    """What `LinearPackedParamsBase.unpack()` gives."""

    weight: QTensor
    bias: np.ndarray | None

    @cached_property
    def prepared(self) -> GemmWeights:
        """The weight as the reference's GEMM operand, formed once (see `PackedConv.prepared`)."""
        return prepare_linear_weight(self.weight)


class ArrayStore:
    """Arrays collected while encoding, keyed a0, a1, ..."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(array)
        return key


def encode_value(value: Any, store: ArrayStore) -> dict:
    """A JSON-able description of a constant. Floats are stored as `float.hex` strings,
    so every double (and NaN, inf) round-trips exactly."""
    if value is None:
        return {"type": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"type": "bool", "value": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"type": "int", "value": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"type": "float", "value": float(value).hex()}
    if isinstance(value, str):
        return {"type": "str", "value": value}
    if isinstance(value, (list, tuple)):
        return {"type": type(value).__name__, "items": [encode_value(item, store) for item in value]}
    if isinstance(value, QTensor):
        return _encode_qtensor(value, store)
    if isinstance(value, np.ndarray):  # values in NCHW index order; an NHWC layout is noted (a float conv reads it)
        encoded = {"type": "tensor", "array": store.add(value)}
        if memory_format_of(value) is MemoryFormat.channels_last:
            encoded["memory_format"] = MemoryFormat.channels_last.value
        return encoded
    if isinstance(value, PackedConv):
        return {
            "type": "conv_packed",
            "weight": _encode_qtensor(value.weight, store),
            "bias": encode_value(value.bias, store),
            "stride": list(value.stride),
            "padding": list(value.padding),
            "dilation": list(value.dilation),
            "groups": value.groups,
            "transposed": value.transposed,
            "output_padding": list(value.output_padding),
        }
    if isinstance(value, PackedLinear):
        return {
            "type": "linear_packed",
            "weight": _encode_qtensor(value.weight, store),
            "bias": encode_value(value.bias, store),
        }
    raise TypeError(f"cannot store a constant of type {type(value).__name__}: {value!r}")


def _encode_qtensor(q: QTensor, store: ArrayStore) -> dict:
    encoded = {
        "type": "qtensor",
        "dtype": q.dtype.label,
        "int_repr": store.add(q.int_repr),
        "memory_format": q.memory_format.value,
        "axis": q.axis,
    }
    if q.per_channel:
        encoded["scale"] = store.add(np.asarray(q.scale, np.float64))
        encoded["zero_point"] = store.add(np.asarray(q.zero_point, np.int64))
    else:
        encoded["scale"] = float(q.scale).hex()
        encoded["zero_point"] = int(q.zero_point)
    return encoded


def decode_value(encoded: dict, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of `encode_value`."""
    kind = encoded.get("type")
    if kind == "none":
        return None
    if kind in ("bool", "int", "str"):
        return encoded["value"]
    if kind == "float":
        return float.fromhex(encoded["value"])
    if kind in ("list", "tuple"):
        items = [decode_value(item, arrays) for item in encoded["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "tensor":
        return _laid_out(_array(arrays, encoded["array"]), encoded.get("memory_format", MemoryFormat.contiguous.value))
    if kind == "qtensor":
        return _decode_qtensor(encoded, arrays)
    if kind == "conv_packed":
        return PackedConv(
            weight=_decode_qtensor(encoded["weight"], arrays),
            bias=decode_value(encoded["bias"], arrays),
            stride=tuple(encoded["stride"]),
            padding=tuple(encoded["padding"]),
            dilation=tuple(encoded["dilation"]),
            groups=int(encoded["groups"]),
            transposed=bool(encoded["transposed"]),
            output_padding=tuple(encoded["output_padding"]),
        )
    if kind == "linear_packed":
        return PackedLinear(_decode_qtensor(encoded["weight"], arrays), decode_value(encoded["bias"], arrays))
    raise ModelFileError(f"unknown constant type {kind!r} in the model file")


def _decode_qtensor(encoded: dict, arrays: dict[str, np.ndarray]) -> QTensor:
    if encoded["axis"] is None:
        scale: Any = float.fromhex(encoded["scale"])
        zero_point: Any = encoded["zero_point"]
    else:
        scale, zero_point = _array(arrays, encoded["scale"]), _array(arrays, encoded["zero_point"])
    int_repr = _array(arrays, encoded["int_repr"])
    memory_format = _memory_format(encoded["memory_format"], int_repr.shape)
    return QTensor(int_repr, scale, zero_point, QDtype.parse(encoded["dtype"]), encoded["axis"], memory_format)


def _laid_out(array: np.ndarray, memory_format: str) -> np.ndarray:
    """A stored float tensor in its recorded memory format (files without one: contiguous)."""
    return in_memory_format(array, _memory_format(memory_format, array.shape))


def _memory_format(name: str, shape: tuple[int, ...]) -> MemoryFormat:
    """The recorded memory format of a tensor of `shape`, or a `ModelFileError` naming it."""
    known = [member.value for member in MemoryFormat]
    if name not in known or (name == MemoryFormat.channels_last.value and len(shape) != 4):
        raise ModelFileError(
            f"tensor memory_format {name!r} for shape {shape}: expected one of {known} (channels_last only for 4-d tensors)"
        )
    return MemoryFormat(name)


def _array(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise ModelFileError(f"the model file refers to array {key!r}, which {ARRAYS} does not hold")
    return arrays[key]


def write_model_file(path: Union[str, Path], graph: dict, store: ArrayStore) -> None:
    """Write `graph` (already encoded) and the collected arrays as one model file."""
    graph_bytes = json.dumps(graph, indent=1, sort_keys=True).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **store.arrays)
    arrays_bytes = buffer.getvalue()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "payload_sha256": hashlib.sha256(graph_bytes + arrays_bytes).hexdigest(),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
        archive.writestr(GRAPH, graph_bytes)
        archive.writestr(ARRAYS, arrays_bytes)


def read_model_file(path: Union[str, Path]) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a model file; return (graph, arrays).

    Raises `ModelFileError` for a missing, truncated or tampered file, another format or
    a format version newer than this reader.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = {MANIFEST, GRAPH, ARRAYS} - names
            if missing:
                raise ModelFileError(f"{path} is not a complete quantspec model file: {sorted(missing)} missing")
            manifest_bytes = archive.read(MANIFEST)
            graph_bytes = archive.read(GRAPH)
            arrays_bytes = archive.read(ARRAYS)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ModelFileError(f"{path} is not a readable model file (truncated or not a zip): {error}") from None
    manifest = _json(manifest_bytes, path, MANIFEST)
    _check_manifest(manifest, path)
    digest = hashlib.sha256(graph_bytes + arrays_bytes).hexdigest()
    if digest != manifest.get("payload_sha256"):
        raise ModelFileError(
            f"{path} fails its checksum (sha256 {digest}, manifest says {manifest.get('payload_sha256')}): "
            "the file was modified after export"
        )
    graph = _json(graph_bytes, path, GRAPH)
    with np.load(io.BytesIO(arrays_bytes), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return graph, arrays


def _json(data: bytes, path: Path, member: str) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: {member} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: {member} must hold a JSON object")
    return value


def _check_manifest(manifest: dict, path: Path) -> None:
    if manifest.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a quantspec model file (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {version}, newer than this reader's {FORMAT_VERSION}: "
            "upgrade quantspec to read it"
        )
