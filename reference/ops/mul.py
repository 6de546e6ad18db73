"""quantized::mul: integer product of centred inputs, requantized with one float32 multiplier."""

from __future__ import annotations

import numpy as np

from .._arguments import flag, integer
from ..numerics import cvt_rne, f32, wrap_int32
from ..qtensor import MemoryFormat, QTensor
from ..quantize_kernels import inverse_scale_f32
from ._registry import register_op
from ._tensor_iterator import VECTOR_BLOCK_8BIT, layouts_differ, vector_body_mask
from ._validate import broadcast_shape, check_qtensor, output_qparams


@register_op("quantized::mul")
def mul(
    a: QTensor, b: QTensor, output_scale: float, output_zero_point: int, relu: bool = False, num_threads: int = 1
) -> QTensor:
    """`torch.ops.quantized.mul(a, b, scale, zero_point)` (`qmul_kernel`, QuantizedOpKernels.cpp).

    Formula, all float32, not contracted (no add follows a multiply):
      `inv = f32(1.0f / float(scale))`; `mult = f32(f32(float(sa) * float(sb)) * inv)`;
      `c = (qa - za) * (qb - zb)` (exact int32; |c| <= 255^2);
      vector lambda (`requantize_from_int`, AVX2 `RequantizeAvx2`):
        `out = clamp(wrap_int32(cvt_rne(f32(float(c) * mult)) + zp))` (cvt gives INT32_MIN
        beyond int32, the pack steps saturate, so that ends at qmin);
      scalar lambda (`requantize_from_int`, affine_quantizer_base.cpp):
        `out = clamp(zp + lrintf(f32(float(c) * mult)))`, lrintf is 64-bit, so out of
        int32 range saturates to qmin/qmax instead.
      The two differ only when |c * mult| >= 2^31. relu (`quantized::mul_relu`):
      `max(out, zp)`. b broadcasts against a (SE blocks multiply by an (N, C, 1, 1) gate):
      then the vector/tail split restarts at each inner run (`_inner_run`: H*W for NCHW,
      C for channels_last gates; measured against torch 2.13.0).
    Output: scale/zp given, memory format of `a` (`qa.suggest_memory_format()`).

    Hand-worked, sa = sb = 0.5, za = zb = 0, out scale 0.25 zp 1 (quint8):
      inv = 4, mult = f32(0.25 * 4) = 1.0; qa = [3, 5], qb = [3, 1]: c = [9, 5] -> [10, 6]

    >>> import numpy as np
    >>> qa = QTensor(np.array([3, 5], np.uint8), 0.5, 0, "quint8")
    >>> qb = QTensor(np.array([3, 1], np.uint8), 0.5, 0, "quint8")
    >>> mul(qa, qb, 0.25, 1).int_repr.tolist()
    [10, 6]
    """
    check_qtensor(a, "a")
    check_qtensor(b, "b")
    flag(relu, "relu")
    integer(num_threads, "num_threads", minimum=1)
    for name, q in (("a", a), ("b", b)):
        if q.per_channel:
            raise ValueError(f"quantized::mul needs per-tensor inputs; {name} is per-channel (axis {q.axis})")
    if a.dtype is not b.dtype:
        raise ValueError(f"quantized::mul needs equal dtypes, got {a.dtype.label} and {b.dtype.label}")
    out_qparams = output_qparams(output_scale, output_zero_point, a.dtype)
    shape = broadcast_shape(a, b, "quantized::mul")
    centered = (a.int_repr.astype(np.int64) - a.zero_point) * (b.int_repr.astype(np.int64) - b.zero_point)
    multiplier = f32(f32(np.float32(a.scale) * np.float32(b.scale)) * inverse_scale_f32(out_qparams.scale))
    scaled = f32(centered.astype(np.float32) * multiplier)  # |c| < 2^24: the conversion is exact
    zp = out_qparams.zero_point
    vector = wrap_int32(cvt_rne(scaled).astype(np.int64) + zp)
    scalar = np.rint(scaled.astype(np.float64)) + zp  # lrintf: 64-bit, never wraps here
    # qmul_stub is registered with REGISTER_DISPATCH only: its AVX2 build runs on AVX512 CPUs too.
    use_vector = vector_body_mask(shape, a.memory_format, VECTOR_BLOCK_8BIT, num_threads, _inner_run(a, b, shape))
    if a.shape == b.shape and layouts_differ(a, b):
        use_vector = np.zeros_like(use_vector)  # basic_loop: all scalar, as in quantized::add
    result = np.clip(np.where(use_vector, vector, scalar), a.dtype.qmin, a.dtype.qmax).astype(np.int64)
    if relu:
        result = np.maximum(result, zp)
    ints = np.broadcast_to(result, shape).astype(a.dtype.storage)
    return QTensor(ints, output_scale, zp, a.dtype, memory_format=_format(a, shape))


@register_op("quantized::mul_relu")
def mul_relu(a: QTensor, b: QTensor, output_scale: float, output_zero_point: int, num_threads: int = 1) -> QTensor:
    """`quantized::mul_relu`: `mul(..., relu=True)`, i.e. `max(mul(a, b), zp)`.

    >>> import numpy as np
    >>> qa = QTensor(np.array([0, 5], np.uint8), 1.0, 2, "quint8")
    >>> mul_relu(qa, qa, 1.0, 3).int_repr.tolist()  # c = [4, 9] -> [7, 12]
    [7, 12]
    """
    return mul(a, b, output_scale, output_zero_point, relu=True, num_threads=num_threads)


def _format(a: QTensor, shape: tuple[int, ...]) -> MemoryFormat:
    """The output takes a's memory format (a 4-d result of a 4-d `a`)."""
    return a.memory_format if len(shape) == 4 else MemoryFormat.contiguous


def _inner_run(a: QTensor, b: QTensor, shape: tuple[int, ...]) -> int:
    """The length of TensorIterator's inner loop over the output in a's memory order.

    Adjacent dims coalesce only while every operand's broadcast pattern stays the same
    (a stride that turns 0 breaks `stride[d] * size[d] == stride[d + 1]`); size-1 dims
    never break a run. Same-shape operands: one run of numel.
    """
    order = (0, 2, 3, 1) if len(shape) == 4 and a.memory_format is MemoryFormat.channels_last else range(len(shape))
    run, pattern = 1, None
    for dim in reversed(tuple(order)):
        if shape[dim] == 1:
            continue
        broadcast = tuple(_size(q, dim, len(shape)) == 1 for q in (a, b))
        if pattern is not None and broadcast != pattern:
            break
        pattern, run = broadcast, run * shape[dim]
    return run


def _size(q: QTensor, dim: int, ndim: int) -> int:
    """q's size at output dim `dim` (right-aligned broadcasting; missing dims are 1)."""
    offset = ndim - len(q.shape)
    return 1 if dim < offset else q.shape[dim - offset]
