"""The model checker, like `onnx.checker`: `check(model)` validates a loaded `Model` before
anything runs, and `load` runs it on every file.

1. Structure: every value is defined once (graph inputs, constants and node outputs share
   one namespace) and before it is used, in graph order (so the graph has no cycle); a
   block's values are visible only inside it; the graph's outputs are computed by
   top-level nodes; every node kind is one the interpreter runs (`kernels.KERNELS`, plus
   `prim::If` with a bool condition and two blocks without parameters, each returning as
   many values as the node has outputs).
2. Types, ranges and shapes: each node's arity and the type and range of each input, as
   its kernel and reference op accept them (`node_rules`: zero points ints in the dtype's
   range, scales positive finite numbers, groups dividing the channels, paddings bounded
   by the kernel or the input, strides and dilations positive, ...), computed on abstract
   values: constants as they are, tensors as dtype and shape propagated from the recorded
   input shapes (unknown dimensions stay unknown), scalars computed at run time by type.
3. Memory: `peak_memory_bytes`, a simple upper-bound estimate for one sample, must stay
   under `memory_budget_bytes` (default 2 GiB).

Every failure is a `ModelCheckError` (a `ModelFileError`) naming the node (its index path
in the graph, kind and source line), the field, the bad value and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..qtensor import QTensor
from .abstract import ANY, Call, ModelCheckError, TensorInfo, Unknown, UnknownKindError, abstract, named_dims
from .file_format import PackedConv, PackedLinear
from .kernels import KERNELS
from .model import IN_PLACE_KINDS, Model, Node
from .node_rules import RULES

GiB = 2**30
DEFAULT_MEMORY_BUDGET = 2 * GiB
CONTROL_FLOW_KINDS = frozenset({"prim::If"})
# Temporaries of a node, per element of its tensor inputs and outputs: the element-wise
# kernels keep a few int64 / float64 copies of their operands.
WORK_BYTES_PER_ELEMENT = 64
# Bytes a packed weight's prepared operands take per weight element: the float32 GEMM
# operand and, for 3x3 convs, Winograd's 16 / 9 larger transformed weights.
PREPARED_BYTES_PER_WEIGHT = 12


def check(model: Model, *, memory_budget_bytes: Optional[int] = None) -> None:
    """Validate `model` before it runs (see the module docstring); raise `ModelCheckError`
    (`UnknownKindError` for a node kind the interpreter does not run) on the first problem.

    `memory_budget_bytes`: the largest `peak_memory_bytes` estimate accepted (default
    `DEFAULT_MEMORY_BUDGET`, 2 GiB)."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    estimate = peak_memory_bytes(model)
    if estimate > budget:
        raise ModelCheckError(
            f"the model needs an estimated {estimate} bytes to run one sample, over the memory budget of {budget} "
            "bytes (pass a larger memory_budget_bytes to check to accept it)"
        )


def peak_memory_bytes(model: Model) -> int:
    """An upper-bound estimate of the memory `run` needs for one sample (free dimensions of
    the recorded input shapes, and any dimension the checker cannot know, count as 1):

    * every constant's arrays, plus `PREPARED_BYTES_PER_WEIGHT` per packed weight element;
    * the inputs;
    * every tensor a node computes, all alive until `run` returns (the interpreter keeps
      every value), views counted as copies; list plumbing, dropout and weight unpacking,
      which pass tensors through, count nothing;
    * the largest working memory of one node: `WORK_BYTES_PER_ELEMENT` per element of its
      tensor inputs and outputs, plus for a quantized conv one band of im2col rows (at
      least one output row: 8 bytes per output pixel and kernel tap) and 2 MiB.

    Structure and arguments are checked first (`ModelCheckError`), as by `check`."""
    _check_structure(model)
    state = _infer(model)
    constants = sum(_constant_bytes(value) for value in model.constants.values())
    inputs = sum(TensorInfo(spec.shape).nbytes for spec in model.inputs)
    return constants + inputs + state.computed_bytes + state.largest_work


# --- 1. structure ------------------------------------------------------------------


def _labelled(nodes: Sequence[Node], prefix: str = "") -> Iterator[tuple[str, Node]]:
    """(path, node) for the nodes of a block: path "3", or "3.1.0" for the first node of
    block 1 of node 3 (`prefix` "3.1.")."""
    for index, node in enumerate(nodes):
        yield f"{prefix}{index}", node


def _node_label(path: str, node: Node) -> str:
    return f"node {path} {node.kind} (source: {node.source or 'unknown'})"


def _check_structure(model: Model) -> None:
    scope = _Scope(future=set(_defined_by_nodes(model.nodes)))
    for spec in model.inputs:
        scope.define(spec.name, f"graph input {spec.name!r}")
    for name in model.constants:
        scope.define(name, f"constant {name!r}")
    _check_block(model.nodes, scope, "")
    for name in model.outputs:
        if name not in scope.visible or not scope.by_node[name]:
            origin = f"defined by {scope.origin[name]}" if name in scope.origin else "never defined"
            raise ModelCheckError(f"graph output {name!r} is {origin}: expected a value computed by a top-level node")


def _defined_by_nodes(nodes: Sequence[Node]) -> Iterator[str]:
    for node in nodes:
        yield from node.outputs
        for block in node.blocks:
            yield from _defined_by_nodes(block.nodes)


@dataclass
class _Scope:
    """Values defined so far (`origin`: name -> what defined it; `by_node`: whether a node
    did), those visible at this point of the graph, and the names nodes define (to tell a
    value used before its definition, as in a cycle, from one never defined)."""

    future: set[str]
    origin: dict[str, str] = field(default_factory=dict)
    by_node: dict[str, bool] = field(default_factory=dict)
    visible: set[str] = field(default_factory=set)

    def define(self, name: str, what: str, by_node: bool = False) -> None:
        if name in self.origin:
            raise ModelCheckError(f"{what} defines {name!r}, already defined by {self.origin[name]}: expected once")
        self.origin[name], self.by_node[name] = what, by_node
        self.visible.add(name)

    def require(self, names: Sequence[str], what: str) -> None:
        for name in names:
            if name in self.visible:
                continue
            if name in self.origin:
                problem = f"defined by {self.origin[name]} inside a block this node is not in"
            elif name in self.future:
                problem = "defined only later in the graph (a cycle?)"
            else:
                problem = "never defined"
            raise ModelCheckError(f"{what} uses {name!r}, which is {problem}")


def _check_block(nodes: Sequence[Node], scope: _Scope, prefix: str) -> None:
    for path, node in _labelled(nodes, prefix):
        what = _node_label(path, node)
        _check_kind(node, path, what)
        scope.require(node.inputs, what)
        for index, block in enumerate(node.blocks):
            _check_block(block.nodes, scope, f"{path}.{index}.")
            scope.require(block.outputs, f"{what}: block {index}'s outputs")
            scope.visible -= set(_defined_by_nodes(block.nodes))  # a block's values are its own
        for name in node.outputs:
            scope.define(name, what, by_node=True)


def _check_kind(node: Node, path: str, what: str) -> None:
    if node.kind not in KERNELS and node.kind not in CONTROL_FLOW_KINDS:
        raise UnknownKindError(
            f"node {path}: node kind {node.kind!r} is not supported by the reference interpreter "
            f"(source: {node.source or 'unknown'})"
        )
    expected_blocks = 2 if node.kind in CONTROL_FLOW_KINDS else 0
    if len(node.blocks) != expected_blocks:
        raise ModelCheckError(f"{what}: {len(node.blocks)} blocks: expected {expected_blocks}")
    if node.kind == "prim::If" and len(node.inputs) != 1:
        raise ModelCheckError(f"{what}: {len(node.inputs)} inputs: expected 1 condition")
    for block in node.blocks:
        if block.inputs or len(block.outputs) != len(node.outputs):
            raise ModelCheckError(
                f"{what}: a block with parameters {list(block.inputs)} and outputs {list(block.outputs)}: expected "
                f"no parameters and {len(node.outputs)} outputs, as the node"
            )


# --- 2. types, ranges and shapes -----------------------------------------------------


# Kinds that pass tensors through (lists, unpacking, eval-mode dropout): no new memory.
PASS_THROUGH_KINDS = frozenset({
    "prim::ListConstruct", "prim::TupleConstruct", "prim::ListUnpack", "prim::TupleUnpack", "aten::__getitem__",
    "aten::dropout", "aten::dropout_", "aten::feature_dropout", "quantized::linear_unpack", "quantized::conv2d_unpack",
})


@dataclass
class _Inference:
    """Abstract values by name, and what the memory estimate needs: bytes of the tensors the
    nodes compute and the largest working memory of one node."""

    values: dict[str, Any]
    computed_bytes: int = 0
    largest_work: int = 0

    def note(self, call: Call, outputs: Sequence[Any]) -> None:
        if call.kind in PASS_THROUGH_KINDS:
            return
        results = list(_tensors(outputs))
        self.computed_bytes += sum(t.nbytes for t in results)
        elements = sum(t.elements for t in [*_tensors(call.args), *results])
        self.largest_work = max(self.largest_work, WORK_BYTES_PER_ELEMENT * elements + call.extra_work)


def _tensors(values: Sequence[Any]) -> Iterator[TensorInfo]:
    for value in values:
        if isinstance(value, TensorInfo):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)


def _infer(model: Model) -> _Inference:
    state = _Inference({name: abstract(value) for name, value in model.constants.items()})
    state.values.update({spec.name: named_dims(TensorInfo(spec.shape), spec.name) for spec in model.inputs})
    _infer_block(model.nodes, state, "")
    return state


def _infer_block(nodes: Sequence[Node], state: _Inference, prefix: str) -> None:
    for path, node in _labelled(nodes, prefix):
        call = Call(node, f"node {path}", [state.values[name] for name in node.inputs])
        outputs = _infer_if(call, state, path) if node.kind == "prim::If" else _apply_rule(call)
        if len(outputs) != len(node.outputs):
            call.fail("number of outputs", len(node.outputs), str(len(outputs)))
        state.note(call, outputs if node.kind != "prim::If" else ())
        state.values.update((name, named_dims(value, name)) for name, value in zip(node.outputs, outputs))
        if node.kind in IN_PLACE_KINDS:
            state.values[node.inputs[0]] = state.values[node.outputs[0]]  # `run` rebinds the overwritten input


def _apply_rule(call: Call) -> tuple:
    rule = RULES.get(call.kind)
    if rule is None:
        raise UnknownKindError(f"{call.label} {call.kind}: the checker has no rule for this node kind")
    return tuple(rule(call))


def _infer_if(call: Call, state: _Inference, path: str) -> tuple:
    condition = call.boolean(0)
    branches = []
    for index, block in enumerate(call.node.blocks):
        _infer_block(block.nodes, state, f"{path}.{index}.")
        branches.append([state.values[name] for name in block.outputs])
    if type(condition) is bool:
        return tuple(branches[0 if condition else 1])
    return tuple(_join(a, b) for a, b in zip(*branches))


def _join(a: Any, b: Any) -> Any:
    """What the checker knows of a value that is `a` or `b`, by a condition known at run time."""
    if a == b:
        return a
    tensors = isinstance(a, TensorInfo) and isinstance(b, TensorInfo)
    if tensors and (a.qdtype, a.axis, a.rank) == (b.qdtype, b.axis, b.rank):
        shape = None if a.shape is None else tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
        return TensorInfo(shape, a.qdtype, a.axis)
    kinds = {_scalar_type(a), _scalar_type(b)}
    return Unknown(kinds.pop()) if len(kinds) == 1 and None not in kinds else ANY


def _scalar_type(value: Any) -> Optional[str]:
    if isinstance(value, Unknown):
        return value.type
    return {int: "int", float: "float", bool: "bool", list: "list", tuple: "list"}.get(type(value))


# --- 3. memory ---------------------------------------------------------------------


def _constant_bytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, QTensor):
        return sum(np.asarray(part).nbytes for part in (value.int_repr, value.scale, value.zero_point))
    if isinstance(value, (PackedConv, PackedLinear)):
        weight_elements = value.weight.int_repr.size
        return _constant_bytes(value.weight) + _constant_bytes(value.bias) + PREPARED_BYTES_PER_WEIGHT * weight_elements
    if isinstance(value, (list, tuple)):
        return sum(_constant_bytes(item) for item in value)
    return 0
