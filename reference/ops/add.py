"""quantized::add / quantized::add_relu: element-wise sum of two quantized tensors."""

from __future__ import annotations

import functools

import numpy as np

from ..numerics import f32
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, inverse_scale_f32, quantize_val
from ._registry import register_op
from ._tensor_iterator import (
    VECTOR_BLOCK_8BIT,
    VECTOR_BLOCK_32BIT,
    from_memory_order,
    layouts_differ,
    scalar_tail_spans,
)
from ._unary_float import dequantize_vector
from .dequantize import dequantize

# `cpu_kernel_vec` (ATen/native/cpu/Loops.h, `vectorized_loop`) runs the vector lambda on
# blocks of 2 * Vectorized<scalar_t>::size() elements. qadd_kernel is registered with
# REGISTER_DISPATCH (no AVX512 build), so the AVX2 kernel runs on every x86 CPU we specify:
# blocks of VECTOR_BLOCK_8BIT (verified on an AVX512-VNNI CPU), VECTOR_BLOCK_32BIT for qint32.
# From this many elements on, 8-bit vector results come from a table of all 65536 (qa, qb)
# pairs (building a new table costs about as much as the formula on a tensor a few times this
# size; cached ones cost nothing; docs/speed.md).
PAIR_TABLE_MIN_SIZE = 8192


@register_op("quantized::add")
def add(
    a: QTensor,
    b: QTensor,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    num_threads: int = 1,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.add(a, b, scale, zero_point)` (`qadd_kernel`, QuantizedOpKernels.cpp).

    The elements are walked in MEMORY order (NHWC for a channels_last `a`). The walk is
    split into thread ranges like `at::parallel_for(0, n, 32768)` with `num_threads`
    threads (serial when n <= 32768); inside each range, whole blocks of 64 take the
    vector lambda and the last `len % 64` take the scalar lambda:

    vector (AVX2+FMA build; `Vectorized<q>::dequantize` is an fma):
      `da = fma32(sa, float(qa), f32(sa * -float(za)))`, same for b; `c = f32(da + db)`;
      relu: `c = max(c, 0)`; `q = clamp(wrap(cvt(min(f32(c * inv), 2147483520)) + zo))`
      with `inv = f32(1.0f / float(so))` (ATen `QuantizeAvx2`: round, then add zp).
    scalar (`dequantize_val`, `quantize_val`; not contracted):
      `da = f32(sa * float(qa - za))`, same for b; `c = f32(da + db)`; relu; then
      `quantize_val(c, so, zo)`: zp added before rounding on torch 2.13, after on 2.14.

    `sa`, `sb`, `so` are the double scales narrowed to float32. The output has `a`'s
    memory format. If `a` and `b` are in different memory formats (and C > 1, H*W > 1),
    every element takes the scalar lambda. qint32: blocks of 16; `float(q)` may round; the
    vector lambda quantizes through FBGEMM's scalar `Quantize` (precision 32), i.e.
    `quantize_val` as the tail does. The vector and scalar paths agree except at exact .5
    ties of `c * inv` with an odd zero point (and the vector's fma dequantize).

    Hand-worked, quint8, a = b = [1] (sa = sb = 1, za = zb = 0), so = 4, zo = 1:
      a single element is a scalar tail: da = db = 1, c = 2, t = 2 * 0.25 = 0.5
      2.13: rne(1 + 0.5) = rne(1.5) = 2;   2.14: 1 + rne(0.5) = 1 + 0 = 1
    In a block of 64 (vector) the same element gives cvt(0.5) + 1 = 0 + 1 = 1 on both.

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> one = QTensor(np.ones((1,), np.uint8), 1.0, 0, "quint8")
    >>> add(one, one, 4.0, 1).int_repr.tolist()
    [2]
    >>> add(one, one, 4.0, 1, profile=get_profile("torch2.14-avx512_vnni-fbgemm")).int_repr.tolist()
    [1]
    >>> block = QTensor(np.ones((64,), np.uint8), 1.0, 0, "quint8")
    >>> int(add(block, block, 4.0, 1).int_repr[0])
    1
    """
    _check_operands(a, b)
    out = QTensor(np.zeros((0,), a.dtype.storage), output_scale, output_zero_point, a.dtype)
    flat_a, flat_b = _in_memory_order(a, a.memory_format), _in_memory_order(b, a.memory_format)
    if layouts_differ(a, b):
        # TensorIterator cannot give b unit stride along the output's innermost dim, so
        # `VectorizedLoop2d` falls back to `basic_loop`: every element takes the scalar lambda.
        ints = _scalar_path(flat_a, flat_b, out, relu, profile)
    else:
        ints = _vector_path(flat_a, flat_b, out, relu, profile)
        block = VECTOR_BLOCK_32BIT if a.dtype is QDtype.qint32 else VECTOR_BLOCK_8BIT
        # The scalar lambda only where it runs: the last len % block elements of each range.
        for begin, end in scalar_tail_spans(ints.size, block, num_threads):
            ints[begin:end] = _scalar_path(_span(flat_a, begin, end), _span(flat_b, begin, end), out, relu, profile)
    logical = from_memory_order(ints, a.shape, a.memory_format)
    return QTensor(logical, out.scale, out.zero_point, a.dtype, memory_format=a.memory_format)


@register_op("quantized::add_relu")
def add_relu(
    a: QTensor,
    b: QTensor,
    output_scale: float,
    output_zero_point: int,
    num_threads: int = 1,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.add_relu`: `add(..., relu=True)`; the float sum is clamped at 0
    before requantization, on both paths (`qadd_kernel<true>`).

    Hand-worked, quint8, a = [0] (za = 10, sa = 1), b = [0] (zb = 0), so = 1, zo = 5:
      c = -10 + 0 = -10 -> relu 0 -> quantize 0 + 5 = 5

    >>> import numpy as np
    >>> a = QTensor(np.zeros((1,), np.uint8), 1.0, 10, "quint8")
    >>> b = QTensor(np.zeros((1,), np.uint8), 1.0, 0, "quint8")
    >>> add_relu(a, b, 1.0, 5).int_repr.tolist()
    [5]
    """
    return add(a, b, output_scale, output_zero_point, relu=True, num_threads=num_threads, profile=profile)


def _vector_path(a: QTensor, b: QTensor, out: QTensor, relu: bool, profile: NumericsProfile) -> np.ndarray:
    """The vector lambda's results for every element of `a` and `b` (same shape)."""
    if a.dtype is QDtype.qint32 or a.int_repr.size < PAIR_TABLE_MIN_SIZE:
        return _vector_formula(a, b, out, relu, profile)
    # An 8-bit result depends only on the pair (qa, qb): look it up in the table of all
    # pairs, indexed by the bytes of qa and qb.
    table = _pair_table(
        a.dtype, (a.scale, a.zero_point), (b.scale, b.zero_point), (out.scale, out.zero_point), relu, profile
    )
    pair = a.int_repr.view(np.uint8).astype(np.uint16)
    pair <<= 8
    pair |= b.int_repr.view(np.uint8)
    return table.take(pair)


@functools.lru_cache(maxsize=256)
def _pair_table(
    dtype: QDtype,
    a_qparams: tuple[float, int],
    b_qparams: tuple[float, int],
    out_qparams: tuple[float, int],
    relu: bool,
    profile: NumericsProfile,
) -> np.ndarray:
    """The vector formula on all 256 x 256 byte pairs, flat (read-only). A model's adds have
    fixed qparams, so each table is built once per node (cached) and reused on every run."""
    levels = np.arange(256, dtype=np.uint8).view(dtype.storage)
    rows = QTensor(levels[:, None], *a_qparams, dtype)
    columns = QTensor(levels[None, :], *b_qparams, dtype)
    out = QTensor(np.zeros((0,), dtype.storage), *out_qparams, dtype)
    table = _vector_formula(rows, columns, out, relu, profile).ravel()
    table.setflags(write=False)
    return table


def _vector_formula(a: QTensor, b: QTensor, out: QTensor, relu: bool, profile: NumericsProfile) -> np.ndarray:
    # Vectorized<q>::dequantize: an fma per element (dequantize_vector), then a float32 sum.
    c = f32(dequantize_vector(a) + dequantize_vector(b))
    if relu:
        c = np.maximum(c, np.float32(0))
    if out.dtype is QDtype.qint32:
        # Vectorized<qint32>::quantize -> quantize_vec<qint32, 32> -> FBGEMM Quantize with
        # precision 32, which has no vector path: the scalar Quantize, i.e. quantize_val.
        return quantize_val(c, out.scale, out.zero_point, out.dtype, profile)
    return aten_vec_quantize_round_then_add_zp(c, inverse_scale_f32(out.scale), out.zero_point, out.dtype)


def _scalar_path(a: QTensor, b: QTensor, out: QTensor, relu: bool, profile: NumericsProfile) -> np.ndarray:
    # dequantize_val: float(scale) * float(int32 q - zp) (the int32 difference wraps), one
    # float32 rounding of the product (and of the int -> float conversion beyond 2^24):
    # the per-tensor formula of `dequantize`.
    c = f32(dequantize(a) + dequantize(b))
    if relu:
        c = np.maximum(c, np.float32(0))
    return quantize_val(c, out.scale, out.zero_point, out.dtype, profile)


def _in_memory_order(q: QTensor, memory_format: MemoryFormat) -> QTensor:
    """`q` as a 1-d tensor walked in `memory_format`'s order (NHWC for channels_last)."""
    ints = q.int_repr.transpose(0, 2, 3, 1) if memory_format is MemoryFormat.channels_last else q.int_repr
    return QTensor(ints.ravel(), q.scale, q.zero_point, q.dtype)


def _span(q: QTensor, begin: int, end: int) -> QTensor:
    return QTensor(q.int_repr[begin:end], q.scale, q.zero_point, q.dtype)


def _check_operands(a: QTensor, b: QTensor) -> None:
    for name, operand in (("a", a), ("b", b)):
        if not isinstance(operand, QTensor):
            raise TypeError(f"quantized::add: {name} must be a QTensor, got {type(operand).__name__}")
        if operand.per_channel:
            raise ValueError(
                f"quantized::add: {name} is per-channel (axis={operand.axis}); only per-tensor is supported"
            )
    if a.dtype is not b.dtype:
        raise ValueError(f"quantized::add: operands have dtypes {a.dtype.label} and {b.dtype.label}; expected the same")
    if a.shape != b.shape:
        raise ValueError(f"quantized::add: shapes {a.shape} and {b.shape} differ; broadcasting is not specified")
