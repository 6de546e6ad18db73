"""Node kind -> how the interpreter runs it.

Each kernel takes the node's input values (in TorchScript schema order) and a
`RunContext`, and returns the output value (a tuple for several outputs). Quantized
tensors are `QTensor`s and go to the reference ops; float tensors are float32 arrays and
go to `reference.ops.float_ops`; TorchScript's scalar and list plumbing (`aten::size`,
`prim::ListConstruct`, ...) is plain Python.

Every kernel calls its op one way: the node's inputs positionally, in schema order, then
by keyword what the context decides: `relu=`, `num_threads=context.num_threads` and
`profile=context.profile` wherever the op takes them. Quantized conv2d and linear run the
fast kernels (`reference.fast`, which add `prepared=` weights and `workers=`), and so do add,
clamp/hardtanh, max/avg/adaptive-average pooling and cat (same arguments as their ops); every
other quantized op its function in `reference.ops`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import fast, ops
from .._registry import registrar
from ..ops.float_ops import FLOAT_OPS
from ..profile import NumericsProfile
from ..qtensor import QDtype, QTensor, in_memory_format
from .file_format import PackedConv, PackedLinear

# TorchScript passes dtypes as c10::ScalarType integers.
SCALAR_TYPES = {12: QDtype.qint8, 13: QDtype.quint8, 14: QDtype.qint32}


class UnknownNodeKind(NotImplementedError):
    """A node kind (or an input type for it) the interpreter does not support."""


class ScriptException(RuntimeError):
    """`prim::RaiseException` fired: the TorchScript program raised."""


@dataclass(frozen=True)
class RunContext:
    """What every kernel may need besides its inputs."""

    profile: NumericsProfile
    num_threads: int = 1
    workers: int = 1


Kernel = Callable[[list, RunContext], Any]
KERNELS: dict[str, Kernel] = {}
kernel = registrar(KERNELS, "kernel")


def _float_or_quantized(kind: str, quantized: Callable[[QTensor, list, RunContext], Any]) -> Kernel:
    """A kernel that sends QTensor inputs to `quantized` and float32 arrays to FLOAT_OPS[kind]."""

    def run(args: list, context: RunContext) -> Any:
        if isinstance(args[0], QTensor):
            return quantized(args[0], args[1:], context)
        if isinstance(args[0], np.ndarray) and kind in FLOAT_OPS:
            return FLOAT_OPS[kind](*args)
        raise UnknownNodeKind(f"{kind} on a {type(args[0]).__name__} input is not supported")

    return run


# --- quantize / dequantize ---------------------------------------------------------


@kernel("aten::quantize_per_tensor")
def _quantize_per_tensor(args: list, context: RunContext) -> QTensor:
    x, scale, zero_point, dtype = args
    return ops.quantize_per_tensor(x, scale, zero_point, _qdtype(dtype), profile=context.profile)


@kernel("aten::dequantize")
def _dequantize(args: list, context: RunContext) -> np.ndarray:
    if isinstance(args[0], np.ndarray):
        return args[0]  # Tensor.dequantize() of a float tensor is the identity
    # dequantize keeps the quantized tensor's memory format; a float conv2d reads it to pick its kernel.
    return in_memory_format(ops.dequantize(args[0]), args[0].memory_format)


def _qdtype(code: int) -> QDtype:
    if code not in SCALAR_TYPES:
        raise UnknownNodeKind(f"ScalarType {code} is not a quantized dtype ({SCALAR_TYPES})")
    return SCALAR_TYPES[code]


# --- conv / linear -----------------------------------------------------------------


def _conv(relu: bool) -> Kernel:
    def run(args: list, context: RunContext) -> QTensor:
        x, packed, scale, zero_point = args
        if not isinstance(packed, PackedConv) or packed.transposed:
            raise UnknownNodeKind(f"conv2d needs non-transposed conv packed params, got {packed!r}")
        return fast.run_conv_plan(x, packed.plan(x, scale, zero_point, relu, context.profile), context.workers)

    return run


kernel("quantized::conv2d")(_conv(False))
kernel("quantized::conv2d_relu")(_conv(True))


def _linear(relu: bool) -> Kernel:
    def run(args: list, context: RunContext) -> QTensor:
        x, packed, scale, zero_point = args
        if not isinstance(packed, PackedLinear):
            raise UnknownNodeKind(f"linear needs linear packed params, got {type(packed).__name__}")
        return fast.linear(
            x, packed.weight, packed.bias, scale, zero_point, relu=relu, profile=context.profile,
            prepared=packed.prepared, workers=context.workers,
        )

    return run


kernel("quantized::linear")(_linear(False))
kernel("quantized::linear_relu")(_linear(True))


@kernel("quantized::linear_unpack", "quantized::conv2d_unpack")
def _unpack(args: list, context: RunContext) -> tuple:
    packed = args[0]
    return packed.weight, packed.bias


# --- element-wise ------------------------------------------------------------------


def _quantized_add(relu: bool) -> Kernel:
    def run(args: list, context: RunContext) -> QTensor:
        a, b, scale, zero_point = args
        return fast.add(a, b, scale, zero_point, relu=relu, num_threads=context.num_threads, profile=context.profile)

    return run


def _quantized_mul(relu: bool) -> Kernel:
    def run(args: list, context: RunContext) -> QTensor:
        a, b, scale, zero_point = args
        return ops.mul(a, b, scale, zero_point, relu=relu, num_threads=context.num_threads)

    return run


kernel("quantized::add")(_quantized_add(False))
kernel("quantized::add_relu")(_quantized_add(True))
kernel("quantized::mul")(_quantized_mul(False))
kernel("quantized::mul_relu")(_quantized_mul(True))


@kernel("quantized::hardswish")
def _hardswish(args: list, context: RunContext) -> QTensor:
    x, scale, zero_point = args
    return ops.hardswish(x, scale, zero_point, num_threads=context.num_threads, profile=context.profile)


for _kind in ("aten::relu", "aten::relu_"):
    kernel(_kind)(_float_or_quantized(_kind, lambda q, rest, context: ops.relu(q, *rest)))


def _hardsigmoid(q: QTensor, rest: list, context: RunContext) -> QTensor:
    return ops.hardsigmoid(q, *rest, num_threads=context.num_threads, profile=context.profile)


for _kind in ("aten::hardsigmoid", "aten::hardsigmoid_"):
    kernel(_kind)(_float_or_quantized(_kind, _hardsigmoid))
for _kind in ("aten::hardtanh", "aten::hardtanh_"):
    kernel(_kind)(_float_or_quantized(_kind, lambda q, rest, context: fast.hardtanh(q, *rest, profile=context.profile)))
for _kind in ("aten::clamp", "aten::clamp_"):
    kernel(_kind)(_float_or_quantized(_kind, lambda q, rest, context: fast.clamp(q, *rest, profile=context.profile)))
# Eval-mode dropout is the identity on quantized tensors too: the float op returns its input.
for _kind in ("aten::dropout", "aten::dropout_", "aten::feature_dropout"):
    kernel(_kind)(_float_or_quantized(_kind, lambda q, rest, context: FLOAT_OPS["aten::dropout"](q, *rest)))


# --- pooling, reductions, cat ------------------------------------------------------


# TorchScript's default stride is [], which the pooling ops read as "the kernel size".
def _max_pool2d(q: QTensor, rest: list, context: RunContext) -> QTensor:
    return fast.max_pool2d(q, *rest, profile=context.profile)


def _avg_pool2d(q: QTensor, rest: list, context: RunContext) -> QTensor:
    return fast.avg_pool2d(q, *rest, profile=context.profile)


def _adaptive_avg_pool2d(q: QTensor, rest: list, context: RunContext) -> QTensor:
    return fast.adaptive_avg_pool2d(q, *rest, profile=context.profile)


kernel("aten::max_pool2d", "quantized::max_pool2d")(_float_or_quantized("aten::max_pool2d", _max_pool2d))
kernel("aten::avg_pool2d")(_float_or_quantized("aten::avg_pool2d", _avg_pool2d))
# No float adaptive_avg_pool2d in FLOAT_OPS: a float input is refused.
kernel("aten::adaptive_avg_pool2d")(_float_or_quantized("aten::adaptive_avg_pool2d", _adaptive_avg_pool2d))


@kernel("aten::mean")
def _mean(args: list, context: RunContext) -> QTensor:
    x, dims, keepdim, dtype = args
    if dtype is not None:
        raise UnknownNodeKind(f"aten::mean with dtype={dtype} is not supported")
    if not isinstance(x, QTensor):
        raise UnknownNodeKind("aten::mean of a float tensor is not supported")
    return ops.mean(x, dims or (), keepdim, profile=context.profile)


@kernel("quantized::cat")
def _quantized_cat(args: list, context: RunContext) -> QTensor:
    tensors, dim, scale, zero_point = args
    return fast.cat(list(tensors), dim, scale, zero_point, profile=context.profile)


@kernel("aten::cat")
def _cat(args: list, context: RunContext) -> Any:
    tensors, dim = args
    if all(isinstance(t, np.ndarray) for t in tensors):
        return np.concatenate(tensors, axis=dim)
    return fast.cat(list(tensors), dim, profile=context.profile)


# --- shape ops ---------------------------------------------------------------------

for _kind in ("aten::view", "aten::reshape"):
    kernel(_kind)(_float_or_quantized(_kind, lambda q, rest, context: ops.reshape(q, *rest)))
kernel("aten::flatten")(_float_or_quantized("aten::flatten", lambda q, rest, context: ops.flatten(q, *rest)))
kernel("aten::transpose")(_float_or_quantized("aten::transpose", lambda q, rest, context: ops.transpose(q, *rest)))
kernel("aten::contiguous")(_float_or_quantized("aten::contiguous", lambda q, rest, context: ops.contiguous(q, *rest)))
kernel("aten::chunk")(_float_or_quantized("aten::chunk", lambda q, rest, context: ops.chunk(q, *rest)))


@kernel("aten::slice")
def _slice(args: list, context: RunContext) -> np.ndarray:
    if isinstance(args[0], list):
        _, start, end, step = (args + [None, None, 1])[:4]
        return args[0][slice(start, end, step)]
    if isinstance(args[0], QTensor):
        raise UnknownNodeKind("aten::slice of a quantized tensor is not supported")
    return FLOAT_OPS["aten::slice"](*args)


@kernel("aten::pad", "aten::constant_pad_nd")
def _pad(args: list, context: RunContext) -> np.ndarray:
    if isinstance(args[0], QTensor):
        raise UnknownNodeKind("padding a quantized tensor is not supported")
    return FLOAT_OPS["aten::pad"](*args)


# Float linear/conv2d: their float32 summation order follows profile.float_gemm and the
# thread count (ATen's use_mkldnn picks conv's backend by it; MKL splits some batches).
for _kind in ("aten::linear", "aten::conv2d"):
    kernel(_kind)(
        lambda args, context, _kind=_kind: FLOAT_OPS[_kind](
            *args, num_threads=context.num_threads, profile=context.profile
        )
    )


@kernel("aten::add", "aten::add_")
def _add(args: list, context: RunContext) -> Any:
    a, b = args[0], args[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return FLOAT_OPS["aten::add"](a, b, *args[2:])
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    raise UnknownNodeKind(f"aten::add of {type(a).__name__} and {type(b).__name__} is not supported")


# --- TorchScript plumbing: sizes, lists, scalars, exceptions -----------------------


@kernel("aten::size")
def _size(args: list, context: RunContext) -> Any:
    shape = list(args[0].shape)
    return shape if len(args) == 1 else shape[args[1]]


@kernel("aten::dim")
def _dim(args: list, context: RunContext) -> int:
    return len(args[0].shape)


@kernel("aten::len")
def _len(args: list, context: RunContext) -> int:
    return len(args[0])


@kernel("aten::__getitem__")
def _getitem(args: list, context: RunContext) -> Any:
    return args[0][args[1]]


@kernel("prim::ListConstruct")
def _list(args: list, context: RunContext) -> list:
    return list(args)


@kernel("prim::TupleConstruct")
def _tuple(args: list, context: RunContext) -> tuple:
    return tuple(args)


@kernel("prim::ListUnpack", "prim::TupleUnpack")
def _unpack_sequence(args: list, context: RunContext) -> tuple:
    return tuple(args[0])


@kernel("prim::RaiseException")
def _raise(args: list, context: RunContext) -> None:
    raise ScriptException(f"the TorchScript program raised: {args[0]}")


@kernel("aten::Int", "aten::Float", "aten::Bool")
def _cast(args: list, context: RunContext) -> Any:
    return args[0]


# Scalar (int/float/bool) arithmetic and comparisons TorchScript emits around shapes.
_SCALAR_OPS = {
    "aten::gt": operator.gt, "aten::ge": operator.ge, "aten::lt": operator.lt, "aten::le": operator.le,
    "aten::eq": operator.eq, "aten::ne": operator.ne, "aten::floordiv": operator.floordiv,
    "aten::mul": operator.mul, "aten::sub": operator.sub, "aten::__not__": operator.not_,
    "aten::__is__": operator.is_, "aten::__isnot__": operator.is_not, "aten::remainder": operator.mod,
}


def _scalar_kernel(function: Callable) -> Kernel:
    def run(args: list, context: RunContext) -> Any:
        if not all(isinstance(a, (int, float, bool, type(None), list, str)) for a in args):
            raise UnknownNodeKind(f"{function.__name__} of tensors is not supported")
        return function(*args)

    return run


for _kind, _function in _SCALAR_OPS.items():
    kernel(_kind)(_scalar_kernel(_function))
