"""`quantspec.reference` must run without torch: importing every module of it loads no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import importlib, pkgutil, sys
from quantspec import reference
for module in pkgutil.walk_packages(reference.__path__, "quantspec.reference."):
    importlib.import_module(module.name)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(",".join(loaded))
"""


def test_importing_all_of_reference_loads_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"reference imported torch modules: {done.stdout.strip()}"
