"""Export a converted (frozen) TorchScript model to quantspec's portable model file.

`export(converted, path)` walks `converted.graph` and writes what the NumPy interpreter
(`reference.load` / `reference.run`) needs: every node with its kind, input and output
value names and source line; every constant (`prim::Constant`, via `toIValue`); every
packed weight (`prim::GetAttr` of `quantized_forward._jit_pass_packed_weight_N`, via
`converted._c.getattr(name).unpack()` and, for conv, its stride/padding/dilation/groups);
the graph inputs and outputs; the numerics profile of this process for the engine the
model was converted under (`engine`: the profile it runs under here); a format version and a checksum. The
file format is `reference.interpreter.file_format` (JSON + .npz in one zip, no pickle).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

import quantspec.reference.interpreter as interpreter
from quantspec.reference.interpreter.file_format import (
    FORMAT_VERSION,
    ArrayStore,
    PackedConv,
    PackedLinear,
    encode_value,
    write_model_file,
)

from .bridge import from_torch
from .environment import ENGINE, detect_profile
from .outputs import atomic_output

# Nodes whose values become constants instead of executed nodes.
_CONSTANT_KINDS = ("prim::Constant", "prim::GetAttr")


class ExportError(ValueError):
    """The TorchScript module holds something the portable format cannot express."""


def export(
    converted: torch.jit.ScriptModule,
    path: Union[str, Path],
    example_inputs: Optional[Sequence[torch.Tensor]] = None,
    engine: str = ENGINE,
) -> Path:
    """Write `converted` (the frozen output of `quantize_jit`) to `path`.

    `engine`: the quantized engine `converted` was converted (its weights prepacked) under;
    the file records this process's numerics profile for it, which the interpreter follows.

    `example_inputs` (optional) records each input's shape, with the batch dimension left
    free, so that the interpreter can refuse inputs of the wrong shape; without it only
    the dtype (float32) and, when TorchScript knows it, the rank are checked.
    Written atomically (`outputs.atomic_output`): an interrupted export leaves no partial file.
    Returns the path written.
    """
    if not isinstance(converted, torch.jit.ScriptModule):
        raise TypeError(
            f"export needs a TorchScript module (the output of quantize_jit), got {type(converted).__name__}"
        )
    graph = converted.graph
    _check_inlined(graph)
    store = ArrayStore()
    constants: dict[str, dict] = {}
    nodes = _export_block(graph, converted, store, constants)
    inputs = [value for value in graph.inputs() if not _is_module(value)]
    document = {
        "format_version": FORMAT_VERSION,
        "profile": dataclasses.asdict(detect_profile(engine)),  # every field, float_gemm included
        "torch_version": torch.__version__,
        "inputs": [_input_spec(value, index, example_inputs) for index, value in enumerate(inputs)],
        "outputs": [value.debugName() for value in graph.outputs()],
        "constants": constants,
        "nodes": nodes,
    }
    with atomic_output(path) as temporary:
        write_model_file(temporary, document, store)
    return Path(path)


def exported_model(
    converted: torch.jit.ScriptModule, engine: str = ENGINE, path: Optional[Union[str, Path]] = None
) -> interpreter.Model:
    """`converted` as the reference interpreter runs it: exported under `engine` (to `path`, or
    a temporary file deleted afterwards) and read back by `interpreter.load`, so that every
    check the loader makes on a file applies to it too."""
    if path is not None:
        return interpreter.load(export(converted, path, engine=engine))
    with tempfile.TemporaryDirectory() as scratch:
        return interpreter.load(export(converted, Path(scratch) / "model.qsm", engine=engine))


def _check_inlined(graph: Any) -> None:
    """A converted model is frozen and inlined; a scripted float model still calls methods."""
    for node in graph.nodes():
        if node.kind() in ("prim::CallMethod", "prim::CallFunction"):
            raise ExportError(
                f"the graph still has {node.kind()} ({source_line(node) or 'no source'}): export needs the frozen, "
                "inlined output of quantize_jit, not a scripted float model"
            )


def _export_block(block: Any, module: torch.jit.ScriptModule, store: ArrayStore, constants: dict) -> list[dict]:
    exported = []
    for node in block.nodes():
        kind = node.kind()
        if kind in _CONSTANT_KINDS:
            for output in node.outputs():
                constants[output.debugName()] = encode_value(_constant_value(node, output, module), store)
            continue
        entry = {
            "kind": kind,
            "inputs": [value.debugName() for value in node.inputs()],
            "outputs": [value.debugName() for value in node.outputs()],
            "source": source_line(node),
        }
        blocks = list(node.blocks())
        if blocks:
            entry["blocks"] = [
                {
                    "inputs": [value.debugName() for value in inner.inputs()],
                    "nodes": _export_block(inner, module, store, constants),
                    "outputs": [value.debugName() for value in inner.outputs()],
                }
                for inner in blocks
            ]
        exported.append(entry)
    return exported


def _constant_value(node: Any, output: Any, module: torch.jit.ScriptModule) -> Any:
    if node.kind() == "prim::GetAttr":
        name = node.s("name")
        if not _is_module(node.inputsAt(0)):
            raise ExportError(f"prim::GetAttr {name!r} reads from a non-module value ({source_line(node)})")
        return _packed(module._c.getattr(name), name)
    if output.type().kind() == "FunctionType":
        raise ExportError(f"function constants are not supported ({source_line(node)})")
    return _portable(output.toIValue(), source_line(node))


def _packed(obj: Any, name: str) -> Any:
    """A packed-params object as PackedConv / PackedLinear (unpacked integer weights)."""
    type_name = str(obj._type().qualified_name()) if hasattr(obj, "_type") else type(obj).__name__
    if "Conv2dPackedParams" in type_name:
        weight, bias = obj.unpack()
        return PackedConv(
            weight=from_torch(weight),
            bias=None if bias is None else _float_array(bias),
            stride=tuple(obj.stride()),
            padding=tuple(obj.padding()),
            dilation=tuple(obj.dilation()),
            groups=int(obj.groups()),
            transposed=bool(obj.transpose()),
            output_padding=tuple(obj.output_padding()),
        )
    if "LinearPackedParams" in type_name:
        weight, bias = obj.unpack()
        return PackedLinear(weight=from_torch(weight), bias=None if bias is None else _float_array(bias))
    raise ExportError(f"attribute {name!r} has type {type_name}, which the portable format cannot hold")


def _portable(value: Any, where: str) -> Any:
    """A TorchScript constant as a value `encode_value` accepts."""
    if isinstance(value, torch.Tensor):
        return from_torch(value) if value.is_quantized else _float_array(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (list, tuple)):
        converted = [_portable(item, where) for item in value]
        return converted if isinstance(value, list) else tuple(converted)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ExportError(f"constant of type {type(value).__name__} is not supported ({where})")


def _float_array(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype != torch.float32:
        raise ExportError(f"expected a float32 tensor, got {tensor.dtype}")
    return tensor.detach().contiguous().numpy().copy()


def _is_module(value: Any) -> bool:
    return value.type().kind() == "ClassType"


def _input_spec(value: Any, index: int, example_inputs: Optional[Sequence[torch.Tensor]]) -> dict:
    shape: Optional[list] = None
    if example_inputs is not None:
        if index >= len(example_inputs):
            raise ExportError(f"example_inputs has {len(example_inputs)} tensors; the graph takes more inputs")
        example = example_inputs[index]
        shape = [None] + list(example.shape[1:])  # batch size free
    else:
        sizes = value.type().sizes() if value.type().kind() == "TensorType" else None
        if sizes is not None:
            shape = [None] * len(sizes)
    return {"name": value.debugName(), "dtype": "float32", "shape": shape}


_COMMENT = re.compile(r"# (\S*):(\d+):\d+\s*$")
_FILE_LINE = re.compile(r'File "([^"]*)", line (\d+)')


def source_line(node: Any) -> str:
    """`file:line` of the Python source a node came from, as the graph printer shows it
    (`# file:line:col`), else the last frame of its source range; '' when it has none
    (nodes that the quantization passes created)."""
    comment = _COMMENT.search(str(node).strip())
    if comment and comment.group(1):
        return f"{comment.group(1)}:{comment.group(2)}"
    matches = _FILE_LINE.findall(node.sourceRange() or "")
    if matches:
        path, line = matches[-1]
        return f"{path}:{line}" if path else ""
    return ""


__all__ = ["ExportError", "export", "source_line"]
