"""The graph-mode Numeric Suite: op-sequence matching, SQNR arithmetic, float capture."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from quantspec.production.numeric_suite import GraphNode, align, canonical_ops, layer_error, sqnr_db, worst_first


def _n(kind: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> GraphNode:
    return GraphNode(kind, inputs, outputs)


# float: conv -> relu -> conv -> add(skip) -> relu -> linear, with plumbing in between
FLOAT = [
    _n("prim::Constant", (), ("w1",)),
    _n("aten::conv2d", ("x", "w1"), ("c1",)),
    _n("aten::relu", ("c1",), ("r1",)),
    _n("aten::conv2d", ("r1", "w2"), ("c2",)),
    _n("aten::add", ("c2", "r1"), ("a",)),
    _n("aten::relu_", ("a",), ("r2",)),
    _n("aten::size", ("r2",), ("n",)),
    _n("aten::linear", ("r2", "w3"), ("y",)),
]
# int8: the same program after quantize_jit's fusion, with (de)quantize nodes
INT8 = [
    _n("aten::quantize_per_tensor", ("in", "s", "z", "t"), ("qin",)),
    _n("prim::GetAttr", (), ("p1",)),
    _n("quantized::conv2d_relu", ("qin", "p1"), ("q1",)),
    _n("quantized::conv2d", ("q1", "p2"), ("q2",)),
    _n("quantized::add_relu", ("q2", "q1"), ("q3",)),
    _n("aten::dequantize", ("q3",), ("d3",)),
    _n("aten::linear", ("d3", "w3f"), ("out",)),
]


def test_canonical_ops_expand_fusions() -> None:
    assert canonical_ops("quantized::add_relu") == ("add", "relu")
    assert canonical_ops("quantized::linear") == ("linear",)
    assert canonical_ops("aten::hardtanh_") == ("hardtanh",)
    assert canonical_ops("aten::dequantize") == () and canonical_ops("prim::ListConstruct") == ()


def test_align_matches_fused_nodes_to_the_last_float_op() -> None:
    matches = {m.int8_value: m for m in align(INT8, FLOAT, ["in"], ["x"])}
    # the input quantize stands for the float input x
    assert matches["qin"].float_value == "x"
    # conv2d_relu = [conv2d, relu]: compared after the relu (r1), weight of the conv (node 1)
    assert (matches["q1"].float_value, matches["q1"].float_weight_node) == ("r1", 1)
    assert (matches["q2"].float_value, matches["q2"].float_weight_node) == ("c2", 3)
    # add_relu = [add, relu_]: compared after relu_ (r2); no weight
    assert (matches["q3"].float_value, matches["q3"].float_weight_node) == ("r2", None)
    # the float-island linear in the int8 graph still lines up with the float linear
    assert (matches["out"].float_value, matches["out"].float_weight_node) == ("y", 7)


def test_align_names_the_first_difference() -> None:
    wrong = INT8[:3] + [_n("quantized::mul", ("q1", "q1"), ("m",))] + INT8[4:]
    with pytest.raises(ValueError, match="differ at compute op 2: int8 quantized::mul vs float aten::conv2d"):
        align(wrong, FLOAT, ["in"], ["x"])
    with pytest.raises(ValueError, match="5 compute ops, the float graph 6"):
        align(INT8[:-1], FLOAT, ["in"], ["x"])
    with pytest.raises(ValueError, match="takes 1 inputs, the float model 2"):
        align(INT8, FLOAT, ["in"], ["x", "extra"])


def test_sqnr_and_max_error_by_hand() -> None:
    # signal 1 + 4 + 9 + 16 = 30; noise (0.5^2 + 0.5^2) = 0.5; 10 log10(60) = 17.78 dB
    error = layer_error("c1", "quantized::conv2d", 3, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.5, 4.0]))
    assert error.sqnr_db == pytest.approx(10 * math.log10(60.0), abs=1e-12)
    assert error.max_abs_error == 0.5 and error.elements == 4
    assert sqnr_db(np.ones(3), np.ones(3)) == math.inf
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf
    with pytest.raises(ValueError, match=r"float shape \(2,\) but int8 shape \(3,\)"):
        layer_error("c1", "k", 0, np.zeros(2), np.zeros(3))


def test_worst_first_orders_by_sqnr_then_error() -> None:
    a = layer_error("a", "k", 0, np.array([1.0, 1.0]), np.array([1.0, 1.1]))  # high SQNR
    b = layer_error("b", "k", 1, np.array([1.0, 1.0]), np.array([0.0, 1.0]))  # 10 log10(2/1) = 3.01 dB
    c = layer_error("c", "k", 2, np.array([1.0, 1.0]), np.array([1.0, 1.0]))  # inf
    assert [e.name for e in worst_first([c, a, b])] == ["b", "a", "c"]


def test_float_model_captures_every_intermediate() -> None:
    torch = pytest.importorskip("torch")
    from quantspec.production.numeric_suite import FloatModel

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(x)) * 2.0

    tiny = Tiny()
    with torch.no_grad():
        tiny.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        tiny.linear.bias.copy_(torch.tensor([0.5, 0.5]))
    model = FloatModel(torch.jit.script(tiny))
    x = np.array([[1.0, 2.0]], np.float32)
    acts = model.activations(x)
    kinds = {node.kind: node.outputs[0] for node in model.nodes}
    # linear: [1*1 + 0.5, -2 + 0.5] = [1.5, -1.5]; relu -> [1.5, 0]; * 2 -> [3, 0]
    assert acts[kinds["aten::linear"]].tolist() == [[1.5, -1.5]]
    assert acts[kinds["aten::relu"]].tolist() == [[1.5, 0.0]]
    assert acts[kinds["aten::mul"]].tolist() == [[3.0, 0.0]]
    linear_index = [node.kind for node in model.nodes].index("aten::linear")
    assert model.weight(linear_index).tolist() == [[1.0, 0.0], [0.0, -1.0]]


def _tiny_models(torch, tmp_path, images):
    """A conv-BN-ReLU / conv / add-ReLU / pool / linear net, quantized with quantize_jit
    (calibrated on the test images, so activations stay inside the observed ranges)."""
    from torch import nn

    from quantspec.production.data import ImageFolder, cifar_transform
    from quantspec.production.io import save
    from quantspec.production.quantize import quantize_jit

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.conv2(y) + y)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    torch.manual_seed(0)
    net = Net().eval()
    calib = [torch.from_numpy(x) for x, _ in ImageFolder(images, cifar_transform()).batches(4, progress=False)]
    int8 = quantize_jit(net, None, lambda model, batches: [model(b) for b in batches], [calib])
    save(int8, tmp_path / "int8.pt")
    save(torch.jit.script(net), tmp_path / "float.pt")
    return net


def _tiny_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(4):
        folder = tmp_path / "images" / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return tmp_path / "images"


def test_inspect_end_to_end(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from quantspec.production.data import ImageFolder, cifar_transform
    from quantspec.production.numeric_suite import inspect

    images = _tiny_images(tmp_path)
    _tiny_models(torch, tmp_path, images)
    plot = tmp_path / "ns.png" if importlib.util.find_spec("matplotlib") else None
    report = inspect(tmp_path / "int8.pt", tmp_path / "float.pt", images, limit=4, progress=False, plot=plot)
    kinds = {row.kind for row in report.activations}
    assert {"aten::quantize_per_tensor", "quantized::conv2d_relu", "quantized::add_relu", "quantized::linear"} <= kinds
    assert [row.sqnr_db for row in report.activations] == sorted(row.sqnr_db for row in report.activations)
    # conv1 (BN folded), conv2 and fc carry weights; 8-bit per-channel weights keep > 30 dB
    assert sorted(row.name for row in report.weights) == ["conv1", "conv2", "fc"]
    assert all(row.sqnr_db > 30.0 for row in report.weights)
    assert all(row.sqnr_db > 10.0 for row in report.activations)
    # The input quantize row, recomputed with torch's own quantize on the same images and qparams.
    row = next(r for r in report.activations if r.kind == "aten::quantize_per_tensor")
    x = torch.from_numpy(next(ImageFolder(images, cifar_transform()).batches(4, progress=False))[0])
    from quantspec.production.io import load

    node = next(n for n in load(tmp_path / "int8.pt").graph.nodes() if n.kind() == "aten::quantize_per_tensor")
    scale, zero_point = (list(node.inputs())[i].toIValue() for i in (1, 2))
    dequantized = torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).dequantize()
    assert row.sqnr_db == sqnr_db(x.numpy(), dequantized.numpy())
    if plot is not None:
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_inspect_refuses_a_different_float_model(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from quantspec.production.numeric_suite import inspect

    images = _tiny_images(tmp_path)
    _tiny_models(torch, tmp_path, images)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Sigmoid()).eval()
    torch.jit.save(torch.jit.script(other), str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="differ at compute op 1: int8 quantized::conv2d_relu vs float aten::sigmoid"):
        inspect(tmp_path / "int8.pt", tmp_path / "other.pt", images, limit=2, progress=False)
