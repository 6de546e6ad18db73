"""Every zoo model converted and verified node by node under each quantized engine.

For each model of `production.zoo` and each engine torch offers here (fbgemm, qnnpack, onednn,
x86): `production.quantize_jit` under the engine with the model's qconfig_dict on that
engine's preset (`qconfig_dict.with_engine_preset`, as torch's tutorial pairs them),
calibrated on two seeded N(0, 1) batches, then `production.verify` under the engine (torch
runs it, the reference follows the engine's profile) on a random N(0, 1) batch and on a batch
of exact input-quantization ties. Prints one Markdown row per model and engine.

    python -m benchmarks.zoo_engines [--width 0.25] [--models resnet18 ...] [--engines qnnpack ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from quantspec.production import quantize_jit
from quantspec.production.environment import detect_profile, offered_engines
from quantspec.production.qconfig_dict import with_engine_preset
from quantspec.production.verify import tie_inputs, verify
from quantspec.production.zoo import ZOO, build, qconfig_dict
from quantspec.production.zoo.node_kinds import calibrate, input_size

BATCH = 2


def calibrate_once(model: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> None:
    """`node_kinds.calibrate` without TorchScript's profiling runs (they cost more than calibrating)."""
    with torch.jit.optimized_execution(False):
        calibrate(model, batches)


def verify_one(name: str, engine: str, width: float) -> tuple[str, int]:
    """(verdict text, elements compared) of `name` at `width` under `engine`."""
    size = input_size(name)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(BATCH, 3, size, size, generator=generator) for _ in range(2)]
    qconfigs = with_engine_preset(qconfig_dict(name), engine)
    converted = quantize_jit(build(name, width=width, seed=0), qconfigs, calibrate_once, (batches,), engine=engine)
    inputs = {"random": torch.randn(BATCH, 3, size, size, generator=generator),
              "ties": tie_inputs(converted, (BATCH, 3, size, size), generator)}
    verdicts, elements = [], 0
    for kind, x in inputs.items():
        try:
            report = verify(converted, x, engine=engine)
        except Exception as error:  # what verify says is the result: record it
            verdicts.append(f"{kind}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
            continue
        elements += sum(check.elements for check in report.checks)
        verdict = report.verdict
        if report.first_mismatch is not None:
            first = report.first_mismatch
            verdict += f" (first at {first.kind}, {first.mismatches} of {first.elements} elements)"
        verdicts.append(f"{kind}: {verdict}")
    return "; ".join(verdicts), elements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--models", nargs="+", default=sorted(ZOO))
    parser.add_argument("--engines", nargs="+", default=offered_engines())
    args = parser.parse_args()
    print(f"torch {torch.__version__}; width {args.width}; batch {BATCH}; profiles "
          f"{', '.join(detect_profile(engine).name for engine in args.engines)}")
    print("| model | input | engine | verdict | elements | s |")
    print("|---|---|---|---|--:|--:|")
    for name in args.models:
        for engine in args.engines:
            start = time.perf_counter()
            verdict, elements = verify_one(name, engine, args.width)
            size = input_size(name)
            print(f"| {name} | {BATCH}x3x{size}x{size} | {engine} | {verdict} | {elements:,} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
