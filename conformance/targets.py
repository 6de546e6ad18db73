"""The target protocol: what an implementation under judgement provides, op by op.

A *target* computes quantized ops on plain NumPy arrays: integer tensors as their integers
(logical, C order: NCHW for 4-d), qparams as Python floats and ints (per-channel weight qparams
as float64 / int64 arrays along axis 0), op arguments as ints, bools and lists. Each method
returns the output integers as an integer array of the output's shape (its qparams are the
`scale` / `zero_point` arguments; dequantize returns float32). A target implements a subset of `OPS` and names it in
`ops`. See docs/targets.md.

Built in: `reference` (quantspec's NumPy reference in one numerics profile: the oracle, and a
self-check), `torch` (torch's kernels, engine pinned as `conform` pins it) and `onnxruntime`
(`onnx_target`, with the onnx extra). A target raises `UnsupportedCase` for a case it cannot
express; the case is skipped and counted. A user's
target is `package.module:object`, an instance or a class (`load_target`).

This module imports NumPy and the reference only: packs are replayed without torch and
without Hypothesis (`conformance.vectors`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np

from quantspec.reference import ops
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

Scale = Union[float, np.ndarray]
ZeroPoint = Union[int, np.ndarray]

# A quantized input tensor is passed as its integers `x`, `scale`, `zero_point`, `dtype` and
# `channels_last` (the memory format torch held it in: 4-d only; the integers are logical NCHW).
_TENSOR = ("x", "scale", "zero_point", "dtype", "channels_last")

# Each op's parameters, in the order of the protocol's methods: a call, a pack case and a
# target method all use these names.
OPS: dict[str, tuple[str, ...]] = {
    "quantize_per_tensor": ("x", "scale", "zero_point", "dtype"),
    "quantize_per_channel": ("x", "scale", "zero_point", "axis", "dtype"),
    "dequantize": ("x", "scale", "zero_point", "axis", "dtype", "channels_last"),
    "add": ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "scale", "zero_point", "dtype",
            "relu", "a_channels_last", "b_channels_last", "threads"),
    "mul": ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "scale", "zero_point", "dtype",
            "relu", "a_channels_last", "b_channels_last", "threads"),
    "linear": ("x", "x_scale", "x_zero_point", "weight", "weight_scale", "weight_zero_point", "bias",
               "scale", "zero_point", "relu"),
    "conv2d": ("x", "x_scale", "x_zero_point", "weight", "weight_scale", "weight_zero_point", "bias",
               "stride", "padding", "dilation", "groups", "scale", "zero_point", "relu"),
    "avg_pool2d": _TENSOR + ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                             "divisor_override", "threads"),
    "adaptive_avg_pool2d": _TENSOR + ("output_size", "threads"),
    "max_pool2d": _TENSOR + ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "threads"),
    "cat": ("tensors", "scales", "zero_points", "dtype", "channels_last", "dim", "scale", "zero_point", "threads"),
    "relu": _TENSOR,
    "clamp": _TENSOR + ("low", "high"),
    "hardswish": ("x", "x_scale", "x_zero_point", "dtype", "channels_last", "scale", "zero_point", "threads"),
    "hardsigmoid": _TENSOR + ("threads",),
    "mean": _TENSOR + ("dims", "keepdim", "threads"),
}
FLOAT_OUTPUT_OPS = frozenset({"dequantize"})  # float32 outputs; every other op returns integers


class TargetError(ValueError):
    """A target could not be loaded, or does not keep the protocol (a missing method, a
    result that is not an integer array of the expected shape)."""


class UnsupportedCase(Exception):
    """Raised by a target for a case of an op it implements but cannot express (e.g. a dtype
    its runtime lacks): the case is counted as skipped, not judged."""


@runtime_checkable
class Target(Protocol):
    """An implementation of quantized ops under judgement; implement the methods named in `ops`.

    Arrays: `x` of quantize_per_tensor / quantize_per_channel float32; quantized inputs uint8
    (quint8), int8 (qint8) or int32 (qint32); `bias` float32 of length out_channels, or None.
    4-d tensors are logical NCHW (x) and OIHW (weight); `channels_last` (`a_channels_last`,
    ...) says that torch held the tensor channels last, which changes torch's integers only
    where its kernels walk memory (vector blocks and tails: ties, saturation). `dtype` is
    "quint8", "qint8" or "qint32". `weight_scale` / `weight_zero_point` are a float and an
    int (per-tensor) or float64 / int64 arrays with one entry per output channel
    (per-channel, axis 0); dequantize's `scale` / `zero_point` likewise along `axis` (None:
    per-tensor). `threads` is torch's intra-op thread count (the reference's integers depend
    on it only at ties); a target may ignore the layout and thread arguments. Pooling sizes
    (`kernel_size`, `stride`, ...) are [h, w] lists.
    """

    name: str
    ops: frozenset[str]

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        """`torch.quantize_per_tensor(x, scale, zero_point, dtype).int_repr()`."""
        ...

    def quantize_per_channel(self, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                             dtype: str) -> np.ndarray:
        """`torch.quantize_per_channel(x, scale, zero_point, axis, dtype).int_repr()`."""
        ...

    def dequantize(self, x: np.ndarray, scale: Scale, zero_point: ZeroPoint, axis: Optional[int], dtype: str,
                   channels_last: bool) -> np.ndarray:
        """`Tensor.dequantize()`: float32 of x's shape (judged bit for bit; differences in ulps)."""
        ...

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        """`quantized::add` (`add_relu` when `relu`) of two tensors of one shape and dtype."""
        ...

    def mul(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        """`quantized::mul` (`mul_relu`); b may broadcast (an (N, C, 1, 1) gate of an (N, C, H, W) a)."""
        ...

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        """`quantized::linear` (`linear_relu`): quint8 x (..., K), qint8 weight (N, K) -> quint8 (..., N)."""
        ...

    def conv2d(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, scale: float, zero_point: int, relu: bool) -> np.ndarray:
        """`quantized::conv2d` (`conv2d_relu`): quint8 NCHW x, qint8 OIHW weight -> quint8 NCHW."""
        ...

    def avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool,
                   count_include_pad: bool, divisor_override: Optional[int], threads: int) -> np.ndarray:
        """`F.avg_pool2d` of an 8-bit NCHW tensor; the output keeps x's qparams."""
        ...

    def adaptive_avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                            output_size: list[int], threads: int) -> np.ndarray:
        """`F.adaptive_avg_pool2d` of an 8-bit NCHW tensor; the output keeps x's qparams."""
        ...

    def max_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], dilation: list[int],
                   ceil_mode: bool, threads: int) -> np.ndarray:
        """`F.max_pool2d` of an 8-bit NCHW tensor (padding never wins the max)."""
        ...

    def cat(self, tensors: list[np.ndarray], scales: list[float], zero_points: list[int], dtype: str,
            channels_last: list[bool], dim: int, scale: Optional[float], zero_point: Optional[int],
            threads: int) -> np.ndarray:
        """`quantized::cat(tensors, dim, scale, zero_point)`: 4-d 8-bit inputs, each with its own
        qparams, requantized to the output's; scale and zero_point None: `torch.cat`, whose output
        takes the first input's qparams."""
        ...

    def relu(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool) -> np.ndarray:
        """`torch.relu` of a quantized tensor: max(x, zero_point)."""
        ...

    def clamp(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
              low: Optional[float], high: Optional[float]) -> np.ndarray:
        """`torch.clamp(x, low, high)`: float bounds (None: unbounded; NaN and +-inf happen)."""
        ...

    def hardswish(self, x: np.ndarray, x_scale: float, x_zero_point: int, dtype: str, channels_last: bool,
                  scale: float, zero_point: int, threads: int) -> np.ndarray:
        """`quantized::hardswish(x, scale, zero_point)`."""
        ...

    def hardsigmoid(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                    threads: int) -> np.ndarray:
        """`F.hardsigmoid`: output scale 1/256, zero point 0 (quint8) or -128 (qint8)."""
        ...

    def mean(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
             dims: list[int], keepdim: bool, threads: int) -> np.ndarray:
        """`torch.mean(x, dims, keepdim)`; the output keeps x's qparams."""
        ...


@dataclass(frozen=True)
class TargetCall:
    """One op call as a target receives it: `op` and its arguments by name (`OPS[op]`)."""

    op: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = OPS.get(self.op)
        if expected is None:
            raise TargetError(f"unknown op {self.op!r}; known: {sorted(OPS)}")
        if set(self.arguments) != set(expected):
            raise TargetError(f"{self.op}: arguments {sorted(self.arguments)} are not {sorted(expected)}")


def run_call(target: Target, call: TargetCall, expected_shape: tuple[int, ...]) -> np.ndarray:
    """The target's output for `call`, checked to be an array of `expected_shape`: float32 for
    `FLOAT_OUTPUT_OPS`, integers otherwise."""
    if call.op not in target.ops:
        raise TargetError(f"target {target.name!r} does not implement {call.op}")
    result = np.asarray(getattr(target, call.op)(**call.arguments))
    float_output = call.op in FLOAT_OUTPUT_OPS
    kind_ok = result.dtype == np.float32 if float_output else result.dtype.kind in "iu"
    if not kind_ok or result.shape != tuple(expected_shape):
        raise TargetError(
            f"target {target.name!r}, {call.op}: returned {result.dtype} of shape {result.shape}; "
            f"expected {'float32' if float_output else 'integers'} of shape {tuple(expected_shape)}"
        )
    return result


def ordered(values: np.ndarray) -> np.ndarray:
    """Output values as int64 whose differences count steps: integers as they are; float32 by
    their bit patterns in value order, so that a difference is a number of ulps (-0.0 is one
    step below +0.0: bit-exact means the same bits)."""
    values = np.asarray(values)
    if values.dtype != np.float32:
        return values.astype(np.int64)
    bits = values.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -1 - (bits & 0x7FFFFFFF), bits)


# --- built-in targets ----------------------------------------------------------------------------


def _layout(channels_last: bool) -> MemoryFormat:
    return MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous


def _tensor(x: np.ndarray, scale: Scale, zero_point: ZeroPoint, dtype: str, channels_last: bool = False,
            axis: Optional[int] = None) -> QTensor:
    return QTensor(x, scale, zero_point, QDtype.parse(dtype), axis=axis, memory_format=_layout(channels_last))


def _weight(weight: np.ndarray, scale: Scale, zero_point: ZeroPoint) -> QTensor:
    return _tensor(weight, scale, zero_point, "qint8", axis=0 if np.ndim(scale) > 0 else None)


class ReferenceKernels:
    """The reference's ops in one numerics profile, with the signatures of `oracles`' torch
    calls (QTensors in, QTensor out), so that one adapter (`_KernelTarget`) serves both."""

    def __init__(self, profile: NumericsProfile) -> None:
        self.profile = profile

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: QDtype) -> QTensor:
        return ops.quantize_per_tensor(x, scale, zero_point, dtype, self.profile)

    def quantize_per_channel(self, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                             dtype: QDtype) -> QTensor:
        return ops.quantize_per_channel(x, scale, zero_point, axis, dtype, self.profile)

    def dequantize(self, q: QTensor) -> np.ndarray:
        return ops.dequantize(q)

    def add(self, a: QTensor, b: QTensor, scale: float, zero_point: int, relu: bool, threads: int) -> QTensor:
        return ops.add(a, b, scale, zero_point, relu, threads, self.profile)

    def mul(self, a: QTensor, b: QTensor, scale: float, zero_point: int, relu: bool, threads: int) -> QTensor:
        return ops.mul(a, b, scale, zero_point, relu, threads)

    def linear(self, x: QTensor, weight: QTensor, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> QTensor:
        return ops.linear(x, weight, bias, scale, zero_point, relu, self.profile)

    def conv2d(self, x: QTensor, weight: QTensor, bias: Optional[np.ndarray], stride: list[int],
               padding: list[int], dilation: list[int], groups: int, scale: float, zero_point: int,
               relu: bool) -> QTensor:
        return ops.conv2d(x, weight, bias, stride, padding, dilation, groups, scale, zero_point, relu, self.profile)

    def avg_pool2d(self, x: QTensor, kernel_size: list[int], stride: list[int], padding: list[int],
                   ceil_mode: bool, count_include_pad: bool, divisor_override: Optional[int],
                   threads: int) -> QTensor:
        return ops.avg_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, count_include_pad,
                              divisor_override, self.profile)

    def adaptive_avg_pool2d(self, x: QTensor, output_size: list[int], threads: int) -> QTensor:
        return ops.adaptive_avg_pool2d(x, tuple(output_size), self.profile)

    def max_pool2d(self, x: QTensor, kernel_size: list[int], stride: list[int], padding: list[int],
                   dilation: list[int], ceil_mode: bool, threads: int) -> QTensor:
        return ops.max_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), ceil_mode,
                              self.profile)

    def cat(self, tensors: list[QTensor], dim: int, scale: Optional[float], zero_point: Optional[int],
            threads: int) -> QTensor:
        return ops.cat(tensors, dim, scale, zero_point, self.profile)

    def relu(self, q: QTensor) -> QTensor:
        return ops.relu(q)

    def clamp(self, q: QTensor, low: Optional[float], high: Optional[float]) -> QTensor:
        return ops.clamp(q, low, high, self.profile)

    def hardswish(self, q: QTensor, scale: float, zero_point: int, threads: int) -> QTensor:
        return ops.hardswish(q, scale, zero_point, threads, self.profile)

    def hardsigmoid(self, q: QTensor, threads: int) -> QTensor:
        return ops.hardsigmoid(q, threads, self.profile)

    def mean(self, q: QTensor, dims: list[int], keepdim: bool, threads: int) -> QTensor:
        return ops.mean(q, tuple(dims), keepdim, self.profile)


class _KernelTarget:
    """The protocol on top of QTensor-level kernels (`ReferenceKernels` or `oracles`' torch
    calls): each method builds the QTensors and calls the kernel of the same name (`_run`)."""

    ops = frozenset(OPS)

    def _run(self, op: str, *arguments: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _output(result: Union[QTensor, np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(result.int_repr if isinstance(result, QTensor) else result)

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        return self._run("quantize_per_tensor", x, scale, zero_point, QDtype.parse(dtype))

    def quantize_per_channel(self, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                             dtype: str) -> np.ndarray:
        return self._run("quantize_per_channel", x, scale, zero_point, axis, QDtype.parse(dtype))

    def dequantize(self, x: np.ndarray, scale: Scale, zero_point: ZeroPoint, axis: Optional[int], dtype: str,
                   channels_last: bool) -> np.ndarray:
        return self._run("dequantize", _tensor(x, scale, zero_point, dtype, channels_last, axis))

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        qa = _tensor(a, a_scale, a_zero_point, dtype, a_channels_last)
        qb = _tensor(b, b_scale, b_zero_point, dtype, b_channels_last)
        return self._run("add", qa, qb, scale, zero_point, relu, threads)

    def mul(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        qa = _tensor(a, a_scale, a_zero_point, dtype, a_channels_last)
        qb = _tensor(b, b_scale, b_zero_point, dtype, b_channels_last)
        return self._run("mul", qa, qb, scale, zero_point, relu, threads)

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        qx = _tensor(x, x_scale, x_zero_point, "quint8")
        return self._run("linear", qx, _weight(weight, weight_scale, weight_zero_point), bias, scale, zero_point,
                         relu)

    def conv2d(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, scale: float, zero_point: int, relu: bool) -> np.ndarray:
        qx = _tensor(x, x_scale, x_zero_point, "quint8")
        return self._run("conv2d", qx, _weight(weight, weight_scale, weight_zero_point), bias, stride, padding,
                         dilation, groups, scale, zero_point, relu)

    def avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool,
                   count_include_pad: bool, divisor_override: Optional[int], threads: int) -> np.ndarray:
        return self._run("avg_pool2d", _tensor(x, scale, zero_point, dtype, channels_last), kernel_size, stride,
                         padding, ceil_mode, count_include_pad, divisor_override, threads)

    def adaptive_avg_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                            output_size: list[int], threads: int) -> np.ndarray:
        return self._run("adaptive_avg_pool2d", _tensor(x, scale, zero_point, dtype, channels_last), output_size,
                         threads)

    def max_pool2d(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                   kernel_size: list[int], stride: list[int], padding: list[int], dilation: list[int],
                   ceil_mode: bool, threads: int) -> np.ndarray:
        return self._run("max_pool2d", _tensor(x, scale, zero_point, dtype, channels_last), kernel_size, stride,
                         padding, dilation, ceil_mode, threads)

    def cat(self, tensors: list[np.ndarray], scales: list[float], zero_points: list[int], dtype: str,
            channels_last: list[bool], dim: int, scale: Optional[float], zero_point: Optional[int],
            threads: int) -> np.ndarray:
        inputs = [_tensor(t, s, zp, dtype, layout)
                  for t, s, zp, layout in zip(tensors, scales, zero_points, channels_last, strict=True)]
        return self._run("cat", inputs, dim, scale, zero_point, threads)

    def relu(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool) -> np.ndarray:
        return self._run("relu", _tensor(x, scale, zero_point, dtype, channels_last))

    def clamp(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
              low: Optional[float], high: Optional[float]) -> np.ndarray:
        return self._run("clamp", _tensor(x, scale, zero_point, dtype, channels_last), low, high)

    def hardswish(self, x: np.ndarray, x_scale: float, x_zero_point: int, dtype: str, channels_last: bool,
                  scale: float, zero_point: int, threads: int) -> np.ndarray:
        return self._run("hardswish", _tensor(x, x_scale, x_zero_point, dtype, channels_last), scale, zero_point,
                         threads)

    def hardsigmoid(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
                    threads: int) -> np.ndarray:
        return self._run("hardsigmoid", _tensor(x, scale, zero_point, dtype, channels_last), threads)

    def mean(self, x: np.ndarray, scale: float, zero_point: int, dtype: str, channels_last: bool,
             dims: list[int], keepdim: bool, threads: int) -> np.ndarray:
        return self._run("mean", _tensor(x, scale, zero_point, dtype, channels_last), dims, keepdim, threads)


class ReferenceTarget(_KernelTarget):
    """quantspec's reference (plain definitions) in one numerics profile."""

    def __init__(self, profile: NumericsProfile) -> None:
        self.profile = profile
        self.name = f"reference[{profile.name}]"
        self._kernels = ReferenceKernels(profile)

    def _run(self, op: str, *arguments: Any) -> np.ndarray:
        return self._output(getattr(self._kernels, op)(*arguments))


class TorchTarget(_KernelTarget):
    """torch's quantized kernels in this process, under one quantized engine: the checks' own
    torch calls (`oracles`), imported when first called so that loading this module does not
    import torch."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.name = f"torch[{engine}]"

    def _run(self, op: str, *arguments: Any) -> np.ndarray:
        from . import oracles

        with oracles.oracle_engine(self.engine), oracles.oracle():
            return self._output(getattr(oracles, op)(*arguments))


# --- loading ----------------------------------------------------------------------------------------


def load_target(spec: str, profile: NumericsProfile) -> Target:
    """The target `spec` names: "reference" (in `profile`), "torch" (under `profile`'s engine),
    "onnxruntime" (`onnx_target`, the onnx extra), or "package.module:object" (importable: on
    sys.path / PYTHONPATH), a target instance or a class whose no-argument constructor makes one.
    Raises TargetError when it cannot be loaded or does not keep the protocol."""
    if spec == "reference":
        return ReferenceTarget(profile)
    if spec == "torch":
        return TorchTarget(profile.engine)
    if spec == "onnxruntime":
        spec = "quantspec.conformance.onnx_target:OnnxRuntimeTarget"
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise TargetError(f"target {spec!r}: expected 'reference', 'torch', 'onnxruntime' or "
                          "'package.module:object'")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise TargetError(f"target {spec!r} cannot be loaded: {error}") from error
    return checked_target(found() if isinstance(found, type) else found, spec)


def checked_target(target: Any, spec: str) -> Target:
    """`target` if it names its ops (a subset of OPS) and has a method for each, else TargetError."""
    implemented = getattr(target, "ops", None)
    if not isinstance(getattr(target, "name", None), str) or not isinstance(implemented, (set, frozenset)):
        raise TargetError(f"target {spec!r} needs a str `name` and a set `ops` (see quantspec.conformance.targets)")
    unknown = sorted(set(implemented) - set(OPS))
    missing = sorted(op for op in implemented if op in OPS and not callable(getattr(target, op, None)))
    if unknown or missing:
        raise TargetError(
            f"target {spec!r}: unknown ops {unknown}, ops without a method {missing}; known: {sorted(OPS)}"
        )
    return target
