"""`quantspec quantize / export / verify` end to end on a tiny model and a tiny ImageFolder
tree (tests/cli_files.py), their exit-2 errors, verify's three verdicts, Ctrl-C (exit 130,
never lost), and `quantspec conform --ops models` on smoke. The table of bad invocations is
tests/test_cli_bad_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL.Image")

from cli_files import SHAPE

import quantspec.reference.interpreter as interpreter
from quantspec.production import cli, zoo
from quantspec.production.cli import main


@pytest.fixture(scope="module")
def files(tiny_quantized: Path) -> Path:
    """tiny.pt (float TorchScript), imgs/<class>/<n>.png (2 classes x 3 random 20x24 images) and
    tiny_int8.pt, `quantspec quantize` of tiny.pt (tests/conftest.py)."""
    return tiny_quantized


@pytest.fixture(scope="module")
def quantized(files: Path) -> Path:
    return files / "tiny_int8.pt"


def test_quantize_export_verify_end_to_end(files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kinds = {node.kind() for node in torch.jit.load(str(quantized)).graph.nodes()}
    assert "quantized::conv2d_relu" in kinds and "quantized::linear" in kinds  # conv+bn+relu fused, int8
    assert main(["export", str(quantized), str(files / "tiny.qsm"), "--input-shape", "3", "16", "16"]) == 0
    model = interpreter.load(files / "tiny.qsm")
    assert model.inputs[0].shape == (None, 3, 16, 16)  # the recorded shape, batch free
    assert main(["verify", str(quantized), "--random", "3", "--input-shape", "3", "16", "16"]) == 0
    out = capsys.readouterr().out
    assert "quantized::conv2d_relu" in out and "bit-exact: " in out and "MISMATCH" not in out


def test_quantize_records_the_input_shape_for_export_and_verify(
    files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixture quantized with --input-shape 2 3 16 16: the file remembers (3, 16, 16), so
    # verify and export need no --input-shape; the exported file pins the shape (batch free).
    from quantspec.production.io import input_shape

    assert input_shape(quantized) == (3, 16, 16)
    assert main(["verify", str(quantized), "--random", "2"]) == 0
    assert "bit-exact" in capsys.readouterr().out
    assert main(["export", str(quantized), str(files / "recorded.qsm")]) == 0
    from quantspec import reference

    assert reference.load(files / "recorded.qsm").inputs[0].shape == (None, 3, 16, 16)


def test_input_shape_reads_the_zip_entry_without_loading_the_model(
    files: Path, quantized: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from quantspec.production.io import input_shape

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("input_shape must not load the model")

    monkeypatch.setattr(torch.jit, "load", no_load)
    assert input_shape(quantized) == (3, 16, 16)
    assert input_shape(files / "tiny.pt") is None  # a plain torch.jit.save: no quantspec.json
    with zipfile.ZipFile(quantized) as source, zipfile.ZipFile(files / "bad_meta.pt", "w") as target:
        for entry in source.namelist():
            data = b"{not json" if entry.endswith("/extra/quantspec.json") else source.read(entry)
            target.writestr(entry, data)
    with pytest.raises(ValueError, match="extra/quantspec.json is not the JSON object quantspec writes"):
        input_shape(files / "bad_meta.pt")
    (files / "not_a_zip.pt").write_bytes(b"plain text")
    with pytest.raises(ValueError, match="not_a_zip.pt is not a readable TorchScript model file"):
        input_shape(files / "not_a_zip.pt")
    with pytest.raises(FileNotFoundError, match="no TorchScript model file"):
        input_shape(files / "missing.pt")


def test_verify_inputs_file(files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = files / "x.npy"
    np.save(inputs, np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert main(["verify", str(quantized), "--inputs", str(inputs)]) == 0
    # 2 images x 3 x 16 x 16 = 1536 elements quantized at the input
    assert "aten::quantize_per_tensor            1 values       1536 elements  OK" in capsys.readouterr().out


@pytest.fixture(scope="module")
def float_fc(files: Path) -> Path:
    """The tiny model quantized with "fc": null: its last linear stays float (a float island)."""
    config = files / "float_fc.json"
    config.write_text(json.dumps({"": "fbgemm", "fc": None}))
    out = files / "float_fc.pt"
    assert main(["quantize", str(files / "tiny.pt"), "--calib", str(files / "imgs"), "--out", str(out),
                 "--qconfig", str(config), "--input-shape", *SHAPE]) == 0
    assert "quantized::linear" not in {node.kind() for node in torch.jit.load(str(out)).graph.nodes()}
    return out


@pytest.mark.parametrize("float_gemm, status", [("unspecified", 3), ("mkl2024.2-amd", 1)])
def test_verify_verdict_on_float_island_differences(
    float_fc: Path, float_gemm: str, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reference's float linear is moved by 64 ulp at one element. Where the profile models
    # this CPU's float summation order, any difference is a mismatch (1); where it does not,
    # verify says what it knows: quantized values bit-exact, float values off by so many ulp (3).
    import dataclasses
    import importlib

    from quantspec.production.environment import detect_profile
    from quantspec.reference.interpreter import kernels

    profile = dataclasses.replace(detect_profile(), float_gemm=float_gemm)
    export = importlib.import_module("quantspec.production.export")  # the module (the package's `export` is a function)
    monkeypatch.setattr(export, "detect_profile", lambda engine: profile)  # the profile the exported file records
    original = kernels.KERNELS["aten::linear"]

    def moved(args: list, context: object) -> np.ndarray:
        out = np.array(original(args, context), copy=True)
        out.view(np.int32).flat[0] += 64
        return out

    monkeypatch.setitem(kernels.KERNELS, "aten::linear", moved)
    assert main(["verify", str(float_fc), "--random", "2"]) == status
    verdict = capsys.readouterr().out.splitlines()[-1]
    if status == 3:
        assert verdict.startswith("quantized values bit-exact (")
        assert "where the float summation order of this CPU is not specified" in verdict
        assert int(verdict.split(" ulp)")[0].split()[-1]) >= 60  # max K ulp
    else:
        assert verdict.endswith("float values differ at aten::linear: NOT bit-exact")


def test_quantize_from_checkpoint_and_arch(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = files / "resnet20.th"
    torch.save({"state_dict": zoo.build("cifar_resnet20").state_dict()}, checkpoint)
    out = files / "resnet20_int8.pt"
    assert main(["quantize", str(checkpoint), "--arch", "cifar_resnet20", "--calib", str(files / "imgs"),
                 "--out", str(out), "--calib-count", "2", "--input-shape", "2", "3", "32", "32"]) == 0
    assert "calibrated on 2 images of shape (3, 32, 32)" in capsys.readouterr().out


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_qconfig_typos_name_close_names(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["quantize", str(files / "tiny.pt"), "--calib", str(files / "imgs"), "--out", str(files / "x.pt"),
            "--input-shape", *SHAPE]
    config = files / "typo.json"
    config.write_text(json.dumps({"": "fbgemm", "fcc": None}))
    assert "names no submodule of Tiny (closest: 'fc')" in _error(capsys, [*base, "--qconfig", str(config)])
    config.write_text(json.dumps({"": "fbgem"}))
    assert "unknown qconfig preset 'fbgem'; did you mean 'fbgemm'?" in _error(capsys, [*base, "--qconfig", str(config)])
    config.write_text('{"": ')
    assert "not valid JSON" in _error(capsys, [*base, "--qconfig", str(config)])
    config.write_text('["fbgemm"]')
    assert "expected a JSON object" in _error(capsys, [*base, "--qconfig", str(config)])
    assert not (files / "x.pt").exists()


def test_quantize_bad_arguments(files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calib, out = str(files / "imgs"), str(files / "x.pt")
    assert "no model file at" in _error(capsys, ["quantize", str(files / "nope.pt"), "--calib", calib, "--out", out])
    np.save(files / "weights.npy", np.zeros(3))
    assert "is not a TorchScript file; for a checkpoint give --arch" in _error(
        capsys, ["quantize", str(files / "weights.npy"), "--calib", calib, "--out", out])
    assert "unknown architecture 'resnet7'" in _error(
        capsys, ["quantize", str(files / "tiny.pt"), "--arch", "resnet7", "--calib", calib, "--out", out])
    assert "is already quantized (quantized::conv2d_relu, quantized::linear); give the float model" in _error(
        capsys, ["quantize", str(quantized), "--calib", calib, "--out", out])
    assert "does not exist" in _error(
        capsys, ["quantize", str(files / "tiny.pt"), "--calib", str(files / "no"), "--out", out])
    assert "--input-shape 2 1 16 16: expected N 3 S S" in _error(
        capsys, ["quantize", str(files / "tiny.pt"), "--calib", calib, "--out", out,
                 "--input-shape", "2", "1", "16", "16"])


def test_verify_bad_inputs(files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(quantized)
    np.save(files / "channels4.npy", np.zeros((2, 4, 16, 16), np.float32))
    assert "expected input (NCHW) 2, 4, 16, 16 to have 3 channels" in _error(
        capsys, ["verify", model, "--inputs", str(files / "channels4.npy")])
    np.save(files / "f64.npy", np.zeros((2, 3, 16, 16), np.float64))
    assert "float64 array of shape (2, 3, 16, 16); expected float32 N C H W" in _error(
        capsys, ["verify", model, "--inputs", str(files / "f64.npy")])
    np.save(files / "small.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert "images of shape (3, 8, 8), expected (3, 16, 16)" in _error(
        capsys, ["verify", model, "--inputs", str(files / "small.npy"), "--input-shape", "3", "16", "16"])
    np.save(files / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert "not a plain .npy array" in _error(capsys, ["verify", model, "--inputs", str(files / "objects.npy")])


def test_tampered_or_missing_model_file(files: Path, quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tampered = files / "tampered.pt"
    tampered.write_bytes(quantized.read_bytes()[:-200])  # cut the zip's central directory
    # Without --input-shape the recorded shape is read first (zipfile), with it torch loads.
    unreadable = "is not a readable TorchScript model file (a zip archive)"
    assert unreadable in _error(capsys, ["verify", str(tampered), "--random", "1"])
    assert unreadable in _error(capsys, ["export", str(tampered), str(files / "t.qsm")])
    assert "PytorchStreamReader failed" in _error(
        capsys, ["export", str(tampered), str(files / "t.qsm"), "--input-shape", "3", "16", "16"])
    assert "no TorchScript model file" in _error(capsys, ["export", str(files / "gone.pt"), str(files / "t.qsm")])


def test_conform_models_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conform", "--ops", "models", "--profile", "smoke"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("models "))
    fields = row.split()
    # status, cases, elements, mismatch
    assert fields[1] == "ok" and int(fields[2]) >= 2 and int(fields[4]) > 0 and fields[6] == "0"


def test_models_check_catches_one_differing_word() -> None:
    # One fixed tiny model (nothing to shrink): as is, 0 mismatches; with the reference's last
    # compared word (the float output's last element bits) moved by one, exactly 1.
    import dataclasses

    from hypothesis import strategies as st

    from quantspec.conformance import models, runner
    from quantspec.conformance.checks.models import CHECK
    from quantspec.production.environment import detect_profile

    fixed = dataclasses.replace(CHECK, cases=st.just(models.ModelSpec(8, 4, (models.ConvSpec(4),))))
    assert runner.run_check(fixed, "smoke", detect_profile()).status == "ok"

    def off_by_one(case: models.ModelSpec, profile: object) -> np.ndarray:
        words = CHECK.reference(case, profile).copy()
        words[-1] += 1
        return words

    result = runner.run_check(dataclasses.replace(fixed, reference=off_by_one), "smoke", detect_profile())
    assert (result.status, result.mismatched_elements) == ("MISMATCH", 1)


def test_ctrl_c_during_conform_exits_130_with_one_line(tmp_path: Path) -> None:
    # SIGINT at random moments (0.5-3 s after the run's first line) of three concurrent smoke
    # runs; benchmarks/interrupts.py does the same 50 times. Nothing lands in the working folder.
    import random
    from concurrent.futures import ThreadPoolExecutor

    from sigint_probe import interrupt, start_conform

    delays = [random.uniform(0.5, 3.0) for _ in range(3)]
    folders = [tmp_path / str(index) for index in range(len(delays))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(len(delays)) as pool:
        outcomes = list(pool.map(lambda run: interrupt(start_conform(str(run[0])), run[1]), zip(folders, delays)))
    assert all(outcome.clean for outcome in outcomes), outcomes
    assert not any((folder / ".hypothesis").exists() for folder in folders)


def test_an_interrupt_inside_a_gc_callback_is_raised_after_it(capsys: pytest.CaptureFixture[str]) -> None:
    # Python drops an exception raised in a gc callback ("Exception ignored in ..."), which is
    # how Hypothesis's gc timer lost 4 of 18 Ctrl-Cs: the guard raises it just after instead.
    import gc
    import os
    import signal
    import time

    from quantspec.production.interrupts import interrupt_guard

    sent = []

    def callback(phase: str, info: dict) -> None:
        if not sent:
            sent.append(phase)
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler here, in the callback

    with interrupt_guard() as guard:
        gc.callbacks.append(callback)
        try:
            with pytest.raises(KeyboardInterrupt):
                gc.collect()
                time.sleep(2)
        finally:
            gc.callbacks.remove(callback)
    assert sent and guard.interrupted
    assert "Exception ignored" not in capsys.readouterr().err


def test_an_interrupt_swallowed_by_the_verb_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal
    import time

    def swallowing(args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)
        except KeyboardInterrupt:
            pass
        return 0

    monkeypatch.setattr(cli, "_cmd_export", swallowing)
    assert main(["export", "a.pt", "b.qsm"]) == 130
    assert capsys.readouterr().err == "quantspec export: interrupted\n"
