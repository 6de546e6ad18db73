"""ONNX Runtime as a target: each call builds a one-node ONNX model (a small graph for the
MatMulInteger variant) and runs it on ORT's CPU provider.

`quantspec conform --target onnxruntime` (or `quantspec.conformance.onnx_target:OnnxRuntimeTarget`).
Needs the `onnx` extra (`pip install 'quantspec[onnx]'`): onnx builds the model, onnxruntime runs
it with one thread and graph optimizations disabled, so the node runs as written.

How each op maps (docs/targets.md has the table, the measured differences and their causes):

* quantize_per_tensor, quantize_per_channel: `QuantizeLinear` (per axis with 1-d qparams);
  dequantize: `DequantizeLinear` (int32 input for qint32).
* conv2d: `QLinearConv`; linear: `com.microsoft.QGemm` (transB=1), ORT's quantized Gemm, the node
  its quantizer makes of a Linear with bias. Both take the bias as int32 with scale
  x_scale * w_scale, so the target quantizes torch's float bias the way onnxruntime's quantizer does
  (`quantize_bias`); torch adds it in float after the int32 accumulation.
  `OnnxRuntimeQLinearMatMulTarget` judges linear as `QLinearMatMul` instead (no bias input),
  `OnnxRuntimeMatMulIntegerTarget` as a graph: `MatMulInteger`, `Cast`, `Mul` by x_scale * w_scale,
  `Add` of the float bias, `QuantizeLinear` (ORT's dynamic quantizer's MatMul, quantized output).
* add, mul: `com.microsoft.QLinearAdd`, `QLinearMul`.
* avg_pool2d: `com.microsoft.QLinearAveragePool`; adaptive_avg_pool2d (1x1 output) and mean over
  (H, W): `com.microsoft.QLinearGlobalAveragePool` (both on NHWC when torch held x channels last);
  max_pool2d: `MaxPool` on the integers; cat: `com.microsoft.QLinearConcat`; relu:
  `com.microsoft.QLinearLeakyRelu` with alpha 0 and the input's qparams.
* relu (conv2d, linear, add, mul): these nodes have none; the fused torch ops clamp the output at
  its zero point, and so does this target (in NumPy, after ORT).

Not provided (no quantized ORT node): clamp, hardswish, hardsigmoid. Cases a node cannot express
(qint32 8-bit nodes, divisor_override, other adaptive output sizes or mean dims, a bias for
QLinearMatMul, a non-finite bias) raise `UnsupportedCase`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from .targets import Scale, UnsupportedCase, ZeroPoint

try:
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper
except ImportError as error:  # an optional extra: say how to get it
    message = "the onnxruntime target needs the onnx extra: pip install 'quantspec[onnx]'"
    raise ImportError(message, name=error.name) from error

OPSET = 21  # QuantizeLinear / QLinearConv as of ONNX 1.15+
MICROSOFT = "com.microsoft"
EIGHT_BIT = {"quint8": np.uint8, "qint8": np.int8}
STORAGE = {**EIGHT_BIT, "qint32": np.int32}
INT32_MIN, INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max


def _session_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only
    return options


def run_graph(nodes: Sequence[onnx.NodeProto], x: dict[str, np.ndarray], constants: dict[str, np.ndarray],
              output_dtype: type) -> np.ndarray:
    """Run ONNX nodes in order (the last node's first output is the result): `x` are graph inputs,
    `constants` initializers (ORT wants qparams constant)."""
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for name, a in x.items()]
    output_type = helper.np_dtype_to_tensor_dtype(np.dtype(output_dtype))
    output = helper.make_tensor_value_info(nodes[-1].output[0], output_type, None)
    used = {name for node in nodes for name in node.input}  # an unused initializer makes ORT warn on every call
    initializers = [numpy_helper.from_array(np.asarray(a), name) for name, a in constants.items() if name in used]
    graph = helper.make_graph(list(nodes), "_".join(node.op_type for node in nodes), inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MICROSOFT, 1)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), _session_options(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, x)[0]


def run_node(node: onnx.NodeProto, x: dict[str, np.ndarray], constants: dict[str, np.ndarray],
             output_dtype: type) -> np.ndarray:
    """Run one ONNX node (`run_graph` of that node alone)."""
    return run_graph([node], x, constants, output_dtype)


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


def _qparams(prefix: str, scale: float, zero_point: int, storage: type) -> dict[str, np.ndarray]:
    """`{prefix}_scale` (float32) and `{prefix}_zero_point` (the tensor's storage type)."""
    return {f"{prefix}_scale": _scale(scale), f"{prefix}_zero_point": np.asarray(zero_point, storage)}


def _unary_qlinear(op: str, x: np.ndarray, scale: float, zero_point: int, dtype: str, out_scale: float,
                   out_zero_point: int, **attributes: object) -> np.ndarray:
    """A com.microsoft QLinear* node with inputs (x, x_scale, x_zero_point, y_scale, y_zero_point)."""
    storage = _eight_bit(dtype)
    node = helper.make_node(op, ["x", "x_scale", "x_zero_point", "y_scale", "y_zero_point"], ["y"],
                            domain=MICROSOFT, **attributes)
    constants = {**_qparams("x", scale, zero_point, storage), **_qparams("y", out_scale, out_zero_point, storage)}
    return run_node(node, {"x": np.ascontiguousarray(x)}, constants, storage)


def _nhwc_pool(op: str, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
               **attributes: object) -> np.ndarray:
    """A quantized pool on NCHW, or on NHWC (the node's `channels_last` attribute, ORT's NHWC
    kernel) when torch held x channels last; the output keeps x's qparams."""
    if not channels_last:
        return _unary_qlinear(op, x, scale, zero_point, dtype, scale, zero_point, channels_last=0, **attributes)
    nhwc = _unary_qlinear(op, x.transpose(0, 2, 3, 1), scale, zero_point, dtype, scale, zero_point,
                          channels_last=1, **attributes)
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))


def _binary_qlinear(op: str, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
                    b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool) -> np.ndarray:
    """com.microsoft QLinearAdd / QLinearMul (numpy broadcasting), torch's fused relu after it."""
    storage = _eight_bit(dtype)
    names = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"]
    node = helper.make_node(op, names, ["y"], domain=MICROSOFT)
    constants = {**_qparams("a", a_scale, a_zero_point, storage), **_qparams("b", b_scale, b_zero_point, storage),
                 **_qparams("y", scale, zero_point, storage)}
    out = run_node(node, {"a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b)}, constants, storage)
    return _relu(out, zero_point, relu)


class OnnxRuntimeTarget:
    """ONNX Runtime's CPU kernels, one single-node model per call (see the module docstring)."""

    ops = frozenset({"quantize_per_tensor", "quantize_per_channel", "dequantize", "add", "mul", "linear", "conv2d",
                     "avg_pool2d", "adaptive_avg_pool2d", "max_pool2d", "cat", "relu", "mean"})

    def __init__(self) -> None:
        self.name = f"onnxruntime[{onnxruntime.__version__}]"

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        node = helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"])
        storage = _eight_bit(dtype)
        constants = {"scale": _scale(scale), "zero_point": np.asarray(zero_point, storage)}
        return run_node(node, {"x": np.ascontiguousarray(x, np.float32)}, constants, storage)

    def quantize_per_channel(self, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                             dtype: str) -> np.ndarray:
        storage = _eight_bit(dtype)
        node = helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"], axis=axis)
        constants = {"scale": _scale(scale), "zero_point": np.asarray(zero_point, storage)}
        return run_node(node, {"x": np.ascontiguousarray(x, np.float32)}, constants, storage)

    def dequantize(self, x: np.ndarray, scale: Scale, zero_point: ZeroPoint, axis: Optional[int], dtype: str,
                   channels_last: bool) -> np.ndarray:
        storage = STORAGE[dtype]
        attributes = {} if axis is None else {"axis": axis}
        node = helper.make_node("DequantizeLinear", ["x", "scale", "zero_point"], ["y"], **attributes)
        constants = {"scale": _scale(scale), "zero_point": np.asarray(zero_point, storage)}
        return run_node(node, {"x": np.ascontiguousarray(x)}, constants, np.float32)

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        return _binary_qlinear("QLinearAdd", a, a_scale, a_zero_point, b, b_scale, b_zero_point, scale, zero_point,
                               dtype, relu)

    def mul(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        return _binary_qlinear("QLinearMul", a, a_scale, a_zero_point, b, b_scale, b_zero_point, scale, zero_point,
                               dtype, relu)

    def avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool,
                   count_include_pad: bool, divisor_override: Optional[int], threads: int) -> np.ndarray:
        if divisor_override is not None:
            raise UnsupportedCase("QLinearAveragePool has no divisor_override")
        return _nhwc_pool("QLinearAveragePool", x, scale, zero_point, dtype, channels_last,
                          kernel_shape=list(kernel_size), strides=list(stride), pads=list(padding) * 2,
                          ceil_mode=int(ceil_mode), count_include_pad=int(count_include_pad))

    def adaptive_avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                            output_size: list[int], threads: int) -> np.ndarray:
        if list(output_size) != [1, 1]:
            raise UnsupportedCase("ONNX has only the global (1x1) adaptive average pool")
        return _nhwc_pool("QLinearGlobalAveragePool", x, scale, zero_point, dtype, channels_last)

    def max_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], dilation: list[int],
                   ceil_mode: bool, threads: int) -> np.ndarray:
        storage = _eight_bit(dtype)
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel_size), strides=list(stride),
                                pads=list(padding) * 2, dilations=list(dilation), ceil_mode=int(ceil_mode))
        return run_node(node, {"x": np.ascontiguousarray(x, storage)}, {}, storage)

    def cat(self, tensors: list[np.ndarray], scales: list[float], zero_points: list[int], dtype: str,
            channels_last: list[bool], dim: int, scale: Optional[float], zero_point: Optional[int],
            threads: int) -> np.ndarray:
        storage = _eight_bit(dtype)
        if scale is None:  # torch.cat: the first input's qparams
            scale, zero_point = scales[0], zero_points[0]
        names, inputs, constants = ["y_scale", "y_zero_point"], {}, _qparams("y", scale, zero_point, storage)
        for i, (t, s, zp) in enumerate(zip(tensors, scales, zero_points, strict=True)):
            names += [f"t{i}", f"t{i}_scale", f"t{i}_zero_point"]
            inputs[f"t{i}"] = np.ascontiguousarray(t)
            constants.update(_qparams(f"t{i}", s, zp, storage))
        node = helper.make_node("QLinearConcat", names, ["y"], domain=MICROSOFT, axis=dim)
        return run_node(node, inputs, constants, storage)

    def relu(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool) -> np.ndarray:
        return _unary_qlinear("QLinearLeakyRelu", x, scale, zero_point, dtype, scale, zero_point, alpha=0.0)

    def mean(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
             dims: list[int], keepdim: bool, threads: int) -> np.ndarray:
        if x.ndim != 4 or sorted(d % 4 for d in dims) != [2, 3]:
            raise UnsupportedCase("ORT has no quantized ReduceMean; only the mean over H and W (a global pool)")
        out = _nhwc_pool("QLinearGlobalAveragePool", x, scale, zero_point, dtype, channels_last)
        return out if keepdim else out.reshape(out.shape[:2])

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


class OnnxRuntimeQLinearMatMulTarget(OnnxRuntimeTarget):
    """The same target with linear as ONNX `QLinearMatMul` (x @ weight.T, per-column weight
    qparams): it has no bias input, so cases with a bias raise UnsupportedCase (a bias would
    need a second requantizing node). `quantspec conform --target
    quantspec.conformance.onnx_target:OnnxRuntimeQLinearMatMulTarget --ops linear`."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"onnxruntime[{onnxruntime.__version__}, QLinearMatMul]"

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        if bias is not None:
            raise UnsupportedCase("QLinearMatMul has no bias input")
        constants = _gemm_constants(x_scale, x_zero_point, np.ascontiguousarray(weight.T), weight_scale,
                                    weight_zero_point, scale, zero_point)
        names = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point"]
        node = helper.make_node("QLinearMatMul", names, ["y"])
        out = run_node(node, {"x": np.ascontiguousarray(x)}, constants, np.uint8)
        return _relu(out, zero_point, relu)


class OnnxRuntimeMatMulIntegerTarget(OnnxRuntimeTarget):
    """The same target with linear as a five-node graph, the one onnxruntime's dynamic quantizer
    makes of a MatMul (`quantize_dynamic`, operators/matmul.py `MatMulInteger`: MatMulInteger,
    Cast, Mul by the scales' product; the bias Add stays float) closed by a QuantizeLinear:
      acc = MatMulInteger(x, weight.T, x_zero_point, w_zero_point)   int32 (MLAS's U8S8 GEMM)
      y = f32(Cast(acc, float32) * xw_scale)                          `Mul`
      y = f32(y + bias)                                               `Add`, only with a bias
      out = sat_u8(rne(y / f32(scale)) + zero_point)                  `QuantizeLinear`
    then torch's fused relu in NumPy. `xw_scale = f32(f32(x_scale) * f32(w_scale))`, one float32
    multiply (a 1-d constant of N for a per-channel weight, broadcast over output columns; the
    weight zero point is then a 1-d tensor of N, which MatMulInteger allows): the quantizer
    forms the product with a float32 `Mul` node of the two float32 scale tensors
    (`get_mul_node(scale_names)`), not in double. Every case is expressible (a NaN or infinite
    bias runs as float). `quantspec conform --target
    quantspec.conformance.onnx_target:OnnxRuntimeMatMulIntegerTarget --ops linear`."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"onnxruntime[{onnxruntime.__version__}, MatMulInteger graph]"

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        constants = _gemm_constants(x_scale, x_zero_point, np.ascontiguousarray(weight.T), weight_scale,
                                    weight_zero_point, scale, zero_point)
        with np.errstate(over="ignore"):  # a product beyond float32: inf, as a float32 Mul gives
            constants["xw_scale"] = constants["x_scale"] * constants["w_scale"]
        nodes = [helper.make_node("MatMulInteger", ["x", "w", "x_zero_point", "w_zero_point"], ["acc"]),
                 helper.make_node("Cast", ["acc"], ["acc_float"], to=onnx.TensorProto.FLOAT),
                 helper.make_node("Mul", ["acc_float", "xw_scale"], ["scaled"])]
        if bias is not None:
            constants["bias"] = np.asarray(bias, np.float32)
            nodes.append(helper.make_node("Add", ["scaled", "bias"], ["biased"]))
        nodes.append(helper.make_node("QuantizeLinear", [nodes[-1].output[0], "y_scale", "y_zero_point"], ["y"]))
        out = run_graph(nodes, {"x": np.ascontiguousarray(x)}, constants, np.uint8)
        return _relu(out, zero_point, relu)
