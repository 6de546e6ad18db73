"""Production under a chosen quantized engine (GitHub issue 12): quantize_jit, prepare_jit and
convert_jit pin it, export records its profile, verify runs torch under it and the reference in
its profile, and conform's torch oracle follows --engine (refusals agree only if both refuse)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cli_files import SHAPE
from hypothesis import strategies as st
from quantize_helpers import run_once

import quantspec.reference.interpreter as interpreter
from quantspec.conformance import runner
from quantspec.conformance.checks import OpCheck, select
from quantspec.conformance.oracles import oracle, oracle_engine
from quantspec.production import export, quantize_jit, save
from quantspec.production.cli import main
from quantspec.production.environment import (
    detect_profile,
    hardware_cpu_features,
    native_notices_filtered,
    quantized_engine,
)
from quantspec.production.export import exported_model
from quantspec.production.io import load
from quantspec.production.quantize import convert_jit, prepare_jit
from quantspec.production.verify import verify
from quantspec.production.zoo import build
from quantspec.reference.profile import EngineNotSpecifiedError, EngineRefusedError


def small(name: str) -> torch.nn.Module:
    return build(name, num_classes=7, width=0.25 if name.startswith("cifar") else 0.125)


def images(count: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_quantize_jit_pins_the_given_engine_and_restores_the_callers() -> None:
    seen = []

    def spy(model: torch.jit.ScriptModule, x: torch.Tensor) -> None:
        seen.append(torch.backends.quantized.engine)
        model(x)

    with quantized_engine("fbgemm"):
        quantize_jit(small("cifar_resnet20"), None, spy, (images(),), engine="qnnpack")
        assert torch.backends.quantized.engine == "fbgemm"
    assert seen == ["qnnpack"]


def test_default_qconfig_follows_the_engine() -> None:
    # qnnpack's default qconfig observes activations without reduce_range, fbgemm's with it.
    for engine, reduce_range in (("qnnpack", False), ("fbgemm", True)):
        prepared = prepare_jit(small("cifar_resnet20"), engine=engine)
        activations = [m for _, m in prepared.named_modules() if m.original_name == "HistogramObserver"]
        assert activations and all(bool(m.reduce_range) == reduce_range for m in activations)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="quantized engine 'fbgem'"):
        quantize_jit(small("cifar_resnet20"), None, run_once, (images(),), engine="fbgem")


def unmangled(graph: object) -> str:
    """A graph's text without TorchScript's per-compilation class-name mangling."""
    return re.sub(r"___torch_mangle_\d+", "", str(graph))


def test_step_by_step_path_is_quantize_jit() -> None:
    model, x = small("cifar_resnet20"), images()
    prepared = prepare_jit(model, engine="qnnpack")
    run_once(prepared, x)
    stepwise = convert_jit(prepared, engine="qnnpack")
    whole = quantize_jit(model, None, run_once, (x,), engine="qnnpack")
    assert unmangled(stepwise.graph) == unmangled(whole.graph)
    with quantized_engine("qnnpack"):
        assert torch.equal(stepwise(images(seed=9)), whole(images(seed=9)))


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet18"])  # resnet18: max_pool2d under qnnpack
def test_qnnpack_zoo_model_exports_its_profile_and_verifies_bit_exactly(name: str, tmp_path) -> None:
    converted = quantize_jit(small(name), None, run_once, (images(),), engine="qnnpack")
    path = export(converted, tmp_path / "model.qsm", engine="qnnpack")
    assert interpreter.load(path).profile == detect_profile("qnnpack")
    report = verify(converted, images(seed=6), engine="qnnpack")
    assert report.profile.startswith(detect_profile("qnnpack").name)
    assert report.ok, report.format()
    assert any(check.kind.startswith("quantized::conv2d") for check in report.checks)


def test_verify_cli_loads_and_runs_under_the_engine(tmp_path, capsys) -> None:
    converted = quantize_jit(small("cifar_resnet20"), None, run_once, (images(),), engine="qnnpack")
    out = tmp_path / "int8.pt"
    save(converted, out, input_shape=(3, 32, 32), engine="qnnpack")
    assert main(["verify", str(out), "--random", "2", "--engine", "qnnpack"]) == 0
    printed = capsys.readouterr().out
    assert "-qnnpack" in printed and "bit-exact" in printed


def first_input_scale(path: Path, engine: str) -> float:
    """The scale of the model's first aten::quantize_per_tensor (its input's), as exported."""
    model = exported_model(load(path, engine), engine)
    node = next(node for node in model.nodes if node.kind == "aten::quantize_per_tensor")
    return float(model.constants[node.inputs[1]])


def test_quantize_verb_pins_the_engine_and_follows_its_qconfig_preset(tiny_quantized: Path, capsys) -> None:
    out = tiny_quantized / "tiny_qnnpack.pt"
    assert main(["quantize", str(tiny_quantized / "tiny.pt"), "--calib", str(tiny_quantized / "imgs"), "--out",
                 str(out), "--input-shape", *SHAPE, "--engine", "qnnpack"]) == 0
    assert "engine qnnpack" in capsys.readouterr().out
    # Same images, same observer type: fbgemm's preset observes activations with reduce_range
    # (quant range 0..127), qnnpack's without (0..255), so qnnpack's input scale is about
    # 127/255 ~ 0.5 of fbgemm's (the histogram search picks a slightly different range).
    ratio = first_input_scale(out, "qnnpack") / first_input_scale(tiny_quantized / "tiny_int8.pt", "fbgemm")
    assert 0.4 < ratio < 0.6, ratio
    assert main(["verify", str(out), "--random", "2", "--engine", "qnnpack"]) == 0
    printed = capsys.readouterr().out
    assert "-qnnpack" in printed and "bit-exact" in printed


@pytest.mark.skipif(hardware_cpu_features() == "avx512_vnni", reason="x86 sends conv to oneDNN on AVX512-VNNI")
def test_x86_engine_equals_fbgemm_without_vnni() -> None:
    model, x, probe = small("cifar_resnet20"), images(), images(seed=8)
    outputs = {}
    for engine in ("fbgemm", "x86"):
        converted = quantize_jit(model, None, run_once, (x,), engine=engine)
        assert verify(converted, probe, engine=engine).ok
        with quantized_engine(engine):
            outputs[engine] = converted(probe).numpy().view(np.int32)
    assert np.array_equal(outputs["fbgemm"], outputs["x86"])


# --- conform: refusals and unspecified kernels ------------------------------------------


def fixed_check(reference, torch_side) -> OpCheck:
    return OpCheck(name="fixed", op="aten::fixed", cases=st.just(1), reference=reference, torch=torch_side)


def refuse(case: int, profile: object) -> np.ndarray:
    raise EngineRefusedError("pytorch_qnnpack refuses it")


def torch_raises(case: int) -> np.ndarray:
    raise RuntimeError("failed to create operator")


QNNPACK_LINE = b"Error in QNNPACK: failed to create add operator with 1e+09 A-to-output scale ratio: ...\n"
# As torch 2.13's convert_jit prints it for an observer that saw no data:
OBSERVER_LINE = (b"[W1207 03:15:53.067522526 utils.py:428] Warning: must run observer before calling "
                 b"calculate_qparams. Returning default values. (function )\n")


def test_native_notices_are_dropped_and_every_other_line_kept(capfd) -> None:
    with native_notices_filtered():
        os.write(2, QNNPACK_LINE)  # fd-level writes, as C code makes them
        os.write(2, b"Error in QNNPACK: something else\n")
        os.write(2, OBSERVER_LINE)
        print("a Python line", file=sys.stderr)
    # (pytest's capfd keeps sys.stderr apart from fd 2, so the two may come in either order here)
    assert sorted(capfd.readouterr().err.splitlines()) == ["Error in QNNPACK: something else", "a Python line"]


def refused_qnnpack_add() -> None:
    a = torch.quantize_per_tensor(torch.ones(4), 1.0, 0, torch.quint8)
    with quantized_engine("qnnpack"):
        torch.ops.quantized.add(a, a, 1e-9, 0)  # scale ratio 1e9, outside [2^-14, 2^8): refused


def test_qnnpack_refusal_line_is_dropped_around_the_oracle(capfd) -> None:
    with pytest.raises(RuntimeError):
        refused_qnnpack_add()
    assert QNNPACK_LINE[:45].decode() in capfd.readouterr().err  # what torch prints unfiltered
    with native_notices_filtered(), pytest.raises(RuntimeError):
        refused_qnnpack_add()
    assert "Error in QNNPACK" not in capfd.readouterr().err


def test_the_runner_drops_native_notices_while_torch_computes(capfd) -> None:
    def torch_prints_and_raises(case: int) -> np.ndarray:
        os.write(2, QNNPACK_LINE + b"kept\n")
        raise RuntimeError("failed to create operator")

    result = runner.run_check(fixed_check(refuse, torch_prints_and_raises), "smoke", detect_profile("qnnpack"))
    assert result.labels.get("refused by both")
    err = capfd.readouterr().err
    assert "Error in QNNPACK" not in err and "kept" in err


def test_a_refusal_agrees_only_when_torch_also_raises() -> None:
    profile = detect_profile("qnnpack")
    agreed = runner.run_check(fixed_check(refuse, torch_raises), "smoke", profile)
    assert agreed.status in ("ok", "VACUOUS") and agreed.cases >= 1 and agreed.labels.get("refused by both")
    accepted = runner.run_check(fixed_check(refuse, lambda case: np.zeros(1, np.float32)), "smoke", profile)
    assert accepted.status == "MISMATCH" and "torch computed a value" in accepted.failure["summary"]


def test_an_unspecified_kernel_reports_not_specified() -> None:
    def unspecified(case: int, profile: object) -> np.ndarray:
        raise EngineNotSpecifiedError("oneDNN conv2d")

    result = runner.run_check(fixed_check(unspecified, torch_raises), "smoke", detect_profile("onednn"))
    assert result.status == runner.NOT_SPECIFIED and result.cases == 0


@pytest.mark.parametrize("name, example", [("calibration", 0), ("convert", 1)])  # convert: island_net, the smaller
def test_calibration_and_convert_checks_follow_the_engine(name: str, example: int) -> None:
    # qnnpack's preset observes activations without reduce_range and weights per tensor: the
    # decisions differ from fbgemm's, and each engine's agree with the reference in its profile.
    check = select([name])[0]
    case = check.examples[example]
    decisions = {}
    for engine in ("fbgemm", "qnnpack"):
        expected = check.reference(case, detect_profile(engine))
        with oracle_engine(engine), oracle():
            decisions[engine] = check.torch(case)
        assert runner.compare_outputs(expected, decisions[engine], case) is None, engine
    assert decisions["fbgemm"].shape != decisions["qnnpack"].shape or not np.array_equal(*decisions.values())
