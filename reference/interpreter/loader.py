"""`load`: read a portable model file under read limits, decode every field strictly, and
check the graph before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..profile import NumericsProfile
from .archive import ModelFileError, ReadLimits
from .checker import check
from .fields import as_int, as_list, as_name, as_names, as_object, as_str, refuse, required, short
from .file_format import FORMAT_VERSION, decode_value, read_model_file
from .model import Block, InputSpec, Model, Node

# The largest input dimension a file may record (a shape is checked against the memory budget too).
MAX_DIMENSION = 2**31 - 1


def load(
    path: Union[str, Path], *, expected_sha256: Optional[str] = None, limits: Optional[ReadLimits] = None
) -> Model:
    """Read a model file written by `production.export` and check it before anything runs.

    The reader refuses, with `ModelFileError`, any file over `limits` (default
    `ReadLimits()`), malformed, failing its checksum or of a newer format version; every
    field is decoded strictly; then `check` validates the graph (`ModelCheckError`, a
    `ModelFileError`). `expected_sha256`: the sha256 (hex) of the whole file received out
    of band (`sha256sum FILE`); a different file is refused before it is parsed.
    """
    graph, arrays = read_model_file(path, limits, expected_sha256)
    model = decode_model(graph, arrays, f"{path}: graph.json")
    check(model)
    return model


def decode_model(graph: dict, arrays: dict[str, np.ndarray], where: str = "graph.json") -> Model:
    """The `Model` a graph document describes, every field decoded strictly (`ModelFileError`
    naming the field on a missing field, a wrong type or an out-of-range value)."""
    profile_fields = as_object(required(graph, "profile", where), f"{where}.profile")
    names = {key: as_str(value, f"{where}.profile.{key}") for key, value in profile_fields.items()}
    try:
        profile = NumericsProfile(**names)
    except (TypeError, ValueError) as error:  # a missing, unknown or unsupported field
        raise ModelFileError(f"{where}.profile = {short(profile_fields)}: {error}") from None
    as_int(required(graph, "format_version", where), f"{where}.format_version", 1, FORMAT_VERSION)
    constants = as_object(required(graph, "constants", where), f"{where}.constants")
    return Model(
        profile=profile,
        torch_version=as_str(required(graph, "torch_version", where), f"{where}.torch_version"),
        inputs=tuple(
            _input_spec(spec, f"{where}.inputs[{index}]")
            for index, spec in enumerate(as_list(required(graph, "inputs", where), f"{where}.inputs"))
        ),
        outputs=as_names(required(graph, "outputs", where), f"{where}.outputs"),
        nodes=_nodes(required(graph, "nodes", where), f"{where}.nodes"),
        constants={
            name: decode_value(value, arrays, f"{where}.constants[{name!r}]") for name, value in constants.items()
        },
    )


def _input_spec(spec: Any, where: str) -> InputSpec:
    dtype = as_str(required(spec, "dtype", where), f"{where}.dtype")
    if dtype != "float32":
        refuse(f"{where}.dtype", dtype, "'float32'")
    shape = required(spec, "shape", where)
    if shape is not None:
        shape = tuple(
            None if size is None else as_int(size, f"{where}.shape[{index}]", 1, MAX_DIMENSION)
            for index, size in enumerate(as_list(shape, f"{where}.shape"))
        )
    return InputSpec(as_name(required(spec, "name", where), f"{where}.name"), dtype, shape)


def _nodes(entries: Any, where: str) -> tuple[Node, ...]:
    return tuple(_node(entry, f"{where}[{index}]") for index, entry in enumerate(as_list(entries, where)))


def _node(entry: Any, where: str) -> Node:
    return Node(
        kind=as_str(required(entry, "kind", where), f"{where}.kind"),
        inputs=as_names(required(entry, "inputs", where), f"{where}.inputs"),
        outputs=as_names(required(entry, "outputs", where), f"{where}.outputs"),
        source=as_str(entry.get("source", ""), f"{where}.source"),
        blocks=tuple(
            _block(block, f"{where}.blocks[{index}]")
            for index, block in enumerate(as_list(entry.get("blocks", []), f"{where}.blocks"))
        ),
    )


def _block(entry: Any, where: str) -> Block:
    return Block(
        inputs=as_names(required(entry, "inputs", where), f"{where}.inputs"),
        nodes=_nodes(required(entry, "nodes", where), f"{where}.nodes"),
        outputs=as_names(required(entry, "outputs", where), f"{where}.outputs"),
    )
