"""ONNX Runtime as a target: each call builds a one-node ONNX model and runs it on ORT's CPU provider.

`quantspec conform --target onnxruntime` (or `quantspec.conformance.onnx_target:OnnxRuntimeTarget`).
Needs the `onnx` extra (`pip install 'quantspec[onnx]'`): onnx builds the model, onnxruntime runs
it with one thread and graph optimizations disabled, so the node runs as written.

How each op maps (docs/targets.md has the measured differences and their causes):

* quantize_per_tensor: `QuantizeLinear` (quint8, qint8).
* conv2d: `QLinearConv`; linear: `com.microsoft.QGemm` (transB=1), ORT's quantized Gemm, the node
  its quantizer makes of a Linear with bias. Both take the bias as int32 with scale
  x_scale * w_scale, so the target quantizes torch's float bias the way onnxruntime's quantizer does
  (`quantize_bias`); torch adds it in float after the int32 accumulation.
* add: `com.microsoft.QLinearAdd` (quint8, qint8).
* relu (conv2d, linear, add): these nodes have none; the fused torch ops clamp the output at its
  zero point, and so does this target (in NumPy, after ORT).

qint32 (quantize_per_tensor, add) has no ONNX quantized node: such cases raise `UnsupportedCase`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .targets import Scale, UnsupportedCase, ZeroPoint

try:
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper
except ImportError as error:  # an optional extra: say how to get it
    raise ImportError("the onnxruntime target needs the onnx extra: pip install 'quantspec[onnx]'") from error

OPSET = 21  # QuantizeLinear / QLinearConv as of ONNX 1.15+
MICROSOFT = "com.microsoft"
EIGHT_BIT = {"quint8": np.uint8, "qint8": np.int8}
INT32_MIN, INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max


def _session_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def run_node(node: onnx.NodeProto, x: dict[str, np.ndarray], constants: dict[str, np.ndarray],
             output_dtype: type) -> np.ndarray:
    """Run one ONNX node: `x` are graph inputs, `constants` initializers (ORT wants qparams constant)."""
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for name, a in x.items()]
    output_type = helper.np_dtype_to_tensor_dtype(np.dtype(output_dtype))
    output = helper.make_tensor_value_info(node.output[0], output_type, None)
    initializers = [numpy_helper.from_array(np.asarray(a), name) for name, a in constants.items()]
    graph = helper.make_graph([node], node.op_type, inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MICROSOFT, 1)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), _session_options(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, x)[0]


def quantize_bias(bias: np.ndarray, x_scale: float, weight_scale: Scale) -> np.ndarray:
    """int32 bias with scale x_scale * weight_scale, as onnxruntime.quantization does it: float32
    scales, bias / bias_scale rounded half to even (saturated here to int32 instead of wrapping).
    A NaN or infinite bias has no int32 value: UnsupportedCase."""
    if not np.isfinite(bias).all():
        raise UnsupportedCase("a non-finite float bias has no int32 quantization")
    bias_scale = np.float32(x_scale) * np.asarray(weight_scale, np.float32)
    with np.errstate(over="ignore"):  # a huge bias over a tiny scale: inf, saturated below
        quotient = np.asarray(bias, np.float32) / bias_scale
    return np.clip(np.rint(quotient).astype(np.float64), INT32_MIN, INT32_MAX).astype(np.int32)  # float64: 2^31-1 exact


def _scale(value: Scale) -> np.ndarray:
    """A scale as the float32 ORT takes (beyond float32's range: inf, as in torch's kernels)."""
    with np.errstate(over="ignore"):
        return np.asarray(value, np.float32)


def _eight_bit(dtype: str) -> type:
    if dtype not in EIGHT_BIT:
        raise UnsupportedCase(f"{dtype}: ONNX's quantized nodes have no int32 output")
    return EIGHT_BIT[dtype]


def _relu(out: np.ndarray, zero_point: int, relu: bool) -> np.ndarray:
    """torch's fused relu: the quantized output clamped at its zero point."""
    return np.maximum(out, np.asarray(zero_point, out.dtype)) if relu else out


def _gemm_constants(x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
                    weight_zero_point: ZeroPoint, scale: float, zero_point: int) -> dict[str, np.ndarray]:
    return {"x_scale": _scale(x_scale), "x_zero_point": np.uint8(x_zero_point), "w": weight,
            "w_scale": _scale(weight_scale), "w_zero_point": np.asarray(weight_zero_point, np.int8),
            "y_scale": _scale(scale), "y_zero_point": np.uint8(zero_point)}


class OnnxRuntimeTarget:
    """ONNX Runtime's CPU kernels, one single-node model per call (see the module docstring)."""

    ops = frozenset({"quantize_per_tensor", "add", "linear", "conv2d"})

    def __init__(self) -> None:
        self.name = f"onnxruntime[{onnxruntime.__version__}]"

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        node = helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"])
        storage = _eight_bit(dtype)
        constants = {"scale": _scale(scale), "zero_point": np.asarray(zero_point, storage)}
        return run_node(node, {"x": np.ascontiguousarray(x, np.float32)}, constants, storage)

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        storage = _eight_bit(dtype)
        names = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"]
        node = helper.make_node("QLinearAdd", names, ["y"], domain=MICROSOFT)
        constants = {"a_scale": _scale(a_scale), "a_zero_point": storage(a_zero_point),
                     "b_scale": _scale(b_scale), "b_zero_point": storage(b_zero_point),
                     "y_scale": _scale(scale), "y_zero_point": storage(zero_point)}
        out = run_node(node, {"a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b)}, constants, storage)
        return _relu(out, zero_point, relu)

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        constants = _gemm_constants(x_scale, x_zero_point, weight, weight_scale, weight_zero_point, scale, zero_point)
        if bias is not None:
            constants["bias"] = quantize_bias(bias, x_scale, weight_scale)
        names = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias" if bias is not None else "",
                 "y_scale", "y_zero_point"]
        node = helper.make_node("QGemm", names, ["y"], domain=MICROSOFT, transB=1)
        rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])  # QGemm is 2-d
        out = run_node(node, {"x": rows}, constants, np.uint8).reshape(*x.shape[:-1], weight.shape[0])
        return _relu(out, zero_point, relu)

    def conv2d(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, scale: float, zero_point: int, relu: bool) -> np.ndarray:
        constants = _gemm_constants(x_scale, x_zero_point, weight, weight_scale, weight_zero_point, scale, zero_point)
        names = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point"]
        if bias is not None:
            constants["bias"] = quantize_bias(bias, x_scale, weight_scale)
            names.append("bias")
        node = helper.make_node("QLinearConv", names, ["y"], strides=list(stride), pads=list(padding) * 2,
                                dilations=list(dilation), group=groups, kernel_shape=list(weight.shape[2:]))
        out = run_node(node, {"x": np.ascontiguousarray(x)}, constants, np.uint8)
        return _relu(out, zero_point, relu)
