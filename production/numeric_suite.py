"""`quantspec inspect`: a graph-mode Numeric Suite. Where does an int8 model lose accuracy?

For every quantized node of an int8 model: the SQNR (dB) and the largest absolute error of
its dequantized output against the matching activation of the float model, on real
inputs; and for every conv/linear, its dequantized int8 weight against the float weight the
quantizer started from (BN already folded). Sorted worst (lowest SQNR) first.

The int8 side never runs torch: the int8 model is exported (`production.export`) and run
by the reference interpreter (`reference.run`), whose per-node trace gives each node's
QTensor. The float side runs the float TorchScript model (frozen, so BN is folded into conv
as it is before quantization) with every intermediate tensor added as a graph output.

Layers are labelled with the float node's module path (`layer2.0.conv1`) when the float
model was saved unfrozen (TorchScript drops module paths from saved frozen graphs), else
with the int8 value name.

Matching rule (graph position). Both graphs are the same program after inlining; quantize_jit
only fuses ops and inserts (de)quantize nodes. So each graph becomes its sequence of *compute
ops* in program order, with
- `quantized::conv2d_relu` read as `conv2d, relu` (likewise every `*_relu` fused op),
  `quantized::X` read as `X`, in-place `X_` read as `X`;
- quantize/dequantize, pure plumbing (`prim::*`, `aten::size`, ...) and every node that
  produces no tensor (scalar/list arithmetic such as `aten::len`, `aten::gt`, which
  freezing and quantize_jit's constant propagation keep or fold differently) left out.
The two sequences must then be equal op for op (else an error names the first position where
they differ); the k-th int8 node is matched to the float value produced by the *last* op of
its expansion (a fused conv+relu is compared after the ReLU) and its weight to the float
weight of the *first* (the conv). A `quantize_per_tensor` is matched to the float value its
input stands for. This needs no module names, which quantize_jit does not keep on fused nodes.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

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
    """One graph node: kind, value names, whether it produces a tensor (scalar and list
    arithmetic such as `aten::gt` or `aten::len` is not compared), and the module it came
    from (e.g. "layer1.0.conv1"; empty when TorchScript no longer knows)."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tensor: bool = True
    scope: str = ""


@dataclass(frozen=True)
class Match:
    """An int8 node's output, the float value it stands for, and (for conv/linear) the float
    node holding its weight."""

    int8_node: int
    int8_value: str
    float_value: str
    kind: str
    float_weight_node: Optional[int] = None
    float_node: Optional[int] = None


@dataclass(frozen=True)
class LayerError:
    """How far one int8 tensor is from its float counterpart."""

    name: str
    kind: str
    position: int  # index of the node in the int8 graph (execution order)
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
    """(canonical op, node index) for every tensor-producing compute op in program order."""
    return [(op, index) for index, node in enumerate(nodes) if node.tensor for op in canonical_ops(node.kind)]


def align(
    int8_nodes: Sequence[GraphNode],
    float_nodes: Sequence[GraphNode],
    int8_inputs: Sequence[str],
    float_inputs: Sequence[str],
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
    producer = {value: index for index, node in enumerate(float_nodes) for value in node.outputs}
    matches: list[Match] = []
    cursor = 0
    for index, node in enumerate(int8_nodes):
        ops = canonical_ops(node.kind) if node.tensor else ()
        if ops:
            first, last = float_ops[cursor][1], float_ops[cursor + len(ops) - 1][1]
            cursor += len(ops)
            for value, float_value in zip(node.outputs, float_nodes[last].outputs):
                float_of[value] = float_value
                weight_node = first if ops[0] in WEIGHTED else None
                matches.append(Match(index, value, float_value, node.kind, weight_node, first))
        elif node.kind == QUANTIZE and node.inputs[0] in float_of:
            source = float_of[node.inputs[0]]
            float_of[node.outputs[0]] = source
            matches.append(Match(index, node.outputs[0], source, node.kind, None, producer.get(source)))
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
        raise ValueError(
            f"{name} ({kind}): float shape {reference.shape} but int8 shape {test.shape}; the graphs do not match here"
        )
    error = np.abs(np.asarray(reference, np.float64) - np.asarray(test, np.float64))
    return LayerError(
        name, kind, position, sqnr_db(reference, test), float(error.max(initial=0.0)), int(reference.size)
    )


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
        tables = (("activations (int8 node vs float)", self.activations),
                  ("weights (int8 vs float, per layer)", self.weights))
        for title, rows in tables:
            parts.append(title)
            parts.append(f"  {'SQNR dB':>8}  {'max |err|':>10}  {'#':>3}  node")
            for row in rows[:top]:
                parts.append(
                    f"  {row.sqnr_db:8.2f}  {row.max_abs_error:10.4g}  {row.position:3d}  {row.name} ({row.kind})"
                )
        return "\n".join(parts) + "\n"

    def as_dict(self) -> dict:
        """JSON-ready form (infinite SQNR becomes the string "inf")."""

        def row(e: LayerError) -> dict:
            values = asdict(e)
            if math.isinf(e.sqnr_db):
                values["sqnr_db"] = "inf" if e.sqnr_db > 0 else "-inf"
            return values

        return {"meta": self.meta, "activations": [row(e) for e in self.activations],
                "weights": [row(e) for e in self.weights]}


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


def module_path(hierarchy: str) -> str:
    """`layer1(Sequential).0(BasicBlock).conv1(Conv2d).SELF(Conv2d)` -> `layer1.0.conv1`.

    >>> module_path("layer1(Sequential).0(BasicBlock).UNKNOWN_INSTANCE(UNKNOWN_TYPE)")
    'layer1.0'
    """
    parts = [re.sub(r"\(.*\)$", "", part) for part in re.split(r"\.(?![^(]*\))", hierarchy)]
    return ".".join(p for p in parts if p and p not in ("SELF", "UNKNOWN_INSTANCE"))


class FloatModel:
    """A float TorchScript model, frozen (BN folded into conv, as before quantization), whose
    every intermediate tensor can be captured (`production.verify.capture_intermediates`)."""

    def __init__(self, module: Any) -> None:
        import torch

        module = module.eval()
        self.module = torch.jit.freeze(module) if _has_state(module) else module
        graph = self.module.graph
        self.inputs = [value.debugName() for value in graph.inputs()][1:]
        self.nodes = [
            GraphNode(n.kind(), tuple(v.debugName() for v in n.inputs()), tuple(v.debugName() for v in n.outputs()),
                      any(isinstance(v.type(), torch._C.TensorType) for v in n.outputs()),
                      module_path(n.getModuleHierarchy()))
            for n in graph.nodes()
        ]

    def activations(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every float tensor the forward computes (plus the inputs), by value name."""
        import torch

        from .verify import capture_intermediates

        captured = capture_intermediates(self.module, [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        values = {name: value.numpy() for name, value in captured.items() if not value.is_quantized}
        values.update(zip(self.inputs, inputs))
        return values

    def weight(self, node_index: int) -> np.ndarray:
        """The constant weight (input 1) of a frozen conv/linear node."""
        graph_node = list(self.module.graph.nodes())[node_index]
        weight = list(graph_node.inputs())[1].toIValue()
        if weight is None:
            raise ValueError(
                f"float node {node_index} ({graph_node.kind()}) has no constant weight; is the float model frozen?"
            )
        return weight.detach().numpy()


def _has_state(module: Any) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


# --- the comparison ---------------------------------------------------------------------------


def int8_model(path: Union[str, Path], scratch: Path):
    """The reference model of `path`: a portable model file as is, or a TorchScript int8
    model exported (under the fbgemm engine) into `scratch` first."""
    from quantspec import reference

    from .compare import is_torchscript

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no int8 model file at {path}")
    if not is_torchscript(path):
        return reference.load(path)
    from .export import export
    from .io import load

    return reference.load(export(load(path), scratch / f"{path.stem}.qsm"))


def inspect(
    int8: Union[str, Path],
    float_model: Union[str, Path],
    data_dir: Union[str, Path],
    limit: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    plot: Optional[Union[str, Path]] = None,
) -> InspectReport:
    """The Numeric Suite report of `int8` (TorchScript or exported) against `float_model`
    (TorchScript, ideally unfrozen) on `limit` images of the ImageFolder tree `data_dir`."""
    from quantspec.reference.interpreter import run

    from .compare import require_matplotlib
    from .data import ImageFolder
    from .io import load
    from .outputs import atomic_output

    if plot is not None:
        require_matplotlib()

    with tempfile.TemporaryDirectory() as scratch:
        qmodel = int8_model(int8, Path(scratch))
    fmodel = FloatModel(load(float_model))
    data = ImageFolder(data_dir, _transform_for_images(data_dir), limit=limit)
    pairs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    matches: list[Match] = []
    for images, _ in data.batches(batch_size, progress, desc="numeric suite"):
        trace: dict[str, Any] = {}
        run(qmodel, images, trace=trace, num_threads=1)
        matches = matches or align(
            _int8_nodes(qmodel, trace), fmodel.nodes, [s.name for s in qmodel.inputs], fmodel.inputs
        )
        floats = fmodel.activations(images)
        for index, match in enumerate(matches):
            value = trace.get(match.int8_value, qmodel.constants.get(match.int8_value))
            if _is_qtensor(value):
                pairs[index].append((floats[match.float_value], _dequantized(value)))
    activations = [_activation_error(matches[index], fmodel, chunks) for index, chunks in pairs.items()]
    weights = [_weight_error(match, qmodel, fmodel) for match in matches if match.float_weight_node is not None]
    meta = {"int8": str(int8), "float": str(float_model), "data_dir": str(data_dir), "images": len(data),
            "profile": qmodel.profile.name,
            "title": f"{Path(int8).name} vs {Path(float_model).name}, {len(data)} images"}
    report = InspectReport(worst_first(activations), worst_first(weights), meta)
    if plot is not None:
        with atomic_output(plot) as temporary:
            plot_report(report, str(temporary))
    return report


def _int8_nodes(qmodel: Any, trace: dict[str, Any]) -> list[GraphNode]:
    """The exported model's nodes; which produce tensors is read off a run's trace."""
    return [GraphNode(n.kind, n.inputs, n.outputs, any(_is_tensor(trace.get(name)) for name in n.outputs))
            for n in qmodel.nodes]


def _is_tensor(value: Any) -> bool:
    return isinstance(value, np.ndarray) or _is_qtensor(value)


def _is_qtensor(value: Any) -> bool:
    from quantspec.reference.qtensor import QTensor

    return isinstance(value, QTensor)


def _dequantized(value: Any) -> np.ndarray:
    from quantspec.reference.ops import dequantize

    return dequantize(value)


def _label(match: Match, fmodel: FloatModel) -> str:
    if match.float_node is None:
        return "model input" if match.kind == QUANTIZE else f"%{match.int8_value}"
    return fmodel.nodes[match.float_node].scope or f"%{match.int8_value}"


def _activation_error(match: Match, fmodel: FloatModel, chunks: list[tuple[np.ndarray, np.ndarray]]) -> LayerError:
    reference = np.concatenate([f.ravel() for f, _ in chunks])
    test = np.concatenate([q.ravel() for _, q in chunks])
    if chunks[0][0].shape != chunks[0][1].shape:
        raise ValueError(f"%{match.int8_value} ({match.kind}): float shape {chunks[0][0].shape} "
                         f"but int8 shape {chunks[0][1].shape}")
    return layer_error(_label(match, fmodel), match.kind, match.int8_node, reference, test)


def _weight_error(match: Match, qmodel: Any, fmodel: FloatModel) -> LayerError:
    """Dequantized int8 weight (the packed weight the int8 node reads) vs the float weight."""
    node = qmodel.nodes[match.int8_node]
    packed = qmodel.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if packed is None or not hasattr(packed, "weight"):
        raise ValueError(f"int8 node %{match.int8_value} ({match.kind}) has no packed weight input")
    weight = fmodel.weight(match.float_weight_node)
    return layer_error(_label(match, fmodel), match.kind, match.int8_node, weight, _dequantized(packed.weight))


def _transform_for_images(data_dir: Union[str, Path]):
    """CIFAR-sized images (shorter side <= 64) are used as they are; larger ones get ImageNet's 256/224."""
    from .data import ImageFolder, cifar_transform, imagenet_transform, read_image

    first = ImageFolder(data_dir, cifar_transform(), limit=1).samples[0][0]
    return cifar_transform() if min(read_image(first).size) <= 64 else imagenet_transform()
