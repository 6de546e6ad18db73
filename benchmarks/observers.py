"""Reference observers against torch's, on ResNet-sized tensors, in one run.

    python benchmarks/observers.py [--repeat N] [--batches B] [--shape 8,256,56,56]

Each observer sees the same `--batches` float32 batches (activations of `--shape`, by
default a ResNet-50 stage-1 block, 8 x 256 x 56 x 56 = 6.4M values each, from different
distributions, or a 256 x 256 x 3 x 3 conv weight for the per-channel observers), then
computes its qparams. Time is the best of `--repeat` alternating runs of observe-all +
calculate_qparams, one torch thread (torch.set_num_threads(1)); speed-up is torch's time
over the reference's (>= 1: the reference is no slower); the qparams are checked bitwise equal.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch

import quantspec.reference.observers as reference_observers
from quantspec.conformance.checks.observers import torch_observer

WEIGHT_SHAPE = (256, 256, 3, 3)
CASES: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("MinMaxObserver", {}, "activation"),
    ("MovingAverageMinMaxObserver", {}, "activation"),
    ("PerChannelMinMaxObserver", {"dtype": "qint8", "qscheme": "per_channel_symmetric"}, "weight"),
    ("MovingAveragePerChannelMinMaxObserver", {"dtype": "qint8", "qscheme": "per_channel_symmetric"}, "weight"),
    ("HistogramObserver", {"reduce_range": True}, "activation"),  # get_default_qconfig('fbgemm')
)


def batches(kind: str, count: int, rng: np.random.Generator, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Post-ReLU-like activations of `shape` with growing ranges, or weight-like tensors."""
    if kind == "weight":
        return [(rng.standard_normal(WEIGHT_SHAPE) * 0.05 * (i + 1)).astype(np.float32) for i in range(count)]
    out = []
    for i in range(count):
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(1 + i)
        np.maximum(x, np.float32(-0.1 * i), out=x)
        out.append(x)
    return out


def best_times(
    reference_run: Callable[[], Any], torch_run: Callable[[], Any], repeat: int
) -> tuple[float, float, Any, Any]:
    """Best-of-`repeat` times of both, alternating runs so that machine load hits both alike."""
    best = [float("inf"), float("inf")]
    results: list[Any] = [None, None]
    for _ in range(repeat):
        for index, run in enumerate((reference_run, torch_run)):
            start = time.perf_counter()
            results[index] = run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best[0], best[1], results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)  # millisecond runs on a shared machine need many
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--shape", default="8,256,56,56", help="activation shape, comma-separated")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")  # reduce_range notice
    rng = np.random.default_rng(0)
    data = {kind: batches(kind, args.batches, rng, shape) for kind in ("activation", "weight")}
    tensors = {kind: [torch.from_numpy(b) for b in arrays] for kind, arrays in data.items()}
    print(f"torch {torch.__version__}, 1 thread, {args.batches} batches of {shape}, best of {args.repeat}")
    print(f"{'observer':<40} {'reference s':>11} {'torch s':>9} {'speed-up':>8}  equal")
    for name, kwargs, kind in CASES:

        def reference_run() -> tuple[np.ndarray, np.ndarray]:
            observer = getattr(reference_observers, name)(**kwargs)
            for batch in data[kind]:
                observer.observe(batch)
            return observer.calculate_qparams()

        def torch_run() -> tuple[np.ndarray, np.ndarray]:
            observer = torch_observer(name, **kwargs)
            for batch in tensors[kind]:
                observer(batch)
            scale, zero_point = observer.calculate_qparams()
            return scale.numpy(), zero_point.numpy()

        ours, theirs, (scale, zp), (torch_scale, torch_zp) = best_times(reference_run, torch_run, args.repeat)
        equal = np.array_equal(scale.view(np.uint32), torch_scale.view(np.uint32)) and np.array_equal(zp, torch_zp)
        print(f"{name:<40} {ours:>11.4f} {theirs:>9.4f} {theirs / ours:>8.2f}  {equal}")


if __name__ == "__main__":
    main()
