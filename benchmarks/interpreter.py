"""The NumPy interpreter's latency against torch's fbgemm int8 model: ResNet-18, 224x224, batch 1.

    PYTHONPATH=. python benchmarks/interpreter.py [--repeat N] [--threads 1 2]

ResNet-18 from `production.zoo` (seeded random weights, 1000 classes), converted by
`production.quantize_jit` (calibrated on 4 random images), exported to the portable file.
For each thread count T: torch runs with `torch.set_num_threads(T)` and the interpreter
with `num_threads=T` and T BLAS threads. NumPy's BLAS thread count is fixed when NumPy
loads (threadpoolctl is not installed here), so each T runs in a child process started
with OPENBLAS/OMP/MKL_NUM_THREADS=T; inside it torch and the interpreter alternate on the
same image, `--repeat` rounds after a warm-up, and the medians are reported. The children
get OMP_WAIT_POLICY=PASSIVE unless it is set: on a shared, oversubscribed machine OpenMP's
spinning barriers made torch's 2-thread ResNet-18 take ~500 ms instead of ~18 ms. Also timed:
one whole `production.verify.verify` of ResNet-18 on one image (export, torch capture,
interpreter trace, node-by-node comparison) at one thread.
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

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def convert_resnet18() -> Any:
    """ResNet-18 from the zoo, quantized with random calibration (4 images, seeded)."""
    import torch

    from production import zoo
    from production.quantize import quantize_jit

    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(1, 3, 224, 224, generator=generator) for _ in range(4)]
    model = zoo.build("resnet18", num_classes=1000)
    return quantize_jit(model, None, lambda prepared, data: [prepared(b) for b in data], [calibration])


def measure(threads: int, repeat: int) -> dict[str, float]:
    """Median latencies (seconds) of torch and the interpreter at `threads` threads, interleaved."""
    import numpy as np
    import torch

    import reference.interpreter as interpreter
    from production.environment import fbgemm_engine
    from production.export import export

    converted = convert_resnet18()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as scratch:
        model = interpreter.load(export(converted, Path(scratch) / "resnet18.qsm"))
    array = image.numpy()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"torch": [], "interpreter": []}
    with fbgemm_engine(), torch.no_grad():
        for round_index in range(repeat + 1):  # round 0 warms up both
            start = time.perf_counter()
            expected = converted(image)
            middle = time.perf_counter()
            actual = interpreter.run(model, array, num_threads=threads)
            end = time.perf_counter()
            if round_index:
                times["torch"].append(middle - start)
                times["interpreter"].append(end - middle)
    if not np.array_equal(expected.numpy(), np.asarray(actual)):
        raise AssertionError("the interpreter's ResNet-18 output differs from torch's")
    return {name: statistics.median(values) for name, values in times.items()}


def time_verify() -> tuple[float, bool]:
    """Seconds for one whole node-by-node verify of ResNet-18 on one image, and its verdict."""
    import torch

    from production.verify import verify

    converted = convert_resnet18()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    report = verify(converted, image)
    return time.perf_counter() - start, report.ok


def _child(threads: int, repeat: int) -> dict[str, float]:
    environment = dict(os.environ, **{name: str(threads) for name in BLAS_THREAD_VARIABLES})
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
    import torch

    print(f"ResNet-18 int8, 224x224, batch 1, torch {torch.__version__}, median of {args.repeat} interleaved rounds, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}")
    print(f"{'threads':>7} {'torch ms':>9} {'interp. ms':>10} {'ratio':>6}")
    for threads in args.threads:
        result = _child(threads, args.repeat)
        ratio = result["interpreter"] / result["torch"]
        print(f"{threads:>7} {result['torch'] * 1e3:>9.1f} {result['interpreter'] * 1e3:>10.1f} {ratio:>5.1f}x", flush=True)
    seconds, ok = time_verify()
    print(f"whole verify of ResNet-18 (1 image, 1 thread): {seconds:.2f} s, {'bit-exact' if ok else 'NOT bit-exact'}")


if __name__ == "__main__":
    main()
