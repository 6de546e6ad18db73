"""The model-file reader and checker against hand-made hostile files: each refusal is a
ModelFileError naming the member or field, the bad value and what was expected."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from model_file_mutations import members, reseal, rezip, seed_input, seed_model

from quantspec import reference
from quantspec.reference import ModelCheckError, ModelFileError, ReadLimits
from quantspec.reference.interpreter import KERNELS, UnknownNodeKind, check, peak_memory_bytes
from quantspec.reference.interpreter.file_format import ARRAYS, GRAPH, MANIFEST, decode_value
from quantspec.reference.interpreter.node_rules import RULES


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return seed_model(tmp_path_factory.mktemp("seed") / "seed.qsm")


def write(tmp_path, data: bytes):
    path = tmp_path / "hostile.qsm"
    path.write_bytes(data)
    return path


def edited(seed, edit) -> bytes:
    """The seed with `edit(graph)` applied to graph.json and the checksum recomputed."""
    payload = members(seed.read_bytes())
    graph = json.loads(payload[GRAPH])
    edit(graph)
    return reseal(json.dumps(graph).encode(), payload[ARRAYS])


def node(graph: dict, kind: str) -> dict:
    return next(n for n in graph["nodes"] if n["kind"] == kind)


def refused(tmp_path, data: bytes, pattern: str, error: type = ModelFileError, **load_args) -> ModelFileError:
    with pytest.raises(error, match=pattern) as caught:
        reference.load(write(tmp_path, data), **load_args)
    assert isinstance(caught.value, ModelFileError)
    return caught.value


def test_the_seed_loads_and_runs(seed):
    model = reference.load(seed)
    assert reference.run(model, seed_input()).shape == (1, 5)
    assert 0 < peak_memory_bytes(model) < 2**23


# --- the archive ---------------------------------------------------------------------


def test_duplicate_member_is_refused(seed, tmp_path):
    payload = members(seed.read_bytes())
    entries = [(MANIFEST, payload[MANIFEST]), (GRAPH, b"{}"), (GRAPH, payload[GRAPH]), (ARRAYS, payload[ARRAYS])]
    refused(tmp_path, rezip(entries), r"exactly the members .* duplicated \['graph.json'\]")


def test_unexpected_member_is_refused(seed, tmp_path):
    entries = [*members(seed.read_bytes()).items(), ("code.py", b"import os")]
    refused(tmp_path, rezip(entries), r"unexpected \['code.py'\]")


def test_a_directory_of_too_many_members_is_refused_before_it_is_parsed(seed, tmp_path):
    entries = [*members(seed.read_bytes()).items(), *((f"empty{i}", b"") for i in range(200))]
    pattern = r"lists 203 members in a \d+-byte directory, over max_members = 100"
    refused(tmp_path, rezip(entries), pattern, limits=ReadLimits(max_members=100))


def _central_entry(data: bytes, name: str) -> int:
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    return at


@pytest.mark.parametrize(("offset", "value", "pattern"), [
    (10, 12, r"member 'graph.json' uses compression method 12; expected one of \{0: 'stored', 8: 'deflate'\}"),
    (8, 0x1, r"member 'graph.json' has flag bits 0x0001: encrypted"),
])
def test_unknown_compression_and_encryption_are_refused_before_reading(seed, tmp_path, offset, value, pattern):
    data = bytearray(seed.read_bytes())
    struct.pack_into("<H", data, _central_entry(data, GRAPH) + offset, value)
    refused(tmp_path, bytes(data), pattern)


def _bomb(seed, size: int, declared: int | None = None) -> bytes:
    """The seed with arrays.npz replaced by `size` zero bytes, deflated (declaring `declared` bytes)."""
    payload = members(seed.read_bytes())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, payload[MANIFEST])
        archive.writestr(GRAPH, payload[GRAPH])
        with archive.open(ARRAYS, "w", force_zip64=True) as stream:
            for _ in range(size // 2**20):
                stream.write(bytes(2**20))
    data = bytearray(buffer.getvalue())
    if declared is not None:
        struct.pack_into("<I", data, _central_entry(data, ARRAYS) + 24, declared)
    return bytes(data)


def test_zip_bomb_is_refused_by_its_ratio(seed, tmp_path):
    refused(tmp_path, _bomb(seed, 64 * 2**20), r"declares 67108864 bytes from \d+ compressed, a ratio over max_ratio")


def test_zip_bomb_lying_about_its_size_fails_its_crc(seed, tmp_path):
    refused(tmp_path, _bomb(seed, 64 * 2**20, declared=1024), r"not a readable model file .*CRC")


@pytest.mark.parametrize("declared", [None, 1024])
def test_loading_a_bomb_allocates_no_more_than_the_read_buffers(seed, tmp_path, declared):
    path = write(tmp_path, _bomb(seed, 512 * 2**20, declared))  # 512 MiB from 0.5 MB
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="max_ratio|CRC"):
            reference.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Refused from its directory entry, or inflated only up to its declared 1 KiB: what is
    # allocated is zipfile's buffers for a 1 MiB read (archive.CHUNK_BYTES) of compressed data.
    assert peak < 8 * 2**20


def test_file_over_the_size_limit_is_refused_unless_the_limit_is_raised(seed, tmp_path):
    small = ReadLimits(max_file_bytes=1000)
    refused(tmp_path, seed.read_bytes(), r"over the read limit max_file_bytes=1000", limits=small)
    assert reference.load(seed, limits=ReadLimits(max_file_bytes=2**31))
    with pytest.raises(ValueError, match="max_ratio must be a positive int"):
        ReadLimits(max_ratio=0)


# --- JSON and arrays ------------------------------------------------------------------


def test_deep_json_is_refused_before_parsing(seed, tmp_path):
    payload = members(seed.read_bytes())
    graph = payload[GRAPH].replace(b'"outputs": [\n  "y"\n ]', b'"outputs": ' + b"[" * 100_000 + b"]" * 100_000)
    refused(tmp_path, reseal(graph, payload[ARRAYS]), r"graph.json nests 100001 levels deep, over max_json_depth = 64")


def test_repeated_json_key_is_refused(seed, tmp_path):
    payload = members(seed.read_bytes())
    graph = payload[GRAPH].replace(b'"kind": "aten::relu"', b'"kind": "aten::relu", "kind": "aten::dequantize"')
    refused(tmp_path, reseal(graph, payload[ARRAYS]), r"repeats the key\(s\) \['kind'\]")


def _npy(shape: tuple, descr: str, body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def _with_array(seed, name: str, npy: bytes) -> bytes:
    payload = members(seed.read_bytes())
    arrays = members(payload[ARRAYS])
    arrays[name] = npy
    return reseal(payload[GRAPH], rezip(list(arrays.items()), zipfile.ZIP_STORED))


@pytest.mark.parametrize(("shape", "descr", "pattern"), [
    ((10**6, 10**6), "<f4", r"array 'a0.npy' of shape \(1000000, 1000000\) needs 4000000000000 bytes, over"),
    ((3,), "<f4", r"header says shape \(3,\) of <f4 \(12 bytes\), but the member holds 8 bytes"),
    ((2,), "|O", r"dtype '\|O'.*expected C order and one of"),
    ((2,), "<U1", r"dtype '<U1'"),
])
def test_npy_header_is_checked_before_the_array_is_allocated(seed, tmp_path, shape, descr, pattern):
    refused(tmp_path, _with_array(seed, "a0.npy", _npy(shape, descr, bytes(8))), pattern)


def test_per_channel_scales_as_strings_are_refused(seed, tmp_path):
    scales = np.array(["0.1"] * 8)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, scales)
    refused(tmp_path, _with_array(seed, "a1.npy", buffer.getvalue()), r"array 'a1.npy' has dtype '<U3'")


# --- strict decoding --------------------------------------------------------------------


def _set_constant(name: str, **fields):
    return lambda graph: graph["constants"][name].update(fields)


@pytest.mark.parametrize(("edit", "pattern"), [
    (_set_constant("zp_in", value="3"), r"constants\['zp_in'\].value = '3': expected an int"),
    (_set_constant("zp_in", value=True), r"constants\['zp_in'\].value = True: expected an int"),
    (_set_constant("s1", value=0.05), r"constants\['s1'\].value = 0.05: expected a float.hex\(\) string"),
    (_set_constant("conv2", groups=1.5), r"constants\['conv2'\].groups = 1.5: expected an int in \[1, 8\]"),
    (_set_constant("conv2", groups=3), r"constants\['conv2'\].groups = 3: expected a divisor of the 8 output"),
    (_set_constant("conv1", padding=[3000, 3000]), r"conv1'\].padding = \[3000, 3000\]: expected at most dilation"),
    (_set_constant("conv1", stride=[0, 1]), r"conv1'\].stride\[0\] = 0: expected an int in \[1, "),
    (lambda g: g["constants"]["fc"]["weight"].update(axis=1), r"fc'\].weight: per-channel qparams need 8 scales"),
    (lambda g: g["constants"]["s1"].update(type="float64"), r"s1'\].type = 'float64': expected one of"),
    (lambda g: g["inputs"][0].update(shape=[None, 3, "8", 8]), r"inputs\[0\].shape\[2\] = '8': expected an int"),
    (lambda g: g["inputs"][0].update(dtype="float64"), r"inputs\[0\].dtype = 'float64': expected 'float32'"),
    (lambda g: g["nodes"][0].update(inputs="x"), r"nodes\[0\].inputs = 'x': expected a list"),
    (lambda g: g["nodes"][0].update(source=7), r"nodes\[0\].source = 7: expected a string"),
    (lambda g: g["profile"].update(cpu="z80"), r"profile = .*NumericsProfile.cpu='z80' is not supported"),
    (lambda g: g.pop("nodes"), r"graph.json lacks the field 'nodes'"),
])
def test_fields_are_decoded_strictly(seed, tmp_path, edit, pattern):
    refused(tmp_path, edited(seed, edit), pattern)


def test_decode_value_does_not_coerce():
    for encoded in ({"type": "int", "value": True}, {"type": "bool", "value": 1}, {"type": "str", "value": 3},
                    {"type": "float", "value": "one"}, {"type": "list", "items": {}}, {"type": "int"}, []):
        with pytest.raises(ModelFileError, match="expected|lacks"):
            decode_value(encoded, {})


# --- the checker ---------------------------------------------------------------------------


def test_every_kernel_has_a_checker_rule():
    assert set(RULES) == set(KERNELS)


def _relabel(kind: str, new_kind: str):
    return lambda graph: node(graph, kind).update(kind=new_kind)


def _rename_input(kind: str, index: int, name: str):
    return lambda graph: node(graph, kind)["inputs"].__setitem__(index, name)


def _chain_cats(graph: dict) -> None:
    previous = "logits"
    for index in range(30):
        graph["nodes"].insert(-1, {"kind": "prim::ListConstruct", "inputs": [previous, previous],
                                   "outputs": [f"pair{index}"]})
        graph["nodes"].insert(-1, {"kind": "quantized::cat", "inputs": [f"pair{index}", "one", "s6", "zp64"],
                                   "outputs": [f"cat{index}"]})
        previous = f"cat{index}"
    graph["nodes"][-1]["inputs"] = [previous]


@pytest.mark.parametrize(("edit", "pattern"), [
    (_rename_input("quantized::hardswish", 0, "nowhere"), r"node 18 quantized::hardswish .* uses 'nowhere', which is "
                                                          r"never defined"),
    (_rename_input("aten::relu", 0, "gp"), r"node 26 aten::relu .* uses 'gp', which is defined only later in the graph "
                                           r"\(a cycle\?\)"),
    (_relabel("quantized::conv2d", "aten::relu"), r"node 2 aten::relu .*: number of inputs = 4: expected 1 inputs"),
    (_relabel("aten::relu", "aten::softmax"), r"node 26: node kind 'aten::softmax' is not supported"),
    (_rename_input("quantized::add_relu", 3, "s1"), r"node 3 quantized::add_relu .*: input 3 \(%s1\) = 0.05: expected "
                                                    r"an int in \[0, 255\]"),
    (_rename_input("quantized::add_relu", 2, "zp0"), r"input 2 \(%zp0\) = 0: expected a positive finite scale"),
    (_rename_input("aten::quantize_per_tensor", 3, "two"), r"input 3 \(%two\) = 2: expected a constant int, one of "
                                                           r"\[12, 13, 14\]"),
    (_rename_input("quantized::add_relu", 1, "q"), r"input 1 \(%q\) = \(x.shape\[0\], 3, 8, 8\): expected shape "
                                                   r"\(x.shape\[0\], 8, 8, 8\)"),
    (lambda g: g.update(outputs=["x"]), r"graph output 'x' is defined by graph input 'x': expected a value computed"),
    (lambda g: node(g, "aten::relu")["outputs"].__setitem__(0, "d"), r"defines 'd', already defined by node 25"),
    (lambda g: g["constants"].update(pool1={"type": "list", "items": [{"type": "int", "value": 2}] * 2}),
     r"node 24 quantized::mul .*: operand shapes = \(\(x.shape\[0\], 8, 4, 4\), \(x.shape\[0\], 8, 2, 2\)\): expected "
     r"shapes that broadcast"),
    (_rename_input("aten::flatten", 0, "excited"), r"node 37 quantized::linear .*: the input's last dimension = 128: "
                                                   r"expected 8"),
    (_chain_cats, r"needs an estimated \d+ bytes to run one sample, over the memory budget of 2147483648 bytes"),
])
def test_the_checker_refuses_invalid_graphs_naming_node_field_value_and_expectation(seed, tmp_path, edit, pattern):
    refused(tmp_path, edited(seed, edit), pattern, ModelCheckError)


def test_unknown_kind_is_also_an_unknown_node_kind(seed, tmp_path):
    refused(tmp_path, edited(seed, _relabel("aten::relu", "aten::softmax")), "softmax", UnknownNodeKind)


def test_memory_budget_is_a_parameter(seed):
    model = reference.load(seed)
    check(model, memory_budget_bytes=peak_memory_bytes(model))
    with pytest.raises(ModelCheckError, match=f"over the memory budget of {peak_memory_bytes(model) - 1} bytes"):
        check(model, memory_budget_bytes=peak_memory_bytes(model) - 1)


# --- the pinned digest --------------------------------------------------------------------


def test_expected_sha256_pins_the_whole_file(seed, tmp_path):
    digest = hashlib.sha256(seed.read_bytes()).hexdigest()
    assert reference.load(seed, expected_sha256=digest.upper())
    resealed = edited(seed, lambda graph: graph["constants"]["s1"].update(value=(0.06).hex()))
    assert reference.load(write(tmp_path, resealed))  # a re-sealed edit passes the checksum ...
    refused(tmp_path, resealed, f"has sha256 [0-9a-f]{{64}}, not the expected {digest}", expected_sha256=digest)
    with pytest.raises(ValueError, match="expected_sha256 must be 64 hex digits"):
        reference.load(seed, expected_sha256="abc")
