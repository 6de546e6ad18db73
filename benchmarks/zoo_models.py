"""Zoo models converted as the benchmarks use them (imported by the scripts beside this file)."""

from __future__ import annotations

from typing import Any

BENCHMARK_MODELS = ("resnet18", "resnet50", "mobilenet_v2")


def convert(name: str) -> Any:
    """`production.zoo` model `name` (seeded random weights, 1000 classes), converted by
    `production.quantize_jit` under fbgemm with random calibration (4 images 224x224, seeded)."""
    import torch

    from quantspec.production import zoo
    from quantspec.production.quantize import quantize_jit

    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(1, 3, 224, 224, generator=generator) for _ in range(4)]
    model = zoo.build(name, num_classes=1000)
    return quantize_jit(model, None, lambda prepared, data: [prepared(b) for b in data], [calibration])
