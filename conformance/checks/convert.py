"""The converter's decisions on whole models: BatchNorm folding, int8 weights, activation qparams.

Cases are the calibration check's (a zoo model at small width or a random CNN of
`conformance.models`, 1-3 calibration batches). torch: `production.quantize_jit` under the
engine E the oracle runs under (`--engine`), with the model's qconfig_dict on E's preset
(`qconfig_dict.with_engine_preset`: get_default_qconfig(E) where the model quantizes),
calibrated on one torch thread, read back through `production.export` under E; plus the folded
float weights its weight observers saw (`calibration.ordered_recordings`: a second prepare_jit
at one thread, same float tensors). Reference: from the float model's parameters alone,
`reference.fold_conv_bn` for every conv that torch's fold pass pairs with a BatchNorm, the
preset of the profile's engine: its weight observer and `reference.ops.quantize_per_channel`
(per-channel presets: fbgemm, x86, onednn) or `quantize_per_tensor` (qnnpack's per-tensor
symmetric weights) on the folded weight, and its activation observers fed the recorded
activations.

Compared, in graph order: per quantized conv/linear, the folded float32 weight (bits),
the float bias (bits), the int8 weight and its per-channel scales and zero points; then
every requantizing node's output scale and zero point (`aten::quantize_per_tensor` and the
quantized ops that take an output scale and zero point). Weight observers map to packed
weights and activation observers to requantizing nodes by order (convert_jit keeps the
prepared graph's order); different counts are an error saying so, and a reordering shows
as value mismatches from the first node out of place.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any, Optional

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings

from quantspec import reference
from quantspec.production import quantize_jit, zoo
from quantspec.production.environment import (
    detect_engine,
    detect_profile,
    known_deprecations_silenced,
    quantized_engine,
    torch_threads,
)
from quantspec.production.export import exported_model
from quantspec.production.qconfig_dict import with_engine_preset
from quantspec.reference.fold import fold_conv_bn
from quantspec.reference.interpreter import PackedConv, PackedLinear
from quantspec.reference.interpreter.model import walk
from quantspec.reference.ops import quantize_per_channel, quantize_per_tensor
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qconfig import get_default_qconfig

from .. import models
from ..runner import compare_outputs
from . import OpCheck, register
from .calibration import (
    CalibrationCase,
    Recording,
    attribute_path,
    calibration_cases,
    label,
    ordered_recordings,
    submodule,
)
from .observers import observer_notices_silenced

# Where a requantizing node's output (scale, zero point) sit among its inputs.
QPARAM_ARGUMENTS = {"aten::quantize_per_tensor": (1, 2)} | {
    f"quantized::{op}": (-2, -1)
    for op in (
        "conv2d", "conv2d_relu", "linear", "linear_relu", "add", "add_relu", "mul", "mul_relu", "cat", "hardswish"
    )
}
# Quantized kinds that keep their input's qparams or only unpack a weight.
NOT_REQUANTIZING = {"quantized::linear_unpack", "quantized::conv2d_unpack"}


# --- reference side ------------------------------------------------------------------


def conv_bn_pairs(module: torch.jit.ScriptModule, prefix: str = "") -> dict[str, torch.jit.ScriptModule]:
    """conv module path -> the BatchNorm2d that torch's fold pass folds into it: a BN's
    forward called on a conv's forward output that nothing else uses (fold_conv_bn.cpp's
    pattern), in each module's graph."""
    pairs = {}
    for node in module.graph.nodes():
        if not _calls_forward_of(module, node, "BatchNorm2d"):
            continue
        producer = node.inputsAt(1).node()
        if _calls_forward_of(module, producer, "Conv2d") and len(producer.output().uses()) == 1:
            bn_path = attribute_path(node.inputsAt(0))
            pairs[prefix + attribute_path(producer.inputsAt(0))] = submodule(module, bn_path)
    for name, child in module.named_children():
        pairs.update(conv_bn_pairs(child, f"{prefix}{name}."))
    return pairs


def _calls_forward_of(module: torch.jit.ScriptModule, node: Any, original_name: str) -> bool:
    if node.kind() != "prim::CallMethod" or node.s("name") != "forward":
        return False
    return submodule(module, attribute_path(node.inputsAt(0))).original_name == original_name


def _folded(owner: Any, bn: Optional[Any]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The float (weight, bias) convert_jit quantizes: folded with `bn` when paired."""
    weight = owner.weight.detach().numpy()
    bias = None if owner.bias is None else owner.bias.detach().numpy()
    if bn is None:
        return weight, bias
    return fold_conv_bn(
        weight,
        bias,
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        None if bn.weight is None else bn.weight.detach().numpy(),
        None if bn.bias is None else bn.bias.detach().numpy(),
        eps=float(bn.eps),
    )


def reference_decisions(case: CalibrationCase, profile: NumericsProfile) -> np.ndarray:
    """The reference's folded weights, int8 weights and activation qparams, in graph order."""
    scripted = torch.jit.script(case.float_model())
    pairs = conv_bn_pairs(scripted)
    preset = get_default_qconfig(profile.engine)
    weights, activations = [], []
    with observer_notices_silenced():
        for recording in ordered_recordings(case):
            if recording.is_weight:
                owner_path = recording.path.rsplit(".", 1)[0]
                weight, bias = _folded(submodule(scripted, owner_path), pairs.get(owner_path))
                observer = preset.weight.create()
                observer.observe(weight)
                weights.append(_weight_values(weight, bias, _quantized_weight(weight, observer, profile)))
            else:
                observer = preset.activation.create()
                for tensor in recording.tensors:
                    observer.observe(tensor)
                activations.append(observer.calculate_qparams())
    return _flat(weights, activations)


def _quantized_weight(weight: np.ndarray, observer: Any, profile: NumericsProfile) -> Any:
    """The folded weight as convert_jit quantizes it with its observer's qparams: per channel
    (axis 0) for a per-channel observer, else per tensor (qnnpack's preset)."""
    scales, zero_points = observer.calculate_qparams()
    if "PerChannel" in type(observer).__name__:
        return quantize_per_channel(weight, scales, zero_points, 0, "qint8", profile)
    return quantize_per_tensor(weight, float(scales[0]), int(zero_points[0]), "qint8", profile)


# --- torch side ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def converted_file(case: CalibrationCase, engine: str) -> reference.interpreter.Model:
    """`production.quantize_jit` of the case under `engine` with its preset (calibrated on one
    torch thread), exported and read back."""
    def calibrate(model: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> None:
        for batch in batches:
            model(batch)

    qconfigs = with_engine_preset(case.qconfig_dict(), engine)
    with torch_threads(1), observer_notices_silenced():
        converted = quantize_jit(case.float_model(), qconfigs, calibrate, [case.inputs()], engine=engine)
    with quantized_engine(engine), known_deprecations_silenced():
        return exported_model(converted, engine)


def torch_decisions(case: CalibrationCase) -> np.ndarray:
    """torch's folded weights (as its weight observers saw them), then the converted
    model's int8 weights, biases and activation qparams, in graph order, under the engine the
    runner's oracle() pinned."""
    model = converted_file(case, detect_engine())
    recordings = ordered_recordings(case)
    folded = iter(r.tensors[0] for r in recordings if r.is_weight)
    weights, activations = [], []
    seen_packed: set[str] = set()
    for node in walk(model.nodes):
        arguments = [model.constants.get(name) for name in node.inputs]
        for name, argument in zip(node.inputs, arguments):
            if isinstance(argument, (PackedConv, PackedLinear)) and name not in seen_packed:
                seen_packed.add(name)
                weights.append(_weight_values(next(folded, np.empty(0, np.float32)), argument.bias, argument.weight))
        if node.kind in QPARAM_ARGUMENTS:
            scale_at, zero_point_at = QPARAM_ARGUMENTS[node.kind]
            activations.append((arguments[scale_at], arguments[zero_point_at]))
        elif node.kind.startswith("quantized::") and node.kind not in NOT_REQUANTIZING:
            raise NotImplementedError(f"the convert check does not know where {node.kind} keeps its output qparams")
    _check_counts(len(weights), len(activations), recordings)
    return _flat(weights, activations)


def _check_counts(weights: int, activations: int, recordings: tuple[Recording, ...]) -> None:
    """Recordings map to converted nodes by graph order: the counts must agree, or the
    mapping (not the arithmetic) is what differs."""
    weight_observers = sum(recording.is_weight for recording in recordings)
    activation_observers = len(recordings) - weight_observers
    if (weights, activations) != (weight_observers, activation_observers):
        raise ValueError(
            f"the converted model has {weights} packed weights and {activations} requantizing nodes, but "
            f"calibration recorded {weight_observers} weight and {activation_observers} activation observers: "
            "the convert check maps them by graph order, so convert_jit added, dropped or merged nodes"
        )


# --- both ----------------------------------------------------------------------------


def _weight_values(weight: np.ndarray, bias: Optional[np.ndarray], quantized: Any) -> list[np.ndarray]:
    """A conv/linear's compared values: folded float32 weight bits, bias bits (none when
    absent), int8 weight, per-channel scales and zero points, axis."""
    return [
        np.asarray(weight, np.float32).view(np.uint32).ravel(),
        np.empty(0) if bias is None else np.asarray(bias, np.float32).view(np.uint32).ravel(),
        quantized.int_repr.ravel(),
        np.asarray(quantized.scale, np.float64).ravel(),
        np.asarray(quantized.zero_point).ravel(),
        np.array([-1 if quantized.axis is None else quantized.axis]),  # -1: per tensor
    ]


def _flat(weights: list[list[np.ndarray]], activations: list[tuple[Any, Any]]) -> np.ndarray:
    """One float64 vector (every compared value is exact in float64: uint32 bit patterns,
    int8 values, float32 scales, zero points)."""
    parts = [np.asarray(part, np.float64) for values in weights for part in values]
    for scale, zero_point in activations:  # torch's are Python floats/ints, the reference's float32/int arrays
        parts += [np.asarray(scale, np.float64).ravel(), np.asarray(zero_point, np.float64).ravel()]
    return np.concatenate(parts) if parts else np.empty(0)


CHECK = register(
    OpCheck(
        name="convert",
        op="torch.ao.quantization.convert_jit (fold, weight quantization, activation qparams)",
        cases=calibration_cases(),
        reference=reference_decisions,
        torch=torch_decisions,
        label=label,
        examples=(CalibrationCase("cifar_resnet20", 0.25, 0, 2, 0), CalibrationCase("island_net", 0.25, 0, 1, 0)),
        budget={"smoke": 0.05, "default": 0.02, "thorough": 0.05},  # whole models: seconds each
    )
)


# --- long runs outside the runner ----------------------------------------------------


def _agrees(case: CalibrationCase, engine: str) -> bool:
    profile = detect_profile(engine)
    expected = reference_decisions(case, profile)
    with quantized_engine(engine):
        actual = torch_decisions(case)
    difference = compare_outputs(expected, actual, case)
    if difference is not None:
        print(f"  MISMATCH {case!r}: {difference.summary}", flush=True)
    return difference is None


def zoo_sweep(width: float, seed: int, engine: str = "fbgemm") -> tuple[int, int]:
    """Every zoo model at `width`, converted under `engine`: (agreeing, total)."""
    agree = 0
    for name in sorted(zoo.ZOO):
        start = time.perf_counter()
        ok = _agrees(CalibrationCase(name, width, seed, 2, seed), engine)
        agree += ok
        print(f"  {name}: {'ok' if ok else 'MISMATCH'} ({time.perf_counter() - start:.0f} s)", flush=True)
    return agree, len(zoo.ZOO)


def random_sweep(cases: int, progress: int = 0, engine: str = "fbgemm") -> tuple[int, int]:
    """`cases` Hypothesis-drawn random CNNs (`conformance.models`) under `engine`: (agreeing, total)."""
    counts = {"agree": 0, "total": 0}

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(calibration_cases(models.model_specs()))
    def run(case: CalibrationCase) -> None:
        counts["total"] += 1
        counts["agree"] += _agrees(case, engine)
        if progress and counts["total"] % progress == 0:
            print(f"  random models: {counts['agree']} of {counts['total']} agree so far", flush=True)

    run()
    return counts["agree"], counts["total"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Check convert_jit's decisions on the zoo and/or random models.")
    parser.add_argument("--zoo", action="store_true", help="every zoo model at --width")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random", type=int, default=0, metavar="N", help="N random models")
    parser.add_argument("--progress", type=int, default=0, help="print the counts every N random models")
    parser.add_argument("--engine", default="fbgemm", help="quantized engine to convert under (its preset)")
    args = parser.parse_args()
    failed = False
    if args.zoo:
        agree, total = zoo_sweep(args.width, args.seed, args.engine)
        print(f"zoo: {agree} of {total} models agree, torch {torch.__version__}, engine {args.engine}")
        failed |= agree != total
    if args.random:
        start = time.perf_counter()
        agree, total = random_sweep(args.random, args.progress, args.engine)
        print(
            f"random models: {agree} of {total} agree ({time.perf_counter() - start:.0f} s), "
            f"torch {torch.__version__}, engine {args.engine}"
        )
        failed |= agree != total
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
