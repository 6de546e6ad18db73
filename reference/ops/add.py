"""quantized::add / quantized::add_relu: element-wise sum of two quantized tensors."""

from __future__ import annotations

import functools

import numpy as np

from .._arguments import ArgumentError, flag, integer
from ..numerics import f32, normal_scale_f32, pack_u8, wrap_int32
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, inverse_scale_f32, quantize_val
from ._registry import register_op
from ._tensor_iterator import (
    VECTOR_BLOCK_8BIT,
    VECTOR_BLOCK_32BIT,
    from_memory_order,
    layouts_differ,
    scalar_tail_spans,
    to_memory_order,
)
from ._unary_float import dequantize_vector
from ._validate import check_qnnpack_rows, check_qtensor, output_qparams
from .dequantize import dequantize

# `cpu_kernel_vec` (ATen/native/cpu/Loops.h, `vectorized_loop`) runs the vector lambda on
# blocks of 2 * Vectorized<scalar_t>::size() elements. qadd_kernel is registered with
# REGISTER_DISPATCH (no AVX512 build), so the AVX2 kernel runs on every x86 CPU we specify:
# blocks of VECTOR_BLOCK_8BIT (verified on an AVX512-VNNI CPU), VECTOR_BLOCK_32BIT for qint32.
# From this many elements on, 8-bit vector results come from a table of all 65536 (qa, qb)
# pairs (building a new table costs about as much as the formula on a tensor a few times this
# size; cached ones cost nothing; docs/speed.md).
PAIR_TABLE_MIN_SIZE = 8192

# pytorch_qnnpack's add runs its kernel on tiles of this many elements (`compute_add_contiguous`,
# operator-run.c); a tile shorter than `QNNPACK_ADD_VECTOR` takes the kernel's scalar loop.
QNNPACK_ADD_TILE = 4096
QNNPACK_ADD_VECTOR = 8


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

    Under the qnnpack engine a quint8 add is pytorch_qnnpack's fixed-point kernel
    (`_qnnpack_add`); qint8 and qint32 keep the ATen kernel above. Hand-worked, a = [1]
    (1.0, zp 0) + b = [0] (1.0, zp 0) into scale 2, zp 0: c * inv = 0.5; ATen rne(0.5) = 0.
    qnnpack: ratios 0.5, exponent -1, shift 22, am = bm = 2^21, acc = 2^21 = 2^22 / 2:
    the remainder 2^21 exceeds the threshold 2^21 - 1, so it rounds away from zero to 1.

    >>> zero = QTensor(np.zeros((1,), np.uint8), 1.0, 0, "quint8")
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> add(one, zero, 2.0, 0).int_repr.tolist(), add(one, zero, 2.0, 0, profile=qnnpack).int_repr.tolist()
    ([0], [1])
    """
    out, profile = checked_arguments(a, b, output_scale, output_zero_point, relu, num_threads, profile)
    if profile.engine == "qnnpack" and a.dtype is QDtype.quint8:
        return _qnnpack_add(a, b, out, relu)
    flat_a, flat_b = _in_memory_order(a, a.memory_format), _in_memory_order(b, a.memory_format)
    if layouts_differ(a, b):
        # TensorIterator cannot give b unit stride along the output's innermost dim, so
        # `VectorizedLoop2d` falls back to `basic_loop`: every element takes the scalar lambda.
        ints = scalar_path(flat_a, flat_b, out, relu, profile)
    else:
        ints = _vector_path(flat_a, flat_b, out, relu, profile)
        block = VECTOR_BLOCK_32BIT if a.dtype is QDtype.qint32 else VECTOR_BLOCK_8BIT
        # The scalar lambda only where it runs: the last len % block elements of each range.
        for begin, end in scalar_tail_spans(ints.size, block, num_threads):
            ints[begin:end] = scalar_path(_span(flat_a, begin, end), _span(flat_b, begin, end), out, relu, profile)
    logical = from_memory_order(ints, a.shape, a.memory_format)
    return QTensor(logical, out.scale, out.zero_point, a.dtype, memory_format=a.memory_format)


def checked_arguments(
    a: QTensor,
    b: QTensor,
    output_scale: float,
    output_zero_point: int,
    relu: bool,
    num_threads: int,
    profile: NumericsProfile,
) -> tuple[QTensor, NumericsProfile]:
    """`add`'s arguments checked: the output qparams (an empty QTensor) and the profile."""
    check_qtensor(a, "a")
    check_qtensor(b, "b")
    flag(relu, "relu")
    integer(num_threads, "num_threads", minimum=1)
    profile = as_profile(profile)
    _check_operands(a, b)
    return output_qparams(output_scale, output_zero_point, a.dtype), profile


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
    table = pair_table(
        a.dtype, (a.scale, a.zero_point), (b.scale, b.zero_point), (out.scale, out.zero_point), relu, profile
    )
    pair = a.int_repr.view(np.uint8).astype(np.uint16)
    pair <<= 8
    pair |= b.int_repr.view(np.uint8)
    return table.take(pair)


@functools.lru_cache(maxsize=256)
def pair_table(
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


def scalar_path(a: QTensor, b: QTensor, out: QTensor, relu: bool, profile: NumericsProfile) -> np.ndarray:
    """The scalar lambda's results for every element of `a` and `b` (same shape)."""
    # dequantize_val: float(scale) * float(int32 q - zp) (the int32 difference wraps), one
    # float32 rounding of the product (and of the int -> float conversion beyond 2^24):
    # the per-tensor formula of `dequantize`.
    c = f32(dequantize(a) + dequantize(b))
    if relu:
        c = np.maximum(c, np.float32(0))
    return quantize_val(c, out.scale, out.zero_point, out.dtype, profile)


def _qnnpack_add(a: QTensor, b: QTensor, out: QTensor, relu: bool) -> QTensor:
    """pytorch_qnnpack's quint8 add (`qnnpack_add`, BinaryOps.cpp -> `pytorch_qnnp_create_add_nc_q8`,
    add.c; kernel `pytorch_q8vadd_ukernel__sse2`, the fixed-point version in both releases' builds):
      am, bm, shift = _qnnpack_add_multipliers(...)         (requantization.h)
      acc = wrap32(am * qa + bm * qb - (am * za + bm * zb))
      mask = 2^(shift mod 32) - 1; rem = (acc & mask) - (acc < 0); up = rem > (mask >> 1)
      vector loop: q = (acc >> min(shift, 31)) + up;  y = pack_u8(q, zo, lower)
      scalar loop: q = (acc >> (shift mod 32)) + up;  y = clip(wrap32(q + zo), lower, 255)
    with lower = zo under relu (`activationLimits(..., RELU)`), else 0. For shift <= 31 both
    loops are `round(acc / 2^shift)`, ties away from zero, plus zo. A shift of 32 or more
    (both ratios below 2^-10) wraps the C shifts: x86 takes `1u << shift` and `x >> shift`
    mod 32, while `psrad` by 32 or more leaves only the sign, so the loops then differ.
    The elements run in memory order (a's layout; b is made contiguous in it; the output is
    in a's memory format) in tiles of 4096: a tile shorter than 8 (the last `n % 4096` when
    below 8) takes the scalar loop, every other element the vector loop (whose shifted-load
    tail computes the same). Refused (EngineRefusedError), besides the scales: empty rows
    (`check_qnnpack_rows`) and relu with zo = 255 (`output_min >= output_max`).
    """
    check_qnnpack_rows(a.shape, "add")
    lower = out.zero_point if relu else 0
    if lower >= 255:
        raise EngineRefusedError("pytorch_qnnpack refuses add_relu with output zero point 255 (an empty range)")
    a_mult, b_mult, shift = _qnnpack_add_multipliers(a, b, out)
    qa, qb = (to_memory_order(q.int_repr, a.memory_format).astype(np.int64) for q in (a, b))
    acc = wrap_int32(a_mult * qa + b_mult * qb - (a_mult * a.zero_point + b_mult * b.zero_point)).astype(np.int64)
    mask = (1 << (shift % 32)) - 1
    up = ((acc & mask) - (acc < 0)) > (mask >> 1)
    vector = pack_u8((acc >> min(shift, 31)) + up, out.zero_point, lower)
    scalar = np.clip(wrap_int32((acc >> (shift % 32)) + up + out.zero_point), lower, 255).astype(np.uint8)
    ints = np.where(_in_qnnpack_scalar_loop(acc.size), scalar, vector)
    return QTensor(from_memory_order(ints, a.shape, a.memory_format), out.scale, out.zero_point, QDtype.quint8,
                   memory_format=a.memory_format)


def _qnnpack_add_multipliers(a: QTensor, b: QTensor, out: QTensor) -> tuple[int, int, int]:
    """`pytorch_qnnp_compute_add_quantization_params` (requantization.h), from add.c's ratios:
      aos = f32(float(sa) / float(so)), bos likewise    each in [2^-14, 2^8), else refused
      shift = 21 - exponent(max(aos, bos))              (14 ... 35)
      am = lrintf(aos * 2^shift), bm likewise           (exact products, rne; below 2^22)
    Scales that are not positive normal float32 are refused too (EngineRefusedError)."""
    a_scale, b_scale, out_scale = (
        normal_scale_f32(q.scale, f"add {name} scale") for q, name in ((a, "a"), (b, "b"), (out, "output"))
    )
    ratios = (f32(a_scale / out_scale), f32(b_scale / out_scale))
    for ratio in ratios:
        if not 2.0**-14 <= ratio < 2.0**8:
            raise EngineRefusedError(f"pytorch_qnnpack refuses add scale ratio {ratio}: outside [2^-14, 2^8)")
    shift = 21 - (int(np.frexp(max(ratios))[1]) - 1)
    a_mult, b_mult = (int(np.rint(f32(ratio * np.float32(2.0**shift)))) for ratio in ratios)
    return a_mult, b_mult, shift


def _in_qnnpack_scalar_loop(numel: int) -> np.ndarray:
    """Memory positions the q8vadd scalar loop computes: those of a last tile shorter than 8."""
    last_tile = numel % QNNPACK_ADD_TILE or min(numel, QNNPACK_ADD_TILE)
    return np.arange(numel) >= numel - (last_tile if last_tile < QNNPACK_ADD_VECTOR else 0)


def _in_memory_order(q: QTensor, memory_format: MemoryFormat) -> QTensor:
    """`q` as a 1-d tensor walked in `memory_format`'s order (NHWC for channels_last)."""
    return QTensor(to_memory_order(q.int_repr, memory_format), q.scale, q.zero_point, q.dtype)


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
        raise ArgumentError(f"quantized::add: shapes of a {a.shape} and b {b.shape} differ; no broadcasting")
