"""What the model checker knows of each node kind in `kernels.KERNELS`: its arity, the types
and ranges of its inputs (as the kernel and the reference op it calls accept them) and the
kinds and shapes of its outputs, computed on abstract values (`abstract.TensorInfo`, known
constants, `Unknown` run-time scalars). `RULES[kind](call)` returns the node's outputs as a
tuple or raises `ModelCheckError` naming the node, the input and what was expected.
"""

from __future__ import annotations

import operator
from collections import Counter
from math import prod
from typing import Any, Callable, Optional

from .._registry import registrar
from ..ops._pool_common import pooling_output_size
from ..ops.contiguous import MEMORY_FORMAT_CODES
from ..ops.float_ops import FLOAT_OPS
from ..qtensor import QDtype
from .abstract import (
    ANY,
    UNKNOWN_BOOL,
    UNKNOWN_FLOAT,
    UNKNOWN_INT,
    UNKNOWN_LIST,
    Call,
    SymbolicDim,
    TensorInfo,
    Unknown,
    is_bool,
    is_number,
    is_sequence,
    known,
)
from .fields import INT64_MAX, INT64_MIN
from .file_format import PackedConv, PackedLinear
from .kernels import SCALAR_TYPES

Rule = Callable[[Call], tuple]
RULES: dict[str, Rule] = {}
rule = registrar(RULES, "checker rule")
EIGHT_BIT = (QDtype.quint8, QDtype.qint8)
# Bytes of temporaries a conv's im2col needs per output pixel and kernel tap (centered and
# raw float32 rows of one band), and the band size the fast kernel aims at.
IM2COL_BYTES_PER_TAP = 8
CONV_BAND_BYTES = 2 * 2**20
# The longest list `aten::add` may build by concatenation (real graphs add shape lists).
MAX_LIST_LENGTH = 2**16


def _float_or_quantized(call: Call, index: int = 0, **requirements: Any) -> TensorInfo:
    """Input `index` of a kernel that takes quantized tensors, and float32 ones when a float
    op of that kind exists (`kernels._float_or_quantized`)."""
    base = call.kind.replace("quantized::", "aten::")
    return call.tensor(index, quantized=None if base in FLOAT_OPS else True, **requirements)


def _same_shape(call: Call, field: str, shape: Any, expected: Any) -> None:
    """Refuse shapes of different ranks, or with known sizes that differ."""
    if shape is None or expected is None:
        return
    if len(shape) != len(expected) or any(type(a) is type(b) is int and a != b for a, b in zip(shape, expected)):
        call.fail(field, shape, f"shape {expected}")


def _joined_dims(a: Any, b: Any) -> Any:
    """Two shapes known to be equal, each dimension from whichever knows it as an int."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(y if type(y) is int else x for x, y in zip(a, b))


# --- quantize / dequantize ---------------------------------------------------------


@rule("aten::quantize_per_tensor")
def _quantize_per_tensor(call: Call) -> tuple:
    call.arity(4)
    x = call.tensor(0, quantized=False)
    call.scale(1)
    qdtype = SCALAR_TYPES[call.constant_int(3, SCALAR_TYPES)]
    call.zero_point(2, qdtype)
    return (TensorInfo(x.shape, qdtype),)


@rule("aten::dequantize")
def _dequantize(call: Call) -> tuple:
    call.arity(1)
    return (TensorInfo(call.tensor(0).shape),)


# --- conv / linear -----------------------------------------------------------------


def _window_count(call: Call, field: str, size: Optional[int], geometry: tuple, ceil_mode: Any = False) -> Any:
    """Output length along one axis (ATen's pooling_output_shape), refused when below 1."""
    kernel, padding, stride, dilation = geometry
    if not all(type(v) is int for v in (size, kernel, padding, stride, dilation)) or not isinstance(ceil_mode, bool):
        return None
    count = pooling_output_size(size, kernel, padding, stride, dilation, ceil_mode)
    if count < 1:
        call.fail(field, count, f"at least 1 (input {size}, kernel {kernel}, padding {padding}, stride {stride})")
    return count


@rule("quantized::conv2d", "quantized::conv2d_relu")
def _quantized_conv(call: Call) -> tuple:
    call.arity(4)
    x = call.tensor(0, quantized=True, rank=4, dtypes=(QDtype.quint8,), per_tensor=True)
    packed = call.instance(1, PackedConv)
    if packed.transposed:
        call.fail(call.field(1), "transposed", "a non-transposed conv")
    call.scale(2)
    call.zero_point(3, QDtype.quint8)
    return (_conv_output(call, x, packed.weight.shape, packed.stride, packed.padding, packed.dilation, packed.groups),)


def _conv_output(call: Call, x: TensorInfo, weight: tuple, stride: tuple, padding: tuple, dilation: tuple, groups: Any):
    out_channels, per_group, kh, kw = weight
    if type(groups) is int:
        call.same("input channels", x.dim(1), per_group * groups)
        if out_channels % groups:
            call.fail("groups", groups, f"a divisor of the {out_channels} output channels")
    for axis, (p, d, k) in enumerate(zip(padding, dilation, (kh, kw))):
        if None not in (p, d) and p > d * (k - 1):
            call.fail(f"padding[{axis}]", p, f"at most dilation * (kernel - 1) = {d * (k - 1)}")
    oh, ow = (
        _window_count(call, f"output {name}", x.size(axis + 2), (k, padding[axis], stride[axis], dilation[axis]))
        for axis, (name, k) in enumerate((("height", kh), ("width", kw)))
    )
    call.extra_work = CONV_BAND_BYTES + IM2COL_BYTES_PER_TAP * (ow or 1) * (per_group * kh * kw + out_channels)
    return TensorInfo((x.dim(0), out_channels, oh, ow), x.qdtype)


@rule("quantized::linear", "quantized::linear_relu")
def _quantized_linear(call: Call) -> tuple:
    call.arity(4)
    x = call.tensor(0, quantized=True, dtypes=(QDtype.quint8,), per_tensor=True)
    packed = call.instance(1, PackedLinear)
    call.scale(2)
    call.zero_point(3, QDtype.quint8)
    return (_linear_output(call, x, packed.weight.shape),)


def _linear_output(call: Call, x: TensorInfo, weight: tuple) -> TensorInfo:
    out_features, in_features = weight
    if x.rank == 0:
        call.fail(call.field(0), x, "a tensor of rank >= 1")
    if x.shape is None:
        return TensorInfo(None, x.qdtype)
    call.same("the input's last dimension", x.shape[-1], in_features)
    return TensorInfo(x.shape[:-1] + (out_features,), x.qdtype)


@rule("quantized::conv2d_unpack", "quantized::linear_unpack")
def _unpack(call: Call) -> tuple:
    call.arity(1)
    packed = call.instance(0, PackedConv if call.kind == "quantized::conv2d_unpack" else PackedLinear)
    weight = TensorInfo(packed.weight.shape, packed.weight.dtype, packed.weight.axis)
    return weight, None if packed.bias is None else TensorInfo(packed.bias.shape)


@rule("aten::linear")
def _float_linear(call: Call) -> tuple:
    call.arity(3)
    x = call.tensor(0, quantized=False)
    weight = call.tensor(1, quantized=False, rank=2)
    _float_bias(call, 2, weight.dim(0))
    return (TensorInfo(_linear_output(call, x, weight.shape or (None, None)).shape),)


def _float_bias(call: Call, index: int, channels: Optional[int]) -> None:
    if call.args[index] is not None:
        call.same("bias length", call.tensor(index, quantized=False, rank=1).dim(0), channels)


@rule("aten::conv2d")
def _float_conv(call: Call) -> tuple:
    call.arity(7)
    x = call.tensor(0, quantized=False, rank=4)
    weight = call.tensor(1, quantized=False, rank=4).shape or (None,) * 4
    _float_bias(call, 2, weight[0])
    stride, padding, dilation = call.pair(3, 1), call.pair(4, 0), call.pair(5, 1)
    groups = call.integer(6, 1)
    if None in weight:
        return (TensorInfo((x.dim(0), weight[0], None, None)),)
    return (TensorInfo(_conv_output(call, x, weight, stride, padding, dilation, groups).shape),)


# --- element-wise ------------------------------------------------------------------


@rule("quantized::add", "quantized::add_relu", "quantized::mul", "quantized::mul_relu")
def _quantized_binary(call: Call) -> tuple:
    call.arity(4)
    a = call.tensor(0, quantized=True, per_tensor=True)
    b = call.tensor(1, quantized=True, per_tensor=True, dtypes=(a.qdtype,))
    call.scale(2)
    call.zero_point(3, a.qdtype)
    if call.kind.startswith("quantized::add"):  # the reference add does not broadcast
        _same_shape(call, call.field(1), b.shape, a.shape)
        return (TensorInfo(_joined_dims(a.shape, b.shape), a.qdtype),)
    return (TensorInfo(_broadcast(call, a.shape, b.shape), a.qdtype),)


def _broadcast(call: Call, a: Any, b: Any) -> Any:
    """The broadcast shape of `a` and `b` (NumPy's rule), refused when known sizes clash."""
    if a is None or b is None:
        return None
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    return tuple(_broadcast_dim(call, x, y, (a, b)) for x, y in zip(a, b))


def _broadcast_dim(call: Call, x: Any, y: Any, shapes: tuple) -> Any:
    if x == 1 or x == y:
        return y
    if y == 1:
        return x
    if type(x) is type(y) is int:
        call.fail("operand shapes", shapes, "shapes that broadcast")
    return x if type(x) is int else y if type(y) is int else None


@rule("quantized::hardswish")
def _hardswish(call: Call) -> tuple:
    call.arity(3)
    x = call.tensor(0, quantized=True, per_tensor=True)
    call.scale(1)
    call.zero_point(2, x.qdtype)
    return (x,)


@rule("aten::relu", "aten::relu_")
def _relu(call: Call) -> tuple:
    call.arity(1)
    return (_float_or_quantized(call, per_tensor=True),)


@rule("aten::hardsigmoid", "aten::hardsigmoid_")
def _hardsigmoid(call: Call) -> tuple:
    call.arity(1)
    return (_float_or_quantized(call, dtypes=EIGHT_BIT, per_tensor=True),)


@rule("aten::hardtanh", "aten::hardtanh_", "aten::clamp", "aten::clamp_")
def _clamp(call: Call) -> tuple:
    call.arity(3)
    x = _float_or_quantized(call, per_tensor=True)
    optional = call.kind.startswith("aten::clamp")
    low, high = call.number(1, optional), call.number(2, optional)
    if low is None and high is None:
        call.fail("min and max", (low, high), "at least one bound")
    return (x,)


@rule("aten::dropout", "aten::dropout_", "aten::feature_dropout")
def _dropout(call: Call) -> tuple:
    call.arity(3)
    x = call.tensor(0)
    probability = call.number(1)
    if type(probability) in (int, float) and not 0 <= probability <= 1:
        call.fail(call.field(1), probability, "a probability in [0, 1]")
    if call.boolean(2) is not False:
        call.fail(call.field(2), call.args[2], "train = False (a converted model runs in eval mode)")
    return (x,)


# --- pooling, reductions, cat ------------------------------------------------------


@rule("aten::max_pool2d", "quantized::max_pool2d")
def _max_pool2d(call: Call) -> tuple:
    call.arity(6)
    x = _float_or_quantized(call, rank=4, dtypes=EIGHT_BIT, per_tensor=True)
    kernel, padding = call.pair(1, 1), call.pair(3, 0)
    stride = call.pair(2, 1, allow_empty=True) or kernel
    dilation = call.pair(4, 1)
    return (_pooled(call, x, kernel, stride, padding, dilation, call.boolean(5)),)


@rule("aten::avg_pool2d")
def _avg_pool2d(call: Call) -> tuple:
    call.arity(7)
    x = _float_or_quantized(call, rank=4, dtypes=EIGHT_BIT, per_tensor=True)
    kernel, padding = call.pair(1, 1), call.pair(3, 0)
    stride = call.pair(2, 1, allow_empty=True) or kernel
    ceil_mode = call.boolean(4)
    call.boolean(5)
    if call.args[6] is not None and call.integer(6) == 0:
        call.fail(call.field(6), 0, "None or a non-zero divisor")
    return (_pooled(call, x, kernel, stride, padding, (1, 1), ceil_mode),)


def _pooled(call: Call, x: TensorInfo, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, ceil: Any):
    for axis in range(2):
        if None not in (padding[axis], kernel[axis]) and padding[axis] > kernel[axis] // 2:
            call.fail(f"padding[{axis}]", padding[axis], f"at most half the kernel size {kernel[axis]}")
    oh, ow = (
        _window_count(call, f"output {name}", x.size(i + 2), (kernel[i], padding[i], stride[i], dilation[i]), ceil)
        for i, name in enumerate(("height", "width"))
    )
    return TensorInfo((x.dim(0), x.dim(1), oh, ow), x.qdtype)


@rule("aten::adaptive_avg_pool2d")
def _adaptive_avg_pool2d(call: Call) -> tuple:
    call.arity(2)
    x = call.tensor(0, quantized=True, rank=4, dtypes=EIGHT_BIT, per_tensor=True)
    oh, ow = call.pair(1, 1)
    return (TensorInfo((x.dim(0), x.dim(1), oh, ow), x.qdtype),)


@rule("aten::mean")
def _mean(call: Call) -> tuple:
    call.arity(4)
    x = call.tensor(0, quantized=True, per_tensor=True)
    dims = None if call.args[1] is None else call.ints(1, ())
    keepdim = call.boolean(2)
    if call.args[3] is not None:
        call.fail(call.field(3), call.args[3], "None (no dtype conversion)")
    if x.shape is None or dims is None or not known(dims) or not isinstance(keepdim, bool):
        return (TensorInfo(None, x.qdtype),)
    for dim in dims:
        if not -x.rank <= dim < x.rank:
            call.fail(call.field(1), dims, f"dimensions of a rank-{x.rank} tensor")
    reduced = {dim % x.rank for dim in dims} if dims else set(range(x.rank))
    shape = tuple(1 if i in reduced else d for i, d in enumerate(x.shape) if keepdim or i not in reduced)
    return (TensorInfo(shape, x.qdtype),)


@rule("quantized::cat")
def _quantized_cat(call: Call) -> tuple:
    call.arity(4)
    joined = _concatenated(call, quantized=True)
    call.scale(2)
    call.zero_point(3, joined.qdtype)
    return (joined,)


@rule("aten::cat")
def _cat(call: Call) -> tuple:
    call.arity(2)
    return (_concatenated(call, quantized=None),)


def _concatenated(call: Call, quantized: Optional[bool]) -> TensorInfo:
    tensors = call.args[0]
    if not isinstance(tensors, (list, tuple)) or not tensors or not all(isinstance(t, TensorInfo) for t in tensors):
        call.fail(call.field(0), tensors, "a non-empty list of tensors")
    first = tensors[0]
    for index, tensor in enumerate(tensors):
        if tensor.quantized != first.quantized or tensor.qdtype != first.qdtype or tensor.rank != first.rank:
            call.fail(f"{call.field(0)}[{index}]", tensor, f"the dtype and rank of {first}")
        if (quantized or tensor.quantized) and (tensor.axis is not None or tensor.qdtype not in EIGHT_BIT):
            call.fail(f"{call.field(0)}[{index}]", tensor, "a per-tensor quint8/qint8 tensor")
    if quantized and not first.quantized:
        call.fail(call.field(0), tensors, "quantized tensors")
    dim = call.dimension(1, first.rank)
    if first.shape is None or type(dim) is not int:
        return TensorInfo(None, first.qdtype)
    for index, tensor in enumerate(tensors):
        _same_shape(call, f"{call.field(0)}[{index}]", tensor.shape[:dim] + tensor.shape[dim + 1 :],
                    first.shape[:dim] + first.shape[dim + 1 :])
    sizes = [t.shape[dim] for t in tensors]
    total = sum(sizes) if all(type(size) is int for size in sizes) else None
    return TensorInfo(first.shape[:dim] + (total,) + first.shape[dim + 1 :], first.qdtype)


# --- shape ops ---------------------------------------------------------------------


@rule("aten::view", "aten::reshape")
def _view(call: Call) -> tuple:
    call.arity(2)
    x = _float_or_quantized(call, per_tensor=True)
    target = call.ints(1, (), minimum=-1)
    if target is None:
        return (TensorInfo(None, x.qdtype),)
    if 0 in target or target.count(-1) > 1:
        call.fail(call.field(1), target, "positive sizes and at most one -1")
    shape = [size if type(size) is int or isinstance(size, SymbolicDim) else None for size in target]
    if x.shape is not None and None not in x.shape and None not in shape:
        _fit_view(call, x.shape, shape)
    return (TensorInfo(tuple(None if size == -1 else size for size in shape), x.qdtype),)


def _fit_view(call: Call, source: tuple, shape: list) -> None:
    """Check that `shape` (ints, at most one -1, symbolic dimensions) can hold the elements of
    `source`, and resolve its -1 in place when the symbolic dimensions on both sides cancel."""
    free = Counter(d for d in source if isinstance(d, SymbolicDim))
    free.subtract(d for d in shape if isinstance(d, SymbolicDim))
    left_in_source, left_in_shape = +free, -free  # symbols that do not cancel, by side
    elements = prod(d for d in source if type(d) is int)
    fixed = prod(d for d in shape if type(d) is int and d != -1)
    if -1 in shape:
        if not (left_in_source or left_in_shape):
            if elements % fixed:
                call.fail(call.field(1), shape, f"sizes dividing the {elements} elements of {source}")
            shape[shape.index(-1)] = elements // fixed
        return
    # Symbols left on one side multiply its count (each is a size >= 1): that side's ints must divide the other's.
    if left_in_source and left_in_shape:
        return
    holds = fixed % elements == 0 if left_in_source else elements % fixed == 0 if left_in_shape else fixed == elements
    if not holds:
        call.fail(call.field(1), shape, f"sizes that can hold the {elements} elements of {source}")


@rule("aten::flatten")
def _flatten(call: Call) -> tuple:
    call.arity(3)
    x = _float_or_quantized(call, per_tensor=True)
    rank = None if x.rank is None else max(x.rank, 1)
    start, end = call.dimension(1, rank), call.dimension(2, rank)
    if x.shape is None or not known([start, end]):
        return (TensorInfo(None, x.qdtype),)
    if start > end:
        call.fail(call.field(1), start, f"a start dimension at most the end dimension {end}")
    shape = x.shape or (1,)
    merged = prod(shape[start : end + 1]) if all(type(d) is int for d in shape[start : end + 1]) else None
    return (TensorInfo(shape[:start] + (merged,) + shape[end + 1 :], x.qdtype),)


@rule("aten::transpose")
def _transpose(call: Call) -> tuple:
    call.arity(3)
    x = _float_or_quantized(call)
    first, second = call.dimension(1, x.rank), call.dimension(2, x.rank)
    if x.shape is None or not known([first, second]):
        return (TensorInfo(None, x.qdtype),)
    shape = list(x.shape)
    shape[first], shape[second] = shape[second], shape[first]
    axis = {first: second, second: first}.get(x.axis, x.axis)
    return (TensorInfo(tuple(shape), x.qdtype, axis),)


@rule("aten::contiguous")
def _contiguous(call: Call) -> tuple:
    call.arity(2)
    x = _float_or_quantized(call)
    if MEMORY_FORMAT_CODES[call.constant_int(1, MEMORY_FORMAT_CODES)] == "channels_last" and x.rank not in (None, 4):
        call.fail(call.field(1), call.args[1], f"a memory format a rank-{x.rank} tensor can take (channels_last: 4-d)")
    return (x,)


@rule("aten::chunk")
def _chunk(call: Call) -> tuple:
    call.arity(3)
    x = _float_or_quantized(call)
    chunks = call.integer(1, 1)
    dim = call.dimension(2, x.rank)
    if x.axis is not None and dim == x.axis:
        call.fail(call.field(2), dim, f"a dimension other than the per-channel axis {x.axis}")
    if x.shape is None or not known([chunks, dim]) or type(x.shape[dim]) is not int:
        return (UNKNOWN_LIST,)
    length = x.shape[dim]
    size = max(1, -(-length // chunks))
    pieces = [min(size, length - start) for start in range(0, max(length, 1), size)]
    return ([TensorInfo(x.shape[:dim] + (piece,) + x.shape[dim + 1 :], x.qdtype, x.axis) for piece in pieces],)


@rule("aten::slice")
def _slice(call: Call) -> tuple:
    if call.args and is_sequence(call.args[0]):
        return (_sliced_list(call),)
    call.arity(5)
    x = call.tensor(0, quantized=False)
    dim = call.dimension(1, x.rank)
    start, end = (None if call.args[i] is None else call.integer(i) for i in (2, 3))
    step = call.integer(4, 1)
    if x.shape is None or type(dim) is not int:
        return (TensorInfo(None if x.shape is None else (None,) * len(x.shape)),)
    return (TensorInfo(x.shape[:dim] + (_slice_length(call, x.shape[dim], start, end, step),) + x.shape[dim + 1 :]),)


def _slice_length(call: Call, size: Any, start: Any, end: Any, step: Any) -> Any:
    """The length of `[start:end:step]` along a dimension of `size`; a slice of everything keeps
    a symbolic dimension (TorchScript's `x[:, :, ::2]` slices dims 0 and 1 whole); refused when empty."""
    whole = start in (None, 0) and (end is None or (type(end) is int and end >= INT64_MAX // 2)) and step == 1
    if not (type(size) is int and known([start, end, step])):
        return size if whole else None
    length = len(range(*slice(start, end, step).indices(size)))
    if length < 1:
        call.fail("slice", [start, end, step], f"a non-empty slice of the dimension of size {size}")
    return length


def _sliced_list(call: Call) -> Any:
    call.arity(1, 4)
    items = call.args[0]
    start, end, step = (call.args[1:] + [None, None, 1])[:3]
    for index, value in enumerate((start, end), start=1):
        if value is not None:
            call.integer(index)
    if len(call.args) == 4:
        step = call.integer(3, 1)
    if isinstance(items, Unknown) or not known([start, end, step]):
        return UNKNOWN_LIST
    return list(items[slice(start, end, step)])


@rule("aten::pad", "aten::constant_pad_nd")
def _pad(call: Call) -> tuple:
    call.arity(2, 4)
    x = call.tensor(0, quantized=False)
    pads = call.ints(1, ())
    if len(call.args) > 2 and call.string(2) != "constant":
        call.fail(call.field(2), call.args[2], "'constant'")
    if len(call.args) > 3:
        call.number(3, optional=True)
    if pads is None or x.shape is None:
        return (TensorInfo(None if x.shape is None else (None,) * len(x.shape)),)
    if len(pads) % 2 or len(pads) // 2 > len(x.shape):
        call.fail(call.field(1), pads, f"(before, after) pairs for at most {len(x.shape)} dimensions")
    shape = list(x.shape)
    for pair_index in range(len(pads) // 2):
        dim = len(shape) - 1 - pair_index
        shape[dim] = _padded_size(call, shape[dim], pads[2 * pair_index : 2 * pair_index + 2])
    return (TensorInfo(tuple(shape)),)


def _padded_size(call: Call, size: Optional[int], pads: list) -> Optional[int]:
    """The size after padding by `pads` (negative crops), each pad bounded by the input size."""
    if type(size) is not int or not known(pads):
        return None
    if any(pad > size for pad in pads) or size + sum(pads) < 1:
        call.fail(call.field(1), pads, f"pads of at most the size {size} that leave at least 1 element")
    return size + sum(pads)


@rule("aten::add", "aten::add_")
def _add(call: Call) -> tuple:
    call.arity(2, 3)
    a, b = call.args[0], call.args[1]
    if isinstance(a, TensorInfo) or isinstance(b, TensorInfo):
        call.tensor(0, quantized=False)
        call.tensor(1, quantized=False)
        if len(call.args) == 3:
            call.number(2)
        return (TensorInfo(_broadcast(call, a.shape, b.shape)),)
    call.arity(2)
    if is_number(a) and is_number(b):
        return (_folded(call, operator.add, a, b),)
    if is_sequence(a) and is_sequence(b):
        return (_concatenated_lists(call, a, b),)
    call.fail("operands", (a, b), "two float32 tensors, two numbers or two lists")


def _concatenated_lists(call: Call, a: Any, b: Any) -> Any:
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return UNKNOWN_LIST
    if len(a) + len(b) > MAX_LIST_LENGTH:
        call.fail("result length", len(a) + len(b), f"at most {MAX_LIST_LENGTH} items")
    return list(a) + list(b)


# --- TorchScript plumbing: sizes, lists, scalars, exceptions -----------------------


@rule("aten::size")
def _size(call: Call) -> tuple:
    call.arity(1, 2)
    x = call.tensor(0)
    sizes = UNKNOWN_LIST if x.shape is None else [UNKNOWN_INT if d is None else d for d in x.shape]
    if len(call.args) == 1:
        return (sizes,)
    dim = call.dimension(1, x.rank)
    return (UNKNOWN_INT if x.shape is None or type(dim) is not int else sizes[dim],)


@rule("aten::dim")
def _dim(call: Call) -> tuple:
    call.arity(1)
    rank = call.tensor(0).rank
    return (UNKNOWN_INT if rank is None else rank,)


@rule("aten::len")
def _len(call: Call) -> tuple:
    call.arity(1)
    items = call.sequence(0)
    return (UNKNOWN_INT if isinstance(items, Unknown) else len(items),)


@rule("aten::__getitem__")
def _getitem(call: Call) -> tuple:
    call.arity(2)
    items = call.sequence(0)
    index = call.integer(1)
    if isinstance(items, Unknown) or type(index) is not int:
        return (ANY,)
    if not -len(items) <= index < len(items):
        call.fail(call.field(1), index, f"an index into {len(items)} items")
    return (items[index],)


@rule("prim::ListConstruct")
def _list(call: Call) -> tuple:
    return (list(call.args),)


@rule("prim::TupleConstruct")
def _tuple(call: Call) -> tuple:
    return (tuple(call.args),)


@rule("prim::ListUnpack", "prim::TupleUnpack")
def _unpack_sequence(call: Call) -> tuple:
    call.arity(1)
    items = call.sequence(0)
    if isinstance(items, Unknown):
        return (ANY,) * len(call.node.outputs)
    if len(items) != len(call.node.outputs):
        call.fail("number of outputs", len(call.node.outputs), f"{len(items)}, the length of {call.field(0)}")
    return tuple(items)


@rule("prim::RaiseException")
def _raise(call: Call) -> tuple:
    call.arity(1, 2)
    call.string(0)
    if len(call.args) == 2:
        call.string(1, optional=True)
    return ()


@rule("aten::Int", "aten::Float", "aten::Bool")
def _cast(call: Call) -> tuple:
    call.arity(1)
    value = call.args[0]
    if not (is_number(value) or is_bool(value)):
        call.fail(call.field(0), value, "a number or a bool")
    return (value,)  # the kernel passes the value through


_ORDER = {"aten::gt": operator.gt, "aten::ge": operator.ge, "aten::lt": operator.lt, "aten::le": operator.le}
_ARITHMETIC = {
    "aten::floordiv": operator.floordiv, "aten::remainder": operator.mod, "aten::mul": operator.mul,
    "aten::sub": operator.sub,
}
_IDENTITY = {"aten::eq": operator.eq, "aten::ne": operator.ne, "aten::__is__": operator.is_,
             "aten::__isnot__": operator.is_not}


@rule(*_ORDER, *_ARITHMETIC)
def _numeric(call: Call) -> tuple:
    call.arity(2)
    a, b = call.number(0), call.number(1)
    if call.kind in ("aten::floordiv", "aten::remainder") and b == 0:
        call.fail(call.field(1), b, "a non-zero divisor")
    function = _ORDER.get(call.kind) or _ARITHMETIC[call.kind]
    return (_folded(call, function, a, b),)


@rule(*_IDENTITY)
def _compare(call: Call) -> tuple:
    call.arity(2)
    for index, value in enumerate(call.args):
        if isinstance(value, TensorInfo):
            call.fail(call.field(index), value, "a scalar, string, None or list")
    if not (known(call.args[0]) and known(call.args[1])):
        return (UNKNOWN_BOOL,)
    return (_IDENTITY[call.kind](*call.args),)


@rule("aten::__not__")
def _not(call: Call) -> tuple:
    call.arity(1)
    value = call.boolean(0)
    return (UNKNOWN_BOOL if isinstance(value, Unknown) else not value,)


def _folded(call: Call, function: Callable, a: Any, b: Any) -> Any:
    """`function(a, b)` when both are known (ints must stay within int64, as TorchScript's),
    else the type it will have at run time."""
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        if function in _ORDER.values():
            return UNKNOWN_BOOL
        return UNKNOWN_FLOAT if float in (type(a), type(b)) or UNKNOWN_FLOAT in (a, b) else UNKNOWN_INT
    result = function(a, b)
    if type(result) is int and not INT64_MIN <= result <= INT64_MAX:
        call.fail("result", result, "an int64 (TorchScript ints do not grow)")
    return result

