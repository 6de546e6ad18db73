"""Reading an untrusted model file without being bombed: zip members, JSON documents and
.npy arrays, each size checked before anything is decompressed, parsed or allocated.

The standard `zipfile` module parses the archives. Before a member is opened, its entry in
the central directory must name an expected member once, use no encryption and a method
this format writes (stored or deflate), and declare an uncompressed size within
`ReadLimits` and a plausible compression ratio. `zipfile` never inflates past the declared
size and checks the CRC at the end, so a member that lies about its size fails instead of
growing. JSON is refused when too large or too deeply nested (counted on the raw text,
before parsing) or when an object repeats a key. An .npy array's header is read first; its
dtype must be one this format writes and its dtype x shape (in Python ints) must equal the
bytes the member declares, within the limits, before the array is allocated.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, fields
from math import prod
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
from numpy.lib import format as npy_format

MiB = 2**20
GiB = 2**30
CHUNK_BYTES = MiB
# Members at most this large are never refused for their compression ratio (a small JSON
# document of repeated keys compresses well; a bomb needs size to hurt).
RATIO_FREE_BYTES = MiB
# Central-directory bytes allowed per member: 46 fixed bytes plus a short name and extra field.
DIRECTORY_BYTES_PER_MEMBER = 256
# Flag bits of a zip entry this reader refuses: encryption (0x1), compressed patched data
# (0x20), strong encryption (0x40), masked local headers (0x2000).
REFUSED_FLAGS = 0x1 | 0x20 | 0x40 | 0x2000
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# The array dtypes the format writes: quantized integers, float tensors, per-channel qparams.
ARRAY_DTYPES = frozenset({"|u1", "|i1", "<i4", "<i8", "<f4", "<f8"})
# What `zipfile` and `zlib` raise on a malformed archive (bad headers, truncation, a bit
# flip in a deflate stream, names that do not decode, offsets past the end, features the
# entry checks already refuse).
ZIP_ERRORS = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, LookupError, OverflowError,
    NotImplementedError, RuntimeError,
)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class ModelFileError(ValueError):
    """A model file that is missing, truncated, tampered with, malformed, over a read limit or
    from a future format. The message names the file, the member or field, and what was expected."""


@dataclass(frozen=True)
class ReadLimits:
    """Bounds `reference.load` enforces before it decompresses, parses or allocates anything.

    The defaults hold every model quantspec's zoo exports with a wide margin; pass larger
    values explicitly to read a bigger model, e.g. `ReadLimits(max_file_bytes=4 * GiB,
    max_member_bytes=4 * GiB, max_array_bytes=2 * GiB, max_total_array_bytes=4 * GiB)`.

    Attributes:
        max_file_bytes: size of the model file on disk (1 GiB).
        max_member_bytes: declared uncompressed size of any zip member (1 GiB).
        max_ratio: uncompressed / compressed size of a member larger than 1 MiB (100).
        max_json_bytes: size of `manifest.json` and `graph.json` each (16 MiB).
        max_json_depth: nesting of arrays and objects in a JSON document (64).
        max_members: entries in the central directory of the file or of `arrays.npz` (65,536).
        max_array_bytes: bytes of one array in `arrays.npz` (512 MiB).
        max_total_array_bytes: bytes of all arrays together (1 GiB).
    """

    max_file_bytes: int = GiB
    max_member_bytes: int = GiB
    max_ratio: int = 100
    max_json_bytes: int = 16 * MiB
    max_json_depth: int = 64
    max_members: int = 65_536
    max_array_bytes: int = 512 * MiB
    max_total_array_bytes: int = GiB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"ReadLimits.{field.name} must be a positive int, got {value!r}")


def file_sha256(path: Path, limits: ReadLimits) -> str:
    """The sha256 of the whole file, read in chunks (the file's size is checked first)."""
    check_file_size(path, limits)
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file_size(path: Path, limits: ReadLimits) -> None:
    """Refuse a path that is not a regular file or is larger than `limits.max_file_bytes`."""
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ModelFileError(
            f"{path} is {size} bytes, over the read limit max_file_bytes={limits.max_file_bytes} "
            "(pass a larger ReadLimits to read it)"
        )


def read_members(path: Path, max_bytes: dict[str, int], limits: ReadLimits, where: str) -> dict:
    """name -> bytes of the members of the zip at `path`, which must hold exactly the names in
    `max_bytes`, each once and at most that many bytes uncompressed. `where` names the archive in errors."""
    try:
        with open(path, "rb") as stream:
            _check_entry_count(stream, limits, where)
            with zipfile.ZipFile(stream) as archive:
                infos = archive.infolist()
                _check_entries(infos, max_bytes, limits, where)
                return {info.filename: _read_member(archive, info) for info in infos}
    except ModelFileError:
        raise
    except ZIP_ERRORS as error:
        raise ModelFileError(f"{where} is not a readable model file (truncated or corrupt): {error}") from None


def _check_entry_count(stream: IO[bytes], limits: ReadLimits, where: str) -> None:
    """Refuse an archive whose central directory lists more than `max_members` entries, or takes
    more than `DIRECTORY_BYTES_PER_MEMBER` bytes per allowed member, before `zipfile` builds an
    object for each entry (a 1 GiB directory of empty entries would take gigabytes). `ZipFile`
    cannot be told to stop, so this reads the end-of-directory record with zipfile's own
    reader (private, unchanged since Python 2.6)."""
    end = zipfile._EndRecData(stream)
    if end is not None:
        entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if entries > limits.max_members or size > limits.max_members * DIRECTORY_BYTES_PER_MEMBER:
            raise ModelFileError(
                f"{where} lists {entries} members in a {size}-byte directory, over max_members = {limits.max_members}"
            )
    stream.seek(0)


def _check_entries(infos: list[zipfile.ZipInfo], max_bytes: dict[str, int], limits: ReadLimits, where: str) -> None:
    names = [info.filename for info in infos]
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    unexpected = sorted(set(names) - set(max_bytes))
    missing = sorted(set(max_bytes) - set(names))
    if duplicated or unexpected or missing:
        raise ModelFileError(
            f"{where} must hold exactly the members {sorted(max_bytes)}, each once: "
            f"duplicated {duplicated}, unexpected {unexpected}, missing {missing}"
        )
    for info in infos:
        _check_entry(info, max_bytes[info.filename], limits, f"{where}: member {info.filename!r}")


def _check_entry(info: zipfile.ZipInfo, max_bytes: int, limits: ReadLimits, where: str) -> None:
    if info.compress_type not in METHODS:
        raise ModelFileError(f"{where} uses compression method {info.compress_type}; expected one of {METHODS}")
    if info.flag_bits & REFUSED_FLAGS:
        raise ModelFileError(f"{where} has flag bits {info.flag_bits:#06x}: encrypted or patched members are refused")
    if info.file_size > max_bytes:
        raise ModelFileError(f"{where} declares {info.file_size} bytes uncompressed, over the read limit {max_bytes}")
    if info.file_size > RATIO_FREE_BYTES and info.file_size > limits.max_ratio * info.compress_size:
        raise ModelFileError(
            f"{where} declares {info.file_size} bytes from {info.compress_size} compressed, a ratio over "
            f"max_ratio={limits.max_ratio} (a zip bomb?)"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, read in chunks; `zipfile` stops at the declared size and checks the CRC."""
    data = bytearray()
    with archive.open(info) as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            data += chunk
    return bytes(data)


def parse_json(data: bytes, limits: ReadLimits, where: str) -> Any:
    """A JSON document, refused when larger than `max_json_bytes`, nested deeper than
    `max_json_depth` (counted before parsing), invalid UTF-8 or JSON, with NaN/Infinity
    literals, or with a key repeated in one object."""
    if len(data) > limits.max_json_bytes:
        raise ModelFileError(f"{where} is {len(data)} bytes, over max_json_bytes = {limits.max_json_bytes}")
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise ModelFileError(f"{where} nests {depth} levels deep, over max_json_depth = {limits.max_json_depth}")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{where} is not valid JSON: {error}") from None


def json_depth(data: bytes) -> int:
    """The deepest nesting of `[` / `{` in a JSON text, strings skipped (exact for valid JSON;
    a malformed text may count deeper, and is refused either way)."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", data), np.uint8)
    opens = (skeleton == ord("[")) | (skeleton == ord("{"))
    closes = (skeleton == ord("]")) | (skeleton == ord("}"))
    levels = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return int(levels.max(initial=0))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"an object repeats the key(s) {repeated}")
    return dict(pairs)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (floats are stored as hex strings)")


def read_npz(data: bytes, limits: ReadLimits, where: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz (a zip of .npy files), each header checked before its array is allocated."""
    try:
        stream = io.BytesIO(data)
        _check_entry_count(stream, limits, where)
        with zipfile.ZipFile(stream) as archive:
            infos = archive.infolist()
            _check_npz_entries(infos, limits, where)
            budget = _Budget(limits.max_total_array_bytes, f"{where}: the arrays together")
            return {info.filename[: -len(".npy")]: _read_array(archive, info, limits, budget, where) for info in infos}
    except ModelFileError:
        raise
    except ZIP_ERRORS as error:
        raise ModelFileError(f"{where} is not a readable .npz archive (truncated or corrupt): {error}") from None


def _check_npz_entries(infos: list[zipfile.ZipInfo], limits: ReadLimits, where: str) -> None:
    names = [info.filename for info in infos]
    if len(set(names)) != len(names) or not all(name.endswith(".npy") for name in names):
        raise ModelFileError(f"{where} must hold distinct .npy members, got {names[:10]}")
    header_slack = MiB  # an .npy header is at most a few KB; the data is checked exactly later
    for info in infos:
        _check_entry(info, limits.max_array_bytes + header_slack, limits, f"{where}: member {info.filename!r}")


class _Budget:
    """A running total of bytes about to be allocated, refused past `limit`."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.what, self.used = limit, what, 0

    def take(self, nbytes: int) -> None:
        if self.used + nbytes > self.limit:
            raise ModelFileError(f"{self.what} need more than the read limit of {self.limit} bytes")
        self.used += nbytes


def _read_array(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ReadLimits, budget: _Budget, where: str
) -> np.ndarray:
    name = f"{where}: array {info.filename!r}"
    with archive.open(info) as stream:
        shape, dtype = _array_header(stream, name)
        nbytes = prod(shape) * dtype.itemsize  # Python ints: no overflow
        if nbytes > limits.max_array_bytes:
            raise ModelFileError(f"{name} of shape {shape} needs {nbytes} bytes, over max_array_bytes")
        if stream.tell() + nbytes != info.file_size:
            raise ModelFileError(
                f"{name}: header says shape {shape} of {dtype.str} ({nbytes} bytes), but the member holds "
                f"{info.file_size - stream.tell()} bytes of data"
            )
        budget.take(nbytes)
        buffer = bytearray(nbytes)
        if stream.readinto(buffer) != nbytes or stream.read(1):
            raise ModelFileError(f"{name} is shorter or longer than its header says")
    return np.frombuffer(buffer, dtype).reshape(shape)


def _array_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an .npy header: C order, a dtype this format writes, dims >= 0."""
    readers: dict[tuple[int, int], Callable] = {
        (1, 0): npy_format.read_array_header_1_0,
        (2, 0): npy_format.read_array_header_2_0,
    }
    try:
        version = npy_format.read_magic(stream)
        if version not in readers:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran_order, dtype = readers[version](stream)
    except Exception as error:  # numpy's header parser (ast.literal_eval) raises many types on hostile text
        raise ModelFileError(f"{name} has an unreadable .npy header: {type(error).__name__}: {error}") from None
    if dtype.str not in ARRAY_DTYPES or fortran_order:
        raise ModelFileError(
            f"{name} has dtype {dtype.str!r}, fortran_order {fortran_order}; expected C order and one of "
            f"{sorted(ARRAY_DTYPES)}"
        )
    if not all(type(size) is int and size >= 0 for size in shape):
        raise ModelFileError(f"{name} has shape {shape!r}; expected non-negative ints")
    return shape, dtype
