"""The target protocol: what an implementation under judgement provides, op by op.

A *target* computes quantized ops on plain NumPy arrays: integer tensors as their integers
(logical, C order: NCHW for 4-d), qparams as Python floats and ints (per-channel weight qparams
as float64 / int64 arrays along axis 0), op arguments as ints, bools and lists. Each method
returns the output integers as an integer array of the output's shape (its qparams are the
`scale` / `zero_point` arguments). A target implements a subset of `OPS` and names it in
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

# Each op's parameters, in the order of the protocol's methods: a call, a pack case and a
# target method all use these names.
OPS: dict[str, tuple[str, ...]] = {
    "quantize_per_tensor": ("x", "scale", "zero_point", "dtype"),
    "add": ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "scale", "zero_point", "dtype",
            "relu", "a_channels_last", "b_channels_last", "threads"),
    "linear": ("x", "x_scale", "x_zero_point", "weight", "weight_scale", "weight_zero_point", "bias",
               "scale", "zero_point", "relu"),
    "conv2d": ("x", "x_scale", "x_zero_point", "weight", "weight_scale", "weight_zero_point", "bias",
               "stride", "padding", "dilation", "groups", "scale", "zero_point", "relu"),
}


class TargetError(ValueError):
    """A target could not be loaded, or does not keep the protocol (a missing method, a
    result that is not an integer array of the expected shape)."""


class UnsupportedCase(Exception):
    """Raised by a target for a case of an op it implements but cannot express (e.g. a dtype
    its runtime lacks): the case is counted as skipped, not judged."""


@runtime_checkable
class Target(Protocol):
    """An implementation of quantized ops under judgement; implement the methods named in `ops`.

    Arrays: `x` of quantize_per_tensor float32; quantized inputs uint8 (quint8), int8 (qint8)
    or int32 (qint32); `bias` float32 of length out_channels, or None. Conv2d tensors are
    NCHW (x) and OIHW (weight). `dtype` is "quint8", "qint8" or "qint32". `weight_scale` /
    `weight_zero_point` are a float and an int (per-tensor) or float64 / int64 arrays with one
    entry per output channel (per-channel, axis 0). add's `a_channels_last`,
    `b_channels_last` and `threads` say how torch laid out and split the work (the
    reference's integers depend on them only at exact ties); a target may ignore them.
    """

    name: str
    ops: frozenset[str]

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        """`torch.quantize_per_tensor(x, scale, zero_point, dtype).int_repr()`."""
        ...

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        """`quantized::add` (`add_relu` when `relu`) of two tensors of one shape and dtype."""
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
    """The target's output for `call`, checked to be an integer array of `expected_shape`."""
    if call.op not in target.ops:
        raise TargetError(f"target {target.name!r} does not implement {call.op}")
    result = np.asarray(getattr(target, call.op)(**call.arguments))
    if result.dtype.kind not in "iu" or result.shape != tuple(expected_shape):
        raise TargetError(
            f"target {target.name!r}, {call.op}: returned {result.dtype} of shape {result.shape}; "
            f"expected integers of shape {tuple(expected_shape)}"
        )
    return result


# --- built-in targets ----------------------------------------------------------------------------


def _weight(weight: np.ndarray, scale: Scale, zero_point: ZeroPoint) -> QTensor:
    per_channel = np.ndim(scale) > 0
    return QTensor(weight, scale, zero_point, QDtype.qint8, axis=0 if per_channel else None)


def _layout(channels_last: bool) -> MemoryFormat:
    return MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous


class ReferenceTarget:
    """quantspec's reference (plain definitions) in one numerics profile."""

    ops = frozenset(OPS)

    def __init__(self, profile: NumericsProfile) -> None:
        self.profile = profile
        self.name = f"reference[{profile.name}]"

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        return ops.quantize_per_tensor(x, scale, zero_point, dtype, self.profile).int_repr

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        qa = QTensor(a, a_scale, a_zero_point, dtype, memory_format=_layout(a_channels_last))
        qb = QTensor(b, b_scale, b_zero_point, dtype, memory_format=_layout(b_channels_last))
        return ops.add(qa, qb, scale, zero_point, relu, threads, self.profile).int_repr

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        qx = QTensor(x, x_scale, x_zero_point, QDtype.quint8)
        w = _weight(weight, weight_scale, weight_zero_point)
        return ops.linear(qx, w, bias, scale, zero_point, relu, self.profile).int_repr

    def conv2d(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, scale: float, zero_point: int, relu: bool) -> np.ndarray:
        qx = QTensor(x, x_scale, x_zero_point, QDtype.quint8)
        w = _weight(weight, weight_scale, weight_zero_point)
        out = ops.conv2d(qx, w, bias, stride, padding, dilation, groups, scale, zero_point, relu, self.profile)
        return np.ascontiguousarray(out.int_repr)


class TorchTarget:
    """torch's quantized kernels in this process, under one quantized engine (imports torch
    when called, so that loading this module does not)."""

    ops = frozenset(OPS)

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.name = f"torch[{engine}]"

    def _run(self, function: Any) -> np.ndarray:
        from .oracles import oracle, oracle_engine

        with oracle_engine(self.engine), oracle():
            return np.ascontiguousarray(function().int_repr().numpy())

    def quantize_per_tensor(self, x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
        import torch

        from .oracles import float_tensor, torch_dtype

        qdtype = torch_dtype(QDtype.parse(dtype))
        return self._run(lambda: torch.quantize_per_tensor(float_tensor(x), scale, zero_point, qdtype))

    def add(self, a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray, b_scale: float,
            b_zero_point: int, scale: float, zero_point: int, dtype: str, relu: bool,
            a_channels_last: bool, b_channels_last: bool, threads: int) -> np.ndarray:
        import torch

        from quantspec.production.environment import torch_threads

        from .oracles import to_torch

        qa = to_torch(QTensor(a, a_scale, a_zero_point, dtype, memory_format=_layout(a_channels_last)))
        qb = to_torch(QTensor(b, b_scale, b_zero_point, dtype, memory_format=_layout(b_channels_last)))
        op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
        with torch_threads(threads):
            return self._run(lambda: op(qa, qb, scale, zero_point))

    def linear(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], scale: float, zero_point: int,
               relu: bool) -> np.ndarray:
        import torch

        from .oracles import to_torch

        qx = to_torch(QTensor(x, x_scale, x_zero_point, QDtype.quint8))
        w = to_torch(_weight(weight, weight_scale, weight_zero_point))
        op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear

        def linear() -> Any:
            packed = torch.ops.quantized.linear_prepack(w, None if bias is None else torch.from_numpy(bias))
            return op(qx, packed, scale, zero_point)

        return self._run(linear)

    def conv2d(self, x: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray, weight_scale: Scale,
               weight_zero_point: ZeroPoint, bias: Optional[np.ndarray], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, scale: float, zero_point: int, relu: bool) -> np.ndarray:
        import torch

        from .oracles import to_torch

        qx = to_torch(QTensor(x, x_scale, x_zero_point, QDtype.quint8))
        w = to_torch(_weight(weight, weight_scale, weight_zero_point))
        op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d

        def conv() -> Any:
            torch_bias = None if bias is None else torch.from_numpy(bias)
            packed = torch.ops.quantized.conv2d_prepack(w, torch_bias, list(stride), list(padding),
                                                        list(dilation), groups)
            return op(qx, packed, scale, zero_point)

        return self._run(conv)


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
