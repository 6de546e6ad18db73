"""Run checks as Hypothesis properties and report what was compared.

For each check: draw cases under the chosen settings profile, compute the reference
(for the detected numerics profile) and torch (fbgemm pinned), and compare bit for bit:
`np.array_equal` on `int_repr` plus dtype, shape and qparams for QTensors; the raw bits
(`.view(np.uint32)`) for float32 arrays, so NaN payloads and the sign of zero count.
Counts cases, compared elements, informative elements (the vacuity rule), coverage
labels and seconds. A mismatch stops the check; Hypothesis shrinks the case and the
report shows the shrunk case object and its first differing elements.

A check's status is "ok", "MISMATCH", "VACUOUS" (too few informative elements: the cases
could not have caught an error) or "ERROR" (an exception, or a Hypothesis health check).
"""

from __future__ import annotations

import collections
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence, TextIO

import numpy as np
from hypothesis import example, given, reporting, seed

from quantspec.production.bridge import compare_bits
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from . import settings as profiles
from .checks import OpCheck, Output, select
from .oracles import oracle

MAX_SHOWN_DIFFERENCES = 8


class MismatchError(AssertionError):
    """The reference and torch (or the reference's fast kernel) disagree on a case."""


@dataclass
class Difference:
    """How two outputs differ: a summary line and the first differing elements."""

    summary: str
    mismatched_elements: int
    first: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CheckResult:
    """What one check compared, and how it ended."""

    name: str
    op: str
    status: str = "ok"
    cases: int = 0
    elements: int = 0
    informative: int = 0
    vacuous_cases: int = 0
    mismatched_elements: int = 0
    seconds: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    failure: Optional[dict[str, Any]] = None

    @property
    def informative_fraction(self) -> float:
        return self.informative / self.elements if self.elements else 0.0


@dataclass
class RunResult:
    """All checks of one run plus the environment they ran in."""

    environment: dict[str, str]
    settings_profile: str
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: environment, profile, ok, and one entry per check."""
        return {
            "environment": self.environment,
            "settings_profile": self.settings_profile,
            "ok": self.ok,
            "checks": [dict(asdict(c), informative_fraction=c.informative_fraction) for c in self.checks],
        }


# --- comparison ----------------------------------------------------------------------------


def compare_outputs(expected: Output, actual: Output, case: Any = None, actual_name: str = "torch") -> Optional[Difference]:
    """None when `actual` (torch, or what `actual_name` says) equals `expected` (reference)
    bit for bit (`production.bridge.compare_bits`), else how they differ."""
    expected, actual = (v if isinstance(v, QTensor) else np.asarray(v) for v in (expected, actual))
    comparison = compare_bits(expected, actual)
    if comparison.header:
        return Difference(comparison.header, -1)
    if comparison.equal:
        return None
    return _array_difference(_values(expected), _values(actual), comparison.differs, case, actual_name)


def _values(output: Output) -> np.ndarray:
    return output.int_repr if isinstance(output, QTensor) else output


def _array_difference(
    expected: np.ndarray, actual: np.ndarray, differs: np.ndarray, case: Any, actual_name: str
) -> Difference:
    count = int(np.count_nonzero(differs))
    inputs = getattr(case, "x", None)
    first = []
    for index in list(zip(*np.nonzero(differs)))[:MAX_SHOWN_DIFFERENCES]:
        entry = {"index": [int(i) for i in index], "reference": _scalar(expected[index]), actual_name: _scalar(actual[index])}
        if isinstance(inputs, np.ndarray) and inputs.shape == expected.shape:
            entry["input"] = _scalar(inputs[index])
        first.append(entry)
    return Difference(f"{count} of {expected.size} elements differ", count, first)


def _scalar(value: np.generic) -> Any:
    """A JSON-safe exact rendering of one element (floats as repr, NaN/inf as strings)."""
    if isinstance(value, np.floating):
        return repr(float(value)) if np.isfinite(value) else str(float(value))
    return int(value)


# --- running ---------------------------------------------------------------------------------


def run_check(check: OpCheck, settings_profile: str, numerics: NumericsProfile) -> CheckResult:
    """Run one check as a Hypothesis property; never raises for a failing check."""
    result = CheckResult(check.name, check.op)
    labels: collections.Counter[str] = collections.Counter()
    reports: list[str] = []

    def compare_case(case: Any) -> None:
        expected = check.reference(case, numerics)
        with oracle():
            actual = check.torch(case)
        result.cases += 1
        size = int(np.asarray(expected.int_repr if isinstance(expected, QTensor) else expected).size)
        result.elements += size
        informative = check.count_informative(case, expected)
        result.informative += informative
        result.vacuous_cases += informative == 0
        labels.update(check.label(case))
        difference = compare_outputs(expected, actual, case)
        if difference is None and check.fast is not None:
            difference = compare_outputs(expected, check.fast(case, numerics), case, "fast")
            if difference is not None:
                difference.summary = f"the fast kernel differs from the plain definition: {difference.summary}"
        if difference is not None:
            # The last failure recorded is Hypothesis's final replay of the shrunk case.
            result.mismatched_elements = difference.mismatched_elements
            result.failure = {"case": repr(case), "summary": difference.summary, "first": difference.first}
            raise MismatchError(f"{check.name}: {difference.summary}")

    compare_case.__name__ = compare_case.__qualname__ = f"conform_{check.name}"  # its database key
    test = given(check.cases)(compare_case)
    for pinned in reversed(check.examples):
        test = example(pinned)(test)
    test_settings = profiles.get(settings_profile, check.budget)
    if test_settings.derandomize:
        # Derandomized runs draw from the check's name, not from the digest of this function's
        # source (Hypothesis's default), so that editing the runner does not reshuffle every case.
        test = seed(f"quantspec-conform-{check.name}")(test)
    test = test_settings(test)

    start = time.perf_counter()
    try:
        with reporting.with_reporter(reports.append), profiles.active(settings_profile):
            test()
    except MismatchError:
        result.status = "MISMATCH"
    except Exception as error:  # a crash or a health check: the check proves nothing
        result.status = "ERROR"
        result.failure = {"error": "".join(traceback.format_exception_only(type(error), error)).strip(),
                          "traceback": traceback.format_exc()}
    result.seconds = round(time.perf_counter() - start, 3)
    result.labels = dict(sorted(labels.items()))
    if result.failure is not None and reports:
        result.failure["hypothesis"] = "\n".join(reports)
    if result.status == "ok" and result.informative_fraction < check.min_informative:
        result.status = "VACUOUS"
    return result


def environment(numerics: NumericsProfile) -> dict[str, str]:
    """The torch release, CPU features and engine the run compares against."""
    import torch

    return {
        "torch": torch.__version__,
        "numerics_profile": numerics.name,
        "cpu_features": numerics.cpu,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "engine": numerics.engine,
        "ci": str(profiles.in_ci()).lower(),
    }


def run_checks(
    checks: Sequence[OpCheck],
    settings_profile: str = "smoke",
    numerics: Optional[NumericsProfile] = None,
    out: Optional[TextIO] = None,
) -> RunResult:
    """Run the given checks; print the table to `out` (if given); return the results.

    `numerics` defaults to the profile detected for the running torch and CPU.
    """
    profiles.hypothesis_name(settings_profile)  # validates the name before any work
    if numerics is None:
        from quantspec.production.environment import detect_profile

        numerics = detect_profile()
    run = RunResult(environment(numerics), settings_profile, [])
    if out is not None:
        print(format_environment(run), file=out, flush=True)
    for check in checks:
        run.checks.append(run_check(check, settings_profile, numerics))
        if out is not None:
            print(format_row(run.checks[-1]), file=out, flush=True)
    if out is not None:
        print(format_summary(run), file=out, flush=True)
    return run


def run(
    names: Optional[Sequence[str]] = None,
    settings_profile: str = "smoke",
    json_path: Optional[str] = None,
    out: Optional[TextIO] = sys.stdout,
) -> RunResult:
    """Run the registered checks named (all if none) and optionally write JSON."""
    result = run_checks(select(names), settings_profile, out=out)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(result.to_json(), handle, indent=2)
    return result


# --- the table -------------------------------------------------------------------------------

_COLUMNS = (
    f"{'check':<28} {'status':<9} {'cases':>7} {'vacuous':>7} {'elements':>11} {'inform.':>7} {'mismatch':>8} {'sec':>7}  labels"
)


def format_environment(run: RunResult) -> str:
    env = run.environment
    return (
        f"quantspec conform: torch {env['torch']}, numerics {env['numerics_profile']} "
        f"(ATen {env['aten_cpu_capability']}, engine {env['engine']}), settings {run.settings_profile}"
        f"{', CI' if env['ci'] == 'true' else ''}\n{_COLUMNS}"
    )


def format_row(check: CheckResult) -> str:
    labels = ", ".join(f"{k}:{v}" for k, v in check.labels.items())
    row = (
        f"{check.name:<28} {check.status:<9} {check.cases:>7} {check.vacuous_cases:>7} {check.elements:>11} "
        f"{check.informative_fraction:>7.1%} {check.mismatched_elements:>8} {check.seconds:>7.1f}  {labels}"
    )
    if check.failure:
        row += "\n" + "\n".join("    " + line for line in _failure_lines(check.failure))
    return row


def _failure_lines(failure: dict[str, Any]) -> list[str]:
    if "error" in failure:
        return [failure["error"]]
    lines = [f"shrunk case: {failure['case']}", failure["summary"]]
    lines += [f"  at {d['index']}: " + ", ".join(f"{k}={d[k]}" for k in d if k != "index") for d in failure["first"]]
    return lines


def format_summary(run: RunResult) -> str:
    bad = [c.name for c in run.checks if c.status != "ok"]
    return "all checks bit-exact" if not bad else f"FAILED: {', '.join(bad)}"
