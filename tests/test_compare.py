"""`compare` on a small subset of the shared CIFAR-10 data and the real ResNet-20 checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from quantspec.production.compare import COLUMNS, Comparison, compare, load_float

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
CHECKPOINT = SHARED / "models" / "resnet20-12fca82f.th"
needs_data = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"shared data not found at {SHARED}")

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

VARIANTS = ["float", "graph int8", "graph debug", "eager int8", "fx int8", "graph int8 x86"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Comparison, Path]:
    if not CHECKPOINT.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    out = tmp_path_factory.mktemp("compare")
    comparison = compare(
        CHECKPOINT, "cifar_resnet20", SHARED / "cifar10" / "test", SHARED / "cifar10" / "calib",
        calib_count=32, limit=50, out_dir=out, latency_repeats=3, verify_inputs=1, batch_size=50,
        progress=False, plot=out / "compare.png" if HAVE_MATPLOTLIB else None,
    )
    return comparison, out


@needs_data
def test_one_row_per_variant_with_every_column(result: tuple[Comparison, Path]) -> None:
    comparison, out = result
    assert [row.variant for row in comparison.rows] == VARIANTS
    written = json.loads((out / "compare.json").read_text())
    assert [row["variant"] for row in written["rows"]] == VARIANTS
    assert set(written["rows"][0]) == set(COLUMNS)
    assert written["meta"]["test_images"] == 50 and written["meta"]["calib_images"] == 32
    markdown = (out / "compare.md").read_text()
    assert all(f"| {name} |" in markdown for name in VARIANTS)
    if HAVE_MATPLOTLIB:
        assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_accuracies_are_sane(result: tuple[Comparison, Path]) -> None:
    rows = {row.variant: row for row in result[0].rows}
    # ResNet-20 scores ~81% on the full JPEG test set; 50 evenly spread images leave a few
    # points of sampling noise either way, 32 calibration images a little more for int8.
    assert 65.0 <= rows["float"].top1 <= 95.0
    for name in VARIANTS:
        assert rows[name].top1 <= rows[name].top5 <= 100.0
        assert abs(rows[name].top1 - rows["float"].top1) <= 10.0, name
    # the same file under x86 prepacks oneDNN conv kernels: accuracy stays close
    assert rows["graph int8 x86"].size_mb == rows["graph int8"].size_mb


@needs_data
def test_sizes_latency_and_quantization_time(result: tuple[Comparison, Path]) -> None:
    rows = {row.variant: row for row in result[0].rows}
    # int8 weights: 1 byte instead of 4 for the 0.27 M parameters
    assert rows["graph int8"].size_mb < rows["float"].size_mb / 2
    assert rows["float"].latency_ratio == 1.0
    assert all(row.latency_ms > 0 for row in rows.values())
    assert rows["float"].quant_seconds is None and rows["graph int8"].quant_seconds > 0
    # the graph int8 model, exported and run by the reference, matches torch node by node
    assert rows["graph int8"].bit_exact == "yes", rows["graph int8"].bit_exact_detail
    assert rows["float"].bit_exact == "n/a"


@needs_data
def test_load_float_from_unfrozen_script(tmp_path: Path) -> None:
    module = load_float(CHECKPOINT, "cifar_resnet20")
    torch.jit.save(torch.jit.script(module), str(tmp_path / "float.pt"))
    again = load_float(tmp_path / "float.pt", "cifar_resnet20")
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), again.state_dict().values()))
    torch.jit.save(torch.jit.freeze(torch.jit.script(module)), str(tmp_path / "frozen.pt"))
    with pytest.raises(ValueError, match="frozen TorchScript module"):
        load_float(tmp_path / "frozen.pt", "cifar_resnet20")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'"):
        load_float(tmp_path / "x.th", "resnet9000")
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_float(tmp_path / "missing.th", "cifar_resnet20")


def test_plot_without_matplotlib_fails_early(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from quantspec.production.compare import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise
    with pytest.raises(ImportError, match=r"pip install 'quantspec\[plot\]'"):
        require_matplotlib()


def test_eager_copy_computes_the_zoo_model() -> None:
    from quantspec.production import zoo
    from quantspec.production.eager import quantizable_copy

    float_model = zoo.build("cifar_resnet20", seed=3)
    copy = quantizable_copy("cifar_resnet20", float_model.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # before quantization the stubs are identities and add_relu is relu(add): the same float ops
        assert torch.equal(copy(x), float_model(x))


def test_eager_copy_bad_arguments() -> None:
    from quantspec.production.eager import QuantizableCifarResNet, quantizable_copy

    with pytest.raises(ValueError, match="no eager-mode quantizable copy of 'resnet18'"):
        quantizable_copy("resnet18", {})
    with pytest.raises(ValueError, match="depth 21: expected 6n \\+ 2"):
        QuantizableCifarResNet(21)
