"""The five observers' calculate_qparams against torch's, bitwise (scale bits and zero points).

One check, "observers": each case draws an observer class, its parameters, and 1-4
batches of data from different families (normal, heavy-tailed with outliers, relu-like,
constant, all-zero, single element, huge, tiny, subnormal, mixed magnitudes, +-inf/NaN
specials). torch runs the eager observer from torch.ao.quantization.observer; the
reference runs reference.observers. The output compared is
`[scale_0..scale_C-1, zero_point_0..zero_point_C-1]` as float64 (exact for both).

`python -m conformance.checks.observers --observer HistogramObserver --cases 100000`
runs one observer's cases outside CI and prints the agreement count.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.ao.quantization.observer as torch_observers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantspec.production.environment import known_deprecations_silenced
from quantspec.reference import observers as reference_observers
from quantspec.reference.profile import NumericsProfile

from ..oracles import oracle
from ..strategies import format_array, one_in
from . import OpCheck, register

OBSERVERS = (
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
)
FAMILIES = (
    "normal", "heavy", "relu", "constant", "zeros", "single", "huge", "tiny", "subnormal", "magnitudes", "specials"
)
MAX_BATCH_ELEMENTS = 4096


@dataclass(frozen=True)
class Batch:
    """How one batch is built: `family` values of `shape`, magnitude 10^exponent, offset."""

    family: str
    shape: tuple[int, ...]
    exponent: float
    offset: float

    def build(self, seed: int, allow_nan: bool) -> np.ndarray:
        rng = np.random.default_rng(seed)
        scale = 10.0**self.exponent
        n = int(np.prod(self.shape))
        if self.family == "normal":
            values = rng.standard_normal(n) * scale + self.offset
        elif self.family == "heavy":
            values = rng.standard_t(1.5, n) * scale
            outliers = rng.random(n) < 0.01
            values[outliers] *= 1e3
        elif self.family == "relu":
            values = np.maximum(rng.standard_normal(n) * scale + self.offset, 0)
        elif self.family in ("constant", "single"):
            values = np.full(n, self.offset)
        elif self.family == "zeros":
            values = np.zeros(n)
        elif self.family == "huge":
            values = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(30, 38.5, n)
        elif self.family == "tiny":
            values = rng.standard_normal(n) * 10.0 ** rng.uniform(-38, -30, n)
        elif self.family == "subnormal":
            values = rng.integers(-(2**23), 2**23, n) * 2.0**-149
        elif self.family == "magnitudes":
            values = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
        else:  # specials: normal data with a few +-inf (and NaN where the observer takes it)
            values = rng.standard_normal(n) * scale
            specials = [np.inf, -np.inf] + ([np.nan] if allow_nan else [])
            where = rng.random(n) < 0.05
            values[where] = rng.choice(specials, int(where.sum()))
        values = np.clip(values, -3.4028235e38, 3.4028235e38, where=np.isfinite(values), out=values)
        return values.astype(np.float32).reshape(self.shape)


@dataclass(frozen=True)
class ObserverCase:
    """An observer, its torch keyword arguments (reference spelling), and its batches."""

    observer: str
    kwargs: tuple[tuple[str, Any], ...]
    batches: tuple[Batch, ...]
    seed: int

    def arrays(self) -> list[np.ndarray]:
        allow_nan = self.observer != "HistogramObserver"
        return [batch.build(self.seed + i, allow_nan) for i, batch in enumerate(self.batches)]

    def __repr__(self) -> str:
        shown = [format_array(a, limit=16) for a in self.arrays()]
        return (
            f"ObserverCase(observer={self.observer!r}, kwargs={self.kwargs!r}, batches={self.batches!r}, "
            f"seed={self.seed})  # arrays: {shown}"
        )


# --- strategies --------------------------------------------------------------------------------


@st.composite
def observer_kwargs(draw: st.DrawFn, observer: str) -> tuple[tuple[str, Any], ...]:
    """Parameters as people pass them: defaults, the qconfig presets' choices, and odd ones."""
    per_channel = "PerChannel" in observer
    dtype = draw(st.sampled_from(["quint8", "qint8"] + (["qint32"] if observer != "HistogramObserver" else [])))
    schemes = (
        ("per_channel_affine", "per_channel_symmetric")
        if per_channel
        else ("per_tensor_affine", "per_tensor_symmetric")
    )
    qscheme = draw(st.sampled_from(schemes))
    kwargs: dict[str, Any] = {"dtype": dtype, "qscheme": qscheme}
    symmetric_quint8 = qscheme.endswith("symmetric") and dtype == "quint8"
    if dtype != "qint32" and not symmetric_quint8:
        kwargs["reduce_range"] = draw(st.booleans())
    if dtype != "qint32" and draw(one_in(4)):
        low, high = (-127, 127) if dtype == "qint8" else (0, 127)
        kwargs["quant_min"], kwargs["quant_max"] = draw(st.sampled_from([(low, high), (low // 2, high // 2)]))
    if draw(one_in(4)):
        kwargs["eps"] = draw(st.sampled_from([2.0**-12, 1e-10, 0.5, 1e-45]))
    if "MovingAverage" in observer:
        kwargs["averaging_constant"] = draw(st.sampled_from([0.01, 0.5, 1.0, 0.1]) | st.floats(0.0, 1.0, width=32))
    if observer == "HistogramObserver":
        kwargs["bins"] = draw(st.sampled_from([2048, 2048, 256, 64, 8, 3, 1]))
    return tuple(sorted(kwargs.items()))


@st.composite
def batch_plans(draw: st.DrawFn, observer: str) -> tuple[tuple[Batch, ...], tuple[tuple[str, Any], ...]]:
    """1-4 batches; per-channel observers keep the channel count on `ch_axis` fixed."""
    per_channel = "PerChannel" in observer
    ndim = draw(st.integers(2 if per_channel else 1, 4))  # torch's per-channel flatten needs >= 2 dims
    extra: tuple[tuple[str, Any], ...] = ()
    channels = draw(st.integers(1, 64))
    ch_axis = draw(st.integers(-ndim, ndim - 1))
    if per_channel:
        extra = (("ch_axis", ch_axis),)
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        family = draw(st.sampled_from(FAMILIES))
        if family == "single" and not per_channel:
            shape: tuple[int, ...] = draw(st.sampled_from([(), (1,), (1, 1)]))
        else:
            budget = MAX_BATCH_ELEMENTS // (channels if per_channel else 1)
            dims = [draw(st.integers(1, max(1, int(budget ** (1 / ndim))))) for _ in range(ndim)]
            if draw(one_in(20)):
                dims[draw(st.integers(0, ndim - 1))] = 0  # an empty batch: ignored by every observer
            if per_channel:
                dims[ch_axis % ndim] = channels
            shape = tuple(dims)
        exponent = draw(st.floats(-4, 4))
        offset = draw(st.sampled_from([0.0, 1.0, -1.0]) | st.floats(-1e6, 1e6, width=32)) * (
            1.0 if family in ("constant", "single") else 10.0**exponent
        )
        batches.append(Batch(family, shape, exponent, offset))
    return tuple(batches), extra


@st.composite
def observer_cases(draw: st.DrawFn, observers: tuple[str, ...] = OBSERVERS) -> ObserverCase:
    observer = draw(st.sampled_from(observers))
    batches, extra = draw(batch_plans(observer))
    kwargs = tuple(sorted(draw(observer_kwargs(observer)) + extra))
    return ObserverCase(observer, kwargs, batches, draw(st.integers(0, 2**32 - 1)))


# --- the two sides ---------------------------------------------------------------------------------


# Both sides refuse a running min above the running max (a moving average can round
# min one ulp above max on single-value batches): torch raises AssertionError, the
# reference ValueError. The compared output is then this marker, on both sides.
REFUSED_MIN_ABOVE_MAX = np.array([-1.0])


# What torch's observers (and the reference's, which mirror them) say on purpose: an
# observer that saw nothing returns default qparams, an infinite batch is skipped.
OBSERVER_NOTICES = (r"must run observer before calling calculate_qparams", r"torch\.inf detected in input tensor")


@contextlib.contextmanager
def observer_notices_silenced() -> Iterator[None]:
    """Ignore torch's known deprecations and the two observer notices above, by message."""
    with known_deprecations_silenced(), warnings.catch_warnings():
        for message in OBSERVER_NOTICES:
            warnings.filterwarnings("ignore", message=message)
        yield


def reference(case: ObserverCase, profile: NumericsProfile) -> np.ndarray:
    del profile  # observers are the same on every profile (docs/spec.md, "Calibration")
    observer = getattr(reference_observers, case.observer)(**dict(case.kwargs))
    with observer_notices_silenced():
        for array in case.arrays():
            observer.observe(array)
        try:
            scale, zero_point = observer.calculate_qparams()
        except ValueError as error:
            if "should be less than max" not in str(error):
                raise
            return REFUSED_MIN_ABOVE_MAX
    return _flat(scale, zero_point)


def torch_observer(name: str, **kwargs: Any) -> torch.nn.Module:
    """torch's observer class `name` built from reference-style kwargs: `dtype` and
    `qscheme` given as names ("qint8", "per_channel_symmetric") become torch's objects."""
    for key in ("dtype", "qscheme"):
        if key in kwargs:
            kwargs[key] = getattr(torch, kwargs[key])
    return getattr(torch_observers, name)(**kwargs)


def oracle_qparams(case: ObserverCase) -> np.ndarray:
    with observer_notices_silenced():
        observer = torch_observer(case.observer, **dict(case.kwargs))
        for array in case.arrays():
            observer(torch.from_numpy(np.array(array, copy=True)))
        try:
            scale, zero_point = observer.calculate_qparams()
        except AssertionError as error:
            if "should be less than max" not in str(error):
                raise
            return REFUSED_MIN_ABOVE_MAX
    return _flat(scale.numpy(), zero_point.numpy())


def _flat(scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(scale, np.float32).astype(np.float64), np.asarray(zero_point).astype(np.float64)])


def informative(case: ObserverCase, output: np.ndarray) -> int:
    """2 (scale and zero point) per channel whose scale is finite and neither the
    default 1.0 nor clamped to eps."""
    scales = output[: output.size // 2]
    eps = np.float32(dict(case.kwargs).get("eps", np.finfo(np.float32).eps))
    return 2 * int(np.count_nonzero(np.isfinite(scales) & (scales != 1.0) & (scales != eps)))


def label(case: ObserverCase) -> Iterator[str]:
    yield case.observer
    kwargs = dict(case.kwargs)
    yield f"{kwargs['dtype']}-{kwargs['qscheme'].split('_')[-1]}"
    if len(case.batches) > 1:
        yield "multi-batch"
    yield from sorted({batch.family for batch in case.batches})


EXAMPLES = (
    # Few bins and few values: the L2 search moves through every bin (the doctest's shape).
    ObserverCase("HistogramObserver", (("bins", 4), ("dtype", "quint8"), ("qscheme", "per_tensor_affine")),
                 (Batch("normal", (4,), 0.0, 0.0),), 0),
    # A constant first batch, then a wider one: _combine_histograms' one-point branch.
    ObserverCase("HistogramObserver", (("dtype", "quint8"), ("qscheme", "per_tensor_affine"), ("reduce_range", True)),
                 (Batch("constant", (5,), 0.0, 2.5), Batch("normal", (300,), 1.0, 0.0)), 1),
    # Exact .5 ties of the zero point (drawn data almost never lands on one): min -2.5 and
    # max 252.5 give scale 255/255 = 1 and zp = qmin - rne(-2.5) = qmin + 2 (half to even;
    # half away from zero would give qmin + 3).
    ObserverCase("MinMaxObserver", (("dtype", "quint8"), ("qscheme", "per_tensor_affine")),
                 (Batch("constant", (1,), 0.0, -2.5), Batch("constant", (1,), 0.0, 252.5)), 0),
    ObserverCase("MinMaxObserver", (("dtype", "qint8"), ("qscheme", "per_tensor_affine")),
                 (Batch("constant", (1,), 0.0, -2.5), Batch("constant", (1,), 0.0, 252.5)), 0),
    # reduce_range (0..127): min -2.5, max 124.5, scale 1, zp rne(2.5) = 2.
    ObserverCase("MinMaxObserver", (("dtype", "quint8"), ("qscheme", "per_tensor_affine"), ("reduce_range", True)),
                 (Batch("constant", (1,), 0.0, -2.5), Batch("constant", (1,), 0.0, 124.5)), 0),
    ObserverCase("PerChannelMinMaxObserver", (("dtype", "quint8"), ("qscheme", "per_channel_affine")),
                 (Batch("constant", (2, 1), 0.0, -2.5), Batch("constant", (2, 1), 0.0, 252.5)), 0),
)

CHECK = register(
    OpCheck(
        name="observers",
        op="torch.ao.quantization.observer",
        cases=observer_cases(),
        reference=reference,
        torch=oracle_qparams,
        label=label,
        examples=EXAMPLES,
        informative=informative,
        min_informative=0.3,
        budget=0.5,
    )
)


def agreement(observer: str, cases: int, progress: int = 0) -> tuple[int, int, list[str]]:
    """Run `cases` Hypothesis cases of one observer outside the runner; return
    (agreeing, total, the first few disagreeing cases). `progress`: print counts every N cases."""
    counts = {"agree": 0, "total": 0}
    failures: list[str] = []

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(observer_cases((observer,)))
    def run(case: ObserverCase) -> None:
        expected = reference(case, None)  # type: ignore[arg-type]
        with oracle():
            actual = oracle_qparams(case)
        counts["total"] += 1
        if np.array_equal(expected.view(np.uint64), actual.view(np.uint64)):
            counts["agree"] += 1
        elif len(failures) < 5:
            failures.append(repr(case))
        if progress and counts["total"] % progress == 0:
            print(f"  {observer}: {counts['agree']} of {counts['total']} so far", flush=True)

    run()
    return counts["agree"], counts["total"], failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observer", choices=OBSERVERS, required=True)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--progress", type=int, default=0, help="print the counts every N cases")
    args = parser.parse_args()
    start = time.perf_counter()
    agree, total, failures = agreement(args.observer, args.cases, args.progress)
    print(
        f"{args.observer}: {agree} of {total} cases bitwise equal ({time.perf_counter() - start:.0f} s), "
        f"torch {torch.__version__}"
    )
    for failure in failures:
        print("  differs:", failure)


if __name__ == "__main__":
    main()
