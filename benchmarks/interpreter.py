"""The NumPy interpreter's latency against torch's fbgemm int8 model: ResNet-18, 224x224, batch 1.

    python benchmarks/interpreter.py [--repeat N] [--threads 1 2]

ResNet-18 from `production.zoo` (seeded random weights, 1000 classes), converted by
`production.quantize_jit` (calibrated on 4 random images), exported to the portable file.
For each thread count T, in a child process: torch runs with `torch.set_num_threads(T)`,
the interpreter with `num_threads=T` (torch's count, for its tails) and `workers=T` (its
own threads: each conv cut into at least T bands of output rows, or of output channels when
the image is small). NumPy's BLAS stays single-threaded
(OPENBLAS_NUM_THREADS=1, fixed when NumPy loads): OpenBLAS's own threads synchronize
inside every GEMM and, on a shared machine where another process holds a core, stall for
whole scheduler slices (2 BLAS threads took ~900 ms instead of ~150 ms here), while the
interpreter's bands are independent. Torch and the interpreter alternate on the same
image, `--repeat` rounds after a warm-up, and the medians are reported. The children get
OMP_WAIT_POLICY=PASSIVE unless it is set: on a shared, oversubscribed machine OpenMP's
spinning barriers made torch's 2-thread ResNet-18 take ~500 ms instead of ~18 ms.

Also printed, per thread count: the floor, i.e. the same float32 GEMMs the interpreter runs
(every conv's im2col product, or Winograd's 16 tile-position products, and the fc) with
nothing else, and where the interpreter's time goes, by node kind (the time between
consecutive trace calls, so Python overhead is included).
Last: one whole `production.verify.verify` of ResNet-18 on one image (export, torch
capture, interpreter trace, node-by-node comparison) at one thread.
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

# NumPy's BLAS stays single-threaded; torch takes its count from torch.set_num_threads.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def convert_resnet18() -> Any:
    """ResNet-18 from the zoo, quantized with random calibration (4 images, seeded)."""
    import torch

    from quantspec.production import zoo
    from quantspec.production.quantize import quantize_jit

    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(1, 3, 224, 224, generator=generator) for _ in range(4)]
    model = zoo.build("resnet18", num_classes=1000)
    return quantize_jit(model, None, lambda prepared, data: [prepared(b) for b in data], [calibration])


def measure(threads: int, repeat: int) -> dict[str, Any]:
    """Median latencies (seconds) of torch, the interpreter and its GEMM floor at `threads`
    threads, interleaved, and the interpreter's median seconds per node kind."""
    import numpy as np
    import torch

    import quantspec.reference.interpreter as interpreter
    from quantspec.production.environment import fbgemm_engine
    from quantspec.production.export import export

    converted = convert_resnet18()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as scratch:
        model = interpreter.load(export(converted, Path(scratch) / "resnet18.qsm"))
    array = image.numpy()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"torch": [], "interpreter": [], "floor": []}
    kinds: dict[str, list[float]] = {}
    gemms: list[tuple[Any, Any]] = []
    with fbgemm_engine(), torch.no_grad():
        for round_index in range(repeat + 1):  # round 0 warms up both and finds the GEMM shapes
            start = time.perf_counter()
            expected = converted(image)
            middle = time.perf_counter()
            timer = _KindTimer()
            actual = interpreter.run(model, array, trace=timer, num_threads=threads, workers=threads)
            end = time.perf_counter()
            if not round_index:
                gemms = _gemm_operands(model, timer.shapes)
                continue
            times["torch"].append(middle - start)
            times["interpreter"].append(end - middle)
            times["floor"].append(_time_gemms(gemms, threads))
            for kind, seconds in timer.seconds.items():
                kinds.setdefault(kind, []).append(seconds)
    if not np.array_equal(expected.numpy(), np.asarray(actual)):
        raise AssertionError("the interpreter's ResNet-18 output differs from torch's")
    result: dict[str, Any] = {name: statistics.median(values) for name, values in times.items()}
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
    conv its im2col product, or for a Winograd conv its 16 tile-position products (the
    exactness bound held for all of them on this model), and the fc's."""
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

    converted = convert_resnet18()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    report = verify(converted, image)
    return time.perf_counter() - start, report.ok


def _child(threads: int, repeat: int) -> dict[str, Any]:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), **{name: "1" for name in BLAS_THREAD_VARIABLES})
    environment.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, __file__, "--child", str(threads), "--repeat", str(repeat)]
    output = subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per thread count (default 7)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one thread count, JSON on stdout
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.repeat)))
        return
    os.environ.update({name: "1" for name in BLAS_THREAD_VARIABLES})  # before NumPy loads: the verify below
    import torch

    print(f"ResNet-18 int8, 224x224, batch 1, torch {torch.__version__}, median of {args.repeat} interleaved rounds, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}")
    print(f"{'threads':>7} {'torch ms':>9} {'interp. ms':>10} {'ratio':>6} {'GEMM floor ms':>13} {'floor ratio':>11}")
    breakdowns = []
    for threads in args.threads:
        result = _child(threads, args.repeat)
        ratio, floor_ratio = result["interpreter"] / result["torch"], result["floor"] / result["torch"]
        print(f"{threads:>7} {result['torch'] * 1e3:>9.1f} {result['interpreter'] * 1e3:>10.1f} {ratio:>5.1f}x "
              f"{result['floor'] * 1e3:>13.1f} {floor_ratio:>10.1f}x", flush=True)
        breakdowns.append((threads, result))
    for threads, result in breakdowns:
        total = sum(result["kinds"].values())  # medians per kind: their sum is close to, not equal to, the run's
        top = sorted(result["kinds"].items(), key=lambda item: -item[1])[:6]
        shares = ", ".join(f"{kind} {seconds * 1e3:.1f} ({seconds / total:.0%})" for kind, seconds in top)
        print(f"interpreter ms by node kind at {threads} thread(s): {shares}")
    seconds, ok = time_verify()
    print(f"whole verify of ResNet-18 (1 image, 1 thread): {seconds:.2f} s, {'bit-exact' if ok else 'NOT bit-exact'}")


if __name__ == "__main__":
    main()
