"""The target protocol and `quantspec conform --target`: a wrong target is caught with the
right op and a shrunk, runnable counterexample; torch as a target keeps today's verdict; an
accepted envelope is stated in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("hypothesis")

from quantspec.conformance.judge import judge
from quantspec.conformance.targets import OPS, ReferenceTarget, TargetError, load_target
from quantspec.production import cli
from quantspec.production.environment import detect_profile

PROFILE = detect_profile()
QRANGE = {"quint8": (0, 255, np.uint8), "qint8": (-128, 127, np.int8), "qint32": (-(2**31), 2**31 - 1, np.int32)}


class HalfAwayTarget:
    """quantize_per_tensor rounding half away from zero (torch rounds half to even)."""

    name = "half-away"
    ops = frozenset({"quantize_per_tensor"})

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        low, high, storage = QRANGE[dtype]
        with np.errstate(all="ignore"):
            t = x.astype(np.float64) / scale
            rounded = np.nan_to_num(np.sign(t) * np.floor(np.abs(t) + 0.5), nan=high, posinf=high, neginf=low)
            return np.clip(rounded + zero_point, low, high).astype(storage)


class OffByOneTarget(ReferenceTarget):
    """The reference, with its first unsaturated quint8 output one higher: a difference of 1."""

    name = "off-by-one"
    ops = frozenset({"quantize_per_tensor"})

    def __init__(self) -> None:
        super().__init__(PROFILE)

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        out = super().quantize_per_tensor(x, scale, zero_point, dtype).copy()
        below = np.flatnonzero(out.ravel() < np.iinfo(out.dtype).max)
        if below.size:
            out.ravel()[below[0]] += 1
        return out


class HalfAwayMeanTarget:
    """mean as a pool that averages the integers exactly and rounds half away from zero
    (torch rounds the float32 mean half to even)."""

    name = "half-away-mean"
    ops = frozenset({"mean", "quantize_per_tensor"})

    def mean(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
             dims: list[int], keepdim: bool, threads: int) -> np.ndarray:
        low, high, storage = QRANGE[dtype]
        centered = x.astype(np.int64) - zero_point
        count = np.prod([x.shape[d] for d in dims])
        average = centered.sum(axis=tuple(dims), keepdims=keepdim) / count
        rounded = np.sign(average) * np.floor(np.abs(average) + 0.5)
        return np.clip(rounded + zero_point, low, high).astype(storage)

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        return ReferenceTarget(PROFILE).quantize_per_tensor(x, scale, zero_point, dtype)


def test_a_wrong_pool_rounding_is_caught_on_mean_only() -> None:
    run = judge(f"{__name__}:HalfAwayMeanTarget", ["mean", "quantize_per_tensor"], "smoke", PROFILE, out=None)
    status = {c.name: c.status for c in run.checks}
    assert status == {"mean": "MISMATCH", "quantize_per_tensor": "ok"}
    result = run.checks[0]
    assert result.max_abs_diff == 1 and result.counterexample["case"].startswith("MeanCase(")
    namespace: dict = {}
    exec(result.counterexample["snippet"], namespace)
    assert not np.array_equal(namespace["out"], namespace["expected"])


def test_a_wrong_rounding_is_caught_with_a_shrunk_runnable_counterexample() -> None:
    run = judge(f"{__name__}:HalfAwayTarget", None, "smoke", PROFILE, out=None)
    assert [c.name for c in run.checks] == ["quantize_per_tensor"] and not run.ok
    result = run.checks[0]
    assert result.status == "MISMATCH" and 0 < result.mismatch_rate < 1 and result.max_abs_diff >= 1
    assert set(result.histogram) >= {"1", "-1"} or set(result.histogram) >= {"1"}
    example = result.counterexample
    assert example["case"].startswith("FloatArrayCase(") and len(example["first"]) <= 8
    first = example["first"][0]
    assert first["target"] != first["reference"] and "reference before_rounding" in first
    namespace: dict = {}
    exec(example["snippet"], namespace)  # runnable as printed
    assert not np.array_equal(namespace["out"], namespace["expected"])
    assert set(run.not_judged) >= {"conv2d", "linear", "add"}


def test_torch_as_a_target_reproduces_the_bit_exact_verdict() -> None:
    run = judge("torch", None, "smoke", PROFILE, out=None)
    assert {c.name for c in run.checks} == set(OPS)
    assert run.ok, [(c.name, c.status, c.counterexample, c.error) for c in run.checks]
    assert all(c.cases >= 20 and c.elements > 0 and c.mismatched_elements == 0 for c in run.checks)


def test_the_reference_judges_itself_bit_exact_through_every_adapter() -> None:
    # every op's call -> protocol arguments -> QTensors again: the adapters lose nothing
    run = judge("reference", None, "smoke", PROFILE, out=None)
    assert {c.name for c in run.checks} == set(OPS) and run.ok, [(c.name, c.status) for c in run.checks]


def test_an_accepted_envelope_is_stated_in_the_report_and_json(tmp_path, capsys) -> None:
    arguments = ["conform", "--profile", "smoke", "--ops", "quantize_per_tensor", "--target",
                 f"{__name__}:OffByOneTarget"]
    assert cli.main(arguments) == 1  # bit-exact required by default
    out_json = tmp_path / "run.json"
    assert cli.main([*arguments, "--max-abs-diff", "1", "--json", str(out_json)]) == 0
    assert "ACCEPTED ENVELOPE |diff| <= 1" in capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["accepted_max_abs_diff"] == 1 and report["checks"][0]["max_abs_diff"] == 1


def test_bad_targets_and_options_are_refused(capsys) -> None:
    with pytest.raises(TargetError, match="cannot be loaded"):
        load_target("no_such_module:Target", PROFILE)
    with pytest.raises(TargetError, match="needs a str `name`"):
        load_target("json:dumps", PROFILE)
    assert cli.main(["conform", "--profile", "smoke", "--numerics", PROFILE.name]) == 2
    assert "go with --target" in capsys.readouterr().err
