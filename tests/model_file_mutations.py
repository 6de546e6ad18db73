"""Mutations of a portable model file, for the fuzz test (tests/test_model_file_fuzz.py) and
the fuzz benchmark (benchmarks/fuzz_model_file.py), which import this module.

`seed_model(path)` writes a small model with NumPy alone (quantize, per-channel and grouped
convs, add, max pool, chunk / cat / channel shuffle, hardswish, a squeeze-excitation mul,
the adaptive-pool shape check of scripted graphs (prim::If + prim::RaiseException), a
float island with pad / slice / add, flatten, linear, dequantize). `mutations(seed, rng,
count)` draws mutated copies of its bytes, each a `Mutation` saying whether the reader
must refuse it and whether its checksum was recomputed (a re-sealed edit):

* bytes: bit flips, truncation, inserted and overwritten bytes (the checksum holds);
* zip: members removed, duplicated, renamed or added, compression method or flag bits
  changed in the central directory, zip bombs (honest and lying sizes);
* structure (re-sealed): JSON fields changed to wrong types, lists resized, huge values and
  shapes, deep nesting, cycles, undefined and duplicated names, relabelled node kinds,
  outputs naming the input, repeated JSON keys, edited scales;
* arrays (re-sealed): .npy headers with huge shapes, object or other dtypes, weights
  edited, arrays removed, an inner zip bomb.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from quantspec.reference.interpreter import KERNELS
from quantspec.reference.interpreter.file_format import (
    ARRAYS,
    FORMAT_VERSION,
    GRAPH,
    MANIFEST,
    ArrayStore,
    PackedConv,
    PackedLinear,
    encode_value,
    write_model_file,
)
from quantspec.reference.qtensor import QTensor

SEED_INPUT_SHAPE = (1, 3, 8, 8)


@dataclass(frozen=True)
class Mutation:
    """A mutated model file. `must_refuse`: no reader may accept it (it is malformed whatever
    it runs to); `resealed`: the manifest's checksum was recomputed, so an accepted file may
    legitimately compute something else."""

    name: str
    data: bytes
    must_refuse: bool
    resealed: bool


def seed_input() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SEED_INPUT_SHAPE).astype(np.float32)


# --- the seed model ----------------------------------------------------------------


def _node(kind: str, inputs: list[str], outputs: list[str], source: str = "", blocks: list | None = None) -> dict:
    entry = {"kind": kind, "inputs": inputs, "outputs": outputs, "source": source or f"seed.py:{len(kind)}"}
    if blocks is not None:
        entry["blocks"] = blocks
    return entry


def _size_check(size: str, name: str) -> list[dict]:
    """The `if len(output_size) > 2: raise` of F.adaptive_avg_pool2d in scripted graphs."""
    raise_block = {"inputs": [], "nodes": [_node("prim::RaiseException", ["message", "none"], [])], "outputs": []}
    return [
        _node("aten::len", [size], [f"{name}.len"]),
        _node("aten::gt", [f"{name}.len", "two"], [f"{name}.gt"]),
        _node("prim::If", [f"{name}.gt"], [], blocks=[raise_block, {"inputs": [], "nodes": [], "outputs": []}]),
    ]


SEED_NODES = [
    _node("aten::quantize_per_tensor", ["x", "s_in", "zp_in", "quint8"], ["q"]),
    _node("quantized::conv2d_relu", ["q", "conv1", "s1", "zp0"], ["c1"]),
    _node("quantized::conv2d", ["c1", "conv2", "s2", "zp64"], ["c2"]),
    _node("quantized::add_relu", ["c1", "c2", "s3", "zp0"], ["a"]),
    _node("aten::max_pool2d", ["a", "k2", "empty", "p0", "d1", "false"], ["m"]),
    _node("aten::chunk", ["m", "two", "one"], ["parts"]),
    _node("prim::ListUnpack", ["parts"], ["half0", "half1"]),
    _node("prim::ListConstruct", ["half1", "half0"], ["swapped"]),
    _node("quantized::cat", ["swapped", "one", "s3", "zp0"], ["k"]),
    _node("aten::size", ["k"], ["sizes"]),
    _node("prim::ListUnpack", ["sizes"], ["n", "c", "h", "w"]),
    _node("aten::floordiv", ["c", "two"], ["cpg"]),
    _node("prim::ListConstruct", ["n", "two", "cpg", "h", "w"], ["shape5"]),
    _node("aten::view", ["k", "shape5"], ["v"]),
    _node("aten::transpose", ["v", "one", "two"], ["t"]),
    _node("aten::contiguous", ["t", "zero"], ["tc"]),
    _node("prim::ListConstruct", ["n", "minus1", "h", "w"], ["shape4"]),
    _node("aten::view", ["tc", "shape4"], ["shuffled"]),
    _node("quantized::hardswish", ["shuffled", "s4", "zp64"], ["hs"]),
    *_size_check("pool1", "se"),
    _node("aten::adaptive_avg_pool2d", ["hs", "pool1"], ["se"]),
    _node("aten::hardsigmoid", ["se"], ["gate"]),
    _node("quantized::mul", ["hs", "gate", "s4", "zp64"], ["excited"]),
    _node("aten::dequantize", ["excited"], ["d"]),
    _node("aten::relu", ["d"], ["r"]),
    _node("aten::pad", ["r", "pads", "constant_str", "none"], ["padded"]),
    _node("aten::slice", ["padded", "two", "one", "minus1", "one"], ["rows"]),
    _node("aten::slice", ["rows", "three", "one", "minus1", "one"], ["cropped"]),
    _node("aten::add", ["cropped", "d", "one"], ["sum"]),
    _node("aten::quantize_per_tensor", ["sum", "s5", "zp0", "quint8"], ["q2"]),
    *_size_check("pool1", "head"),
    _node("aten::adaptive_avg_pool2d", ["q2", "pool1"], ["gp"]),
    _node("aten::flatten", ["gp", "one", "minus1"], ["f"]),
    _node("quantized::linear", ["f", "fc", "s6", "zp64"], ["logits"]),
    _node("aten::dequantize", ["logits"], ["y"]),
]


def _weight(rng: np.random.Generator, shape: tuple[int, ...], per_channel: bool) -> QTensor:
    ints = rng.integers(-127, 128, shape, dtype=np.int8)
    if per_channel:
        scales = rng.uniform(0.002, 0.01, shape[0])
        return QTensor(ints, scales, np.zeros(shape[0], np.int64), "qint8", axis=0)
    return QTensor(ints, 0.004, 0, "qint8")


def _seed_constants() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    scalars = {
        "s_in": 0.03, "zp_in": 128, "quint8": 13, "s1": 0.05, "s2": 0.06, "s3": 0.07, "s4": 0.05, "s5": 0.08,
        "s6": 0.1, "zp0": 0, "zp64": 64, "zero": 0, "one": 1, "two": 2, "three": 3, "minus1": -1,
        "k2": [2, 2], "empty": [], "p0": [0, 0], "d1": [1, 1], "false": False, "pool1": [1, 1],
        "pads": [1, 1, 1, 1], "constant_str": "constant", "none": None,
        "message": "AssertionError: output_size must be 2-d",
    }
    return {
        **scalars,
        "conv1": PackedConv(_weight(rng, (8, 3, 3, 3), True), rng.normal(0, 0.1, 8).astype(np.float32),
                            (1, 1), (1, 1), (1, 1), 1),
        "conv2": PackedConv(_weight(rng, (8, 4, 3, 3), False), None, (1, 1), (1, 1), (1, 1), 2),
        "fc": PackedLinear(_weight(rng, (5, 8), True), rng.normal(0, 0.1, 5).astype(np.float32)),
    }


def seed_model(path: Path) -> Path:
    """Write the seed model file to `path` (NumPy only)."""
    store = ArrayStore()
    document = {
        "format_version": FORMAT_VERSION,
        "profile": {"torch_release": "2.13", "cpu": "avx512_vnni", "engine": "fbgemm", "float_gemm": "unspecified"},
        "torch_version": "2.13.0",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, *SEED_INPUT_SHAPE[1:]]}],
        "outputs": ["y"],
        "constants": {name: encode_value(value, store) for name, value in _seed_constants().items()},
        "nodes": SEED_NODES,
    }
    write_model_file(path, document, store)
    return Path(path)


# --- reading and re-sealing a file ---------------------------------------------------


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of `entries` in order (names may repeat)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a duplicated name, which is the point
        with zipfile.ZipFile(buffer, "w", compression=method) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def reseal(graph: bytes, arrays: bytes) -> bytes:
    """A model file of these payload members with the manifest's checksum recomputed."""
    manifest = {"format": "quantspec-model", "format_version": FORMAT_VERSION,
                "payload_sha256": hashlib.sha256(graph + arrays).hexdigest()}
    return rezip([(MANIFEST, json.dumps(manifest).encode()), (GRAPH, graph), (ARRAYS, arrays)])


def _dump(graph: Any) -> bytes:
    return json.dumps(graph, indent=1, sort_keys=True).encode()


# --- byte-level mutations --------------------------------------------------------------


def _flip(data: bytes, rng: np.random.Generator) -> Mutation:
    mutated = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        mutated[int(rng.integers(len(mutated)))] ^= 1 << int(rng.integers(8))
    return Mutation("bytes: bit flips", bytes(mutated), must_refuse=False, resealed=False)


def _truncate(data: bytes, rng: np.random.Generator) -> Mutation:
    return Mutation("bytes: truncated", data[: int(rng.integers(len(data)))], must_refuse=True, resealed=False)


def _insert(data: bytes, rng: np.random.Generator) -> Mutation:
    at = int(rng.integers(len(data)))
    junk = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return Mutation("bytes: inserted", data[:at] + junk + data[at:], must_refuse=False, resealed=False)


def _overwrite(data: bytes, rng: np.random.Generator) -> Mutation:
    at = int(rng.integers(len(data)))
    junk = rng.integers(0, 256, int(rng.integers(1, 33)), dtype=np.uint8).tobytes()
    return Mutation("bytes: overwritten", data[:at] + junk + data[at + len(junk):], must_refuse=False, resealed=False)


# --- zip-level mutations ---------------------------------------------------------------


def _zip_members(data: bytes, rng: np.random.Generator) -> Mutation:
    entries = list(members(data).items())
    index = int(rng.integers(len(entries)))
    name, payload = entries[index]
    change = str(rng.choice(["removed", "duplicated", "renamed", "added"]))
    if change == "removed":
        entries.pop(index)
    elif change == "duplicated":
        entries.insert(int(rng.integers(len(entries) + 1)), (name, payload))
    elif change == "renamed":
        entries[index] = (name.upper(), payload)
    else:
        entries.append(("extra.json", b"{}"))
    return Mutation(f"zip: member {change}", rezip(entries), must_refuse=True, resealed=False)


def _central_directory(data: bytes) -> Iterator[int]:
    """Offsets of the central-directory file headers."""
    at = data.find(b"PK\x01\x02")
    while at != -1:
        yield at
        at = data.find(b"PK\x01\x02", at + 4)


def _zip_header_field(data: bytes, rng: np.random.Generator) -> Mutation:
    """A changed compression method or flag bits in one central-directory entry."""
    offsets = list(_central_directory(data))
    at = offsets[int(rng.integers(len(offsets)))]
    mutated = bytearray(data)
    if rng.random() < 0.5:
        method = int(rng.choice([0, 1, 6, 9, 12, 14, 93, 99, 255]))
        struct.pack_into("<H", mutated, at + 10, method)
        return Mutation(f"zip: compression method {method}", bytes(mutated), must_refuse=method != 8, resealed=False)
    flag = int(rng.choice([0x1, 0x20, 0x40, 0x2000, 0x8, 0x800]))
    flags = struct.unpack_from("<H", mutated, at + 8)[0] | flag
    struct.pack_into("<H", mutated, at + 8, flags)
    encrypted_or_patched = flag in (0x1, 0x20, 0x40, 0x2000)
    return Mutation(f"zip: flag {flag:#x}", bytes(mutated), must_refuse=encrypted_or_patched, resealed=False)


BOMB_BYTES = 64 * 2**20


def _zip_bomb(data: bytes, rng: np.random.Generator) -> Mutation:
    """arrays.npz replaced by a member inflating to 64 MiB (declared honestly, or as 1 KiB)."""
    payload = members(data)
    bomb = rezip([(MANIFEST, payload[MANIFEST]), (GRAPH, payload[GRAPH]), (ARRAYS, bytes(BOMB_BYTES))])
    if rng.random() < 0.5:
        return Mutation("zip: bomb", bomb, must_refuse=True, resealed=False)
    lying = bytearray(bomb)
    for at in _central_directory(bomb):
        if bomb[at + 46 : at + 46 + len(ARRAYS)] == ARRAYS.encode():
            struct.pack_into("<I", lying, at + 24, 1024)  # uncompressed size
    return Mutation("zip: bomb with a lying size", bytes(lying), must_refuse=True, resealed=False)


# --- structure-aware mutations (re-sealed) -------------------------------------------------


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path into a JSON value (keys and list indices), the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield prefix + (key,)
        yield from _paths(item, prefix + (key,))


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(value: Any, path: tuple, new: Any) -> None:
    _get(value, path[:-1])[path[-1]] = new


WRONG_TYPES: list[Any] = ["3", True, {}, [], 1.5, 2**70]


def _graph_edit(data: bytes, rng: np.random.Generator, edit: Callable[[dict, np.random.Generator], tuple]) -> Mutation:
    payload = members(data)
    graph = json.loads(payload[GRAPH])
    name, must_refuse = edit(graph, rng)
    return Mutation(f"structure: {name}", reseal(_dump(graph), payload[ARRAYS]), must_refuse, resealed=True)


def _wrong_type(graph: dict, rng: np.random.Generator) -> tuple:
    paths = [p for p in _paths(graph) if _get(graph, p) is not None]
    path = paths[int(rng.integers(len(paths)))]
    original = _get(graph, path)
    choices = [v for v in WRONG_TYPES if type(v) is not type(original)]
    _set(graph, path, choices[int(rng.integers(len(choices)))])
    return f"wrong type at {_where(path)}", True


def _where(path: tuple) -> str:
    return ".".join(str(key) for key in path[:2])


def _resized_list(graph: dict, rng: np.random.Generator) -> tuple:
    lists = [p for p in _paths(graph) if isinstance(_get(graph, p), list) and _get(graph, p)]
    path = lists[int(rng.integers(len(lists)))]
    items = _get(graph, path)
    if rng.random() < 0.5:
        items.pop(int(rng.integers(len(items))))
    else:
        items.append(items[int(rng.integers(len(items)))])
    return f"list resized at {_where(path)}", False


def _huge_value(graph: dict, rng: np.random.Generator) -> tuple:
    ints = [p for p in _paths(graph) if type(_get(graph, p)) is int]
    path = ints[int(rng.integers(len(ints)))]
    _set(graph, path, int(rng.choice([0, -1, 3000, 2**31 - 1, 2**40, -(2**40), 2**63 - 1])))
    return f"int changed at {_where(path)}", False


def _small_int(graph: dict, rng: np.random.Generator) -> tuple:
    """An int nudged by one or set to a small value: shapes, dims, counts, zero points, geometry."""
    ints = [p for p in _paths(graph) if type(_get(graph, p)) is int]
    path = ints[int(rng.integers(len(ints)))]
    value = _get(graph, path)
    _set(graph, path, int(rng.choice([value - 1, value + 1, 0, 1, 2, 3, 4])))
    return f"int nudged at {_where(path)}", False


def _conv_geometry(graph: dict, rng: np.random.Generator) -> tuple:
    """A conv's padding, stride, dilation or groups set out of range (padding 3000, groups 0, ...)."""
    conv = graph["constants"][str(rng.choice(["conv1", "conv2"]))]
    key = str(rng.choice(["padding", "stride", "dilation", "groups"]))
    bad = {"padding": [3000, 3000], "stride": [0, 1], "dilation": [0, 0], "groups": int(rng.choice([0, 3, 1000]))}
    conv[key] = bad[key]
    return f"conv {key} out of range", True


def _chained_cats(graph: dict, rng: np.random.Generator) -> tuple:
    """The logits concatenated with themselves 10 to 40 times before the output: up to 5 * 2^40 bytes."""
    count = int(rng.integers(10, 41))
    previous = "logits"
    for index in range(count):
        graph["nodes"].insert(-1, _node("prim::ListConstruct", [previous, previous], [f"pair{index}"]))
        graph["nodes"].insert(-1, _node("quantized::cat", [f"pair{index}", "one", "s6", "zp64"], [f"cat{index}"]))
        previous = f"cat{index}"
    graph["nodes"][-1]["inputs"] = [previous]
    return "chained cats", count >= 30


def _huge_shape(graph: dict, rng: np.random.Generator) -> tuple:
    shape = graph["inputs"][0]["shape"]
    shape[int(rng.integers(1, len(shape)))] = int(rng.choice([9, 1000, 10**5, 10**7, 2**31 - 1]))
    return "input shape changed", False


def _deep_nesting(data: bytes, rng: np.random.Generator) -> Mutation:
    """A value wrapped in 100 to 100,000 lists (built as text: json.dumps would recurse)."""
    payload = members(data)
    graph = json.loads(payload[GRAPH])
    paths = list(_paths(graph))
    path = paths[int(rng.integers(len(paths)))]
    depth = int(rng.choice([100, 5000, 100_000]))
    original = json.dumps(_get(graph, path))
    _set(graph, path, "@@nested@@")
    text = _dump(graph).replace(b'"@@nested@@"', b"[" * depth + original.encode() + b"]" * depth)
    return Mutation("structure: deep nesting", reseal(text, payload[ARRAYS]), must_refuse=True, resealed=True)


def _all_nodes(nodes: list[dict]) -> Iterator[dict]:
    for node in nodes:
        yield node
        for block in node.get("blocks", []):
            yield from _all_nodes(block["nodes"])


def _cycle(graph: dict, rng: np.random.Generator) -> tuple:
    """A node reads a value computed after it (or by itself)."""
    nodes = graph["nodes"]
    at = int(rng.integers(len(nodes) - 1))
    later = [name for node in nodes[at:] for name in node["outputs"]]
    if not nodes[at]["inputs"]:
        nodes[at]["inputs"].append(later[-1])
    else:
        nodes[at]["inputs"][int(rng.integers(len(nodes[at]["inputs"])))] = later[int(rng.integers(len(later)))]
    return "cycle", True


def _undefined_or_duplicated_name(graph: dict, rng: np.random.Generator) -> tuple:
    nodes = [n for n in _all_nodes(graph["nodes"]) if n["inputs"] and n["outputs"]]
    node = nodes[int(rng.integers(len(nodes)))]
    if rng.random() < 0.5:
        node["inputs"][int(rng.integers(len(node["inputs"])))] = "nowhere"
        return "undefined value", True
    node["outputs"][0] = str(rng.choice(["x", "s1", node["inputs"][0]]))
    return "value defined twice", True


def _relabel(graph: dict, rng: np.random.Generator) -> tuple:
    nodes = list(_all_nodes(graph["nodes"]))
    kinds = sorted(KERNELS)
    node = nodes[int(rng.integers(len(nodes)))]
    node["kind"] = kinds[int(rng.integers(len(kinds)))] if rng.random() < 0.9 else "aten::softmax"
    return "relabelled kind", node["kind"] == "aten::softmax"


def _output_renamed(graph: dict, rng: np.random.Generator) -> tuple:
    """The graph output renamed to the input, a constant, nothing, or another node's value (legitimate)."""
    name = str(rng.choice(["x", "s1", "nowhere", "se.gt"]))
    graph["outputs"] = [name]
    return "output renamed", name != "se.gt"


def _scale_edit(graph: dict, rng: np.random.Generator) -> tuple:
    name = str(rng.choice(["s1", "s2", "s3", "s4", "s5", "s6"]))
    scale = float.fromhex(graph["constants"][name]["value"])
    graph["constants"][name]["value"] = (scale * float(rng.choice([0.5, 1.5, 3.0]))).hex()
    return "scale edited", False


STRUCTURE_EDITS = [
    _wrong_type, _wrong_type, _resized_list, _huge_value, _small_int, _small_int, _huge_shape, _cycle,
    _undefined_or_duplicated_name, _relabel, _relabel, _output_renamed, _scale_edit, _conv_geometry, _chained_cats,
]


def _structure(data: bytes, rng: np.random.Generator) -> Mutation:
    return _graph_edit(data, rng, STRUCTURE_EDITS[int(rng.integers(len(STRUCTURE_EDITS)))])


def _repeated_key(data: bytes, rng: np.random.Generator) -> Mutation:
    """A node object naming its kind twice (json.loads would keep the last)."""
    payload = members(data)
    graph = payload[GRAPH].replace(b'"kind": "aten::relu"', b'"kind": "aten::relu", "kind": "aten::dequantize"', 1)
    return Mutation("structure: repeated JSON key", reseal(graph, payload[ARRAYS]), must_refuse=True, resealed=True)


# --- array mutations (re-sealed) ------------------------------------------------------------


def _npy_header(shape: tuple, descr: str) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode() + b" "
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _array_edit(data: bytes, rng: np.random.Generator) -> Mutation:
    payload = members(data)
    arrays = members(payload[ARRAYS])
    names = sorted(arrays)
    name = names[int(rng.integers(len(names)))]
    body = arrays[name]
    header_end = body.index(b"\n") + 1
    change = str(rng.choice(["huge shape", "object dtype", "other dtype", "values", "removed", "bomb"]))
    must_refuse = change != "values"
    if change == "huge shape":
        arrays[name] = _npy_header((10**6, 10**6, 3), "<f4") + body[header_end:]
    elif change == "object dtype":
        arrays[name] = _npy_header((2,), "|O") + body[header_end:]
    elif change == "other dtype":
        arrays[name] = _npy_header((len(body) - header_end,), "|b1") + body[header_end:]
    elif change == "values":
        values = bytearray(body)
        for _ in range(4):
            values[int(rng.integers(header_end, len(values)))] ^= 1 << int(rng.integers(8))
        arrays[name] = bytes(values)
    elif change == "removed":
        del arrays[name]
    else:
        arrays[name] = _npy_header((BOMB_BYTES,), "|u1") + bytes(BOMB_BYTES)
    method = zipfile.ZIP_DEFLATED if change == "bomb" else zipfile.ZIP_STORED
    npz = rezip(list(arrays.items()), method)
    return Mutation(f"arrays: {change}", reseal(payload[GRAPH], npz), must_refuse, resealed=True)


MUTATORS: dict[str, tuple[float, Callable[[bytes, np.random.Generator], Mutation]]] = {
    "flip": (0.16, _flip),
    "truncate": (0.04, _truncate),
    "insert": (0.05, _insert),
    "overwrite": (0.05, _overwrite),
    "zip members": (0.06, _zip_members),
    "zip header": (0.08, _zip_header_field),
    "zip bomb": (0.02, _zip_bomb),
    "structure": (0.35, _structure),
    "repeated key": (0.02, _repeated_key),
    "deep nesting": (0.03, _deep_nesting),
    "arrays": (0.14, _array_edit),
}


def mutations(seed: bytes, rng: np.random.Generator, count: int) -> Iterator[Mutation]:
    """`count` mutated copies of the model file `seed`, mutators drawn by their weights."""
    names = list(MUTATORS)
    weights = np.array([MUTATORS[name][0] for name in names])
    for _ in range(count):
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        yield MUTATORS[name][1](seed, rng)
