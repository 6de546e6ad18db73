"""One converted model under every quantized engine torch offers here, against fbgemm.

`compare_engines(path, inputs)` loads the TorchScript file once per engine (the load
prepacks the weights: they become that engine's), captures every intermediate value
(`verify.capture_intermediates`), and compares each quantized node output's integers with
fbgemm's. Each differing element gets a cause the reference can name:

- "inherited": given fbgemm's inputs to the node, the reference computes the same integers
  under the engine's profile as under fbgemm's: the difference came in with the inputs.
- a formula step: the node's own arithmetic differs, and the reference under the engine's
  profile with that single step switched to fbgemm's gives fbgemm's integer; else the fewest
  steps switched together that do (`together`): two differences in one element.
- "unexplained": the reference does not reproduce torch's output under the engine (on the
  engine's own inputs), cannot run the node there (oneDNN's conv/linear on AVX512 CPUs are
  not specified), or no swap accounts for the element.

Swaps are done with the reference's building blocks (`reference.numerics`): for
pytorch_qnnpack's conv/linear, three steps of its u8 x u8 kernel, each alone, then each pair,
then all three; for oneDNN's (AVX2), its
accumulation and its output stage, each alone and then both (`ONEDNN_BOTH`: only the two
together account for the element); for the other ops whose engine difference is one step
(docs/spec.md, Engines), the op under fbgemm's profile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Optional, Union

import numpy as np
import torch

import quantspec.reference.interpreter as interpreter
from quantspec.reference.interpreter.kernels import KERNELS, RunContext
from quantspec.reference.numerics import (
    dot_u8i8acc32_onednn_conv_ref,
    dot_u8i8acc32_onednn_gemm_ref,
    dot_u8i8acc32_ref,
    dot_u8u8acc32_qnnpack_ref,
    requant_scales_onednn_ref,
    requant_scales_qnnpack_ref,
    requant_scales_ref,
    requantize_u8acc32_onednn_ref,
    requantize_u8acc32_qnnpack_ref,
    requantize_u8acc32_ref,
    wrap_int32,
)
from quantspec.reference.ops.conv2d import (
    conv_gemm_operands,
    conv_path,
    onednn_conv_kernel,
    onednn_tap_validity,
    qnnpack_conv_bias,
)
from quantspec.reference.profile import EngineNotSpecifiedError, NumericsProfile
from quantspec.reference.qtensor import QTensor
from quantspec.reference.quantize_kernels import quantize_bias_qnnpack

from .bridge import from_torch
from .environment import OnednnIsaError, detect_profile, offered_engines
from .export import exported_model
from .io import load
from .verify import capture_intermediates

BASELINE = "fbgemm"
INHERITED, UNEXPLAINED = "inherited", "unexplained"
# pytorch_qnnpack's conv/linear steps that differ from FBGEMM's (reference.numerics).
QNNPACK_BIAS = "int32-quantized bias"
QNNPACK_EXACT = "exact accumulation (no int16 pair saturation)"
QNNPACK_MULTIPLY = "requantization multiply"
QNNPACK_STEPS = (QNNPACK_BIAS, QNNPACK_EXACT, QNNPACK_MULTIPLY)
# oneDNN's conv/linear steps (AVX2) that differ from FBGEMM's (docs/spec.md, Engines: oneDNN, AVX2).
ONEDNN_ACCUMULATION = "oneDNN accumulation (int16 pairs within a tap or K block, exact depthwise, padding skipped)"
ONEDNN_OUTPUT_STAGE = "oneDNN output stage (float bias after the scale, zero point before rounding)"
ONEDNN_BOTH = "oneDNN accumulation and output stage together"
# Ops whose qnnpack kernel differs from ATen's in one step: the op under fbgemm's profile swaps it.
ONE_STEP_CAUSES = {
    "quantized::add": "fixed-point add, ties away from zero",
    "quantized::add_relu": "fixed-point add, ties away from zero",
    "aten::avg_pool2d": "divisor kh*kw",
    "aten::adaptive_avg_pool2d": "divisor kh*kw",
    "aten::mean": "divisor kh*kw",
    "aten::hardswish": "LUT",
    "aten::max_pool2d": "edge reads",
    "aten::hardtanh": "channels_last permutation",
    "aten::clamp": "channels_last permutation",
}
GEMM_KINDS = frozenset({"quantized::conv2d", "quantized::conv2d_relu", "quantized::linear", "quantized::linear_relu"})


@dataclass
class EngineRow:
    """One node kind under one engine, against fbgemm: `elements` compared, `differing`
    among them, the largest |difference|, and how many differing elements each cause explains."""

    kind: str
    engine: str
    elements: int = 0
    differing: int = 0
    max_abs_diff: int = 0
    causes: Counter = field(default_factory=Counter)

    @property
    def fraction(self) -> float:
        return self.differing / self.elements if self.elements else 0.0


@dataclass
class EnginesReport:
    """Rows keyed by (kind, engine), the engines compared, the images run."""

    engines: list[str]
    images: int
    rows: dict[tuple[str, str], EngineRow] = field(default_factory=dict)

    @property
    def unexplained(self) -> int:
        """Differing elements no cause accounts for."""
        return sum(row.causes[UNEXPLAINED] for row in self.rows.values())

    def format(self) -> str:
        """The table: one line per node kind and engine other than fbgemm, then the unexplained count."""
        lines = [f"{self.images} images; engines {', '.join(self.engines)}; integers compared with {BASELINE}'s",
                 f"{'node kind':28s} {'engine':8s} {'elements':>10s} {'differ':>9s} {'max|d|':>6s}  cause"]
        for (kind, engine), row in sorted(self.rows.items()):
            causes = "; ".join(f"{name} {count}" for name, count in row.causes.most_common()) or "-"
            lines.append(f"{kind:28s} {engine:8s} {row.elements:10d} {row.fraction:9.4%} {row.max_abs_diff:6d}  "
                         f"{causes}")
        lines.append(f"unexplained elements: {self.unexplained}")
        return "\n".join(lines)


def compare_engines(model_path: Union[str, Path], inputs: Union[torch.Tensor, Iterable[torch.Tensor]]) -> EnginesReport:
    """Run the converted TorchScript model at `model_path` on `inputs` (one batch, or batches
    compared one at a time so that memory stays that of one batch) under every engine
    `environment.offered_engines` names and compare each quantized node output with fbgemm's
    (see the module docstring)."""
    engines = offered_engines()
    if BASELINE not in engines:
        raise RuntimeError(f"this torch build offers no {BASELINE} engine to compare with")
    loaded = {engine: load(model_path, engine) for engine in engines}  # each load prepacks for its engine
    model = exported_model(loaded[BASELINE], BASELINE)
    report = EnginesReport(engines=engines, images=0)
    for batch in [inputs] if isinstance(inputs, torch.Tensor) else inputs:
        _compare_batch(report, model, loaded, batch)
    return report


def _compare_batch(report: EnginesReport, model: interpreter.Model, loaded: dict[str, torch.jit.ScriptModule],
                   batch: torch.Tensor) -> None:
    """Add one batch's comparisons to `report`'s rows."""
    captured = {engine: capture_intermediates(loaded[engine], [batch], engine=engine) for engine in report.engines}
    trace: dict[str, Any] = {}  # every value of the fbgemm run, also the non-tensor ones torch does not capture
    interpreter.run(model, [batch.numpy()], trace=trace)
    report.images += len(batch)
    for node in model.nodes:
        for name in node.outputs:
            baseline = captured[BASELINE].get(name)
            if baseline is None or not baseline.is_quantized:
                continue
            expected = baseline.int_repr().numpy()  # once: int_repr copies the tensor
            for engine in report.engines[1:]:
                row = report.rows.setdefault((node.kind, engine), EngineRow(node.kind, engine))
                _compare_node(row, node, name, expected, model, trace, captured[BASELINE], captured[engine])


def _compare_node(row: EngineRow, node: interpreter.Node, name: str, expected: np.ndarray, model: interpreter.Model,
                  trace: dict[str, Any], baseline: dict[str, Any], other: dict[str, Any]) -> None:
    """Add one output's comparison with fbgemm's integers `expected` (and its differing elements'
    causes) to `row`."""
    actual = other[name].int_repr().numpy()
    row.elements += expected.size
    differs = actual != expected
    if not differs.any():
        return
    row.differing += int(differs.sum())
    row.max_abs_diff = max(row.max_abs_diff, int(np.abs(actual[differs].astype(np.int64) - expected[differs]).max()))
    try:
        profile = detect_profile(row.engine)
    except OnednnIsaError:  # oneDNN runs kernels quantspec does not specify: nothing to attribute
        row.causes[UNEXPLAINED] += int(differs.sum())
        return
    args = _node_inputs(node, model, trace, baseline)
    engine_args = _node_inputs(node, model, trace, other)
    row.causes.update(attribute(node, args, engine_args, actual, differs, profile, detect_profile(BASELINE)))


def _node_inputs(node: interpreter.Node, model: interpreter.Model, trace: dict[str, Any],
                 captured: dict[str, Any]) -> list:
    """The node's inputs as one engine's torch run gave them (tensors), else the reference's."""
    values = []
    for name in node.inputs:
        tensor = captured.get(name)
        if tensor is None:
            values.append(trace[name] if name in trace else model.constants[name])
        else:
            values.append(from_torch(tensor) if tensor.is_quantized else tensor.detach().numpy())
    return values


def attribute(node: interpreter.Node, args: list, engine_args: list, engine_out: np.ndarray, differs: np.ndarray,
              engine: NumericsProfile, baseline: NumericsProfile) -> Counter:
    """How many of the `differs` elements (the engine's output integers that are not fbgemm's)
    each cause accounts for: `args` are fbgemm's inputs to `node`, `engine_args` and
    `engine_out` the engine's inputs and torch's output under it."""
    try:
        reproduced = _ints(_run_node(node, engine_args, engine))
    except EngineNotSpecifiedError:
        return Counter({UNEXPLAINED: int(differs.sum())})
    if not np.array_equal(reproduced, engine_out):  # the reference does not model torch here: name nothing
        return Counter({UNEXPLAINED: int(differs.sum())})
    on_baseline, own = _ints(_run_node(node, args, baseline)), _ints(_run_node(node, args, engine))
    pending = differs & (own != on_baseline)  # the node's own arithmetic differs there
    counts = Counter({INHERITED: int(differs.sum() - pending.sum()), UNEXPLAINED: 0})
    for cause, swapped in _swaps(node, args, engine, baseline, own, on_baseline, pending):
        fixed = pending & (swapped == on_baseline)
        counts[cause] += int(fixed.sum())
        pending &= ~fixed
        if not pending.any():  # the swaps are computed one by one: spare the step combinations
            break
    counts[UNEXPLAINED] += int(pending.sum())
    return +counts  # without the causes that account for nothing


def _run_node(node: interpreter.Node, args: list, profile: NumericsProfile) -> Any:
    """The node's value in the reference under `profile` (its interpreter kernel)."""
    return KERNELS[node.kind](args, RunContext(profile=profile))


def _ints(value: Any) -> np.ndarray:
    return value.int_repr if isinstance(value, QTensor) else np.asarray(value)


Swap = tuple[str, np.ndarray]


def together(steps: Collection[str]) -> str:
    """The cause of an element that only the `steps` switched together account for."""
    return " and ".join(steps) + " together"


def _swaps(node: interpreter.Node, args: list, engine: NumericsProfile, baseline: NumericsProfile,
           own: np.ndarray, on_baseline: np.ndarray, pending: np.ndarray) -> Iterable[Swap]:
    """(cause, the node's integers under `engine` with that one step switched to fbgemm's),
    correct at least where `pending` (elsewhere they may be `own`'s)."""
    if engine.engine not in ("qnnpack", "onednn") or not pending.any():
        return []
    if engine.engine == "onednn":  # its ATen-level ops are fbgemm's: only conv/linear differ
        return _onednn_swaps(node.kind, args, baseline, own, pending) if node.kind in GEMM_KINDS else []
    if node.kind in ONE_STEP_CAUSES and isinstance(args[0], QTensor):
        return [(ONE_STEP_CAUSES[node.kind], on_baseline)]  # the swapped step is the whole op's difference
    if node.kind in GEMM_KINDS:
        return _gemm_swaps(gemm_operands(node.kind, args, engine, baseline), own, pending)
    return []


def _gemm_swaps(operands: GemmOperands, own: np.ndarray, pending: np.ndarray) -> Iterator[Swap]:
    """`_swaps` of a conv/linear: each qnnpack step swapped, then each pair of steps, then all
    three (an element can hold two differences: a saturated pair and a bias rounding, say),
    computed one by one and only for the output rows (pixels or batch rows) holding a pending
    element, since the plain GEMM is slow."""
    to_gemm = (lambda a: a.transpose(0, 2, 3, 1)) if operands.channels_first else (lambda a: a)
    own_rows = to_gemm(own)
    rows = to_gemm(pending).any(axis=-1)
    subset = replace(operands, windows=operands.windows[rows])
    if not np.array_equal(qnnpack_gemm(subset), own_rows[rows]):  # the decomposition must be the op itself
        return
    for size in range(1, len(QNNPACK_STEPS) + 1):
        for steps in combinations(QNNPACK_STEPS, size):
            swapped = own_rows.copy()
            swapped[rows] = qnnpack_gemm(subset, steps)
            yield (steps[0] if size == 1 else together(steps),
                   swapped.transpose(0, 3, 1, 2) if operands.channels_first else swapped)


def _onednn_swaps(kind: str, args: list, baseline: NumericsProfile, own: np.ndarray, pending: np.ndarray) -> list[Swap]:
    """`_swaps` of a conv/linear under onednn (AVX2): FBGEMM's accumulator through oneDNN's output
    stage, oneDNN's accumulator through FBGEMM's, and both FBGEMM's; only for the output rows
    (pixels or batch rows) holding a pending element. Weights are symmetric (onednn refuses others)."""
    x, packed, scale, zero_point = args
    weight, relu, conv = packed.weight, kind.endswith("_relu"), kind.startswith("quantized::conv2d")
    bias = None if packed.bias is None else np.asarray(packed.bias, np.float32)
    to_rows = (lambda a: a.transpose(0, 2, 3, 1)) if conv else (lambda a: a.reshape(-1, a.shape[-1]))
    own_rows, rows = to_rows(own), to_rows(pending).any(axis=-1)
    if conv:
        acc_fbgemm, acc_onednn, fused, kernel_name = _onednn_conv_accumulators(x, packed, baseline, rows)
    else:
        a = x.int_repr.reshape(-1, weight.shape[1])[rows]
        acc_fbgemm = dot_u8i8acc32_ref(a, x.zero_point, weight.int_repr, 0, baseline.gemm_pairs_saturate)
        acc_onednn, fused, kernel_name = dot_u8i8acc32_onednn_gemm_ref(a, x.zero_point, weight.int_repr), True, "gemm"
    op = "conv2d" if conv else "linear"
    onednn_scales = requant_scales_onednn_ref(x.scale, weight.scale, scale, op, weight.per_channel, kernel_name)
    fbgemm_scales = requant_scales_ref(x.scale, weight.scale, scale)

    def onednn_stage(acc: np.ndarray) -> np.ndarray:
        return requantize_u8acc32_onednn_ref(acc, bias, onednn_scales, zero_point, relu, kernel_name)

    def fbgemm_stage(acc: np.ndarray) -> np.ndarray:
        return requantize_u8acc32_ref(acc, bias, fbgemm_scales, weight.per_channel, zero_point, relu, fused)

    if not np.array_equal(onednn_stage(acc_onednn), own_rows[rows]):  # the decomposition must be the op itself
        return []
    swaps = []
    steps = ((ONEDNN_ACCUMULATION, onednn_stage(acc_fbgemm)), (ONEDNN_OUTPUT_STAGE, fbgemm_stage(acc_onednn)),
             (ONEDNN_BOTH, fbgemm_stage(acc_fbgemm)))
    for cause, ints in steps:
        swapped = own_rows.copy()
        swapped[rows] = ints
        swaps.append((cause, swapped.transpose(0, 3, 1, 2) if conv else swapped.reshape(own.shape)))
    return swaps


def _onednn_conv_accumulators(x: QTensor, packed: Any, baseline: NumericsProfile,
                              rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """FBGEMM's and oneDNN's int32 accumulators of a conv node for the output pixels `rows`
    (N, OH, OW) bool, (pixels, OC) each; FBGEMM's per-tensor bias fma flag; oneDNN's kernel."""
    weight, groups, stride, dilation = packed.weight, packed.groups, packed.stride, packed.dilation
    kernel, padding, out_channels = tuple(weight.shape[2:]), tuple(packed.padding), weight.shape[0]
    windows, w_k, _ = conv_gemm_operands(x, weight, stride, padding, dilation, groups)
    taps, c_per_g = kernel[0] * kernel[1], x.shape[1] // groups
    inside = onednn_tap_validity(x.shape[2:], kernel, stride, padding, dilation, windows.shape[1:3])
    selected, valid = windows[rows], np.broadcast_to(inside, rows.shape + (taps,))[rows]  # (P, G, K), (P, T)
    path = conv_path(x.shape[1], out_channels, kernel, stride, padding, dilation, groups, baseline)
    kernel_name = onednn_conv_kernel(x.shape[1], out_channels, groups)
    saturate = path == "depthwise" or baseline.gemm_pairs_saturate
    acc_fbgemm = np.concatenate([dot_u8i8acc32_ref(selected[:, g], x.zero_point, w_k[g], 0, saturate)
                                 for g in range(groups)], axis=-1)
    acc_onednn = np.concatenate([
        dot_u8i8acc32_onednn_conv_ref(selected[:, g].reshape(-1, taps, c_per_g), x.zero_point,
                                      w_k[g].reshape(-1, taps, c_per_g), valid, kernel_name == "jit")
        for g in range(groups)], axis=-1)
    fused = path != "depthwise" or baseline.depthwise_per_tensor_bias_fma
    return acc_fbgemm, acc_onednn, fused, kernel_name


@dataclass(frozen=True)
class GemmOperands:
    """A quantized conv2d or linear as a GEMM: `windows` (..., G, K) uint8 rows per group,
    `weights` (G, OC/G, K) int8, their zero points, both engines' biases and scales."""

    windows: np.ndarray
    a_zero_point: int
    weights: np.ndarray
    w_zero_points: np.ndarray
    bias: Optional[np.ndarray]
    bias_q: Optional[np.ndarray]
    scales: tuple[float, Any, float]  # activation, weight, output
    output_zero_point: int
    relu: bool
    per_channel: bool
    pairs_saturate: bool  # fbgemm's pairs, on this CPU and kernel path
    channels_first: bool  # a conv: its NCHW output is the GEMM's (N, OH, OW, OC) transposed


def gemm_operands(kind: str, args: list, engine: NumericsProfile, baseline: NumericsProfile) -> GemmOperands:
    """The GEMM a quantized conv2d/linear node computes, from its interpreter inputs."""
    x, packed, scale, zero_point = args
    weight, relu = packed.weight, kind.endswith("_relu")
    out_channels = weight.shape[0]
    if kind.startswith("quantized::conv2d"):
        kernel, padding = tuple(weight.shape[2:]), tuple(packed.padding)
        windows, weights, w_zp = conv_gemm_operands(x, weight, packed.stride, padding, packed.dilation, packed.groups)
        bias_q = qnnpack_conv_bias(packed.bias, x.scale, weight, kernel, packed.stride, padding, engine)
        path = conv_path(x.shape[1], out_channels, kernel, packed.stride, padding, packed.dilation, packed.groups,
                         baseline)
        saturate = path == "depthwise" or baseline.gemm_pairs_saturate
    else:
        windows, weights = x.int_repr[..., None, :], weight.int_repr[None]
        w_zp = np.broadcast_to(np.asarray(weight.zero_point, np.int64), (1, out_channels))
        bias_q = quantize_bias_qnnpack(packed.bias, x.scale, weight.scale, engine)
        saturate = baseline.gemm_pairs_saturate
    bias = None if packed.bias is None else np.asarray(packed.bias, np.float32)
    return GemmOperands(windows, x.zero_point, weights, w_zp, bias, bias_q, (x.scale, weight.scale, scale),
                        zero_point, relu, weight.per_channel, saturate, kind.startswith("quantized::conv2d"))


def qnnpack_gemm(op: GemmOperands, swaps: Collection[str] = ()) -> np.ndarray:
    """pytorch_qnnpack's conv/linear integers (`reference.numerics`), (..., OC) in GEMM layout
    (a conv's NHWC), with the steps `swaps` (of QNNPACK_STEPS) done FBGEMM's way instead."""
    groups = op.weights.shape[0]
    bias_q = None if op.bias_q is None or QNNPACK_BIAS in swaps else op.bias_q.reshape(groups, -1)
    dot: Callable[[int], np.ndarray]
    if QNNPACK_EXACT in swaps:  # FBGEMM's u8 x s8 sum (saturating pairs), then the int32 bias
        def dot(g: int) -> np.ndarray:
            acc = dot_u8i8acc32_ref(op.windows[..., g, :], op.a_zero_point, op.weights[g], op.w_zero_points[g],
                                    op.pairs_saturate)
            return acc if bias_q is None else wrap_int32(acc.astype(np.int64) + bias_q[g])
    else:
        def dot(g: int) -> np.ndarray:
            bias_g = None if bias_q is None else bias_q[g]
            return dot_u8u8acc32_qnnpack_ref(op.windows[..., g, :], op.a_zero_point, op.weights[g],
                                             op.w_zero_points[g], bias_g)
    acc = np.concatenate([dot(g) for g in range(groups)], axis=-1)
    atws, fbgemm_mult = requant_scales_ref(*op.scales)
    requant = fbgemm_mult if QNNPACK_MULTIPLY in swaps else requant_scales_qnnpack_ref(*op.scales)
    if QNNPACK_BIAS in swaps and op.bias is not None:  # the float bias added before the multiply, as FBGEMM
        ints = requantize_u8acc32_ref(acc, op.bias, (atws, requant), op.per_channel, op.output_zero_point,
                                      op.relu, True)
    else:
        ints = requantize_u8acc32_qnnpack_ref(acc, requant, op.output_zero_point, op.relu)
    return ints


def engines_command(model_path: Union[str, Path], inputs: Union[torch.Tensor, Iterable[torch.Tensor]]) -> int:
    """`quantspec engines OUT.pt ...`: print the table for `inputs` (a batch or batches); exit status 0."""
    print(compare_engines(model_path, inputs).format())
    return 0
