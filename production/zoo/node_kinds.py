"""Quantize every zoo model with `quantize_jit` (default qconfig, or the model's own
qconfig_dict) and print, as a Markdown table, the node kinds of each converted graph:
the interpreter's to-do list.

    python -m production.zoo.node_kinds [--width 0.25] [--models resnet18 ...] [--debug]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Sequence

import torch

from ..environment import detect_profile
from ..quantize import node_kinds, quantize_jit
from . import ZOO, build, qconfig_dict

# ShuffleNetV2 downsamples 32x: at 32x32 its last map is 1x1, where torch's quantized
# `mean([2, 3])` fails on the channels-last conv output; 64x64 leaves 2x2.
INPUT_SIZES = {"shufflenet_v2": 64}
DEFAULT_INPUT_SIZE = 32


def input_size(name: str) -> int:
    """The smallest square input side the zoo model `name` converts and runs at."""
    return INPUT_SIZES.get(name, DEFAULT_INPUT_SIZE)


def calibrate(model: torch.jit.ScriptModule, batches: Sequence[torch.Tensor]) -> None:
    """Run every batch through `model` (the observers record ranges)."""
    for batch in batches:
        model(batch)


def convert_zoo_model(
    name: str, width: float, batches: int = 3, debug: bool = False, seed: int = 0
) -> torch.jit.ScriptModule:
    """Zoo model `name`, quantized with its qconfig_dict on `batches` seeded random batches
    of two images, and run once."""
    generator = torch.Generator().manual_seed(seed + 1)
    size = input_size(name)
    data = [torch.randn(2, 3, size, size, generator=generator) for _ in range(batches)]
    converted = quantize_jit(build(name, width=width, seed=seed), qconfig_dict(name), calibrate, (data,), debug=debug)
    converted(data[0])
    return converted


def markdown_table(kinds: dict[str, Counter[str]]) -> str:
    """Node kind x model count table (kinds sorted, one column per model)."""
    models = list(kinds)
    all_kinds = sorted(set().union(*kinds.values()))
    lines = ["| node kind | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for kind in all_kinds:
        lines.append(f"| `{kind}` | " + " | ".join(str(kinds[m][kind] or "") for m in models) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the node-kind table for the chosen zoo models."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--models", nargs="*", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--debug", action="store_true", help="convert with debug=True")
    args = parser.parse_args(argv)
    kinds = {}
    for name in args.models:
        width = max(args.width, 0.25) if name.startswith("cifar") else args.width
        kinds[name] = node_kinds(convert_zoo_model(name, width, debug=args.debug))
        print(f"converted {name}", file=sys.stderr)
    print(f"profile {detect_profile().name}, torch {torch.__version__}, width {args.width}, debug={args.debug}\n")
    print(markdown_table(kinds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
