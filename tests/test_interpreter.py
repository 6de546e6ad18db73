"""reference.load / reference.run: execution, traces, and clear errors. The model files
here are written by hand with the file-format writer, so most of this runs without torch."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

from quantspec import reference
from quantspec.reference.interpreter import ModelFileError, NodeError, ScriptException, UnknownNodeKind
from quantspec.reference.interpreter.file_format import (
    FORMAT_VERSION,
    ArrayStore,
    decode_value,
    encode_value,
    write_model_file,
)
from quantspec.reference.qtensor import MemoryFormat, QTensor


def write(path, nodes, constants, inputs=(("x", [None, 4]),), outputs=("y",), profile=None):
    store = ArrayStore()
    document = {
        "format_version": FORMAT_VERSION,
        "profile": profile or {"torch_release": "2.13", "cpu": "avx512_vnni", "engine": "fbgemm"},
        "torch_version": "2.13.0",
        "inputs": [{"name": name, "dtype": "float32", "shape": shape} for name, shape in inputs],
        "outputs": list(outputs),
        "constants": {name: encode_value(value, store) for name, value in constants.items()},
        "nodes": nodes,
    }
    write_model_file(path, document, store)
    return path


def node(kind, inputs, outputs, source="model.py:7"):
    return {"kind": kind, "inputs": list(inputs), "outputs": list(outputs), "source": source}


QUANT_RELU = [
    node("aten::quantize_per_tensor", ["x", "scale", "zp", "dtype"], ["q"]),
    node("aten::relu", ["q"], ["r"]),
    node("aten::dequantize", ["r"], ["y"]),
]
CONSTANTS = {"scale": 0.5, "zp": 3, "dtype": 13}


def test_run_quantize_relu_dequantize_by_hand(tmp_path):
    model = reference.load(write(tmp_path / "m.qsm", QUANT_RELU, CONSTANTS))
    # scale 0.5, zp 3 (2.13: zp before rounding): x / 0.5 + 3 = [-1, 3, 4, 7.5] -> rne [-1, 3, 4, 8]
    # -> clamp [0, 3, 4, 8]
    # relu: max(q, 3) = [3, 3, 4, 8]; dequantize 0.5 * (q - 3) = [0, 0, 0.5, 2.5]
    x = np.array([[-2.0, 0.0, 0.5, 2.25]], np.float32)
    trace = {}
    y = reference.run(model, x, trace=trace)
    assert y.tolist() == [[0.0, 0.0, 0.5, 2.5]]
    assert trace["q"].int_repr.tolist() == [[0, 3, 4, 8]] and trace["r"].int_repr.tolist() == [[3, 3, 4, 8]]
    assert list(trace) == ["q", "r", "y"]
    assert model.profile.name == "torch2.13-avx512_vnni-fbgemm"


def test_profile_recorded_in_the_file_selects_the_arithmetic(tmp_path):
    # x = 2.25 -> 4.5 in units of 0.5; zp 3. 2.13: rne(3 + 4.5) = rne(7.5) = 8; 2.14: rne(4.5) + 3 = 4 + 3 = 7
    x = np.array([[2.25, 0, 0, 0]], np.float32)
    old = reference.load(write(tmp_path / "a.qsm", QUANT_RELU, CONSTANTS))
    profile = {"torch_release": "2.14", "cpu": "avx2", "engine": "fbgemm"}
    new = reference.load(write(tmp_path / "b.qsm", QUANT_RELU, CONSTANTS, profile=profile))
    assert reference.run(old, x)[0, 0] == 2.5 and reference.run(new, x)[0, 0] == 2.0


def test_every_kernel_gets_the_recorded_profile(tmp_path):
    # x = 1.5 -> q = 3 (scale 0.5, zp 0, exact).  quantized::add(q, q, scale 2, zp 1) on one
    # element is all scalar tail: c = 1.5 + 1.5 = 3, 3 / 2 = 1.5.
    # 2.13: rne(1 + 1.5) = rne(2.5) = 2 -> dequantized 2 * (2 - 1) = 2
    # 2.14: rne(1.5) + 1 = 2 + 1 = 3  -> dequantized 2 * (3 - 1) = 4
    nodes = [
        node("aten::quantize_per_tensor", ["x", "scale", "zp", "dtype"], ["q"]),
        node("quantized::add", ["q", "q", "out_scale", "out_zp"], ["s"]),
        node("aten::dequantize", ["s"], ["y"]),
    ]
    constants = {"scale": 0.5, "zp": 0, "dtype": 13, "out_scale": 2.0, "out_zp": 1}
    x = np.array([[1.5]], np.float32)
    results = {}
    for release in ("2.13", "2.14"):
        profile = {"torch_release": release, "cpu": "avx512_vnni", "engine": "fbgemm"}
        path = write(tmp_path / f"{release}.qsm", nodes, constants, inputs=(("x", [None, 1]),), profile=profile)
        results[release] = reference.run(reference.load(path), x)[0, 0]
    assert results == {"2.13": 2.0, "2.14": 4.0}


def test_trace_callable_sees_nodes_in_order(tmp_path):
    model = reference.load(write(tmp_path / "m.qsm", QUANT_RELU, CONSTANTS))
    seen = []
    reference.run(model, np.zeros((1, 4), np.float32), trace=lambda n, name, value: seen.append((n.kind, name)))
    assert seen == [("aten::quantize_per_tensor", "q"), ("aten::relu", "r"), ("aten::dequantize", "y")]


def test_prim_if_and_raise(tmp_path):
    nodes = [
        node("aten::size", ["x"], ["sizes"]),
        node("aten::len", ["sizes"], ["rank"]),
        node("aten::gt", ["rank", "two"], ["ok"]),
        {**node("prim::If", ["ok"], []), "blocks": [
            {"inputs": [], "nodes": [], "outputs": []},
            {"inputs": [], "nodes": [node("prim::RaiseException", ["message", "none"], [])], "outputs": []},
        ]},
        node("aten::relu", ["x"], ["y"]),
    ]
    constants = {"two": 2, "message": "AssertionError: ", "none": None}
    path = write(tmp_path / "m.qsm", nodes, constants, inputs=(("x", None),))
    model = reference.load(path)
    assert reference.run(model, np.ones((1, 1, 1), np.float32)).shape == (1, 1, 1)
    with pytest.raises(ScriptException, match="AssertionError"):
        reference.run(model, np.ones((1, 1), np.float32))


def test_unknown_node_kind_names_kind_and_source(tmp_path):
    # load's checker refuses it (an UnknownNodeKind and a ModelFileError); run refuses it in
    # a model built without load.
    nodes = [node("aten::quantize_per_tensor", ["x", "scale", "zp", "dtype"], ["q"]),
             node("quantized::softmax", ["q"], ["y"], source="net.py:42")]
    path = write(tmp_path / "m.qsm", nodes, CONSTANTS)
    with pytest.raises(UnknownNodeKind, match=r"'quantized::softmax'.*net\.py:42") as refused:
        reference.load(path)
    assert isinstance(refused.value, ModelFileError)
    model = reference.load(write(tmp_path / "ok.qsm", nodes[:1] + [node("aten::relu", ["q"], ["y"])], CONSTANTS))
    softmax = dataclasses.replace(model.nodes[1], kind="quantized::softmax", source="net.py:42")
    unchecked = dataclasses.replace(model, nodes=(model.nodes[0], softmax))
    with pytest.raises(UnknownNodeKind, match=r"'quantized::softmax'.*net\.py:42"):
        reference.run(unchecked, np.zeros((1, 4), np.float32))


def test_failing_node_is_named(tmp_path):
    # A negative scale: load's checker refuses it; run, given the model without load, names the node.
    nodes = [node("aten::quantize_per_tensor", ["x", "scale", "zp", "dtype"], ["y"], source="net.py:3")]
    with pytest.raises(ModelFileError, match=r"node 0 aten::quantize_per_tensor \(source: net\.py:3\).*-1\.0"):
        reference.load(write(tmp_path / "bad.qsm", nodes, {**CONSTANTS, "scale": -1.0}))
    model = reference.load(write(tmp_path / "m.qsm", nodes, CONSTANTS))
    unchecked = dataclasses.replace(model, constants={**model.constants, "scale": -1.0})
    with pytest.raises(NodeError, match=r"aten::quantize_per_tensor \(source: net\.py:3\).*scale"):
        reference.run(unchecked, np.zeros((1, 4), np.float32))


def test_wrong_inputs_are_refused(tmp_path):
    model = reference.load(write(tmp_path / "m.qsm", QUANT_RELU, CONSTANTS))
    with pytest.raises(TypeError, match="dtype float32, got float64"):
        reference.run(model, np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"shape \('any', 4\), got \(1, 5\)"):
        reference.run(model, np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="takes 1 input"):
        reference.run(model, [np.zeros((1, 4), np.float32)] * 2)
    with pytest.raises(TypeError, match="NumPy array"):
        reference.run(model, [[0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="missing"):
        reference.run(model, {"z": np.zeros((1, 4), np.float32)})


def test_not_a_model_file(tmp_path):
    junk = tmp_path / "junk.qsm"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="not a readable model file"):
        reference.load(junk)


def test_converted_torch_model_runs_bit_exactly(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from torch.ao.quantization import get_default_qconfig, quantize_jit

    from quantspec.production.environment import fbgemm_engine
    from quantspec.production.export import export

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.act = torch.nn.Hardswish()
            self.fc = torch.nn.Linear(16, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv(x))
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))

    torch.manual_seed(1)
    with fbgemm_engine():
        converted = quantize_jit(
            torch.jit.script(Net().eval()), {"": get_default_qconfig("fbgemm")},
            lambda m, d: [m(x) for x in d], [[torch.randn(2, 3, 9, 9) for _ in range(2)]],
        )
        export(converted, tmp_path / "net.qsm")
        x = torch.randn(3, 3, 9, 9)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            expected = converted(x).numpy()
        finally:
            torch.set_num_threads(previous)
    model = reference.load(tmp_path / "net.qsm")
    assert np.array_equal(reference.run(model, x.numpy()), expected)
    # Two GEMM workers cut every conv/linear product into bands (even these small ones): the same outputs.
    monkeypatch.setattr(importlib.import_module("quantspec.reference.fast.threads"), "MIN_MACS_PER_WORKER", 1)
    assert np.array_equal(reference.run(model, x.numpy(), workers=2), expected)


def test_conv_and_linear_weights_and_conv_plans_are_formed_once_per_model(tmp_path, monkeypatch):
    from quantspec.reference.interpreter import file_format
    from quantspec.reference.interpreter.file_format import PackedConv, PackedLinear

    calls = []
    for name in ("prepare_conv_weight", "prepare_linear_weight", "plan_conv2d"):
        original = getattr(file_format, name)
        monkeypatch.setattr(file_format, name, lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args))
    # quantize (scale 1, zp 0) -> 1x1 conv (w = 2) -> flatten -> linear (w = 3) -> dequantize:
    # x = 5 -> 10 -> 30.
    w_conv = QTensor(np.full((1, 1, 1, 1), 2, np.int8), 1.0, 0, "qint8")
    w_fc = QTensor(np.full((1, 1), 3, np.int8), 1.0, 0, "qint8")
    nodes = [
        node("aten::quantize_per_tensor", ["x", "one", "zero", "dtype"], ["q"]),
        node("quantized::conv2d", ["q", "conv", "one", "zero"], ["c"]),
        node("aten::flatten", ["c", "start", "end"], ["f"]),
        node("quantized::linear", ["f", "fc", "one", "zero"], ["l"]),
        node("aten::dequantize", ["l"], ["y"]),
    ]
    constants = {
        "one": 1.0, "zero": 0, "dtype": 13, "start": 1, "end": -1,
        "conv": PackedConv(w_conv, None, (1, 1), (0, 0), (1, 1), 1),
        "fc": PackedLinear(w_fc, None),
    }
    model = reference.load(write(tmp_path / "m.qsm", nodes, constants, inputs=(("x", [1, 1, 1, 1]),)))
    for _ in range(3):
        assert reference.run(model, np.full((1, 1, 1, 1), 5, np.float32)).tolist() == [[30.0]]
    # Once each, not per run: the weights, and the conv's checks and decisions (its plan).
    assert sorted(calls) == ["plan_conv2d", "prepare_conv_weight", "prepare_linear_weight"]
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        reference.run(model, np.full((1, 1, 1, 1), 5, np.float32), workers=0)


def test_float_tensors_keep_their_memory_format():
    # A float conv2d picks its summation order by its input's layout, so a repro file that
    # replays one must keep an NHWC-strided float input NHWC (values in NCHW index order).
    nchw = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    store = ArrayStore()
    encoded = [encode_value(value, store) for value in (nchw, nhwc)]
    back = [decode_value(entry, store.arrays) for entry in encoded]
    assert back[0].strides == (96, 48, 16, 4) and back[1].strides == (96, 4, 32, 8)  # float32 NCHW / NHWC
    assert np.array_equal(back[0], nchw) and np.array_equal(back[1], nchw)
    with pytest.raises(ModelFileError, match="memory_format 'nhwc'"):
        decode_value(dict(encoded[1], memory_format="nhwc"), store.arrays)


def test_quantized_tensor_with_an_unknown_memory_format_is_a_model_file_error():
    store = ArrayStore()
    encoded = encode_value(QTensor(np.zeros((1, 2, 3, 4), np.uint8), 0.5, 3, "quint8"), store)
    assert decode_value(encoded, store.arrays).memory_format is MemoryFormat.contiguous
    with pytest.raises(ModelFileError, match=r"memory_format 'nhwc' for shape \(1, 2, 3, 4\): expected one of"):
        decode_value(dict(encoded, memory_format="nhwc"), store.arrays)


def test_two_workers_give_every_node_the_same_values_on_resnet18(tmp_path, monkeypatch):
    # ResNet-18 (width 0.25) at 64x64 with bands of 16 KB: the stem and most convs cut rows
    # (layer1's 16x16 convs in Winograd tile rows), and 4 of the 20, whose intermediates
    # fit one band, cut output channels among the workers. Every node's output must not
    # depend on the worker count.
    torch = pytest.importorskip("torch")
    from torch.ao.quantization import get_default_qconfig

    from quantspec.production import export, quantize_jit
    from quantspec.production.zoo import build

    calib = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))]
    converted = quantize_jit(torch.jit.script(build("resnet18", width=0.25)), {"": get_default_qconfig("fbgemm")},
                             lambda m, data: [m(x) for x in data], [calib])
    model = reference.load(export(converted, tmp_path / "resnet18.qsm"))
    # Worker invariance is the reference's own property: run it under a VNNI profile, where
    # the 3x3 convs may take Winograd, whatever this CPU is.
    vnni = dataclasses.replace(model, profile=dataclasses.replace(model.profile, cpu="avx512_vnni"))
    threads, conv = (importlib.import_module(f"quantspec.reference.fast.{name}") for name in ("threads", "conv2d"))
    monkeypatch.setattr(threads, "MIN_MACS_PER_WORKER", 1)
    monkeypatch.setattr(conv, "BAND_BYTES", 16 * 2**10)
    winograd_calls = []
    original = conv.winograd_sums
    monkeypatch.setattr(conv, "winograd_sums", lambda *args: winograd_calls.append(1) or original(*args))
    outputs = {}
    for workers in (1, 2):
        values = outputs[workers] = []
        reference.run(vnni, calib[0].numpy(), workers=workers, trace=lambda node, name, value: values.append(value))
    assert winograd_calls and len(outputs[1]) == len(outputs[2])
    for one, two in zip(outputs[1], outputs[2]):
        same = np.array_equal(one.int_repr, two.int_repr) if hasattr(one, "int_repr") else np.array_equal(one, two)
        assert same
    assert np.array_equal(reference.run(model, calib[0].numpy(), workers=2), converted(calib[0]).numpy())
