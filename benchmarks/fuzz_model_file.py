"""Fuzz the portable model file: mutated copies of a seed model, each loaded and run in a sandbox.

    python benchmarks/fuzz_model_file.py [--files N] [--seed S] [--workers W] [--timeout SECONDS] [--memory-cap BYTES]

The seed is `tests/model_file_mutations.seed_model` (NumPy only); the mutations (byte, zip,
structure and array level, re-sealed or not) are drawn by `mutations` in that module. Each
file is loaded with `quantspec.reference.load` and run on the seed's input in a child
process (`tests/model_file_sandbox.py`) under RLIMIT_AS and a timeout. Prints the count of
every outcome class, the counts per mutation kind, examples of bad outcomes, and the time;
exits 1 on any bad outcome (raw exception, memory blow-up, hang, crash, structurally invalid
file accepted, output changed without re-sealing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from model_file_mutations import mutations, seed_model
from model_file_sandbox import DEFAULT_MEMORY_CAP, DEFAULT_TIMEOUT, fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutation draws")
    parser.add_argument("--workers", type=int, default=2, help="sandbox processes running at once")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per file before it is a hang")
    parser.add_argument("--memory-cap", type=int, default=DEFAULT_MEMORY_CAP, help="RLIMIT_AS of each sandbox")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        seed = seed_model(Path(scratch) / "seed.qsm")
        start = time.perf_counter()
        drawn = mutations(seed.read_bytes(), np.random.default_rng(args.seed), args.files)
        report = fuzz(seed, drawn, args.workers, timeout=args.timeout, memory_bytes=args.memory_cap)
        elapsed = time.perf_counter() - start
    print(f"{args.files} mutated files, seed {args.seed}, {args.workers} workers, {elapsed:.0f} s")
    print(report.format())
    print("\nby mutation:")
    for name, counts in sorted(report.by_mutation.items()):
        print(f"  {name:<40} " + ", ".join(f"{outcome}: {count}" for outcome, count in counts.most_common()))
    sys.exit(1 if report.bad else 0)


if __name__ == "__main__":
    main()
