"""Run checks as Hypothesis properties and report what was compared.

For each check: draw cases under the chosen settings profile, compute the reference
(for the detected numerics profile) and torch (fbgemm pinned), and compare bit for bit:
`np.array_equal` on `int_repr` plus dtype, shape and qparams for QTensors; the raw bits
(`.view(np.uint32)`) for float32 arrays, so NaN payloads and the sign of zero count.
Counts cases, compared elements, informative elements (the vacuity rule), coverage
labels and seconds. A mismatch stops the check; Hypothesis shrinks the case and the
report shows the shrunk case object and its first differing elements.

A check's status is "ok", "MISMATCH", "VACUOUS" (too few informative elements: the cases
could not have caught an error), "ERROR" (an exception, or a Hypothesis health check) or
"not specified" (every case runs a kernel quantspec does not specify under the numerics
profile's engine, EngineNotSpecifiedError: nothing was compared, and that is no failure).
Where the reference refuses a case (EngineRefusedError: torch refuses it under that engine),
the case agrees only if torch raises too.
"""

from __future__ import annotations

import collections
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

import numpy as np
from hypothesis import example, given, reporting, seed

from quantspec.production.bridge import compare_bits
from quantspec.production.environment import native_notices_filtered, silenced_in_workers
from quantspec.production.outputs import write_text_atomically
from quantspec.reference.profile import EngineNotSpecifiedError, EngineRefusedError, NumericsProfile
from quantspec.reference.qtensor import QTensor

from . import settings as profiles
from .checks import OpCheck, Output, select
from .oracles import oracle, oracle_engine

MAX_SHOWN_DIFFERENCES = 8
NOT_SPECIFIED = "not specified"


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
        return all(c.status in ("ok", NOT_SPECIFIED) for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: environment, profile, ok, and one entry per check."""
        return {
            "environment": self.environment,
            "settings_profile": self.settings_profile,
            "ok": self.ok,
            "checks": [dict(asdict(c), informative_fraction=c.informative_fraction) for c in self.checks],
        }


# --- comparison ----------------------------------------------------------------------------


def compare_outputs(
    expected: Output, actual: Output, case: Any = None, actual_name: str = "torch"
) -> Optional[Difference]:
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
        entry = {
            "index": [int(i) for i in index],
            "reference": json_scalar(expected[index]),
            actual_name: json_scalar(actual[index]),
        }
        if isinstance(inputs, np.ndarray) and inputs.shape == expected.shape:
            entry["input"] = json_scalar(inputs[index])
        first.append(entry)
    return Difference(f"{count} of {expected.size} elements differ", count, first)


def json_scalar(value: np.generic) -> Any:
    """A JSON-safe exact rendering of one element (floats as repr, NaN/inf as strings)."""
    if isinstance(value, np.floating):
        return repr(float(value)) if np.isfinite(value) else str(float(value))
    return int(value)


# --- running ---------------------------------------------------------------------------------


def run_check(check: OpCheck, settings_profile: str, numerics: NumericsProfile) -> CheckResult:
    """Run one check as a Hypothesis property; never raises for a failing check."""
    profiles.load_every_module()  # the same drawn cases in any process, after any other check
    result = CheckResult(check.name, check.op)
    labels: collections.Counter[str] = collections.Counter()
    reports: list[str] = []

    def compare_case(case: Any) -> None:
        try:
            expected = check.reference(case, numerics)
        except EngineNotSpecifiedError:
            labels[NOT_SPECIFIED] += 1
            return
        except EngineRefusedError as refusal:
            if not torch_refuses(check, case):
                result.failure = {"case": repr(case), "first": [],
                                  "summary": f"the reference refuses the case ({refusal}); torch computed a value"}
                raise MismatchError(f"{check.name}: {result.failure['summary']}") from None
            result.cases += 1
            labels["refused by both"] += 1
            return
        with oracle(), native_notices_filtered():  # QNNPACK's refusal lines and observer notices on fd 2
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

    test = check_property(check, settings_profile, compare_case, "conform")

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
    if result.status in ("ok", "VACUOUS") and result.cases == 0 and labels[NOT_SPECIFIED]:
        result.status = NOT_SPECIFIED
    return result


def torch_refuses(check: OpCheck, case: Any) -> bool:
    """Whether torch (under the oracle engine) raises a RuntimeError on `case`."""
    try:
        with oracle(), native_notices_filtered():
            check.torch(case)
    except RuntimeError:
        return True
    return False


def check_property(
    check: OpCheck, settings_profile: str, body: Callable[[Any], None], key: str
) -> Callable[[], None]:
    """`body(case)` as a Hypothesis test over the check's cases, its pinned examples first, under
    the settings profile (scaled by the check's budget). `key` + the check's name is its
    database key and, in derandomized runs, its seed."""
    body.__name__ = body.__qualname__ = f"{key}_{check.name}"  # its database key
    test = given(check.cases)(body)
    for pinned in reversed(check.examples):
        test = example(pinned)(test)
    test_settings = profiles.get(settings_profile, check.budget)
    if test_settings.derandomize:
        # Derandomized runs draw from the check's name, not from the digest of this function's
        # source (Hypothesis's default), so that editing the runner does not reshuffle every case.
        test = seed(f"quantspec-{key}-{check.name}")(test)
    return test_settings(test)


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
    jobs: int = 1,
    scheduler: Optional[str] = None,
) -> RunResult:
    """Run the given checks; print the table to `out` (if given); return the results.

    `numerics` defaults to the profile detected for the running torch and CPU. With `jobs` > 1
    or a Dask `scheduler` the checks (registered ones: workers look them up by name) run in
    other processes (`production.parallel.ordered_map`); each check is independent and, when
    derandomized (smoke, and every profile in CI), seeded by its name and drawing from the
    same constants in any process (`settings.load_every_module`), so the report is a serial
    run's but for the seconds. Locally, default and thorough runs draw new cases every run.
    """
    profiles.hypothesis_name(settings_profile)  # validates the name before any work
    if numerics is None:
        from quantspec.production.environment import detect_profile

        numerics = detect_profile()
    run = RunResult(environment(numerics), settings_profile, [])
    if out is not None:
        print(format_environment(run), file=out, flush=True)
    with profiles.hypothesis_storage():
        for result in _results(checks, settings_profile, numerics, jobs, scheduler):
            run.checks.append(result)
            if out is not None:
                print(format_row(run.checks[-1]), file=out, flush=True)
    if out is not None:
        print(format_summary(run), file=out, flush=True)
    return run


def _results(
    checks: Sequence[OpCheck], settings_profile: str, numerics: NumericsProfile, jobs: int, scheduler: Optional[str]
) -> Iterator[CheckResult]:
    """Each check's result, in order: here, or sharded by check name over processes or Dask."""
    if jobs == 1 and not scheduler:
        return (run_check(check, settings_profile, numerics) for check in checks)
    from quantspec.production.parallel import ordered_map

    tasks = [(check.name, settings_profile, numerics) for check in checks]
    return ordered_map(run_named_check, tasks, jobs, scheduler)


@silenced_in_workers
def run_named_check(task: tuple[str, str, NumericsProfile]) -> CheckResult:
    """`run_check` of the registered check named `task[0]` under settings profile `task[1]` and
    numerics `task[2]`, torch under that profile's engine: a worker's unit of work."""
    name, settings_profile, numerics = task
    with oracle_engine(numerics.engine), profiles.hypothesis_storage():
        return run_check(select([name])[0], settings_profile, numerics)


def run(
    names: Optional[Sequence[str]] = None,
    settings_profile: str = "smoke",
    json_path: Optional[str] = None,
    out: Optional[TextIO] = sys.stdout,
    engine: str = "fbgemm",
    jobs: int = 1,
    scheduler: Optional[str] = None,
) -> RunResult:
    """Run the registered checks named (all if none) with torch under the quantized `engine`
    against the reference in this process's profile for it, and optionally write JSON
    (atomically: an interrupted run leaves no partial file). `jobs`, `scheduler`: see `run_checks`."""
    from quantspec.production.environment import detect_profile

    with oracle_engine(engine):
        result = run_checks(select(names), settings_profile, detect_profile(engine), out, jobs, scheduler)
    if json_path:
        write_text_atomically(json_path, json.dumps(result.to_json(), indent=2))
    return result


# --- the table -------------------------------------------------------------------------------

_COLUMNS = (
    f"{'check':<28} {'status':<9} {'cases':>7} {'vacuous':>7} {'elements':>11} {'inform.':>7} {'mismatch':>8} "
    f"{'sec':>7}  labels"
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
    bad = [c.name for c in run.checks if c.status not in ("ok", NOT_SPECIFIED)]
    unspecified = [c.name for c in run.checks if c.status == NOT_SPECIFIED]
    summary = "all checks bit-exact" if not bad else f"FAILED: {', '.join(bad)}"
    if unspecified:
        summary += (f"\nNOT SPECIFIED under engine {run.environment['engine']} (nothing compared): "
                    f"{', '.join(unspecified)}")
    return summary
