"""Judge a target (`conformance.targets`) against the reference: `quantspec conform --target T`.

For every check with a target call (`OpCheck.call`) whose op the target implements, the
check's cases are drawn under the settings profile; the reference in the chosen numerics
profile is the oracle. A first pass runs the whole budget and counts cases, elements,
mismatching elements, max |diff| and a histogram of the differences (target - reference);
when some difference exceeds the accepted envelope (`max_abs_diff`, 0 unless the user says
otherwise), a second pass lets Hypothesis shrink it and the report prints the shrunk case as
a runnable snippet with the reference's intermediate steps (`OpCheck.explain`) at the first
differing elements.
"""

from __future__ import annotations

import collections
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence, TextIO

import numpy as np
from hypothesis import reporting

from quantspec.reference.profile import NumericsProfile

from . import settings as profiles
from .checks import OpCheck, select
from .runner import MAX_SHOWN_DIFFERENCES, MismatchError, check_property, json_scalar
from .targets import Target, TargetCall, UnsupportedCase, load_target, ordered, run_call

HISTOGRAM_EDGE = 8  # differences beyond +-8 share one bucket each side


@dataclass
class TargetCheckResult:
    """How a target did on one op."""

    name: str
    op: str
    status: str = "ok"
    cases: int = 0
    skipped: int = 0  # cases the target raised UnsupportedCase for
    elements: int = 0
    mismatched_elements: int = 0
    max_abs_diff: int = 0
    histogram: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    counterexample: Optional[dict[str, Any]] = None
    error: Optional[str] = None

    @property
    def mismatch_rate(self) -> float:
        return self.mismatched_elements / self.elements if self.elements else 0.0


@dataclass
class TargetRun:
    """A target judged on every op it implements; `max_abs_diff` is the accepted envelope
    (None: bit-exact required)."""

    target: str
    numerics_profile: str
    settings_profile: str
    max_abs_diff: Optional[int]
    checks: list[TargetCheckResult] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "numerics_profile": self.numerics_profile,
            "settings_profile": self.settings_profile, "accepted_max_abs_diff": self.max_abs_diff,
            "ok": self.ok, "not_judged": self.not_judged,
            "checks": [dict(asdict(c), mismatch_rate=c.mismatch_rate) for c in self.checks],
        }


def differences(check: OpCheck, target: Target, case: Any, numerics: NumericsProfile) -> tuple[
    TargetCall, np.ndarray, np.ndarray, np.ndarray
]:
    """(call, reference output, target output, target - reference as int64: integer steps, or
    float32 ulps for float outputs, `targets.ordered`) for one case."""
    expected = check.expected(case, numerics)
    call = check.call(case)
    actual = run_call(target, call, expected.shape)
    return call, expected, actual, ordered(actual) - ordered(expected)


def _bucket(difference: int) -> str:
    if difference >= HISTOGRAM_EDGE:
        return f">={HISTOGRAM_EDGE}"
    if difference <= -HISTOGRAM_EDGE:
        return f"<=-{HISTOGRAM_EDGE}"
    return str(difference)


def judge_check(
    check: OpCheck, target: Target, spec: str, settings_profile: str, numerics: NumericsProfile, envelope: int
) -> TargetCheckResult:
    """Judge `target` on one check; never raises for a failing target."""
    result = TargetCheckResult(check.name, check.op)
    histogram: collections.Counter[str] = collections.Counter()
    failing: list[Any] = []

    def measure(case: Any) -> None:
        try:
            _, _, _, diff = differences(check, target, case, numerics)
        except UnsupportedCase:
            result.skipped += 1
            return
        result.cases += 1
        result.elements += diff.size
        nonzero = diff[diff != 0]
        result.mismatched_elements += nonzero.size
        if nonzero.size:
            worst = int(np.abs(nonzero).max())
            result.max_abs_diff = max(result.max_abs_diff, worst)
            histogram.update(_bucket(int(d)) for d in nonzero)
            if worst > envelope and not failing:
                failing.append(case)

    def shrink(case: Any) -> None:
        try:
            _, _, _, diff = differences(check, target, case, numerics)
        except UnsupportedCase:
            return
        if diff.size and np.abs(diff).max() > envelope:
            failing.append(case)  # the last one recorded is Hypothesis's replay of the shrunk case
            raise MismatchError(check.name)

    start = time.perf_counter()
    try:
        with reporting.with_reporter(lambda _: None), profiles.active(settings_profile):
            check_property(check, settings_profile, measure, "judge")()
            if failing:
                try:
                    check_property(check, settings_profile, shrink, "judge")()
                except MismatchError:
                    pass
    except Exception as error:  # the target crashed or broke the protocol: nothing judged
        result.status = "ERROR"
        result.error = "".join(traceback.format_exception_only(type(error), error)).strip()
    result.seconds = round(time.perf_counter() - start, 3)
    result.histogram = dict(sorted(histogram.items(), key=lambda item: _bucket_order(item[0])))
    if failing and result.status == "ok":
        result.status = "MISMATCH"
        result.counterexample = counterexample(check, target, spec, failing[-1], numerics)
    return result


def _bucket_order(bucket: str) -> int:
    return int(bucket.lstrip("<>=")) * (-1 if bucket.startswith("<") else 1)


def counterexample(check: OpCheck, target: Target, spec: str, case: Any, numerics: NumericsProfile) -> dict[str, Any]:
    """The case, a runnable snippet, and the first differing elements with the reference's steps."""
    call, expected, actual, diff = differences(check, target, case, numerics)
    steps = check.explain(case, numerics) if check.explain is not None else {"output": expected}
    first = []
    for index in list(zip(*np.nonzero(diff)))[:MAX_SHOWN_DIFFERENCES]:
        entry: dict[str, Any] = {"index": [int(i) for i in index], "reference": json_scalar(expected[index]),
                                 "target": json_scalar(actual[index])}
        entry.update({f"reference {name}": json_scalar(value[index]) for name, value in steps.items()
                      if name != "output"})
        first.append(entry)
    return {"case": repr(case), "snippet": snippet(spec, numerics, call, expected), "first": first}


def snippet(spec: str, numerics: NumericsProfile, call: TargetCall, expected: np.ndarray) -> str:
    """Python that calls the target on the case and prints where it differs from `expected`."""
    arguments = "\n".join(f"    {name}={literal(value)}," for name, value in call.arguments.items())
    return "\n".join([
        "import numpy as np",
        "from quantspec.conformance.targets import load_target",
        "from quantspec.reference.profile import get_profile",
        f"target = load_target({spec!r}, get_profile({numerics.name!r}))",
        f"out = target.{call.op}(\n{arguments}\n)",
        f"expected = {literal(expected)}",
        "print('differ at', np.argwhere(out != expected).tolist(), 'target', out[out != expected].tolist(),"
        " 'reference', expected[out != expected].tolist())",
    ])


def literal(value: Any) -> str:
    """Python source that rebuilds `value` exactly (floats by repr, NaN and inf spelled out)."""
    if isinstance(value, np.ndarray):
        items = ", ".join(literal(v) for v in value.ravel().tolist())
        return f"np.array([{items}], dtype=np.{value.dtype}).reshape({value.shape})"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return repr(number) if np.isfinite(number) else f"float({str(number)!r})"
    if isinstance(value, np.integer):
        return repr(int(value))
    if isinstance(value, list):  # cat's tensors, scales, ...
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def judge(
    spec: str,
    names: Optional[Sequence[str]],
    settings_profile: str,
    numerics: NumericsProfile,
    max_abs_diff: Optional[int] = None,
    out: Optional[TextIO] = sys.stdout,
) -> TargetRun:
    """Judge the target `spec` (see `targets.load_target`) on the checks named (all if none)
    that it implements; print the report to `out`; return the results."""
    profiles.hypothesis_name(settings_profile)  # validates the name before any work
    target = load_target(spec, numerics)
    run = TargetRun(target.name, numerics.name, settings_profile, max_abs_diff)
    checks = select(names)
    judged = [check for check in checks if check.call is not None and check.name in target.ops]
    run.not_judged = [check.name for check in checks if check not in judged]
    _print(out, format_header(run))
    with profiles.hypothesis_storage():
        for check in judged:
            run.checks.append(judge_check(check, target, spec, settings_profile, numerics, max_abs_diff or 0))
            _print(out, format_row(run.checks[-1]))
    _print(out, format_summary(run))
    return run


def _print(out: Optional[TextIO], text: str) -> None:
    if out is not None:
        print(text, file=out, flush=True)


def format_header(run: TargetRun) -> str:
    envelope = "bit-exact required" if run.max_abs_diff is None else f"ACCEPTED ENVELOPE |diff| <= {run.max_abs_diff}"
    return (
        f"quantspec conform --target {run.target}: oracle reference[{run.numerics_profile}], "
        f"settings {run.settings_profile}, {envelope}\n"
        f"{'op':<22} {'status':<9} {'cases':>6} {'elements':>10} {'mismatch':>9} {'max|d|':>6} {'sec':>6}  histogram"
    )


def format_row(check: TargetCheckResult) -> str:
    histogram = " ".join(f"{k}:{v}" for k, v in check.histogram.items())
    row = (f"{check.name:<22} {check.status:<9} {check.cases:>6} {check.elements:>10} {check.mismatch_rate:>9.3%} "
           f"{check.max_abs_diff:>6} {check.seconds:>6.1f}  {histogram}")
    if check.skipped:
        row += f"  ({check.skipped} cases skipped: unsupported by the target)"
    if check.error:
        row += f"\n    {check.error}"
    if check.counterexample:
        example = check.counterexample
        lines = [f"shrunk case: {example['case']}", "runnable:", *("  " + s for s in example["snippet"].splitlines())]
        lines += ["  at " + ", ".join(f"{k}={v}" for k, v in d.items()) for d in example["first"]]
        row += "\n" + "\n".join("    " + line for line in lines)
    return row


def format_summary(run: TargetRun) -> str:
    lines = [f"not judged (no target call, or not in the target's ops): {', '.join(run.not_judged)}"] * bool(
        run.not_judged
    )
    bad = [c.name for c in run.checks if c.status != "ok"]
    lines.append(f"FAILED: {', '.join(bad)}" if bad else "every judged op within the envelope"
                 if run.max_abs_diff else "every judged op bit-exact")
    return "\n".join(lines)
