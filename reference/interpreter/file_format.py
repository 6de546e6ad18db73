"""The portable converted-model file: one zip, JSON for structure, .npz for arrays.

Layout (format version 1):

* `manifest.json`: `{"format": "quantspec-model", "format_version": 1,
  "payload_sha256": <hex>}`: the sha256 of `graph.json`'s bytes followed by
  `arrays.npz`'s bytes.
* `graph.json`: the graph (inputs, outputs, nodes with kinds, inputs, outputs, source
  lines and nested blocks), every constant and packed weight (encoded values, see
  `encode_value`), the numerics profile and the torch release it was converted under.
* `arrays.npz`: every array the graph refers to by key (integer weights, float biases,
  per-channel scales and zero points, tensor constants).

No pickle anywhere: the reader trusts nothing but JSON and raw numeric arrays, and reads
them under `ReadLimits` (`archive`: sizes, compression ratios, JSON depth and .npy headers
checked before anything is decompressed or allocated), then decodes every field strictly
(`fields`). The checksum detects accidental corruption; it does not authenticate (anyone can
re-seal an edited file): pin the whole file's digest with `expected_sha256` for that.
Writing needs no torch: `production.export` turns torch objects into the value types
below and calls `write_model_file`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from .._arguments import is_scale
from ..fast.conv2d import ConvPlan, ConvWeights, plan_conv2d, prepare_conv_weight
from ..fast.gemm import PreparedWeights
from ..fast.linear import prepare_linear_weight
from ..profile import NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor, in_memory_format, memory_format_of
from .archive import ModelFileError, ReadLimits, check_file_size, file_sha256, parse_json, read_members, read_npz
from .fields import as_bool, as_int, as_list, as_object, as_str, refuse, required

FORMAT_NAME = "quantspec-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH = "graph.json"
ARRAYS = "arrays.npz"
INT32_MAX = 2**31 - 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
    _plans: dict[tuple, ConvPlan] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def prepared(self) -> ConvWeights:
        """The weight as the reference's GEMM paths use it, formed on first use and kept with
        the loaded model (as torch keeps its prepacked weight), not formed again per run."""
        return prepare_conv_weight(self.weight, self.groups, self.stride, self.dilation)

    def plan(self, x: Any, scale: Any, zero_point: Any, relu: bool, profile: NumericsProfile) -> ConvPlan:
        """`fast.conv2d.plan_conv2d` of this conv for inputs like `x` and these output qparams,
        formed (every argument checked) once per input channel count, dtype and qscheme, output
        qparams, relu and profile: a loaded model runs each conv with the same ones every time."""
        if not isinstance(x, QTensor):
            return self._new_plan(x, scale, zero_point, relu, profile)  # refuses it, naming x
        key = (x.shape[1:2], x.dtype, x.per_channel, scale, zero_point, relu, profile)
        if key not in self._plans:
            self._plans[key] = self._new_plan(x, scale, zero_point, relu, profile)
        return self._plans[key]

    def _new_plan(self, x: Any, scale: Any, zero_point: Any, relu: bool, profile: NumericsProfile) -> ConvPlan:
        return plan_conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, scale, zero_point, relu,
            profile, self.prepared,
        )


@dataclass(frozen=True)
class PackedLinear:
    """What `LinearPackedParamsBase.unpack()` gives."""

    weight: QTensor
    bias: np.ndarray | None

    @cached_property
    def prepared(self) -> PreparedWeights:
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


def decode_value(encoded: Any, arrays: dict[str, np.ndarray], where: str = "value") -> Any:
    """Inverse of `encode_value`, strict: every field must have the type and range the writer
    gives it, else `ModelFileError` naming `where` (the field's path in graph.json)."""
    kind = as_str(required(encoded, "type", where), f"{where}.type")
    if kind not in _DECODERS:
        refuse(f"{where}.type", kind, f"one of {sorted(_DECODERS)}")
    return _DECODERS[kind](encoded, arrays, where)


def _decode_items(encoded: dict, arrays: dict[str, np.ndarray], where: str) -> list:
    items = as_list(required(encoded, "items", where), f"{where}.items")
    return [decode_value(item, arrays, f"{where}.items[{index}]") for index, item in enumerate(items)]


def _decode_tensor(encoded: dict, arrays: dict[str, np.ndarray], where: str) -> np.ndarray:
    array = _array(encoded, "array", arrays, where, np.float32)
    memory_format = as_str(encoded.get("memory_format", MemoryFormat.contiguous.value), f"{where}.memory_format")
    return in_memory_format(array, _memory_format(memory_format, array.shape, f"{where}.memory_format"))


def _decode_qtensor(encoded: Any, arrays: dict[str, np.ndarray], where: str) -> QTensor:
    if required(encoded, "type", where) != "qtensor":
        refuse(f"{where}.type", encoded["type"], "'qtensor'")
    label = as_str(required(encoded, "dtype", where), f"{where}.dtype")
    dtype = next((member for member in QDtype if member.label == label), None)
    if dtype is None:
        refuse(f"{where}.dtype", label, f"one of {[member.label for member in QDtype]}")
    int_repr = _array(encoded, "int_repr", arrays, where, dtype.storage)
    axis = required(encoded, "axis", where)
    if axis is None:
        scale: Any = _positive_scale(required(encoded, "scale", where), f"{where}.scale")
        zero_point: Any = as_int(required(encoded, "zero_point", where), f"{where}.zero_point", dtype.qmin, dtype.qmax)
    else:
        as_int(axis, f"{where}.axis", 0, max(int_repr.ndim - 1, 0))
        scale = _array(encoded, "scale", arrays, where, np.float64)
        zero_point = _array(encoded, "zero_point", arrays, where, np.int64)
    memory_format = as_str(required(encoded, "memory_format", where), f"{where}.memory_format")
    layout = _memory_format(memory_format, int_repr.shape, f"{where}.memory_format")
    try:
        return QTensor(int_repr, scale, zero_point, dtype, axis, layout)
    except (TypeError, ValueError) as error:  # per-channel qparams: counts, positive scales, zero-point range
        raise ModelFileError(f"{where}: {error}") from None


def _positive_scale(value: Any, where: str) -> float:
    scale = _hex_float(value, where)
    if not is_scale(scale):
        refuse(where, value, "a positive finite scale")
    return scale


def _hex_float(value: Any, where: str) -> float:
    try:
        return float.fromhex(as_str(value, where))
    except (ValueError, OverflowError):
        refuse(where, value, "a float.hex() string")


def _decode_float(encoded: dict, arrays: dict[str, np.ndarray], where: str) -> float:
    return _hex_float(required(encoded, "value", where), f"{where}.value")


def _decode_conv_packed(encoded: dict, arrays: dict[str, np.ndarray], where: str) -> PackedConv:
    weight = _packed_weight(encoded, arrays, where, ndim=4)
    kernel = weight.shape[2:]
    stride = _int_pair(encoded, "stride", where, minimum=1)
    dilation = _int_pair(encoded, "dilation", where, minimum=1)
    padding = _int_pair(encoded, "padding", where, minimum=0)
    reach = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
    if any(p > r for p, r in zip(padding, reach)):
        refuse(f"{where}.padding", list(padding), f"at most dilation * (kernel - 1) = {list(reach)} per side")
    groups = as_int(required(encoded, "groups", where), f"{where}.groups", 1, weight.shape[0] or 1)
    if weight.shape[0] % groups:
        refuse(f"{where}.groups", groups, f"a divisor of the {weight.shape[0]} output channels")
    return PackedConv(
        weight=weight,
        bias=_packed_bias(encoded, arrays, where, weight.shape[0]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        transposed=as_bool(required(encoded, "transposed", where), f"{where}.transposed"),
        output_padding=_int_pair(encoded, "output_padding", where, minimum=0),
    )


def _decode_linear_packed(encoded: dict, arrays: dict[str, np.ndarray], where: str) -> PackedLinear:
    weight = _packed_weight(encoded, arrays, where, ndim=2)
    return PackedLinear(weight, _packed_bias(encoded, arrays, where, weight.shape[0]))


def _packed_weight(encoded: dict, arrays: dict[str, np.ndarray], where: str, ndim: int) -> QTensor:
    weight = _decode_qtensor(required(encoded, "weight", where), arrays, f"{where}.weight")
    if weight.dtype is not QDtype.qint8 or weight.int_repr.ndim != ndim or weight.axis not in (None, 0):
        refuse(f"{where}.weight", weight, f"a {ndim}-d qint8 weight, per-tensor or per-channel along axis 0")
    return weight


def _packed_bias(encoded: dict, arrays: dict[str, np.ndarray], where: str, channels: int) -> np.ndarray | None:
    bias = decode_value(required(encoded, "bias", where), arrays, f"{where}.bias")
    if bias is not None and (not isinstance(bias, np.ndarray) or bias.shape != (channels,)):
        refuse(f"{where}.bias", bias, f"none or a float32 tensor of shape ({channels},)")
    return bias


def _int_pair(encoded: dict, key: str, where: str, minimum: int) -> tuple[int, int]:
    values = as_list(required(encoded, key, where), f"{where}.{key}")
    if len(values) != 2:
        refuse(f"{where}.{key}", values, f"two ints >= {minimum}")
    return tuple(as_int(value, f"{where}.{key}[{index}]", minimum, INT32_MAX) for index, value in enumerate(values))


_DECODERS: dict[str, Callable[[dict, dict, str], Any]] = {
    "none": lambda encoded, arrays, where: None,
    "bool": lambda encoded, arrays, where: as_bool(required(encoded, "value", where), f"{where}.value"),
    "int": lambda encoded, arrays, where: as_int(required(encoded, "value", where), f"{where}.value"),
    "str": lambda encoded, arrays, where: as_str(required(encoded, "value", where), f"{where}.value"),
    "float": _decode_float,
    "list": _decode_items,
    "tuple": lambda encoded, arrays, where: tuple(_decode_items(encoded, arrays, where)),
    "tensor": _decode_tensor,
    "qtensor": _decode_qtensor,
    "conv_packed": _decode_conv_packed,
    "linear_packed": _decode_linear_packed,
}


def _memory_format(name: str, shape: tuple[int, ...], where: str = "memory_format") -> MemoryFormat:
    """The recorded memory format of a tensor of `shape`, or a `ModelFileError` naming it."""
    known = [member.value for member in MemoryFormat]
    if name not in known or (name == MemoryFormat.channels_last.value and len(shape) != 4):
        raise ModelFileError(
            f"{where}: tensor memory_format {name!r} for shape {shape}: expected one of {known} "
            "(channels_last only for 4-d tensors)"
        )
    return MemoryFormat(name)


def _array(encoded: dict, key: str, arrays: dict[str, np.ndarray], where: str, dtype: Any) -> np.ndarray:
    """The array `encoded[key]` names; it must be in arrays.npz with exactly `dtype`."""
    name = as_str(required(encoded, key, where), f"{where}.{key}")
    if name not in arrays:
        raise ModelFileError(f"{where}.{key}: the model file refers to array {name!r}, which {ARRAYS} does not hold")
    array = arrays[name]
    if array.dtype != np.dtype(dtype):
        refuse(f"{where}.{key}", array, f"an array of dtype {np.dtype(dtype)}")
    return array


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


def read_model_file(
    path: Union[str, Path], limits: Optional[ReadLimits] = None, expected_sha256: Optional[str] = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a model file; return (graph, arrays).

    `limits` bound every size read (`ReadLimits()` by default). `expected_sha256`, when
    given, is the sha256 (hex) of the whole file as received out of band (`sha256sum`):
    the file is hashed and compared before anything in it is parsed. Raises
    `ModelFileError` for a missing, truncated, malformed or tampered file, a file over a
    limit, another format or a format version newer than this reader.
    """
    path, limits = Path(path), limits or ReadLimits()
    if expected_sha256 is not None:
        _check_pinned_digest(path, expected_sha256, limits)
    check_file_size(path, limits)
    sizes = {MANIFEST: limits.max_json_bytes, GRAPH: limits.max_json_bytes, ARRAYS: limits.max_member_bytes}
    members = read_members(path, sizes, limits, str(path))
    manifest = _check_manifest(parse_json(members[MANIFEST], limits, f"{path}: {MANIFEST}"), path)
    payload = hashlib.sha256(members[GRAPH])
    payload.update(members[ARRAYS])
    if payload.hexdigest() != manifest["payload_sha256"]:
        raise ModelFileError(
            f"{path} fails its checksum (sha256 {payload.hexdigest()}, manifest says {manifest['payload_sha256']}): "
            "the file was modified after export"
        )
    graph = as_object(parse_json(members[GRAPH], limits, f"{path}: {GRAPH}"), f"{path}: {GRAPH}")
    return graph, read_npz(members[ARRAYS], limits, f"{path}: {ARRAYS}")


def _check_pinned_digest(path: Path, expected_sha256: str, limits: ReadLimits) -> None:
    if not isinstance(expected_sha256, str) or not _SHA256_HEX.fullmatch(expected_sha256.lower()):
        raise ValueError(f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}")
    digest = file_sha256(path, limits)
    if digest != expected_sha256.lower():
        raise ModelFileError(f"{path} has sha256 {digest}, not the expected {expected_sha256.lower()}")


def _check_manifest(manifest: Any, path: Path) -> dict:
    where = f"{path}: {MANIFEST}"
    if required(manifest, "format", where) != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a quantspec model file (format {manifest['format']!r})")
    version = as_int(required(manifest, "format_version", where), f"{where}: format_version", minimum=1)
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {version}, newer than this reader's {FORMAT_VERSION}: "
            "upgrade quantspec to read it"
        )
    digest = as_str(required(manifest, "payload_sha256", where), f"{where}: payload_sha256")
    if not _SHA256_HEX.fullmatch(digest):
        refuse(f"{where}: payload_sha256", digest, "64 lowercase hex digits")
    return manifest
