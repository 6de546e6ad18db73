"""`quantspec inspect`: a graph-mode Numeric Suite. Where does an int8 model lose accuracy?

For every quantized node of an int8 model: the SQNR (dB) and the largest absolute error of
its dequantized output against the matching activation of the float model, on real
inputs; and for every conv/linear, its dequantized int8 weight against the float weight the
quantizer started from (BN already folded). Sorted worst (lowest SQNR) first.

The int8 side never runs torch: the int8 model is exported (`production.export`) and run
by the reference interpreter (`reference.run`), whose per-node trace gives each node's
QTensor. The float side runs the float TorchScript model (frozen, so BN is folded into conv
as it is before quantization) with every intermediate tensor added as a graph output.

Matching rule (graph position). Both graphs are the same program after inlining; quantize_jit
only fuses ops and inserts (de)quantize nodes. So each graph becomes its sequence of *compute
ops* in program order, with
- `quantized::conv2d_relu` read as `conv2d, relu` (likewise every `*_relu` fused op),
  `quantized::X` read as `X`, in-place `X_` read as `X`;
- quantize/dequantize and pure plumbing (`prim::*`, `aten::size`, ...) left out.
The two sequences must then be equal op for op (else an error names the first position where
they differ); the k-th int8 node is matched to the float value produced by the *last* op of
its expansion (a fused conv+relu is compared after the ReLU) and its weight to the float
weight of the *first* (the conv). A `quantize_per_tensor` is matched to the float value its
input stands for. This needs no module names, which quantize_jit does not keep on fused nodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

# Nodes that move or re-type data without computing: left out of the op sequences.
PLUMBING = frozenset({
    "aten::size", "aten::__getitem__", "aten::Int", "aten::len", "aten::dim", "aten::format", "aten::warn",
    "aten::quantize_per_tensor", "aten::quantize_per_channel", "aten::dequantize", "aten::detach",
})
QUANTIZE = "aten::quantize_per_tensor"
# Compute ops whose second input is the weight, in their canonical (expanded) spelling.
WEIGHTED = frozenset({"conv1d", "conv2d", "conv3d", "linear"})


@dataclass(frozen=True)
class GraphNode:
    """One node of a TorchScript graph or of an exported model: kind and value names."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """An int8 node's output, the float value it stands for, and (for conv/linear) the float
    node holding its weight."""

    int8_node: int
    int8_value: str
    float_value: str
    kind: str
    float_weight_node: Optional[int] = None


@dataclass(frozen=True)
class LayerError:
    """How far one int8 tensor is from its float counterpart."""

    name: str
    kind: str
    position: int
    sqnr_db: float
    max_abs_error: float
    elements: int


def canonical_ops(kind: str) -> tuple[str, ...]:
    """The plain op names a node kind stands for; () for plumbing.

    >>> canonical_ops("quantized::conv2d_relu"), canonical_ops("aten::relu_"), canonical_ops("prim::Constant")
    (('conv2d', 'relu'), ('relu',), ())
    """
    if kind in PLUMBING or kind.startswith("prim::"):
        return ()
    name = kind.split("::", 1)[1]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    if kind.startswith("quantized::") and name.endswith("_relu") and name != "_relu":
        return (name[: -len("_relu")], "relu")
    return (name,)


def _sequence(nodes: Sequence[GraphNode]) -> list[tuple[str, int]]:
    """(canonical op, node index) for every compute op in program order."""
    return [(op, index) for index, node in enumerate(nodes) for op in canonical_ops(node.kind)]


def align(
    int8_nodes: Sequence[GraphNode], float_nodes: Sequence[GraphNode], int8_inputs: Sequence[str], float_inputs: Sequence[str]
) -> list[Match]:
    """Match every int8 node to a float value by graph position (see the module docstring).

    Model inputs match by position. Returns one Match per output of every int8 compute op
    and quantize node, in graph order (float-island outputs included; callers keep the
    quantized ones).
    """
    if len(int8_inputs) != len(float_inputs):
        raise ValueError(f"the int8 model takes {len(int8_inputs)} inputs, the float model {len(float_inputs)}")
    int8_ops, float_ops = _sequence(int8_nodes), _sequence(float_nodes)
    for position, (a, b) in enumerate(zip(int8_ops, float_ops)):
        if a[0] != b[0]:
            raise ValueError(
                f"the int8 and float graphs differ at compute op {position}: int8 {int8_nodes[a[1]].kind} "
                f"vs float {float_nodes[b[1]].kind}; is --float the model the int8 one was quantized from?"
            )
    if len(int8_ops) != len(float_ops):
        raise ValueError(f"the int8 graph has {len(int8_ops)} compute ops, the float graph {len(float_ops)}")
    float_of: dict[str, str] = dict(zip(int8_inputs, float_inputs))
    matches: list[Match] = []
    cursor = 0
    for index, node in enumerate(int8_nodes):
        ops = canonical_ops(node.kind)
        if ops:
            first, last = float_ops[cursor][1], float_ops[cursor + len(ops) - 1][1]
            cursor += len(ops)
            for value, float_value in zip(node.outputs, float_nodes[last].outputs):
                float_of[value] = float_value
                matches.append(Match(index, value, float_value, node.kind, first if ops[0] in WEIGHTED else None))
        elif node.kind == QUANTIZE and node.inputs[0] in float_of:
            float_of[node.outputs[0]] = float_of[node.inputs[0]]
            matches.append(Match(index, node.outputs[0], float_of[node.inputs[0]], node.kind))
    return matches


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio `10 log10(sum r^2 / sum (r - t)^2)` in float64 (dB).

    +inf when the two are equal; -inf when the signal is all zero but the error is not.

    >>> sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 4.5]))  # 25 / 0.25 = 100 -> 20 dB
    20.0
    """
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum(np.square(reference - np.asarray(test, np.float64))))
    signal = float(np.sum(np.square(reference)))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_error(name: str, kind: str, position: int, reference: np.ndarray, test: np.ndarray) -> LayerError:
    """SQNR and max abs error of `test` (a dequantized int8 tensor) against `reference`."""
    if reference.shape != test.shape:
        raise ValueError(f"{name} ({kind}): float shape {reference.shape} but int8 shape {test.shape}; the graphs do not match here")
    error = np.abs(np.asarray(reference, np.float64) - np.asarray(test, np.float64))
    return LayerError(name, kind, position, sqnr_db(reference, test), float(error.max(initial=0.0)), int(reference.size))


def worst_first(errors: Iterable[LayerError]) -> list[LayerError]:
    """Lowest SQNR first; ties by larger max abs error, then graph position."""
    return sorted(errors, key=lambda e: (e.sqnr_db, -e.max_abs_error, e.position))


@dataclass
class InspectReport:
    """Activation and weight errors, each sorted worst first."""

    activations: list[LayerError]
    weights: list[LayerError]
    meta: dict

    def text(self, top: Optional[int] = None) -> str:
        """Both tables as plain text (the `top` worst rows of each, all when None)."""
        parts = []
        for title, rows in (("activations (int8 node vs float)", self.activations), ("weights (int8 vs float, per layer)", self.weights)):
            parts.append(title)
            parts.append(f"  {'SQNR dB':>8}  {'max |err|':>10}  {'#':>3}  node")
            for row in rows[:top]:
                parts.append(f"  {row.sqnr_db:8.2f}  {row.max_abs_error:10.4g}  {row.position:3d}  {row.name} ({row.kind})")
        return "\n".join(parts) + "\n"

    def as_dict(self) -> dict:
        """JSON-ready form (infinite SQNR becomes the string "inf")."""

        def row(e: LayerError) -> dict:
            values = asdict(e)
            if math.isinf(e.sqnr_db):
                values["sqnr_db"] = "inf" if e.sqnr_db > 0 else "-inf"
            return values

        return {"meta": self.meta, "activations": [row(e) for e in self.activations], "weights": [row(e) for e in self.weights]}


def accumulate(errors: Mapping[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Concatenate per-batch (float, int8) pairs so SQNR is computed over all inputs at once."""
    return {name: (np.concatenate([f.ravel() for f, _ in pairs]), np.concatenate([q.ravel() for _, q in pairs]))
            for name, pairs in errors.items()}


def plot_report(report: InspectReport, path: str, top: int = 40) -> None:
    """Horizontal bars of per-layer activation SQNR (graph order) and weight SQNR (matplotlib, lazily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acts = sorted(report.activations, key=lambda e: e.position)[:top]
    weights = sorted(report.weights, key=lambda e: e.position)[:top]
    height = 0.28 * max(len(acts), len(weights)) + 1.5
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), gridspec_kw={"width_ratios": [3, 2]})
    _bars(left, acts, "activation SQNR (dB), int8 node vs float", "tab:blue")
    _bars(right, weights, "weight SQNR (dB), int8 vs float", "tab:green")
    fig.suptitle(report.meta.get("title", "numeric suite"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(axis, rows: Sequence[LayerError], label: str, color: str) -> None:
    finite = [r.sqnr_db for r in rows if math.isfinite(r.sqnr_db)]
    cap = (max(finite) if finite else 0.0) + 5.0
    values = [min(r.sqnr_db, cap) if not math.isnan(r.sqnr_db) else 0.0 for r in rows]
    axis.barh([f"{r.position}: {r.name} ({r.kind.split('::')[-1]})" for r in rows], values, color=color)
    axis.invert_yaxis()
    axis.set_xlabel(label)
    axis.tick_params(axis="y", labelsize=7)


# --- the float side: the float TorchScript model, every intermediate captured ----------------


def torchscript_nodes(graph) -> tuple[list[str], list[GraphNode]]:
    """A TorchScript graph's input names (without `self`) and its top-level nodes."""
    inputs = [value.debugName() for value in graph.inputs()][1:]
    nodes = [
        GraphNode(node.kind(), tuple(v.debugName() for v in node.inputs()), tuple(v.debugName() for v in node.outputs()))
        for node in graph.nodes()
    ]
    return inputs, nodes


class FloatModel:
    """A float TorchScript model, frozen (BN folded into conv, as before quantization), whose
    forward can also return every intermediate tensor."""

    def __init__(self, module) -> None:
        import torch

        module = module.eval()
        self.module = torch.jit.freeze(module) if _has_state(module) else module
        self.inputs, self.nodes = torchscript_nodes(self.module.graph)
        self._capture, self._names = _capturing_function(self.module.graph)

    def activations(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor the forward computes (plus the inputs), by value name, as float arrays."""
        import torch

        with torch.no_grad():
            values = self._capture(self.module._c, *(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        captured = {name: value.numpy() for name, value in zip(self._names, values) if not value.is_quantized}
        captured.update(zip(self.inputs, inputs))
        return captured

    def weight(self, node_index: int) -> np.ndarray:
        """The constant weight (input 1) of a frozen conv/linear node."""
        graph_node = list(self.module.graph.nodes())[node_index]
        weight = list(graph_node.inputs())[1].toIValue()
        if weight is None:
            raise ValueError(f"float node {node_index} ({graph_node.kind()}) has no constant weight; is the float model frozen?")
        return weight.detach().numpy()


def _has_state(module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _capturing_function(graph):
    """A function of (self, *inputs) returning every non-constant tensor of `graph` as a tuple,
    and those tensors' names in `graph`.

    Works on a copy: gathers each node's tensor outputs into one TupleConstruct and makes that
    the only output (a TorchScript function has a single output). The copy renumbers unnamed
    values, so names are read from `graph`, pairing values by position.
    """
    import torch

    def tensors(g):
        return [value for node in g.nodes() if node.kind() != "prim::Constant" for value in node.outputs()
                if isinstance(value.type(), torch._C.TensorType)]

    names = [value.debugName() for value in tensors(graph)]
    graph = graph.copy()
    values = tensors(graph)
    while len(list(graph.outputs())):
        graph.eraseOutput(0)
    pack = graph.create("prim::TupleConstruct", values, 1)
    graph.appendNode(pack)
    pack.output().setType(torch._C.TupleType([value.type() for value in values]))
    graph.registerOutput(pack.output())
    return torch._C._create_function_from_graph("quantspec_capture", graph), names
