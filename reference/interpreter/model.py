"""A converted model read from the portable file, and its NumPy execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..profile import NumericsProfile
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
    missing = [name for name in model.outputs if name not in env]
    if missing:
        raise LookupError(f"the model's outputs {missing} are not computed by any node")
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
        names = [spec.name for spec in model.inputs]
        raise ValueError(f"the model takes {len(model.inputs)} input(s) {names}, got {len(values)}")
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
        else:
            _run_node(node, env, context, trace)


def _run_node(node: Node, env: dict, context: RunContext, trace: Optional[Trace]) -> None:
    kernel = KERNELS.get(node.kind)
    if kernel is None:
        where = f"source: {node.source or 'unknown'}"
        raise UnknownNodeKind(f"node kind {node.kind!r} is not supported by the reference interpreter ({where})")
    try:
        results = kernel(_lookup(node.inputs, env), context)
        values = (results,) if len(node.outputs) == 1 else _counted(node, () if results is None else tuple(results))
    except UnknownNodeKind as error:
        raise UnknownNodeKind(f"{error} (node {node.kind}, source: {node.source or 'unknown'})") from None
    except ScriptException:
        raise
    except Exception as error:  # every other failure names the node that failed
        raise NodeError(node, error) from error
    _bind(node, values, env, trace)
    if node.kind in IN_PLACE_KINDS and node.inputs:
        env[node.inputs[0]] = env[node.outputs[0]]  # the op overwrote its first input


def _run_if(node: Node, env: dict, context: RunContext, trace: Optional[Trace]) -> None:
    try:
        block = _taken_block(node, _lookup(node.inputs, env))
    except Exception as error:
        raise NodeError(node, error) from error
    _run_nodes(block.nodes, env, context, trace)
    try:
        values = _counted(node, tuple(_lookup(block.outputs, env)))
    except Exception as error:
        raise NodeError(node, error) from error
    _bind(node, values, env, trace)


def _taken_block(node: Node, inputs: list) -> Block:
    if len(inputs) != 1 or not isinstance(inputs[0], (bool, np.bool_)) or len(node.blocks) != 2:
        raise ValueError(
            f"prim::If needs one bool condition and two blocks, got inputs {[type(v).__name__ for v in inputs]} "
            f"and {len(node.blocks)} blocks"
        )
    return node.blocks[0] if inputs[0] else node.blocks[1]


def _lookup(names: Sequence[str], env: dict) -> list:
    missing = [name for name in names if name not in env]
    if missing:
        raise LookupError(f"value(s) {missing} are not defined before this node")
    return [env[name] for name in names]


def _counted(node: Node, values: tuple) -> tuple:
    if len(values) != len(node.outputs):
        raise ValueError(f"{len(values)} values for the node's {len(node.outputs)} outputs {list(node.outputs)}")
    return values


def _bind(node: Node, values: Sequence[Any], env: dict, trace: Optional[Trace]) -> None:
    for name, value in zip(node.outputs, values):
        env[name] = value
        _emit(trace, node, name, value)


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
