"""The docstring examples of quantspec (the ops' hand-worked cases among them) run as doctests.

They are collected from the installed `quantspec.*` modules rather than from the folders, so
that each module is imported once, under its package name.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("quantspec.reference", "quantspec.production", "quantspec.conformance")
# Modules of optional extras: their examples run where the extra is installed.
OPTIONAL = {"quantspec.conformance.onnx_target": "onnxruntime"}


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package_name + ".")]
    return sorted(names)


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str) -> None:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    result = doctest.testmod(importlib.import_module(name), report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (printed above)"


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("quantspec.reference.ops.") and "._" not in m])
def test_every_public_op_module_has_a_worked_example(name: str) -> None:
    # Each op module carries at least one hand-worked case (the spec's convention); a module
    # whose examples vanish must fail here, not pass with nothing run.
    examples = doctest.DocTestFinder().find(importlib.import_module(name))
    assert sum(len(test.examples) for test in examples) > 0, f"{name} has no docstring example"
