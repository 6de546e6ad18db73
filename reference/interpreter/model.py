"""A converted model read from the portable file, and its NumPy execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..profile import NumericsProfile
from .file_format import ModelFileError, decode_value, read_model_file
from .kernels import KERNELS, RunContext, ScriptException, UnknownNodeKind


class NodeError(RuntimeError):
    """A node failed while running; names the node kind and its source line."""

    def __init__(self, node: "Node", error: Exception) -> None:
        super().__init__(f"{node.kind} (source: {node.source or 'unknown'}) failed: {type(error).__name__}: {error}")
        self.node = node


Trace = Union[Callable[["Node", str, Any], None], dict]


@dataclass(frozen=True)
class Node:
    """One graph node: kind (e.g. `quantized::conv2d`), value names in and out, the
    source line it came from, and nested blocks (`prim::If`)."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str = ""
    blocks: tuple["Block", ...] = ()


@dataclass(frozen=True)
class Block:
    """A nested block: its parameters, nodes, and the values it returns."""

    inputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class InputSpec:
    """A graph input: name, dtype and shape (None entries, or shape None, are free)."""

    name: str
    dtype: str
    shape: Optional[tuple[Optional[int], ...]]


@dataclass(frozen=True)
class Model:
    """A converted model, ready to `run`.

    Attributes:
        profile: the numerics profile the model was converted under; `run` uses it.
        torch_version: the torch release that converted it.
        inputs / outputs: graph inputs (without `self`) and output value names.
        nodes: the graph in execution order (constants and packed weights are in
            `constants`, not nodes).
        constants: value name -> Python value, float32 array, QTensor or packed weight.
    """

    profile: NumericsProfile
    torch_version: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    constants: dict[str, Any] = field(repr=False)

    def node_kinds(self) -> set[str]:
        """Every node kind in the graph, nested blocks included."""
        return {node.kind for node in walk(self.nodes)}


def load(path: Union[str, Path]) -> Model:
    """Read a model file written by `production.export` (checksum and version checked)."""
    graph, arrays = read_model_file(path)
    try:
        profile = NumericsProfile(**graph["profile"])
        constants = {name: decode_value(value, arrays) for name, value in graph["constants"].items()}
        inputs = tuple(
            InputSpec(spec["name"], spec["dtype"], None if spec["shape"] is None else tuple(spec["shape"]))
            for spec in graph["inputs"]
        )
        return Model(
            profile=profile,
            torch_version=str(graph["torch_version"]),
            inputs=inputs,
            outputs=tuple(graph["outputs"]),
            nodes=tuple(_node(entry) for entry in graph["nodes"]),
            constants=constants,
        )
    except (KeyError, TypeError) as error:
        raise ModelFileError(f"{path}: graph.json lacks or mistypes a field: {error!r}") from None


def _node(entry: dict) -> Node:
    return Node(
        kind=entry["kind"],
        inputs=tuple(entry["inputs"]),
        outputs=tuple(entry["outputs"]),
        source=entry.get("source", ""),
        blocks=tuple(
            Block(tuple(b["inputs"]), tuple(_node(n) for n in b["nodes"]), tuple(b["outputs"]))
            for b in entry.get("blocks", [])
        ),
    )


def walk(nodes: Sequence[Node]) -> Iterator[Node]:
    """Every node, in graph order, each followed by the nodes of its blocks (if/loop bodies)."""
    for node in nodes:
        yield node
        for block in node.blocks:
            yield from walk(block.nodes)


def run(
    model: Model,
    inputs: Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]],
    trace: Optional[Trace] = None,
    num_threads: int = 1,
    workers: int = 1,
) -> Any:
    """Execute `model` with NumPy alone, in the arithmetic of `model.profile`.

    `inputs`: one float32 array, a sequence (graph order) or a mapping by input name.
    `trace`: a dict (filled with value name -> value) or a callable `trace(node, name,
    value)`, given every node output in execution order. `num_threads`: the thread count
    torch ran with (it decides where some kernels' scalar tails fall). `workers`: threads
    the interpreter itself uses for conv/linear work (bands of output rows or channels; the
    calling thread is one of them); outputs never depend on it. Pair workers > 1 with a
    single-threaded BLAS (OPENBLAS_NUM_THREADS=1), or both multiply their threads.
    Returns the graph's output (a tuple when it has several).
    """
    env: dict[str, Any] = dict(model.constants)
    for spec, value in zip(model.inputs, _as_list(model, inputs)):
        env[spec.name] = _checked_input(spec, value)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    context = RunContext(profile=model.profile, num_threads=num_threads, workers=workers)
    _run_nodes(model.nodes, env, context, trace)
    results = tuple(env[name] for name in model.outputs)
    return results[0] if len(results) == 1 else results


def _as_list(model: Model, inputs: Any) -> list:
    if isinstance(inputs, Mapping):
        unknown = set(inputs) - {spec.name for spec in model.inputs}
        missing = [spec.name for spec in model.inputs if spec.name not in inputs]
        if unknown or missing:
            raise ValueError(f"inputs by name: missing {missing}, unknown {sorted(unknown)}")
        return [inputs[spec.name] for spec in model.inputs]
    values = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    if len(values) != len(model.inputs):
        raise ValueError(f"the model takes {len(model.inputs)} input(s) {[s.name for s in model.inputs]}, got {len(values)}")
    return values


def _checked_input(spec: InputSpec, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"input {spec.name!r} must be a NumPy array, got {type(value).__name__}")
    if value.dtype != np.dtype(spec.dtype):
        raise TypeError(f"input {spec.name!r} must have dtype {spec.dtype}, got {value.dtype}")
    if spec.shape is not None:
        fits = value.ndim == len(spec.shape) and all(
            want is None or want == got for want, got in zip(spec.shape, value.shape)
        )
        if not fits:
            expected = tuple("any" if d is None else d for d in spec.shape)
            raise ValueError(f"input {spec.name!r} must have shape {expected}, got {value.shape}")
    return value


def _run_nodes(nodes: Sequence[Node], env: dict, context: RunContext, trace: Optional[Trace]) -> None:
    for node in nodes:
        if node.kind == "prim::If":
            _run_if(node, env, context, trace)
            continue
        kernel = KERNELS.get(node.kind)
        if kernel is None:
            raise UnknownNodeKind(
                f"node kind {node.kind!r} is not supported by the reference interpreter (source: {node.source or 'unknown'})"
            )
        args = [env[name] for name in node.inputs]
        try:
            results = kernel(args, context)
        except UnknownNodeKind as error:
            raise UnknownNodeKind(f"{error} (node {node.kind}, source: {node.source or 'unknown'})") from None
        except ScriptException:
            raise
        except Exception as error:
            raise NodeError(node, error) from error
        results = results if len(node.outputs) != 1 else (results,)
        for name, value in zip(node.outputs, results):
            env[name] = value
            _emit(trace, node, name, value)
        if node.kind in IN_PLACE_KINDS:
            env[node.inputs[0]] = env[node.outputs[0]]  # the op overwrote its first input


def _run_if(node: Node, env: dict, context: RunContext, trace: Optional[Trace]) -> None:
    condition = env[node.inputs[0]]
    block = node.blocks[0] if condition else node.blocks[1]
    _run_nodes(block.nodes, env, context, trace)
    for name, value_name in zip(node.outputs, block.outputs):
        env[name] = env[value_name]
        _emit(trace, node, name, env[name])


def _emit(trace: Optional[Trace], node: Node, name: str, value: Any) -> None:
    if trace is None:
        return
    if isinstance(trace, dict):
        trace[name] = value
    else:
        trace(node, name, value)


# In-place ATen ops (`relu_`, `hardtanh_`, ...): their first input is the tensor they overwrite.
IN_PLACE_KINDS = frozenset(
    kind for kind in KERNELS if kind.startswith("aten::") and kind.endswith("_") and not kind.endswith("__")
)
