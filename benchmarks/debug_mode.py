"""Measure the graph-mode PTQ tutorial's claim that `convert_jit(..., debug=True)` gives
"numerics identical to the final quantized model", on the zoo, and find its cause.

    python benchmarks/debug_mode.py [--width 0.25] [--batches 4] [--models resnet18 ...] [--no-explain]

For each zoo model: one `prepare_jit` and ONE calibration (so both conversions see the
same observers), then `convert_jit` twice from it (inplace=False), with debug=False (the
real int8 model) and debug=True. Both run on the same inputs, random N(0, 1) and
tie-heavy ((k + 0.5) / 32), a few batches of each. Printed per model: the fraction of
output elements that differ (exact float32 comparison; the real model's output is its
final dequantize), the max abs difference, top-1 (argmax) agreement, and the first
quantized intermediate that differs (node kind in the real graph, the float op feeding the
debug graph's quantize_per_tensor).

Then (unless --no-explain), per model, the cause: for every conv/linear node whose int8
input is identical in both models (so any difference arises at that node), it computes
each output element's exact real value in float64, t = (s_x * s_w[c] * acc + bias) / s_out
+ zp, and reports, at the elements that differ, the step difference, how close t is to a
.5 rounding boundary, and which model rounds t correctly (both approximate t in float32,
by different routes).
"""

from __future__ import annotations

import argparse
import difflib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.ao.quantization import convert_jit, prepare_jit

from quantspec.production.environment import detect_profile, fbgemm_engine, known_deprecations_silenced
from quantspec.production.qconfig_dict import check_qconfig_dict
from quantspec.production.quantize import to_torchscript
from quantspec.production.verify import capture_intermediates
from quantspec.production.zoo import ZOO, build, qconfig_dict
from quantspec.production.zoo.node_kinds import input_size

BATCH = 4
CALIBRATION_BATCHES = 3
# Activations the debug graph may apply between a float conv/linear and its quantize_per_tensor.
ACTIVATIONS = {"aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_"}


def convert_pair(name: str, width: float, seed: int = 0) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule]:
    """(real int8, debug) conversions of zoo model `name` from one prepare_jit and one
    calibration on CALIBRATION_BATCHES seeded random batches (single-threaded)."""
    generator = torch.Generator().manual_seed(seed + 1)
    size = input_size(name)
    data = [torch.randn(BATCH, 3, size, size, generator=generator) for _ in range(CALIBRATION_BATCHES)]
    with known_deprecations_silenced(), fbgemm_engine():
        scripted = to_torchscript(build(name, width=width, seed=seed))
        qconfigs = qconfig_dict(name)
        check_qconfig_dict(scripted, qconfigs)
        prepared = prepare_jit(scripted, qconfigs, False)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            for batch in data:
                prepared(batch)
        # inplace=False: each conversion works on its own copy of the calibrated module.
        return convert_jit(prepared, False, False), convert_jit(prepared, False, True)


def input_batches(name: str, batches: int, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """`batches` random N(0, 1) and `batches` tie-heavy ((k + 0.5) / 32) input batches."""
    generator = torch.Generator().manual_seed(seed + 100)
    shape = (BATCH, 3, input_size(name), input_size(name))
    random = [("random", torch.randn(shape, generator=generator)) for _ in range(batches)]
    ties = [("ties", (torch.randint(-64, 64, shape, generator=generator).float() + 0.5) / 32) for _ in range(batches)]
    return random + ties


@dataclass
class OutputDiff:
    """Real vs debug outputs over all test batches of one model."""

    elements: int = 0
    differing: int = 0
    max_abs: float = 0.0
    samples: int = 0
    top1_agree: int = 0

    def add(self, real: torch.Tensor, debug: torch.Tensor) -> None:
        real_np, debug_np = real.detach().numpy(), debug.detach().numpy()
        self.elements += real_np.size
        self.differing += int(np.count_nonzero(real_np != debug_np))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(real_np.astype(np.float64) - debug_np))))
        self.samples += real_np.shape[0]
        self.top1_agree += int(np.count_nonzero(real_np.argmax(1) == debug_np.argmax(1)))


def run_outputs(
    real: torch.jit.ScriptModule, debug: torch.jit.ScriptModule, inputs: Sequence[tuple[str, torch.Tensor]]
) -> OutputDiff:
    """Compare both models' outputs on every input batch (one torch thread)."""
    diff = OutputDiff()
    with fbgemm_engine(), torch.no_grad():
        for _, batch in inputs:
            diff.add(real(batch), debug(batch))
    return diff


@dataclass(frozen=True)
class QuantizedPoint:
    """One per-tensor quantized activation of a graph, in execution order."""

    name: str
    node: torch._C.Node
    value: torch.Tensor


def quantized_points(module: torch.jit.ScriptModule, captured: dict[str, Any]) -> list[QuantizedPoint]:
    """Every per-tensor quantized activation `module`'s top-level graph produces, in order
    (per-channel weights of the debug graph are left out: they are not activations)."""
    points = []
    for node in module.graph.nodes():
        for output in node.outputs():
            value = captured.get(output.debugName())
            if isinstance(value, torch.Tensor) and value.is_quantized and value.qscheme() == torch.per_tensor_affine:
                points.append(QuantizedPoint(output.debugName(), node, value))
    return points


def float_producer(node: torch._C.Node) -> torch._C.Node:
    """The float op behind a debug-graph quantize_per_tensor: its input's producer, or, when
    that is a ReLU/ReLU6 applied to a float result (conv then relu_), the op before it."""
    producer = node.inputsAt(0).node()
    if producer.kind() in ACTIVATIONS:
        inner = producer.inputsAt(0).node()
        if inner.kind() not in ("prim::Param", "aten::dequantize"):
            return inner
    return producer


def debug_operation(node: torch._C.Node) -> str:
    """What a debug-graph activation computes: the float op behind a quantize_per_tensor, or
    for a prim::If (the debug graph is not frozen, so `if self.use_res_connect:` stays; its
    block's values are not captured) the float ops inside its blocks."""
    if node.kind() == "aten::quantize_per_tensor":
        return float_producer(node).kind()
    if node.kind() == "prim::If":
        float_ops = ("aten::conv2d", "aten::linear", "aten::add", "aten::cat", "aten::mul")
        inner = sorted({n.kind() for block in node.blocks() for n in block.nodes() if n.kind() in float_ops})
        return f"prim::If[{', '.join(inner)}]"
    return node.kind()


@dataclass
class NodeDiff:
    """A pair of aligned quantized activations that differ."""

    index: int
    real: QuantizedPoint
    debug: QuantizedPoint
    differing: int
    max_steps: int

    def describe(self) -> str:
        debug_op = debug_operation(self.debug.node)
        return (
            f"#{self.index} real {self.real.node.kind()} / debug {debug_op}: "
            f"{self.differing} of {self.real.value.numel()} differ, max {self.max_steps} step(s)"
        )


def _key(point: QuantizedPoint) -> tuple[Any, ...]:
    return tuple(point.value.shape), point.value.q_scale(), point.value.q_zero_point()


def align(real: list[QuantizedPoint], debug: list[QuantizedPoint]) -> list[tuple[QuantizedPoint, QuantizedPoint]]:
    """Pairs of the real and debug graphs' activations that are the same value: the longest
    common subsequence by (shape, scale, zero point). The debug graph has extra ones
    (a quantized op it spells as dequantize, float op, quantize with the input's qparams)."""
    matcher = difflib.SequenceMatcher(None, [_key(p) for p in real], [_key(p) for p in debug], autojunk=False)
    return [
        (real[block.a + i], debug[block.b + i]) for block in matcher.get_matching_blocks() for i in range(block.size)
    ]


@dataclass
class Comparison:
    """Both graphs' quantized activations on one batch: the aligned pairs, the differing
    ones in execution order, and the debug graph's capture."""

    pairs: list[tuple[QuantizedPoint, QuantizedPoint]]
    diffs: list[NodeDiff]
    debug_captured: dict[str, Any]


def compare_activations(real: torch.jit.ScriptModule, debug: torch.jit.ScriptModule, batch: torch.Tensor) -> Comparison:
    """Capture both graphs on `batch` (one thread) and compare their aligned activations."""
    real_points = quantized_points(real, capture_intermediates(real, [batch]))
    debug_captured = capture_intermediates(debug, [batch])
    pairs = align(real_points, quantized_points(debug, debug_captured))
    diffs = []
    for index, (r, d) in enumerate(pairs):
        steps = r.value.int_repr().int() - d.value.int_repr().int()
        if steps.any():
            diffs.append(NodeDiff(index, r, d, int(steps.count_nonzero()), int(steps.abs().max())))
    return Comparison(pairs, diffs, debug_captured)


def resolve_attribute(module: torch.jit.ScriptModule, value: torch._C.Value) -> Any:
    """The object a chain of prim::GetAttr nodes from the graph's `self` input names."""
    node = value.node()
    if node.kind() == "prim::Param":
        return module._c
    if node.kind() != "prim::GetAttr":
        raise ValueError(f"%{value.debugName()} comes from {node.kind()}, not a prim::GetAttr chain")
    return resolve_attribute(module, node.inputsAt(0)).getattr(node.s("name"))


def _conv_geometry(conv: torch._C.Node) -> tuple[list[int], list[int], list[int], int]:
    """stride, padding, dilation, groups of a debug-graph aten::conv2d (graph constants)."""
    stride, padding, dilation, groups = (conv.inputsAt(i).toIValue() for i in range(3, 7))
    return list(stride), list(padding), list(dilation), int(groups)


def exact_requantization_input(
    debug: torch.jit.ScriptModule, captured: dict[str, Any], op: torch._C.Node
) -> np.ndarray:
    """float64 s_x * s_w[c] * acc + bias of a debug-graph aten::conv2d / aten::linear, from
    the int8 activation and weights the debug graph dequantizes: acc = sum (x - x_zp)(w - w_zp)
    is an exact integer in float64 (|acc| < 2^53), s_x * (x - x_zp) is exact in float64."""
    x_q = captured[op.inputsAt(0).node().inputsAt(0).debugName()]
    w_q = captured[op.inputsAt(1).node().inputsAt(0).debugName()]
    bias = resolve_attribute(debug, op.inputsAt(2))
    x = (x_q.int_repr().double() - x_q.q_zero_point()) * x_q.q_scale()
    w_ints = w_q.int_repr().double() - w_q.q_per_channel_zero_points().double().view(-1, *[1] * (w_q.dim() - 1))
    if op.kind() == "aten::linear":
        acc_scaled = torch.nn.functional.linear(x, w_ints)
        channel_shape: tuple[int, ...] = (1, -1)
    else:
        acc_scaled = torch.nn.functional.conv2d(x, w_ints, None, *_conv_geometry(op))
        channel_shape = (1, -1, 1, 1)
    value = acc_scaled * w_q.q_per_channel_scales().double().view(channel_shape)
    if bias is not None:
        value = value + bias.detach().double().view(channel_shape)
    return value.numpy()


def clean_conv_pairs(comparison: Comparison) -> list[tuple[QuantizedPoint, QuantizedPoint, torch._C.Node]]:
    """(real, debug, debug float op) for every top-level conv/linear whose int8 input is the
    same in both models (so any output difference arises at this node)."""
    by_debug_name = {d.name: r for r, d in comparison.pairs}
    result = []
    for r, d in comparison.pairs:
        if d.node.kind() != "aten::quantize_per_tensor":
            continue
        op = float_producer(d.node)
        if op.kind() not in ("aten::conv2d", "aten::linear"):
            continue
        if any(op.inputsAt(i).node().kind() != "aten::dequantize" for i in (0, 1)):
            continue  # a float island's conv (qconfig None) takes float values
        source = by_debug_name.get(op.inputsAt(0).node().inputsAt(0).debugName())
        x_debug = comparison.debug_captured[op.inputsAt(0).node().inputsAt(0).debugName()]
        if source is not None and torch.equal(source.value.int_repr(), x_debug.int_repr()):
            result.append((r, d, op))
    return result


@dataclass
class BoundaryEvidence:
    """Conv/linear outputs of the two models computed from identical int8 inputs, against
    the exact real value t = (s_x * s_w[c] * acc + bias) / s_out + zp (float64)."""

    nodes: int = 0
    elements: int = 0
    differing: int = 0
    steps: set[int] = field(default_factory=set)
    distances: list[float] = field(default_factory=list)  # |frac(t) - 0.5| at differing elements
    real_nearest: int = 0  # differing elements where the int8 model gives round(t)
    debug_nearest: int = 0  # ... where the debug model does
    equal_within: int = 0  # equal, unclamped elements with t at least as close to .5 as some differing one

    def add(
        self,
        debug: torch.jit.ScriptModule,
        captured: dict[str, Any],
        real: QuantizedPoint,
        dbg: QuantizedPoint,
        op: torch._C.Node,
    ) -> None:
        out = real.value
        t = exact_requantization_input(debug, captured, op) / out.q_scale() + out.q_zero_point()
        real_ints = out.int_repr().numpy().astype(np.int64)
        debug_ints = dbg.value.int_repr().numpy().astype(np.int64)
        differ = real_ints != debug_ints
        distance = np.abs(t - np.floor(t) - 0.5)
        self.nodes += 1
        self.elements += out.numel()
        self.differing += int(differ.sum())
        if not differ.any():
            return
        nearest = np.floor(t[differ] + 0.5)
        self.steps.update((real_ints - debug_ints)[differ].tolist())
        self.distances.extend(distance[differ].tolist())
        self.real_nearest += int(np.count_nonzero(real_ints[differ] == nearest))
        self.debug_nearest += int(np.count_nonzero(debug_ints[differ] == nearest))
        low = out.q_zero_point() if real.node.kind().endswith("_relu") else 0
        unclamped = (t > low + 0.5) & (t < 254.5)  # where neither clamp nor relu decides
        self.equal_within += int(np.count_nonzero(~differ & unclamped & (distance <= distance[differ].max())))

    def format(self) -> str:
        if not self.differing:
            return f"{self.nodes} conv/linear nodes with identical inputs, {self.elements} elements: none differ"
        d = np.array(self.distances)
        return (
            f"{self.nodes} conv/linear nodes with identical int8 inputs, {self.elements} output elements: "
            f"{self.differing} differ, by {sorted(self.steps)} step(s); exact t at them is within "
            f"{d.max():.2g} of a .5 boundary (median {np.median(d):.2g}, in output steps); "
            f"round(t) is the int8 model's value at {self.real_nearest}, the debug model's at {self.debug_nearest}; "
            f"equal unclamped elements with t that close to .5 (per node): {self.equal_within}"
        )


def measure(name: str, width: float, batches: int) -> tuple[OutputDiff, NodeDiff | None, int]:
    """Output comparison of zoo model `name`, the first differing quantized activation on
    the first batch where one differs, and the number of aligned activations."""
    real, debug = convert_pair(name, width)
    inputs = input_batches(name, batches)
    outputs = run_outputs(real, debug, inputs)
    for _, batch in inputs:
        comparison = compare_activations(real, debug, batch)
        if comparison.diffs:
            return outputs, comparison.diffs[0], len(comparison.pairs)
    return outputs, None, len(comparison.pairs)


def explain(name: str, width: float, batches: int, total: BoundaryEvidence) -> str:
    """The first differing activation of `name` on each batch, and the boundary evidence of
    every conv/linear node whose inputs are identical in both models, over all batches
    (also added to `total`)."""
    real, debug = convert_pair(name, width)
    evidence = BoundaryEvidence()
    firsts = []
    for kind, batch in input_batches(name, batches):
        comparison = compare_activations(real, debug, batch)
        if comparison.diffs:
            firsts.append(f"{kind}: {comparison.diffs[0].describe()}")
        for r, d, op in clean_conv_pairs(comparison):
            evidence.add(debug, comparison.debug_captured, r, d, op)
            total.add(debug, comparison.debug_captured, r, d, op)
    return "\n".join([f"{name}: {evidence.format()}"] + [f"  first differing on a {line}" for line in firsts])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batches", type=int, default=4, help="batches of each input kind (random, tie-heavy)")
    parser.add_argument("--models", nargs="*", default=list(ZOO))
    parser.add_argument("--no-explain", action="store_true", help="skip the node-level boundary analysis")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"profile {detect_profile().name}, torch {torch.__version__}, width {args.width}, "
          f"{args.batches} random + {args.batches} tie-heavy batches of {BATCH}\n")
    print("| model | output elements differing | max abs diff | top-1 agreement | first differing activation |")
    print("|---|---:|---:|---:|---|")
    for name in args.models:
        start = time.perf_counter()
        outputs, first, count = measure(name, args.width, args.batches)
        where = f"{first.describe()} of {count}" if first else f"none of {count}"
        print(f"| {name} | {outputs.differing}/{outputs.elements} "
              f"({100 * outputs.differing / outputs.elements:.1f}%) | {outputs.max_abs:.4g} | "
              f"{outputs.top1_agree}/{outputs.samples} | {where} |  "
              f"<!-- {time.perf_counter() - start:.0f} s -->",
              flush=True)
    if not args.no_explain:
        print("\nConv/linear nodes whose int8 input is identical in both models:")
        total = BoundaryEvidence()
        for name in args.models:
            print(explain(name, args.width, args.batches, total), flush=True)
        print(f"all models: {total.format()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
