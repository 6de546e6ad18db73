"""Golden vector packs: hard cases and the reference's outputs, readable from any language.

A pack is a folder: `manifest.json` and one raw little-endian C-order `.bin` per array (no
pickle, no npz). The manifest (format `FORMAT`, version `VERSION`) names the numerics profile
and, per case, the op, its arguments (`targets.OPS[op]`: arrays as files with dtype, shape
and sha256; floats as {"decimal", "hex"} (`float.hex`); ints, bools, strings, int lists and
null as JSON; cat's per-input lists as JSON lists of those) and the expected output array. See docs/targets.md.

`check_pack` replays a pack on a target with neither Hypothesis nor torch imported (for the
reference target). Reading checks everything before it allocates: the manifest's size, its
fields (unknown ones are refused), each file's size against its declared shape and dtype,
then its sha256. `write_pack` draws the cases (it imports the checks, hence Hypothesis and torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from quantspec.reference.profile import NumericsProfile, get_profile

from .targets import OPS, Target, TargetCall, TargetError, UnsupportedCase, ordered, run_call

FORMAT = "quantspec-golden-vectors"
VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_ARRAY_ELEMENTS = 2**26
DTYPES = {"uint8": "<u1", "int8": "<i1", "int32": "<i4", "int64": "<i8", "float32": "<f4", "float64": "<f8"}
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.bin$")
_PACK_FIELDS = {"format", "version", "numerics_profile", "cases"}
_CASE_FIELDS = {"id", "op", "source", "arguments", "expected"}
_ARRAY_FIELDS = {"file", "dtype", "shape", "sha256"}


class VectorPackError(ValueError):
    """A pack that cannot be read: the message names the file and the check that failed."""


@dataclass(frozen=True)
class PackCase:
    """One case of a pack: its id, the call and the expected output integers."""

    id: str
    call: TargetCall
    expected: np.ndarray


@dataclass
class PackResult:
    """How a target did on a pack: per op, cases and mismatching cases; the first mismatches."""

    cases: dict[str, int]
    mismatched: dict[str, int]
    first: list[str]

    @property
    def ok(self) -> bool:
        return not any(self.mismatched.values())


# --- writing -------------------------------------------------------------------------------------


def _array_entry(directory: Path, file_name: str, values: np.ndarray) -> dict[str, Any]:
    values = np.ascontiguousarray(values)
    dtype = str(values.dtype)
    if dtype not in DTYPES:
        raise ValueError(f"{file_name}: dtype {dtype} has no pack encoding; known {sorted(DTYPES)}")
    data = values.astype(DTYPES[dtype], copy=False).tobytes()
    (directory / file_name).write_bytes(data)
    return {"file": file_name, "dtype": dtype, "shape": list(values.shape), "sha256": hashlib.sha256(data).hexdigest()}


def _encode_argument(directory: Path, case_id: str, name: str, value: Any) -> Any:
    if isinstance(value, list) and not all(type(v) is int for v in value):  # cat: one entry per input
        return [_encode_argument(directory, case_id, f"{name}{i}", v) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _array_entry(directory, f"{case_id}.{name}.bin", value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return {"decimal": repr(number), "hex": number.hex()}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (str, type(None))) or (isinstance(value, list) and all(type(v) is int for v in value)):
        return value
    raise ValueError(f"{case_id}: argument {name} = {value!r} has no pack encoding")


def write_pack(directory: str | Path, numerics: NumericsProfile, names: Optional[Sequence[str]] = None,
               drawn_per_op: int = 20) -> int:
    """Write a pack of every check with a target call (or those named) into `directory` (created;
    it must not hold a manifest yet): the check's pinned examples, then `drawn_per_op` cases
    drawn from its strategy (derandomized, seeded by the check's name). Returns the case count."""
    from .checks import select

    directory = Path(directory)
    if (directory / MANIFEST).exists():
        raise VectorPackError(f"{directory / MANIFEST}: exists; write a pack into a new folder")
    directory.mkdir(exist_ok=True)
    entries = []
    for check in [check for check in select(names) if check.call is not None]:
        cases = [("example", case) for case in check.examples] + [("drawn", c) for c in draw_cases(check, drawn_per_op)]
        for number, (source, case) in enumerate(cases):
            case_id = f"{check.name}-{number:04d}"
            call = check.call(case)
            expected = check.expected(case, numerics)
            arguments = {name: _encode_argument(directory, case_id, name, value)
                         for name, value in call.arguments.items()}
            entries.append({"id": case_id, "op": call.op, "source": source, "arguments": arguments,
                            "expected": _array_entry(directory, f"{case_id}.expected.bin", expected)})
    manifest = {"format": FORMAT, "version": VERSION, "numerics_profile": numerics.name, "cases": entries}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return len(entries)


def draw_cases(check: Any, count: int) -> list[Any]:
    """`count` cases from the check's strategy, derandomized and seeded by its name (under the
    smoke settings: no database, batch sizes as smoke draws them)."""
    from hypothesis import Phase, given, seed, settings

    from . import settings as profiles

    drawn: list[Any] = []

    @seed(f"quantspec-vectors-{check.name}")
    @settings(profiles.get("smoke"), max_examples=count, phases=[Phase.generate])
    @given(check.cases)
    def collect(case: Any) -> None:
        drawn.append(case)

    with profiles.hypothesis_storage(), profiles.active("smoke"):
        collect()
    return drawn[:count]


# --- reading -------------------------------------------------------------------------------------


def _fail(path: Path, check: str, detail: str) -> VectorPackError:
    return VectorPackError(f"{path}: {check}: {detail}")


def _expect_fields(path: Path, where: str, found: Any, fields: set[str]) -> None:
    if not isinstance(found, dict) or set(found) != fields:
        keys = sorted(found) if isinstance(found, dict) else type(found).__name__
        raise _fail(path, "fields", f"{where} has {keys}, expected exactly {sorted(fields)}")


def read_array(directory: Path, entry: Any, where: str) -> np.ndarray:
    """One array of a pack, its size checked against its shape and dtype before it is read,
    then its sha256."""
    manifest = directory / MANIFEST
    _expect_fields(manifest, where, entry, _ARRAY_FIELDS)
    name, dtype, shape = entry["file"], entry["dtype"], entry["shape"]
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise _fail(manifest, "file name", f"{where}: {name!r} is not a plain .bin name in the pack folder")
    if dtype not in DTYPES:
        raise _fail(manifest, "dtype", f"{where}: {dtype!r} is not one of {sorted(DTYPES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _fail(manifest, "shape", f"{where}: {shape!r} is not a list of non-negative ints")
    elements = math.prod(shape)
    if elements > MAX_ARRAY_ELEMENTS:
        raise _fail(manifest, "shape", f"{where}: {elements} elements exceed {MAX_ARRAY_ELEMENTS}")
    path = directory / name
    if not path.is_file():
        raise _fail(path, "file", "missing")
    declared = elements * np.dtype(DTYPES[dtype]).itemsize
    if path.stat().st_size != declared:
        raise _fail(path, "size", f"{path.stat().st_size} bytes, declared shape {shape} x {dtype} needs {declared}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise _fail(path, "sha256", f"content does not match the manifest's {entry['sha256']!r}")
    return np.frombuffer(data, DTYPES[dtype]).astype(dtype).reshape(shape)


def _decode_argument(directory: Path, value: Any, where: str) -> Any:
    if isinstance(value, dict) and "file" in value:
        return read_array(directory, value, where)
    if isinstance(value, dict):
        _expect_fields(directory / MANIFEST, where, value, {"decimal", "hex"})
        try:
            number = float.fromhex(value["hex"])
            agrees = float(value["decimal"]) == number or math.isnan(number)
        except (TypeError, ValueError) as error:
            raise _fail(directory / MANIFEST, "float", f"{where}: {value!r}: {error}") from None
        if not agrees:
            raise _fail(directory / MANIFEST, "float", f"{where}: decimal {value['decimal']} != hex {value['hex']}")
        return number
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, list) and all(type(v) is int for v in value):
        return value
    if isinstance(value, list) and not any(isinstance(v, list) for v in value):  # cat's per-input values
        return [_decode_argument(directory, v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise _fail(directory / MANIFEST, "argument", f"{where}: {value!r} is not a pack value")


def read_pack(directory: str | Path) -> tuple[NumericsProfile, list[PackCase]]:
    """The numerics profile and cases of a pack; VectorPackError naming the file and the
    failed check when anything is off."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise _fail(manifest_path, "file", "missing")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _fail(manifest_path, "size", f"more than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _fail(manifest_path, "json", str(error)) from None
    _expect_fields(manifest_path, "the manifest", manifest, _PACK_FIELDS)
    if manifest["format"] != FORMAT or manifest["version"] != VERSION:
        raise _fail(manifest_path, "format", f"{manifest['format']!r} version {manifest['version']!r}, "
                    f"expected {FORMAT!r} version {VERSION}")
    try:
        profile = get_profile(manifest["numerics_profile"])
    except (TypeError, ValueError) as error:
        raise _fail(manifest_path, "numerics profile", str(error)) from None
    if not isinstance(manifest["cases"], list):
        raise _fail(manifest_path, "fields", "cases is not a list")
    return profile, [_read_case(directory, entry, i) for i, entry in enumerate(manifest["cases"])]


def _read_case(directory: Path, entry: Any, number: int) -> PackCase:
    manifest_path = directory / MANIFEST
    _expect_fields(manifest_path, f"case {number}", entry, _CASE_FIELDS)
    where = f"case {entry['id']!r}"
    if entry["op"] not in OPS:
        raise _fail(manifest_path, "op", f"{where}: unknown op {entry['op']!r}; known {sorted(OPS)}")
    _expect_fields(manifest_path, f"{where} arguments", entry["arguments"], set(OPS[entry["op"]]))
    arguments = {name: _decode_argument(directory, value, f"{where} argument {name}")
                 for name, value in entry["arguments"].items()}
    expected = read_array(directory, entry["expected"], f"{where} expected")
    return PackCase(str(entry["id"]), TargetCall(entry["op"], arguments), expected)


def check_pack(directory: str | Path, target: Target, max_shown: int = 8) -> PackResult:
    """Replay a pack on `target` (ops it does not implement, and cases it raises UnsupportedCase
    for, are skipped); compare bit for bit."""
    _, cases = read_pack(directory)
    result = PackResult({}, {}, [])
    for case in cases:
        if case.call.op not in target.ops:
            continue
        try:
            actual = run_call(target, case.call, case.expected.shape)
        except UnsupportedCase:
            continue
        result.cases[case.call.op] = result.cases.get(case.call.op, 0) + 1
        if not np.array_equal(ordered(actual), ordered(case.expected)):  # float32: the same bits
            result.mismatched[case.call.op] = result.mismatched.get(case.call.op, 0) + 1
            if len(result.first) < max_shown:
                differ = ordered(actual) != ordered(case.expected)
                where = np.argwhere(differ)[0].tolist()
                result.first.append(f"{case.id}: {int(np.count_nonzero(differ))} elements differ, "
                                    f"first at {where}: target {actual[tuple(where)]}, "
                                    f"expected {case.expected[tuple(where)]}")
    if not result.cases:
        raise TargetError(f"target {target.name!r} implements none of the pack's ops")
    return result
