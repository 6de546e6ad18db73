"""production.export: what the portable file holds, and the reader's refusal of bad files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from quantspec.production.environment import detect_profile, fbgemm_engine
from quantspec.production.export import export
from quantspec.reference.interpreter import ModelFileError, PackedConv, PackedLinear, load
from quantspec.reference.interpreter.file_format import FORMAT_VERSION


class SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def convert(module: torch.nn.Module, shape=(2, 3, 8, 8)) -> torch.jit.ScriptModule:
    from torch.ao.quantization import get_default_qconfig, quantize_jit

    torch.manual_seed(0)
    with fbgemm_engine():
        scripted = torch.jit.script(module.eval())
        data = [torch.randn(*shape) for _ in range(2)]
        return quantize_jit(scripted, {"": get_default_qconfig("fbgemm")}, lambda m, d: [m(x) for x in d], [data])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    converted = convert(SmallNet())
    path = tmp_path_factory.mktemp("export") / "small.qsm"
    export(converted, path, example_inputs=[torch.randn(2, 3, 8, 8)])
    return converted, path


def test_file_is_a_zip_of_json_and_npz_without_pickle(exported):
    _, path = exported
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["arrays.npz", "graph.json", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
        graph = json.loads(archive.read("graph.json"))
        arrays = np.load(io.BytesIO(archive.read("arrays.npz")), allow_pickle=False)
        assert all(arrays[key].dtype != object for key in arrays.files)
    assert manifest["format"] == "quantspec-model" and manifest["format_version"] == FORMAT_VERSION
    assert len(manifest["payload_sha256"]) == 64
    profile = detect_profile()
    assert graph["profile"] == {
        "torch_release": profile.torch_release,
        "cpu": profile.cpu,
        "engine": profile.engine,
        "float_gemm": profile.float_gemm,
    }
    assert graph["torch_version"] == torch.__version__
    assert graph["inputs"][0]["shape"] == [None, 3, 8, 8] and graph["inputs"][0]["dtype"] == "float32"
    kinds = [node["kind"] for node in graph["nodes"]]
    assert kinds[0] == "aten::quantize_per_tensor"
    assert "quantized::conv2d_relu" in kinds and "quantized::linear" in kinds


def test_packed_weights_are_the_unpacked_integers_and_geometry(exported):
    converted, path = exported
    model = load(path)
    packed = {type(v): v for v in model.constants.values() if isinstance(v, (PackedConv, PackedLinear))}
    conv, linear = packed[PackedConv], packed[PackedLinear]
    torch_weight, torch_bias = converted._c.getattr("quantized_forward._jit_pass_packed_weight_0").unpack()
    assert np.array_equal(conv.weight.int_repr, torch_weight.int_repr().numpy())
    assert np.array_equal(conv.weight.scale, torch_weight.q_per_channel_scales().numpy())
    assert np.array_equal(conv.bias, torch_bias.detach().numpy())
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((2, 2), (1, 1), (1, 1), 1)
    assert linear.weight.shape == (4, 8) and linear.bias.dtype == np.float32


def test_constants_round_trip_exactly(exported):
    converted, path = exported
    model = load(path)
    scales = [
        n
        for n in converted.graph.nodes()
        if n.kind() == "prim::Constant" and n.output().type().kind() == "FloatType"
    ]
    assert scales
    for node in scales:
        assert model.constants[node.output().debugName()] == node.output().toIValue()  # doubles, bit for bit


def _rewrite(path, out, member, transform):
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, transform(data) if name == member else data)


def test_tampered_truncated_missing_and_future_files_are_refused(exported, tmp_path):
    _, path = exported
    tampered = tmp_path / "tampered.qsm"
    _rewrite(path, tampered, "graph.json", lambda d: d.replace(b"quantized::linear", b"quantized::linear_relu", 1))
    with pytest.raises(ModelFileError, match="checksum"):
        load(tampered)
    truncated = tmp_path / "truncated.qsm"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load(truncated)
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "nowhere.qsm")
    future = tmp_path / "future.qsm"

    def bump(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["format_version"] = FORMAT_VERSION + 1
        return json.dumps(manifest).encode()

    _rewrite(path, future, "manifest.json", bump)
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}, newer"):
        load(future)


def test_export_refuses_a_plain_module(tmp_path):
    with pytest.raises(TypeError, match="TorchScript"):
        export(SmallNet(), tmp_path / "x.qsm")


def test_export_refuses_an_unconverted_scripted_module(tmp_path):
    from quantspec.production.export import ExportError

    with pytest.raises(ExportError, match="prim::Call.*frozen, inlined output of quantize_jit"):
        export(torch.jit.script(SmallNet().eval()), tmp_path / "x.qsm")
