"""Reference op speed against torch's fbgemm kernels, one thread each, measured in one run.

    OPENBLAS_NUM_THREADS=1 python benchmarks/ops.py [--repeat N] [--rounds R] [--only NAME ...] [--zoo MODEL ...]

Each benchmark case builds its inputs once, then times the reference op and the torch op
(fbgemm engine, `torch.set_num_threads(1)`; NumPy's BLAS is pinned to one thread below,
before NumPy loads) as the best of `--repeat` runs, alternating the two `--rounds` times
and keeping each one's best, and checks that both give the same integers. Every op runs its
fast kernel (`reference.fast`), linear with its weight prepared once, as torch's is
prepacked once, and conv2d as the interpreter runs it: `fast.plan_conv2d` once (the
prepared weight, every argument check and path decision), then `fast.run_conv_plan` per
call, which checks only the input (torch's op, too, checks its input on every call). The
conv cases are every distinct conv of the `--zoo` models (default ResNet-18 and MobileNetV2:
`zoo_conv_cases`), with the model's own weights and the activations a random image gives them.
To add an op, append `BenchCase`s to `CASES` (a `make` function returning the two callables).
"""

from __future__ import annotations

import os

# One BLAS thread, like torch.set_num_threads(1): must be set before NumPy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import functools
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from zoo_models import convert

from quantspec.production.bridge import from_torch, to_torch
from quantspec.production.environment import describe_cpu, detect_profile, fbgemm_engine
from quantspec.reference import fast
from quantspec.reference.ops import conv_path
from quantspec.reference.qtensor import (
    MemoryFormat,
    QTensor,
    in_memory_format,
)

Pair = tuple[Callable[[], QTensor], Callable[[], torch.Tensor]]


@dataclass(frozen=True)
class BenchCase:
    """One timed comparison: `make(rng)` returns (reference call, torch call)."""

    name: str
    make: Callable[[np.random.Generator], Pair]


def _activation(rng: np.random.Generator, shape: tuple[int, ...]) -> QTensor:
    """Post-ReLU-like quint8 activations (reduce_range: 0..127), zero point 0."""
    return QTensor(rng.integers(0, 128, shape).astype(np.uint8), 0.05, 0, "quint8")


def _weight(rng: np.random.Generator, shape: tuple[int, ...]) -> QTensor:
    """Per-channel symmetric qint8 weights, as the fbgemm default qconfig makes them."""
    scales = rng.uniform(0.002, 0.02, shape[0])
    return QTensor(
        rng.integers(-128, 128, shape).astype(np.int8), scales, np.zeros(shape[0], np.int64), "qint8", axis=0
    )


def zoo_conv_cases(model_name: str) -> list[BenchCase]:
    """One case per distinct conv of zoo model `model_name` (input shape, weight shape,
    stride, padding, groups), converted as benchmarks/interpreter.py does: the model's own
    packed weight, bias and output qparams, and the activation the conv receives from a
    random 224x224 image (reduce_range activations, 0..127, as fbgemm's qconfig makes them)."""
    import tempfile
    from pathlib import Path

    import quantspec.reference.interpreter as interpreter
    from quantspec.production.export import export

    with tempfile.TemporaryDirectory() as scratch:
        model = interpreter.load(export(convert(model_name), Path(scratch) / "model.qsm"))
    values: dict[str, object] = {}
    image = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    interpreter.run(model, image, trace=lambda node, name, value: values.__setitem__(name, value))
    cases, seen = [], set()
    for node in model.nodes:
        if not node.kind.startswith("quantized::conv2d"):
            continue
        x, packed, out = values[node.inputs[0]], model.constants[node.inputs[1]], values[node.outputs[0]]
        geometry = (tuple(packed.stride), tuple(packed.padding), tuple(packed.dilation), packed.groups)
        relu = node.kind == "quantized::conv2d_relu"
        key = (x.shape, packed.weight.shape, geometry, relu)
        if key in seen:
            continue
        seen.add(key)
        path = conv_path(x.shape[1], packed.weight.shape[0], packed.weight.shape[2:], *geometry, PROFILE)
        name = f"{model_name} conv2d [{path}] {'x'.join(map(str, x.shape))} {packed.weight.shape[2]}x" \
               f"{packed.weight.shape[3]}/{geometry[0][0]} ->{packed.weight.shape[0]}"
        cases.append(BenchCase(name, functools.partial(_conv_pair, x, packed, geometry, out, relu)))
    return cases


def _conv_pair(x: QTensor, packed: Any, geometry: tuple, out: QTensor, relu: bool, rng: np.random.Generator) -> Pair:
    """The reference and torch calls of one zoo conv, its plan formed / weight prepacked once."""
    with fbgemm_engine():
        bias = None if packed.bias is None else torch.from_numpy(packed.bias)
        packed_torch = torch.ops.quantized.conv2d_prepack(to_torch(packed.weight), bias, *map(list, geometry[:3]),
                                                          geometry[3])
    tx = to_torch(x)
    op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
    prepared = fast.prepare_conv_weight(packed.weight, geometry[3], geometry[0], geometry[2])

    plan = fast.plan_conv2d(x, packed.weight, packed.bias, *geometry, out.scale, out.zero_point, relu, PROFILE,
                            prepared)

    def run_reference() -> QTensor:
        return fast.run_conv_plan(x, plan)

    return run_reference, (lambda: op(tx, packed_torch, out.scale, out.zero_point))


def linear_case(name: str, batch: int, k: int, n: int) -> BenchCase:
    """A linear (+bias) benchmark."""

    def make(rng: np.random.Generator) -> Pair:
        x = _activation(rng, (batch, k))
        w = _weight(rng, (n, k))
        bias = rng.normal(0, 1, n).astype(np.float32)
        with fbgemm_engine():
            packed = torch.ops.quantized.linear_prepack(to_torch(w), torch.from_numpy(bias))
        tx = to_torch(x)
        prepared = fast.prepare_linear_weight(w)  # once, as torch's prepack

        def run_reference() -> QTensor:
            return fast.linear(x, w, bias, 0.1, 64, profile=PROFILE, prepared=prepared)

        return run_reference, (lambda: torch.ops.quantized.linear(tx, packed, 0.1, 64))

    return BenchCase(f"linear {name}", make)


def _in_memory(rng: np.random.Generator, shape: tuple[int, ...], memory_format: MemoryFormat) -> np.ndarray:
    """Activation integers (0..127) laid out in `memory_format`, as the producing kernel writes them."""
    return in_memory_format(rng.integers(0, 128, shape).astype(np.uint8), memory_format)


def add_case(name: str, shape: tuple[int, ...], channels_last: bool = False) -> BenchCase:
    """quantized::add of two activations (the ResNet / MobileNetV2 shortcut) by the fast kernel, one thread."""

    def make(rng: np.random.Generator) -> Pair:
        fmt = MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous
        a = QTensor(_in_memory(rng, shape, fmt), 0.05, 3, "quint8", memory_format=fmt)
        b = QTensor(_in_memory(rng, shape, fmt), 0.04, 1, "quint8", memory_format=fmt)
        ta, tb = to_torch(a), to_torch(b)
        return (lambda: fast.add(a, b, 0.1, 5, profile=PROFILE)), (lambda: torch.ops.quantized.add(ta, tb, 0.1, 5))

    return BenchCase(f"add {name}{' NHWC' if channels_last else ''}", make)


def pool_case(name: str, shape: tuple[int, ...], channels_last: bool, op: str) -> BenchCase:
    """A pooling or cat benchmark on one activation (ResNet/MobileNet shapes), by the fast kernel."""
    calls = {
        "max_pool2d": (lambda x: fast.max_pool2d(x, 3, 2, 1), lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1)),
        "avg_pool2d": (
            lambda x: fast.avg_pool2d(x, 2, profile=PROFILE),
            lambda t: torch.nn.functional.avg_pool2d(t, 2),
        ),
        "adaptive_avg_pool2d": (
            lambda x: fast.adaptive_avg_pool2d(x, 1, PROFILE),
            lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 1),
        ),
        "cat": (lambda x: fast.cat([x, x], 1, 0.1, 5, PROFILE), lambda t: torch.ops.quantized.cat([t, t], 1, 0.1, 5)),
    }
    reference_call, torch_call = calls[op]

    def make(rng: np.random.Generator) -> Pair:
        fmt = MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous
        x = QTensor(_in_memory(rng, shape, fmt), 0.05, 3, "quint8", memory_format=fmt)
        t = to_torch(x)
        return (lambda: reference_call(x)), (lambda: torch_call(t))

    return BenchCase(f"{op} {name}{' NHWC' if channels_last else ''}", make)


PROFILE = detect_profile()

CASES: list[BenchCase] = [
    linear_case("1x512 -> 1000", 1, 512, 1000),
    add_case("1x64x56x56", (1, 64, 56, 56)),
    add_case("1x64x56x56", (1, 64, 56, 56), channels_last=True),
    add_case("1x128x28x28", (1, 128, 28, 28), channels_last=True),
    add_case("1x256x14x14", (1, 256, 14, 14), channels_last=True),
    add_case("1x512x7x7", (1, 512, 7, 7), channels_last=True),
    add_case("1x24x56x56 (MobileNetV2)", (1, 24, 56, 56), channels_last=True),
    add_case("1x32x28x28 (MobileNetV2)", (1, 32, 28, 28), channels_last=True),
    add_case("1x64x14x14 (MobileNetV2)", (1, 64, 14, 14), channels_last=True),
    add_case("1x96x14x14 (MobileNetV2)", (1, 96, 14, 14), channels_last=True),
    add_case("1x160x7x7 (MobileNetV2)", (1, 160, 7, 7), channels_last=True),
    pool_case("1x64x112x112 3x3/2 pad 1", (1, 64, 112, 112), False, "max_pool2d"),
    pool_case("1x64x112x112 3x3/2 pad 1", (1, 64, 112, 112), True, "max_pool2d"),
    pool_case("1x64x56x56 2x2", (1, 64, 56, 56), False, "avg_pool2d"),
    pool_case("1x64x56x56 2x2", (1, 64, 56, 56), True, "avg_pool2d"),
    pool_case("1x512x7x7 -> 1x1", (1, 512, 7, 7), False, "adaptive_avg_pool2d"),
    pool_case("1x512x7x7 -> 1x1", (1, 512, 7, 7), True, "adaptive_avg_pool2d"),
    pool_case("1x1280x7x7 -> 1x1 (MobileNetV2)", (1, 1280, 7, 7), True, "adaptive_avg_pool2d"),
    pool_case("2 x 1x64x28x28", (1, 64, 28, 28), False, "cat"),
    pool_case("2 x 1x64x28x28", (1, 64, 28, 28), True, "cat"),
]


def best_of(function: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate torch and reference this many times, keeping each one's best")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of case names to run")
    parser.add_argument("--zoo", nargs="*", default=["resnet18", "mobilenet_v2"],
                        help="zoo models whose every distinct conv is a case (default resnet18 mobilenet_v2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel")
    rng = np.random.default_rng(0)
    print(f"profile {PROFILE.name}, torch {torch.__version__}, 1 thread, {describe_cpu()}")
    print(f"{'case':58s} {'reference ms':>12s} {'torch ms':>9s} {'ratio':>6s}  same")
    for case in CASES + [case for name in args.zoo for case in zoo_conv_cases(name)]:
        if args.only and not any(s in case.name for s in args.only):
            continue
        run_reference, run_torch = case.make(rng)
        with fbgemm_engine():
            same = np.array_equal(run_reference().int_repr, from_torch(run_torch()).int_repr)
            t_torch, t_ref = float("inf"), float("inf")
            for _ in range(args.rounds):  # both sides sample several stretches of a shared machine's load
                t_torch = min(t_torch, best_of(run_torch, args.repeat))
                t_ref = min(t_ref, best_of(run_reference, args.repeat))
        print(f"{case.name:58s} {t_ref:12.2f} {t_torch:9.2f} {t_ref / t_torch:6.1f}  {same}")


if __name__ == "__main__":
    main()
