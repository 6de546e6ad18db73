"""Mutated model files (tests/model_file_mutations.py), each loaded and run in a child process
under a memory cap and a timeout (tests/model_file_sandbox.py): no raw exception, memory
blow-up, hang or crash, no structurally invalid file accepted, no output changed without
re-sealing. A small budget; benchmarks/fuzz_model_file.py runs thousands."""

from __future__ import annotations

import numpy as np
from model_file_mutations import mutations, seed_model
from model_file_sandbox import fuzz

FILES = 48


def test_mutated_model_files_are_refused_or_run_cleanly(tmp_path):
    seed = seed_model(tmp_path / "seed.qsm")
    report = fuzz(seed, mutations(seed.read_bytes(), np.random.default_rng(2026), FILES), workers=2, timeout=20.0)
    assert sum(report.counts.values()) == FILES
    assert report.bad == 0, report.format()
    assert report.counts["refused (ModelFileError)"] > FILES // 2 and len(report.by_mutation) >= 12, report.format()
