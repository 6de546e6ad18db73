"""The conformance runner must catch what it exists to catch: wrong references, vacuous
strategies, crashes; and its JSON and CLI must say so."""

from __future__ import annotations

import importlib
import json
import sys
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("torch")

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quantspec.conformance import runner
from quantspec.conformance.checks import CHECKS, OpCheck, load_all
from quantspec.conformance.checks import conv2d as conv_check
from quantspec.conformance.checks import quantize_per_tensor as qpt
from quantspec.conformance.strategies import (
    FloatArrayCase,
    QParams,
    QTensorCase,
    float_arrays,
    one_in,
    per_channel_float_arrays,
    qtensors,
    shapes,
)
from quantspec.production import cli
from quantspec.production.environment import detect_profile
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import QDtype, QTensor

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")

# quint8, scale 1, zp 100, values well inside the range: the right answer is never 0 or 255.
# Few, simple draws, so that shrinking a failure is quick.
IN_RANGE = hnp.arrays(np.float32, st.integers(1, 16), elements=st.floats(-50, 50, width=32)).map(
    lambda x: FloatArrayCase(x, 1.0, 100, QDtype.quint8)
)


def _plus_one(case: FloatArrayCase, profile) -> QTensor:
    """A deliberately wrong reference: the right integers + 1 (mod 256)."""
    right = qpt.reference(case, profile)
    return QTensor((right.int_repr.astype(np.int64) + 1) % 256, right.scale, right.zero_point, right.dtype)


def _check(name: str, **overrides) -> OpCheck:
    fields = dict(name=name, op="aten::quantize_per_tensor", cases=IN_RANGE, reference=qpt.reference, torch=qpt.oracle)
    fields.update(overrides)
    return OpCheck(**fields)


def test_a_reference_that_adds_one_is_a_mismatch_with_the_shrunk_case() -> None:
    result = runner.run_check(_check("plus_one", reference=_plus_one), "smoke", P213)
    assert result.status == "MISMATCH"
    assert result.mismatched_elements >= 1
    failure = result.failure
    assert failure["case"].startswith("FloatArrayCase(x=np.array([")  # small enough to pin
    first = failure["first"][0]
    assert (first["reference"] - first["torch"]) % 256 == 1
    assert "input" in first


def test_the_right_reference_passes_the_same_cases() -> None:
    result = runner.run_check(_check("right"), "smoke", P213)
    assert (result.status, result.mismatched_elements) == ("ok", 0)
    assert result.cases >= 40 and result.elements > result.cases
    assert result.informative_fraction > 0.9


def test_a_strategy_whose_outputs_all_saturate_is_vacuous() -> None:
    # Every value is 1e30 at scale 1: quantized to 255, which any saturating bug also gives.
    saturating = shapes(max_dims=1).map(
        lambda s: FloatArrayCase(np.full(s, 1e30, np.float32), 1.0, 100, QDtype.quint8)
    )
    result = runner.run_check(_check("saturating", cases=saturating), "smoke", P213)
    assert result.status == "VACUOUS"
    assert result.informative == 0 and result.vacuous_cases == result.cases


def test_a_crashing_oracle_is_an_error_not_a_pass() -> None:
    def broken(case):
        raise RuntimeError("oracle exploded")

    result = runner.run_check(_check("broken", torch=broken), "smoke", P213)
    assert result.status == "ERROR"
    assert "oracle exploded" in result.failure["error"]


def test_pinned_examples_run_first() -> None:
    seen = []
    pinned = FloatArrayCase(np.array([0.5, 1.5, 2.5, -0.5], np.float32), 1.0, 1, QDtype.quint8)

    def recording_reference(case, profile):
        seen.append(case)
        return qpt.reference(case, profile)

    runner.run_check(_check("pinned", reference=recording_reference, examples=(pinned,)), "smoke", P213)
    assert seen[0] is pinned


def test_float_outputs_compare_bits_so_nan_payloads_and_signed_zeros_differ() -> None:
    quiet_nan = np.array([np.nan], np.float32)
    other_nan = np.array([0x7FC00001], np.uint32).view(np.float32)
    assert runner.compare_outputs(quiet_nan, quiet_nan.copy()) is None
    assert runner.compare_outputs(quiet_nan, other_nan).mismatched_elements == 1
    assert runner.compare_outputs(np.array([0.0], np.float32), np.array([-0.0], np.float32)).mismatched_elements == 1


def test_qtensor_outputs_compare_qparams_too() -> None:
    a = QTensor(np.array([1, 2], np.uint8), 0.5, 3, "quint8")
    b = QTensor(np.array([1, 2], np.uint8), 0.25, 3, "quint8")
    assert "scale" in runner.compare_outputs(a, b).summary
    assert runner.compare_outputs(a, QTensor(np.array([1, 2], np.uint8), 0.5, 3, "quint8")) is None


def test_json_output_shape(tmp_path) -> None:
    path = tmp_path / "conform.json"
    code = cli.main(["conform", "--profile", "smoke", "--ops", "quantize_per_tensor", "--json", str(path)])
    data = json.loads(path.read_text())
    assert code == 0 and data["ok"] is True
    assert data["settings_profile"] == "smoke"
    assert set(data["environment"]) >= {"torch", "numerics_profile", "cpu_features", "engine"}
    (check,) = data["checks"]
    assert check["name"] == "quantize_per_tensor" and check["status"] == "ok"
    assert set(check) >= {"cases", "vacuous_cases", "elements", "informative", "informative_fraction",
                          "mismatched_elements", "seconds", "labels"}


def test_cli_exits_1_on_a_mismatch_and_2_on_an_unknown_op(monkeypatch, capsys) -> None:
    monkeypatch.setitem(CHECKS, "plus_one", _check("plus_one", reference=_plus_one))
    assert cli.main(["conform", "--profile", "smoke", "--ops", "plus_one"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert cli.main(["conform", "--profile", "smoke", "--ops", "no_such_op"]) == 2
    assert "unknown conformance check" in capsys.readouterr().err


def test_cli_exits_2_on_a_vacuous_check(monkeypatch, capsys) -> None:
    # Status 1 means a mismatch and nothing else; a check that proved nothing is a run that
    # could not be done (2), said in one line.
    vacuous = _check("vacuous", cases=st.just(FloatArrayCase(np.full(8, np.inf, np.float32), 1.0, 0, QDtype.quint8)))
    monkeypatch.setitem(CHECKS, "vacuous", vacuous)
    assert cli.main(["conform", "--profile", "smoke", "--ops", "vacuous"]) == 2
    assert capsys.readouterr().err == "quantspec conform: no mismatch, but 1 check(s) proved nothing: vacuous VACUOUS\n"


def test_unknown_settings_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown conformance profile 'fast'"):
        runner.run_checks([], "fast", P213)


@pytest.mark.parametrize("name", ["quantize_per_tensor", "quantize_per_channel"])
def test_smoke_cases_tell_the_torch_releases_apart(name) -> None:
    # The reference for the OTHER release must fail against the installed torch: the
    # strategies really produce ties with odd zero points (2.13 and 2.14 differ only there).

    running = detect_profile()
    other_release = "2.14" if running.torch_release == "2.13" else "2.13"
    other = get_profile(running.name.replace(running.torch_release, other_release))
    result = runner.run_check(load_all()[name], "smoke", other)
    assert result.status == "MISMATCH", runner.format_row(result)


@settings(max_examples=15, deadline=None, database=None, derandomize=True)
@given(st.one_of(float_arrays(QParams(0.5, 3, QDtype.quint8)), per_channel_float_arrays(), qtensors()))
def test_a_printed_case_rebuilds_the_same_values(case) -> None:
    # A failure report is only useful if pasting it back gives the very same input.
    import quantspec.reference.qtensor as qtensor_module

    namespace = dict(np=np, QDtype=QDtype, QTensor=QTensor, MemoryFormat=qtensor_module.MemoryFormat,
                     FloatArrayCase=FloatArrayCase, QTensorCase=QTensorCase)
    rebuilt = eval(repr(case), namespace)
    if isinstance(case, FloatArrayCase):
        assert rebuilt.x.view(np.uint32).tolist() == case.x.view(np.uint32).tolist()
        assert np.array_equal(rebuilt.scale, case.scale) and np.array_equal(rebuilt.zero_point, case.zero_point)
    else:
        assert rebuilt.q.int_repr.tolist() == case.q.int_repr.tolist()
        assert (rebuilt.q.memory_format, rebuilt.q.axis) == (case.q.memory_format, case.q.axis)


def test_ci_runs_are_derandomized_and_database_free(monkeypatch) -> None:
    from quantspec.conformance import settings as conform_settings

    monkeypatch.setenv("CI", "true")
    ci = conform_settings.get("default")
    assert (ci.derandomize, ci.database, ci.max_examples) == (True, None, 600)
    monkeypatch.setenv("CI", "")
    local = conform_settings.get("default", budget=0.5)
    assert (local.derandomize, local.max_examples) == (False, 300)
    assert conform_settings.get("smoke").derandomize  # smoke is reproducible everywhere


def test_hypothesis_files_go_to_the_cache_folder_not_the_working_folder(monkeypatch, tmp_path) -> None:
    from hypothesis.configuration import storage_directory

    from quantspec.conformance import settings as conform_settings

    monkeypatch.delenv("QUANTSPEC_HYPOTHESIS_DB", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert conform_settings.hypothesis_directory() == tmp_path / "cache" / "quantspec" / "hypothesis"
    monkeypatch.setenv("QUANTSPEC_HYPOTHESIS_DB", str(tmp_path / "db"))
    monkeypatch.setenv("CI", "")
    assert conform_settings.get("default").database.path == tmp_path / "db" / "examples"
    with conform_settings.hypothesis_storage() as directory:
        assert directory == tmp_path / "db"
        assert storage_directory("constants").path == tmp_path / "db" / "constants"  # Hypothesis's caches too
    assert storage_directory("constants").path != tmp_path / "db" / "constants"  # restored after the run


def test_deployment_imports_no_test_tooling() -> None:
    # `quantspec.production` and the CLI (until its conform verb runs) load neither the
    # conformance package nor Hypothesis nor pytest: a deployment installs none of them.
    import subprocess
    import sys

    program = (
        "import sys, quantspec.production, quantspec.production.cli as c; c.build_parser(); "
        "print(sorted({'quantspec.conformance', 'hypothesis', 'pytest'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd="/", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_in_is_about_one_in_n():
    # `st.integers(0, 3) == 0` came out True in 44% of 3000 draws (Hypothesis favours a
    # range's ends); one_in(4) must stay near 25%.
    seen = []

    @settings(max_examples=2000, database=None, derandomize=True)
    @given(one_in(4), st.integers(0, 10**9))
    def draw(flag, _):
        seen.append(flag)

    draw()
    assert 0.2 <= sum(seen) / len(seen) <= 0.3


# The label rule speaks of a VNNI CPU (no pair saturation, so Winograd may run): both tests
# check it under that profile, whatever CPU runs them.
VNNI = get_profile("torch2.13-avx512_vnni-fbgemm")


def _runs_winograd(case: conv_check.ConvCase) -> bool:
    """Whether the fast conv2d formed this case's sums by Winograd under VNNI (a spy on winograd_sums)."""
    conv_module = importlib.import_module("quantspec.reference.fast.conv2d")
    with mock.patch.object(conv_module, "winograd_sums", wraps=conv_module.winograd_sums) as spy:
        conv_check.fast_kernel(case, VNNI)
    return spy.called


@mock.patch.object(conv_check, "WINOGRAD_CPU", True)
def test_the_winograd_label_counts_only_cases_that_run_winograd() -> None:
    ConvCase, takes_winograd = conv_check.ConvCase, conv_check.takes_winograd
    # 16x16 input, pad 1: 16x16 = 256 >= 196 outputs. "small" weights (|w| <= 8, zp 0) and
    # uniform activations with zp 128 (|a - zp| <= 128): 72 * 24 * 128 * 8 = 1,769,472 <= 2^24,
    # so the bound holds for any draw: labelled, and the fast kernel takes Winograd.
    small = ConvCase(1, 24, 8, 1, (16, 16), (3, 3), (1, 1), (1, 1), (1, 1), 0.05, 128, "uniform", False, 0.01,
                     "zero", "small", "normal", 1.0, 100, False, 5)
    assert takes_winograd(small) and _runs_winograd(small)
    # Uniform weights: 72 * 24 * 128 * 128 = 28.3M > 2^24: not guaranteed, so not labelled
    # (the fast kernel may still take Winograd when the drawn values happen to allow it).
    uniform = ConvCase(**{**small.__dict__, "w_kind": "uniform"})
    assert not takes_winograd(uniform)
    # 13x13 outputs (pad 0 on 15x15) are below WINOGRAD_MIN_PIXELS: never.
    few = ConvCase(**{**small.__dict__, "size": (15, 15), "padding": (0, 0)})
    assert not takes_winograd(few) and not _runs_winograd(few)


@settings(max_examples=120, deadline=None, database=None, derandomize=True)
@given(conv_check.conv_cases())
def test_every_case_labelled_winograd_runs_winograd(case: conv_check.ConvCase) -> None:
    with mock.patch.object(conv_check, "WINOGRAD_CPU", True):
        labelled = conv_check.takes_winograd(case)
    if labelled:
        assert _runs_winograd(case)


def test_loading_every_module_skips_one_whose_optional_extra_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # `conform` under the conform extra alone (no onnx) must still run: the onnx target's
    # import fails there, and every process of that installation skips it alike.
    from quantspec.conformance import settings as profiles

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "quantspec.conformance.onnx_target", raising=False)
    real_import = importlib.import_module
    attempted = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *args: attempted.append(name) or real_import(name))
    profiles.load_every_module.__wrapped__()  # the uncached body; raises if the ImportError escapes
    assert "quantspec.conformance.onnx_target" in attempted and "quantspec.reference.fast.conv2d" in attempted
    with pytest.raises(ImportError, match=r"pip install 'quantspec\[onnx\]'"):
        real_import("quantspec.conformance.onnx_target")


def test_loading_every_module_raises_a_break_inside_quantspec(monkeypatch: pytest.MonkeyPatch) -> None:
    # A renamed module inside quantspec is a bug, not a missing extra: conform must not run without it.
    from quantspec.conformance import settings as profiles

    real_import = importlib.import_module

    def import_with_a_break(name: str, *args: object) -> object:
        if name == "quantspec.reference.fast.conv2d":
            gone = "quantspec.reference.fast.gone"
            raise ModuleNotFoundError(f"No module named {gone!r}", name=gone)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_with_a_break)
    with pytest.raises(ImportError, match="quantspec.reference.fast.gone"):
        profiles.load_every_module.__wrapped__()
