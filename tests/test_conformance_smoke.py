"""The smoke conformance profile over every registered check: what CI runs on each release.

Every check must be bit-exact against the installed torch (for the detected numerics
profile) and non-vacuous. A failure prints the runner's row: the shrunk case to pin and
its first differing elements.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from quantspec.conformance import runner
from quantspec.conformance.checks import load_all
from quantspec.production.environment import detect_profile

CHECK_NAMES = sorted(load_all())


def test_the_quantize_checks_are_registered() -> None:
    assert {"quantize_per_tensor", "quantize_per_channel", "dequantize"} <= set(CHECK_NAMES)


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_smoke_profile(name: str) -> None:
    result = runner.run_check(load_all()[name], "smoke", detect_profile())
    assert result.status == "ok", runner.format_row(result)
    assert result.cases > 0 and result.elements > 0
