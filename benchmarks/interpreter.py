"""The NumPy interpreter's latency against torch's fbgemm int8 model: ResNet-18, ResNet-50 and
MobileNetV2 from `production.zoo`, 224x224, batch 1 and 8.

    python benchmarks/interpreter.py [--models resnet18 resnet50 mobilenet_v2] [--batch 1 8]
                                     [--threads 1 2] [--repeat N] [--no-verify]

Each model (seeded random weights, 1000 classes) is converted by `production.quantize_jit`
(calibrated on 4 random images) and exported to the portable file. For each model, batch
size B and thread count T, in a child process: torch runs with `torch.set_num_threads(T)`,
the interpreter with `num_threads=T` (torch's count, for its tails) and `workers=T` (its
own threads: each conv cut into at least T bands of output rows, or of output channels when
the image is small). NumPy's BLAS stays single-threaded
(OPENBLAS_NUM_THREADS=1, fixed when NumPy loads): OpenBLAS's own threads synchronize
inside every GEMM and, on a shared machine where another process holds a core, stall for
whole scheduler slices (2 BLAS threads took ~900 ms instead of ~150 ms here), while the
interpreter's bands are independent. Torch and the interpreter alternate on the same
images, `--repeat` rounds after a warm-up, and the medians are reported (the ratio is the
median of the per-round ratios, so a round slowed by another process counts once). The
children get OMP_WAIT_POLICY=PASSIVE unless it is set: on a shared, oversubscribed machine
OpenMP's spinning barriers made torch's 2-thread ResNet-18 take ~500 ms instead of ~18 ms.
The CPU model and flags are printed first: the ratios depend on them.

Also printed, per model at batch 1: the floor, i.e. the same float32 GEMMs the interpreter
runs (every conv's im2col product, or Winograd's 16 tile-position products, and the fc) with
nothing else, and where the interpreter's time goes, by node kind (the time between
consecutive trace calls, so Python overhead is included).
Last (unless --no-verify): one whole `production.verify.verify` of ResNet-18 on one image
(export, torch capture, interpreter trace, node-by-node comparison) at one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zoo_models import BENCHMARK_MODELS, convert

# NumPy's BLAS stays single-threaded; torch takes its count from torch.set_num_threads.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def measure(name: str, threads: int, batch: int, repeat: int) -> dict[str, Any]:
    """Median latencies (seconds) of torch, the interpreter and (batch 1) its GEMM floor for
    model `name` at `threads` threads, interleaved; the median per-round ratio; and the
    interpreter's median seconds per node kind."""
    import numpy as np
    import torch

    import quantspec.reference.interpreter as interpreter
    from quantspec.production.environment import fbgemm_engine
    from quantspec.production.export import export

    converted = convert(name)
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as scratch:
        model = interpreter.load(export(converted, Path(scratch) / f"{name}.qsm"))
    array = images.numpy()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"torch": [], "interpreter": [], "floor": [], "ratio": []}
    kinds: dict[str, list[float]] = {}
    gemms: list[tuple[Any, Any]] = []
    with fbgemm_engine(), torch.no_grad():
        for round_index in range(repeat + 1):  # round 0 warms up both and finds the GEMM shapes
            start = time.perf_counter()
            expected = converted(images)
            middle = time.perf_counter()
            timer = _KindTimer()
            actual = interpreter.run(model, array, trace=timer, num_threads=threads, workers=threads)
            end = time.perf_counter()
            if not round_index:
                gemms = _gemm_operands(model, timer.shapes) if batch == 1 else []
                continue
            times["torch"].append(middle - start)
            times["interpreter"].append(end - middle)
            times["ratio"].append((end - middle) / (middle - start))
            if gemms:
                times["floor"].append(_time_gemms(gemms, threads))
            for kind, seconds in timer.seconds.items():
                kinds.setdefault(kind, []).append(seconds)
    if not np.array_equal(expected.numpy(), np.asarray(actual)):
        raise AssertionError(f"the interpreter's {name} output differs from torch's")
    result: dict[str, Any] = {key: statistics.median(values) for key, values in times.items() if values}
    result["kinds"] = {kind: statistics.median(values) for kind, values in kinds.items()}
    return result


class _KindTimer:
    """A `trace` callable: the time since the previous node output, summed per node kind."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def __call__(self, node: Any, name: str, value: Any) -> None:
        now = time.perf_counter()
        self.seconds[node.kind] = self.seconds.get(node.kind, 0.0) + now - self.last
        self.shapes[name] = tuple(getattr(value, "shape", ()))
        self.last = time.perf_counter()


def _gemm_operands(model: Any, shapes: dict[str, tuple[int, ...]]) -> list[tuple[Any, Any]]:
    """Random float32 operands (G, M, K) and (G, N, K) of the GEMMs the interpreter runs: per
    single-group conv its im2col product, or for a Winograd-eligible conv its 16 tile-position
    products, and the fc's (depthwise and grouped convs are left out)."""
    import importlib

    import numpy as np

    from quantspec.reference.fast.winograd import tile_counts

    conv = importlib.import_module("quantspec.reference.fast.conv2d")  # the module, not the op of that name
    generator = np.random.default_rng(0)
    operands = []
    for node in model.nodes:
        if not node.kind.startswith(("quantized::conv2d", "quantized::linear")):
            continue
        packed = model.constants[node.inputs[1]]
        if getattr(packed, "groups", 1) > 1:  # depthwise and grouped convs: no single GEMM
            continue
        weight, out_shape = packed.weight.int_repr, shapes[node.outputs[0]]
        rows = int(np.prod(out_shape)) // weight.shape[0]
        winograd = node.kind.startswith("quantized::conv2d") and packed.prepared.winograd_eligible
        if winograd and rows // out_shape[0] >= conv.WINOGRAD_MIN_PIXELS:
            tiles = out_shape[0] * int(np.prod(tile_counts(out_shape[2:])))
            sizes = ((16, tiles, weight.shape[1]), (16, weight.shape[1], weight.shape[0]))
        else:
            sizes = ((1, rows, int(np.prod(weight.shape[1:]))), (1, int(np.prod(weight.shape[1:])), weight.shape[0]))
        a, w = (generator.integers(-8, 8, size).astype(np.float32) for size in sizes)
        operands.append((a, w.transpose(0, 2, 1)))  # weights K-major, as the interpreter stores them
    return operands


def _time_gemms(gemms: list[tuple[Any, Any]], threads: int) -> float:
    """Seconds for the GEMMs alone, each cut into `threads` row bands on threads like the interpreter's."""
    from quantspec.reference.fast.gemm import _grouped_matmul

    start = time.perf_counter()
    for a, w in gemms:
        _grouped_matmul(a, w, threads)
    return time.perf_counter() - start


def time_verify() -> tuple[float, bool]:
    """Seconds for one whole node-by-node verify of ResNet-18 on one image, and its verdict."""
    import torch

    from quantspec.production.verify import verify

    converted = convert("resnet18")
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    report = verify(converted, image)
    return time.perf_counter() - start, report.ok


def _child(name: str, threads: int, batch: int, repeat: int) -> dict[str, Any]:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), **{name: "1" for name in BLAS_THREAD_VARIABLES})
    environment.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, __file__, "--child", name, str(threads), str(batch), "--repeat", str(repeat)]
    output = subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=BENCHMARK_MODELS, default=list(BENCHMARK_MODELS),
                        help="zoo models (default all)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (default 1)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per measurement (default 7)")
    parser.add_argument("--no-verify", action="store_true", help="skip the whole-verify timing")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # model, threads, batch: JSON on stdout
    args = parser.parse_args()
    if args.child is not None:
        name, threads, batch = args.child
        print(json.dumps(measure(name, int(threads), int(batch), args.repeat)))
        return
    os.environ.update({name: "1" for name in BLAS_THREAD_VARIABLES})  # before NumPy loads: the verify below
    import torch

    from quantspec.production.environment import describe_cpu

    print(f"{describe_cpu()}; torch {torch.__version__}; 224x224; median of {args.repeat} interleaved rounds; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}")
    print(f"{'model':<13} {'batch':>5} {'threads':>7} {'torch ms':>9} {'interp. ms':>10} {'ratio':>6} "
          f"{'GEMM floor ms':>13} {'floor ratio':>11}")
    breakdowns = []
    for name in args.models:
        for batch in args.batch:
            for threads in args.threads:
                result = _child(name, threads, batch, args.repeat)
                floor = (f"{result['floor'] * 1e3:>13.1f} {result['floor'] / result['torch']:>10.1f}x"
                         if "floor" in result else "")
                print(f"{name:<13} {batch:>5} {threads:>7} {result['torch'] * 1e3:>9.1f} "
                      f"{result['interpreter'] * 1e3:>10.1f} {result['ratio']:>5.1f}x {floor}", flush=True)
                breakdowns.append((name, batch, threads, result))
    for name, batch, threads, result in breakdowns:
        if batch != 1:
            continue
        total = sum(result["kinds"].values())  # medians per kind: their sum is close to, not equal to, the run's
        top = sorted(result["kinds"].items(), key=lambda item: -item[1])[:6]
        shares = ", ".join(f"{kind} {seconds * 1e3:.1f} ({seconds / total:.0%})" for kind, seconds in top)
        print(f"{name} interpreter ms by node kind, batch 1, {threads} thread(s): {shares}")
    if not args.no_verify:
        seconds, ok = time_verify()
        print(f"whole verify of ResNet-18 (1 image, 1 thread): {seconds:.2f} s, "
              f"{'bit-exact' if ok else 'NOT bit-exact'}")


if __name__ == "__main__":
    main()
