"""The registry of per-op checks.

Each module in this package defines one `OpCheck` and registers it with `register`.
`load_all()` imports every module here, so adding a check is adding a file: nothing
else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.numerics import recording_intermediates
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QTensor

from ..settings import Budget
from ..targets import TargetCall

Output = Union[QTensor, np.ndarray]


@dataclass(frozen=True)
class OpCheck:
    """How to check one op against torch.

    Attributes:
        name: the check's name, used by `quantspec conform --ops` (e.g. "quantize_per_tensor").
        op: the torch op it checks (e.g. "aten::quantize_per_tensor").
        cases: Hypothesis strategy of case objects (from `conformance.strategies`; their repr
            is what a failure report prints, so it must be enough to rebuild the case).
        reference: `reference(case, profile)` -> QTensor or ndarray, from `reference` only.
        torch: `torch(case)` -> the same kind of value, computed by torch (the runner pins
            the oracle engine around the call, fbgemm unless `oracles.oracle_engine` says
            otherwise: prepack inside it; use `production.bridge` to convert).
        fast: `fast(case, profile)` -> the same value from the reference's fast kernel
            (`quantspec.reference.fast`), or None for ops without one; when given, it must
            equal `reference` bit for bit on every case, as torch must.
        label: `label(case)` -> coverage buckets the case falls in (e.g. "tail", "qint8").
        examples: cases that always run first (pinned past failures, hand-worked edges).
        informative: vacuity rule: `informative(case, reference_output)` -> how many output
            elements carry information (default: QTensor elements strictly inside
            (qmin, qmax), float elements that are finite).
        min_informative: the run is VACUOUS when informative elements are a smaller
            fraction than this of all compared elements.
        budget: multiplies the profile's max_examples: one float for every profile (slow ops
            use < 1), or a mapping {profile: multiplier} naming every profile (see
            `conformance.settings`: small cases get a larger default budget).
        call: `call(case)` -> the case as a `targets.TargetCall` (explicit arrays, qparams and
            op arguments), for ops any target can be judged on (`quantspec conform --target`,
            golden vector packs); None when the op is not in the target protocol.
        explain: `explain(case, profile)` -> the reference's named intermediate arrays, each
            of the output's shape (e.g. accumulator, requantized float, rounded value), shown
            at a mismatching element so that an implementer sees which step differs.
    """

    name: str
    op: str
    cases: st.SearchStrategy
    reference: Callable[[Any, NumericsProfile], Output]
    torch: Callable[[Any], Output]
    fast: Optional[Callable[[Any, NumericsProfile], Output]] = None
    label: Callable[[Any], Iterable[str]] = lambda case: ()
    examples: Sequence[Any] = ()
    informative: Optional[Callable[[Any, Output], int]] = None
    min_informative: float = 0.2
    budget: Budget = 1.0
    call: Optional[Callable[[Any], TargetCall]] = None
    explain: Optional[Callable[[Any, NumericsProfile], dict[str, np.ndarray]]] = None

    def expected(self, case: Any, profile: NumericsProfile) -> np.ndarray:
        """The reference's output for `case` as a target returns it: the integers of a QTensor
        (logical order), a float array as it is."""
        output = self.reference(case, profile)
        return np.ascontiguousarray(output.int_repr if isinstance(output, QTensor) else output)

    def count_informative(self, case: Any, output: Output) -> int:
        """The vacuity rule's count for one case."""
        if self.informative is not None:
            return int(self.informative(case, output))
        return default_informative(output)


def default_informative(output: Output) -> int:
    """Elements not saturated at the dtype's ends (QTensor), or finite (float arrays)."""
    if isinstance(output, QTensor):
        ints = output.int_repr
        return int(np.count_nonzero((ints > output.dtype.qmin) & (ints < output.dtype.qmax)))
    values = np.asarray(output)
    if values.dtype.kind == "f":
        return int(np.count_nonzero(np.isfinite(values)))
    return int(values.size)


def explained(compute: Callable[[], QTensor], nhwc_steps: bool = False) -> dict[str, np.ndarray]:
    """The steps the reference records (`numerics.recording_intermediates`) while `compute()`
    runs, each in the output's logical shape (`nhwc_steps`: recorded channels last, as conv's
    output stage runs), plus "output"."""
    with recording_intermediates() as steps:
        output = compute()
    shape = output.int_repr.shape
    if nhwc_steps:
        steps = {name: value.transpose(0, 3, 1, 2) for name, value in steps.items()}
    return {**{name: np.reshape(value, shape) for name, value in steps.items()}, "output": output.int_repr}


def tensor_arguments(q: QTensor, qparams_prefix: str = "") -> dict[str, Any]:
    """A quantized input as the target protocol passes it: `x`, `{prefix}scale`,
    `{prefix}zero_point` (float and int; per-channel: float64 and int64 arrays), `dtype` and
    `channels_last`."""
    if q.per_channel:
        scale: Any = np.asarray(q.scale, np.float64)
        zero_point: Any = np.asarray(q.zero_point, np.int64)
    else:
        scale, zero_point = float(q.scale), int(q.zero_point)
    return {"x": q.int_repr, f"{qparams_prefix}scale": scale, f"{qparams_prefix}zero_point": zero_point,
            "dtype": q.dtype.label, "channels_last": q.memory_format is MemoryFormat.channels_last}


CHECKS: dict[str, OpCheck] = {}


def register(check: OpCheck) -> OpCheck:
    """Add a check to the registry (names must be unique)."""
    if check.name in CHECKS and CHECKS[check.name] is not check:
        raise ValueError(f"conformance check {check.name!r} is registered twice")
    CHECKS[check.name] = check
    return check


def load_all() -> dict[str, OpCheck]:
    """Import every check module in this package; return the registry."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return CHECKS


def select(names: Optional[Sequence[str]] = None) -> list[OpCheck]:
    """The registered checks named (all when `names` is empty), in registry order."""
    checks = load_all()
    if not names:
        return list(checks.values())
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ValueError(f"unknown conformance check(s) {unknown}; registered: {sorted(checks)}")
    return [checks[n] for n in names]
