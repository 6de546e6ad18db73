"""Node-by-node verification: torch's converted model against the NumPy interpreter.

`verify(converted, inputs)` exports the model, runs it in torch capturing EVERY tensor
value of its graph, runs the exported file in the reference interpreter with a trace on
the same inputs, and compares each value bit for bit (`production.bridge.compare_bits`,
as the conformance runner does): quantized tensors by dtype, shape, axis, scale bits,
zero points and `int_repr`; float tensors by their raw bits (NaN payloads and the sign of
zero count).

Capture mechanism: a copy of the frozen graph in which every tensor a top-level node
produces is cloned right after that node (`aten::clone`, so later in-place ops such as
`hardtanh_` cannot change the snapshot) and all clones are returned as one list; the copy
is compiled with `torch._C._create_function_from_graph` and called with the module.
`Graph.copy()` may rename values, so each captured value is named after the value in
the same position of the original graph, the one `export` writes.

On the first mismatching node (in execution order) the report names it, gives its inputs'
qparams, and writes a repro file: the same portable format holding just that node with
its inputs as constants (they matched torch bit for bit, or an earlier node would have
been first), plus torch's output as the constant `expected:<name>`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

import quantspec.reference.interpreter as interpreter
from quantspec.reference.interpreter.file_format import FORMAT_VERSION, ArrayStore, encode_value, write_model_file
from quantspec.reference.numerics import f32
from quantspec.reference.qtensor import QTensor
from quantspec.reference.quantize_kernels import inverse_scale_f32

from .bridge import compare_with_torch, from_torch
from .environment import ENGINE, quantized_engine, torch_threads
from .export import exported_model
from .outputs import atomic_output

# The float ops whose float32 summation order `NumericsProfile.float_gemm` names
# (reference.ops.float_ops): where it is "unspecified", their values may differ in the last bits.
FLOAT_GEMM_KINDS = frozenset({"aten::linear", "aten::conv2d"})

# Verdicts of a report and the exit status `quantspec verify` gives each (the CLI's own
# statuses: 2 bad input or environment, 130 interrupted).
BIT_EXACT, MISMATCH, FLOAT_ORDER_UNSPECIFIED = "bit-exact", "mismatch", "float order unspecified"
EXIT_STATUS = {BIT_EXACT: 0, MISMATCH: 1, FLOAT_ORDER_UNSPECIFIED: 3}


@dataclass(frozen=True)
class NodeCheck:
    """One compared value. `after_float_gemm`: computed from a float linear/conv2d, so its
    float bits depend on that op's summation order; `max_ulp`: the largest distance in
    float32 units in the last place between differing float elements (0 for quantized values)."""

    name: str
    kind: str
    source: str
    quantized: bool
    elements: int
    mismatches: int
    detail: str = ""
    after_float_gemm: bool = False
    max_ulp: int = 0

    @property
    def equal(self) -> bool:
        return self.mismatches == 0 and not self.detail


@dataclass
class VerifyReport:
    """Every compared value, in execution order, and the first mismatch if any."""

    profile: str  # the numerics profile name and its float_gemm
    float_gemm: str = "unspecified"  # the profile's float_gemm: "unspecified" when this CPU's order is not modelled
    checks: list[NodeCheck] = field(default_factory=list)
    first_mismatch: Optional[NodeCheck] = None
    mismatch_inputs: list[str] = field(default_factory=list)
    repro_path: Optional[Path] = None
    uncompared: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Bit-exact: every captured value equal, quantized and float."""
        return all(check.equal for check in self.checks)

    @property
    def quantized_ok(self) -> bool:
        """Every quantized intermediate bit-exact (float-island values may still differ where
        the profile's float_gemm does not model torch's MKL/oneDNN order, see reference.ops.float_ops)."""
        return all(check.equal for check in self.checks if check.quantized)

    @property
    def verdict(self) -> str:
        """BIT_EXACT; FLOAT_ORDER_UNSPECIFIED when every quantized value is bit-exact and every
        differing value is a float array (same dtype and shape, other bits) computed after a
        float linear/conv2d whose summation order this CPU's profile does not model
        (`float_gemm` "unspecified"); MISMATCH otherwise (on a modelled CPU any difference is one)."""
        if self.ok:
            return BIT_EXACT
        differing = [check for check in self.checks if not check.equal]
        if self.float_gemm == "unspecified" and all(
            c.after_float_gemm and not c.quantized and not c.detail for c in differing
        ):
            return FLOAT_ORDER_UNSPECIFIED
        return MISMATCH

    def by_kind(self) -> dict[str, tuple[int, int, int]]:
        """node kind -> (values checked, elements compared, mismatching values)."""
        counts: dict[str, list[int]] = {}
        for check in self.checks:
            entry = counts.setdefault(check.kind, [0, 0, 0])
            entry[0] += 1
            entry[1] += check.elements
            entry[2] += 0 if check.equal else 1
        return {kind: (a, b, c) for kind, (a, b, c) in sorted(counts.items())}

    def format(self) -> str:
        """One line per checked node kind, then the verdict (and the first mismatch)."""
        lines = [f"profile {self.profile}"]
        for kind, (values, elements, bad) in self.by_kind().items():
            verdict = "OK" if not bad else f"{bad} MISMATCHING"
            lines.append(f"{kind:32s} {values:5d} values {elements:10d} elements  {verdict}")
        quantized = [c for c in self.checks if c.quantized]
        float_bad = [c for c in self.checks if not c.quantized and not c.equal]
        exact_quantized = (f"quantized values bit-exact ({len(quantized)} values, "
                           f"{sum(c.elements for c in quantized)} elements)")
        if self.ok:
            lines.append(f"bit-exact: {len(self.checks)} values, {sum(c.elements for c in self.checks)} elements")
        elif self.verdict == FLOAT_ORDER_UNSPECIFIED:
            lines.append(
                f"{exact_quantized}; {len(float_bad)} float-island values differ "
                f"({sum(c.mismatches for c in float_bad)} elements, max {max(c.max_ulp for c in float_bad)} ulp) "
                "where the float summation order of this CPU is not specified"
            )
        elif self.quantized_ok:
            kinds = ", ".join(sorted({c.kind for c in float_bad}))
            lines.append(f"{exact_quantized}; float values differ at {kinds}: NOT bit-exact")
        else:
            first = self.first_mismatch
            assert first is not None
            lines.append(
                f"MISMATCH: first at %{first.name} = {first.kind} ({first.source or 'no source'}): "
                f"{first.mismatches} of {first.elements} elements differ {first.detail}".rstrip()
            )
            if first.after_float_gemm and not first.quantized and self.float_gemm == "unspecified":
                lines.append("  a float value after a float linear/conv2d, whose summation order on this CPU is not "
                             "specified: the differences may start there")
            lines.extend(f"  input {text}" for text in self.mismatch_inputs)
            if self.repro_path:
                lines.append(f"  repro file: {self.repro_path}")
        return "\n".join(lines)


def capture_intermediates(
    converted: torch.jit.ScriptModule, inputs: Sequence[torch.Tensor], num_threads: int = 1, engine: str = ENGINE
) -> dict[str, Any]:
    """Run `converted` on `inputs` in torch under `engine` and return every tensor value of its
    top-level graph (snapshots taken right after the producing node), keyed by debug name."""
    original = list(converted.graph.nodes())
    graph = converted.graph.copy()
    nodes = list(graph.nodes())
    if len(nodes) != len(original):
        raise RuntimeError(f"graph copy has {len(nodes)} nodes, the original {len(original)}")
    none = graph.insertConstant(None)
    none.node().moveBefore(nodes[0])
    names, clones = [], []
    for source_node, node in zip(original, nodes):
        for source_value, value in zip(source_node.outputs(), node.outputs()):
            if value.type().kind() != "TensorType":
                continue
            clone = graph.create("aten::clone", [value, none])
            clone.insertAfter(node)
            clone.output().setType(value.type())
            names.append(source_value.debugName())  # the copy may rename; export uses the original's names
            clones.append(clone.output())
    captured = graph.create("prim::ListConstruct", clones)
    captured.output().setType(torch._C.ListType.ofTensors())
    captured.insertBefore(graph.return_node())
    while len(list(graph.outputs())):
        graph.eraseOutput(0)
    graph.registerOutput(captured.output())
    function = torch._C._create_function_from_graph("quantspec_capture", graph)
    with quantized_engine(engine), torch_threads(num_threads), torch.no_grad():
        values = function(converted._c, *inputs)
    return dict(zip(names, values))


def verify(
    converted: torch.jit.ScriptModule,
    inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
    model_path: Optional[Union[str, Path]] = None,
    repro_path: Optional[Union[str, Path]] = None,
    num_threads: int = 1,
    engine: str = ENGINE,
) -> VerifyReport:
    """Compare torch and the reference interpreter node by node on `inputs`, under `engine`:
    the one `converted` was converted (or loaded) under; torch runs under it and the
    reference follows this process's profile for it.

    `model_path`: where to export (a temporary file when None). `repro_path`: where to
    write the single-node repro on a mismatch (default: next to the model file, named
    `<model>.repro.qsm`, or in the temporary directory). `num_threads`: torch's thread
    count during the run, passed to the interpreter too.
    """
    inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    model = exported_model(converted, engine, model_path)
    report, trace, captured = verify_loaded(converted, model, inputs, num_threads, engine)
    if report.first_mismatch is not None:
        if repro_path:
            target = Path(repro_path)
        elif model_path:
            target = Path(model_path).with_suffix(".repro.qsm")
        else:
            target = Path(tempfile.gettempdir()) / "quantspec-mismatch.repro.qsm"
        report.repro_path = write_repro(model, report.first_mismatch.name, trace, captured, target)
    return report


def verify_loaded(
    converted: torch.jit.ScriptModule,
    model: interpreter.Model,
    inputs: Sequence[torch.Tensor],
    num_threads: int = 1,
    engine: str = ENGINE,
) -> tuple[VerifyReport, dict[str, Any], dict[str, Any]]:
    """`verify` on a model already exported and loaded (`model`), writing nothing: the report,
    the reference's trace and torch's captured values (what `write_repro` takes)."""
    captured = capture_intermediates(converted, inputs, num_threads, engine)
    trace: dict[str, Any] = {}
    interpreter.run(model, [x.detach().numpy() for x in inputs], trace=trace, num_threads=num_threads)
    return _compare(model, captured, trace), trace, captured


def _compare(model: interpreter.Model, captured: dict[str, Any], trace: dict[str, Any]) -> VerifyReport:
    report = VerifyReport(profile=f"{model.profile.name}, float_gemm {model.profile.float_gemm}",
                          float_gemm=model.profile.float_gemm)
    after_gemm: set[str] = set()  # values computed from a float linear/conv2d
    for node in model.nodes:
        if node.kind in FLOAT_GEMM_KINDS or after_gemm.intersection(node.inputs):
            after_gemm.update(node.outputs)
        for name in node.outputs:
            if name not in captured:
                continue
            if name not in trace:
                report.uncompared.append(name)
                continue
            check = _check(name, node, captured[name], trace[name], name in after_gemm)
            report.checks.append(check)
            if not check.equal and report.first_mismatch is None:
                report.first_mismatch = check
                report.mismatch_inputs = [_describe(n, trace.get(n, model.constants.get(n))) for n in node.inputs]
    return report


def _check(name: str, node: interpreter.Node, expected: torch.Tensor, actual: Any, after_float_gemm: bool) -> NodeCheck:
    comparison = compare_with_torch(actual, expected)
    elements = expected.numel()
    mismatches = elements if comparison.differs is None else int(np.count_nonzero(comparison.differs))
    max_ulp = 0
    if mismatches and comparison.differs is not None and not expected.is_quantized:
        max_ulp = max_ulp_distance(actual[comparison.differs], expected.detach().numpy()[comparison.differs])
    return NodeCheck(name=name, kind=node.kind, source=node.source, quantized=expected.is_quantized, elements=elements,
                     mismatches=mismatches, detail=f"({comparison.header})" if comparison.header else "",
                     after_float_gemm=after_float_gemm, max_ulp=max_ulp)


def max_ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance between same-position float32 elements of `a` and `b`, in units
    in the last place: how many float32 values lie between them, plus one (0 for equal
    values; +0.0 and -0.0 count as equal here; a NaN is far from everything).

    >>> max_ulp_distance(np.float32([1.0, -0.0]), np.nextafter(np.float32([1.0, 0.0]), np.float32(2)))
    1
    """
    if a.size == 0:
        return 0
    ordered = [_ordered_bits(np.asarray(x, np.float32)) for x in (a, b)]
    return int(np.max(np.abs(ordered[0] - ordered[1])))


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 bits as integers in the order of the values (negative floats count down from 0)."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _describe(name: str, value: Any) -> str:
    if isinstance(value, QTensor):
        qparams = f"axis={value.axis}" if value.per_channel else f"scale={value.scale!r} zero_point={value.zero_point}"
        return f"%{name}: {value.dtype.label} {value.shape} {qparams} {value.memory_format.value}"
    if isinstance(value, interpreter.PackedConv):
        w = value.weight
        qparams = f"per-channel axis {w.axis}" if w.per_channel else f"scale={w.scale!r} zp={w.zero_point}"
        return (f"%{name}: conv weight {w.shape} {qparams}, stride {value.stride} padding {value.padding} "
                f"dilation {value.dilation} groups {value.groups}")
    if isinstance(value, interpreter.PackedLinear):
        return f"%{name}: linear weight {value.weight.shape}"
    if isinstance(value, np.ndarray):
        return f"%{name}: float array {value.shape}"
    return f"%{name}: {value!r}"


def write_repro(
    model: interpreter.Model, name: str, trace: dict[str, Any], captured: dict[str, Any], path: Union[str, Path]
) -> Path:
    """Write a model file that replays the single node producing `name`: its inputs as
    constants, the node, and torch's value as the constant `expected:<name>`."""
    node = next(n for n in model.nodes if name in n.outputs)
    store = ArrayStore()
    constants = {}
    for input_name in node.inputs:
        value = trace[input_name] if input_name in trace else model.constants[input_name]
        constants[input_name] = encode_value(value, store)
    expected = captured[name]
    constants[f"expected:{name}"] = encode_value(
        from_torch(expected) if expected.is_quantized else expected.detach().numpy(), store
    )
    document = {
        "format_version": FORMAT_VERSION,
        "profile": asdict(model.profile),
        "torch_version": model.torch_version,
        "inputs": [],
        "outputs": list(node.outputs),
        "constants": constants,
        "nodes": [
            {"kind": node.kind, "inputs": list(node.inputs), "outputs": list(node.outputs), "source": node.source}
        ],
    }
    with atomic_output(path) as temporary:
        write_model_file(temporary, document, store)
    return Path(path)


def verify_command(
    model_path: Union[str, Path],
    inputs_path: Optional[Union[str, Path]] = None,
    random: Optional[int] = None,
    input_shape: Sequence[int] = (3, 224, 224),
    seed: int = 0,
    num_threads: int = 1,
    engine: str = ENGINE,
) -> int:
    """`quantspec verify OUT.pt [--inputs X.npy | --random N] [--engine E]`: load the model under
    `engine` (the load prepacks its weights), run torch under it and the reference in its
    profile; print one line per checked node
    kind and the verdict; return its exit status (`EXIT_STATUS`: 0 bit-exact, 1 mismatch,
    3 only float-island values differ where this CPU's float order is not specified).

    Inputs: a float32 .npy batch (`inputs_path`), or `random` N(0, 1) images of
    `input_shape` (seeded), half of them moved onto ties of the input quantization grid.
    Raises ValueError for a model without quantized nodes (a float model).
    """
    from .io import load as load_scripted
    from .quantize import quantized_kinds

    converted = load_scripted(model_path, engine)
    if not quantized_kinds(converted):
        raise ValueError(f"{model_path} has no quantized nodes: verify checks int8 models (quantspec quantize output)")
    if inputs_path is not None:
        batch = np.load(inputs_path, allow_pickle=False)
        if batch.dtype != np.float32:
            raise TypeError(f"{inputs_path}: inputs must be float32, got {batch.dtype}")
        inputs = torch.from_numpy(batch)
    else:
        inputs = _random_inputs(converted, random or 2, input_shape, seed)
    report = verify(converted, inputs, repro_path=beside_model(Path(model_path)), num_threads=num_threads,
                    engine=engine)
    print(report.format())
    return EXIT_STATUS[report.verdict]


def beside_model(model_path: Path, suffix: str = ".repro.qsm") -> Path:
    """`<model><suffix>` beside the model, or in the temporary folder when the model's folder
    is read-only (the verdict must not be lost to a file that cannot be written)."""
    repro = model_path.with_suffix(suffix)
    if os.access(repro.parent, os.W_OK | os.X_OK):
        return repro
    return Path(tempfile.gettempdir()) / repro.name


def _random_inputs(converted: torch.jit.ScriptModule, count: int, shape: Sequence[int], seed: int) -> torch.Tensor:
    """`count` seeded N(0, 1) images; the second half replaced by `tie_inputs`."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(count, *shape, generator=generator)
    half = count // 2
    batch[half:] = tie_inputs(converted, (count - half, *shape), generator)
    return batch


def input_qparams(converted: torch.jit.ScriptModule) -> tuple[float, int]:
    """Scale and zero point of the graph's first `aten::quantize_per_tensor`: the model input's."""
    for node in converted.graph.nodes():
        if node.kind() == "aten::quantize_per_tensor":
            scale, zero_point = (value.toIValue() for value in list(node.inputs())[1:3])
            if scale is not None and zero_point is not None:
                return float(scale), int(zero_point)
    raise ValueError("the model has no constant input quantize_per_tensor to place ties on")


def tie_inputs(converted: torch.jit.ScriptModule, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Inputs on exact .5 ties of the model's input quantization: `f32(x * inv)` is exactly
    `k + 0.5` with `inv = f32(1/float(scale))`, for `k + zp` spanning 0..127 (the reduce_range
    grid). Scaled values `(k + 0.5) / inv` are moved by up to 2 float32 ulps to the one whose
    product rounds onto the tie; a value none of whose neighbours does stays a near-tie."""
    scale, zero_point = input_qparams(converted)
    inv = inverse_scale_f32(scale)
    k = torch.randint(-zero_point, 128 - zero_point, tuple(shape), generator=generator).numpy()
    target = (k + 0.5).astype(np.float32)
    guess = (target.astype(np.float64) / np.float64(inv)).astype(np.float32)
    chosen = guess.copy()
    found = np.zeros(guess.shape, dtype=bool)
    for steps in (0, 1, -1, 2, -2):
        candidate = guess
        for _ in range(abs(steps)):
            candidate = np.nextafter(candidate, np.float32(np.inf if steps > 0 else -np.inf)).astype(np.float32)
        hits = ~found & (f32(candidate * inv) == target)
        chosen[hits] = candidate[hits]
        found |= hits
    return torch.from_numpy(chosen)
