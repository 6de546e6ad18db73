"""`quantspec engines`: one converted model under every engine torch offers, differences from
fbgemm explained by the reference (production.engines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL.Image")

import quantspec.reference.interpreter as interpreter
from quantspec.production.cli import main
from quantspec.production.engines import (
    INHERITED,
    QNNPACK_BIAS,
    QNNPACK_EXACT,
    UNEXPLAINED,
    attribute,
    compare_engines,
    together,
)
from quantspec.production.environment import offered_engines, onednn_isa
from quantspec.reference.interpreter.file_format import PackedLinear
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
CHECKPOINT = SHARED / "models" / "resnet20-12fca82f.th"
needs_data = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"shared data not found at {SHARED}")
needs_qnnpack = pytest.mark.skipif("qnnpack" not in offered_engines(), reason="torch offers no qnnpack here")


@pytest.fixture(scope="module")
def quantized(tiny_quantized: Path) -> Path:
    return tiny_quantized / "tiny_int8.pt"  # tests/conftest.py


@needs_qnnpack
def test_verb_explains_every_difference(quantized: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engines", str(quantized), "--random", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("quantized::conv2d_relu") and "qnnpack" in line]
    assert rows and QNNPACK_BIAS in rows[0]  # qnnpack's integer bias rounds differently on this seed
    assert UNEXPLAINED not in out.replace("unexplained elements: 0", "")


def test_verb_reads_inputs_file(quantized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert main(["engines", str(quantized), "--inputs", str(path)]) == 0
    assert "2 images; engines fbgemm" in capsys.readouterr().out


def test_engines_and_verify_see_the_same_pixels(quantized: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # imgs/ holds 20x24 images and the model records 3x16x16: both verbs resize the shorter side
    # to 16 and crop the centre 16x16 (a crop alone would see other pixels).
    from quantspec.production.data import EvalTransform

    seen: dict[str, list[np.ndarray]] = {"verify": [], "engines": []}
    transform = EvalTransform.__call__
    for verb in seen:
        monkeypatch.setattr(EvalTransform, "__call__", lambda self, image, verb=verb: seen[verb].append(
            transform(self, image)) or seen[verb][-1])
        main([verb, str(quantized), "--data", str(quantized.parent / "imgs"), "--limit", "2"])
    assert len(seen["engines"]) == 2 and seen["engines"][0].shape == (3, 16, 16)
    assert all(np.array_equal(a, b) for a, b in zip(seen["verify"][:2], seen["engines"]))


@pytest.mark.parametrize("extra, message", [
    (["--limit", "3"], "--limit goes with --data"),
    (["--arch", "cifar_resnet20"], "--arch goes with --data"),
    (["--random", "0"], "--random 0: expected a positive count"),
    (["--data", "no-such-dir"], "no-such-dir"),
])
def test_bad_input_is_one_line(quantized: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                               message: str) -> None:
    assert main(["engines", str(quantized), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quantspec engines: ") and message in err and "\n" not in err


@needs_data
@needs_qnnpack
def test_resnet20_differences_are_explained(tmp_path: Path) -> None:
    out = tmp_path / "r20.pt"
    assert main(["quantize", str(CHECKPOINT), "--arch", "cifar_resnet20", "--calib", str(SHARED / "cifar10" / "calib"),
                 "--calib-count", "20", "--out", str(out)]) == 0
    report = compare_engines(out, torch.rand(2, 3, 32, 32))
    onednn_specified = onednn_isa() == "avx2"  # oneDNN's other kernels are not specified
    for (kind, engine), row in report.rows.items():
        if engine == "onednn" and not onednn_specified and kind.startswith(("quantized::conv2d", "quantized::linear")):
            continue  # not specified: unexplained by design
        assert row.causes[UNEXPLAINED] == 0, (kind, engine, row.causes)
    assert report.rows[("quantized::add_relu", "qnnpack")].causes[INHERITED] > 0


def test_two_differences_in_one_element_are_named_together() -> None:
    # A linear with x = [255, 255] (scale 1, zp 0), w = [127, 127] (scale 2^-10, zp 0),
    # bias 513.25 * 2^-10, output scale 1, zp 0; every scale product is exact (2^-10).
    #   qnnpack: exact sum 2 * 255 * 127 = 64770; bias_q = rne(513.25) = 513;
    #            (64770 + 513) * 2^-10 = 63.75 -> 64
    #   fbgemm (AVX2): the pair saturates to 32767; float bias: 32767 + 513.25 = 33280.25;
    #            * 2^-10 = 32.50024 -> 33
    #   bias swapped alone:        64770 + 513.25 = 65283.25 -> 63.75 -> 64
    #   accumulation swapped alone: 32767 + 513 = 33280 -> 32.5, a tie -> 32 (even)
    #   multiply swapped alone:     the same multiply -> 64
    #   bias and accumulation together: fbgemm's 33
    x = QTensor(np.uint8([[255, 255]]), 1.0, 0, "quint8")
    packed = PackedLinear(QTensor(np.int8([[127, 127]]), 2.0**-10, 0, "qint8"), np.float32([513.25 * 2.0**-10]))
    node = interpreter.Node("quantized::linear", ("x", "w", "s", "z"), ("y",))
    args = [x, packed, 1.0, 0]
    counts = attribute(node, args, args, np.uint8([[64]]), np.array([[True]]),
                       NumericsProfile("2.13", "avx2", "qnnpack"), NumericsProfile("2.13", "avx2", "fbgemm"))
    assert counts == {together((QNNPACK_BIAS, QNNPACK_EXACT)): 1}
