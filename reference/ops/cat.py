"""quantized::cat (and torch.cat on quantized tensors): concatenate, requantizing to one
scale and zero point (quantized/cpu/qconcat.cpp, `qcat_nhwc_kernel` in QuantizedOpKernels.cpp)."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from .._arguments import ArgumentError, describe, dim_index
from ..numerics import f32
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import MemoryFormat, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, quantize_val
from ._pool_common import check_per_tensor_8bit, takes_nhwc_kernel
from ._registry import register_op
from ._unary_float import dequantize_vector
from ._validate import check_qtensor, output_qparams
from .dequantize import dequantize
from .quantize_per_tensor import quantize_per_tensor

# qcat_nhwc_stub is registered with REGISTER_DISPATCH (AVX2 build on every x86 CPU):
# blocks of Vectorized<8-bit>::size() = 32 channels, then blocks of 8 float lanes.
NHWC_VECTOR_CHANNELS = 8


@register_op("quantized::cat", "aten::cat")
def cat(
    tensors: Sequence[QTensor],
    dim: int,
    output_scale: Optional[float] = None,
    output_zero_point: Optional[int] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.cat(tensors, dim, scale, zero_point)`; `torch.cat(tensors, dim)`
    on quantized tensors is the same op with the qparams of `tensors[0]` (`quantized_cat`),
    which are also the defaults when `output_scale` / `output_zero_point` are None.

    NHWC fast path (`qcat_nhwc_kernel`, AVX2 build), taken when `dim == 1` and every input
    is 4-d and `is_contiguous(ChannelsLast)` (channels_last, or NCHW with C == 1 or
    H*W == 1); the output is channels_last. Per input, per pixel:
      - same qparams as the output (double scale compared exactly, and zp): copied.
      - else channels below `C_i // 8 * 8` (32-channel blocks, then up to three blocks of 8):
        `x = fma32(s, float(q), f32(s * -float(z)))` with `s = float(scale_i)`;
        `out = clamp(wrap(cvt(min(f32(x * inv), 2147483520)) + zo))`, `inv = float(1.0 / so)`
        (a double divide, narrowed): round, then add zp.
      - the last `C_i % 8` channels: `x = f32(s * float(q - z))`, then `quantize_val(x, so, zo)`
        (zp before rounding on 2.13, after on 2.14).
    Generic path (every other case): each input is dequantized (`f32(s * float(q - z))`),
    the floats are concatenated, and the result goes through `quantize_per_tensor`
    (FBGEMM Quantize: zp before rounding in one fma on 2.13, after on 2.14). Its output is
    channels_last only if every input is.

    Hand-worked, NHWC path, two NCHW 1x1-pixel inputs (H*W == 1 routes NHWC), quint8,
    output scale 1, zp 1: input A [[2]] scale 0.25 zp 0 (one channel: scalar tail),
    x = 0.25 * 2 = 0.5; 2.13: rne(1 + 0.5) = 2; 2.14: 1 + rne(0.5) = 1.
    Input B has the output's qparams: copied.

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> a = QTensor(np.array([[[[2]]]], np.uint8), 0.25, 0, "quint8")
    >>> b = QTensor(np.array([[[[7]]]], np.uint8), 1.0, 1, "quint8")
    >>> cat([a, b], 1, 1.0, 1).int_repr.ravel().tolist()
    [2, 7]
    >>> cat([a, b], 1, 1.0, 1, get_profile("torch2.14-avx2-fbgemm")).int_repr.ravel().tolist()
    [1, 7]
    """
    tensors, axis, out, profile = checked_arguments(tensors, dim, output_scale, output_zero_point, profile)
    if takes_nhwc_kernel_path(tensors, axis):
        ints = np.concatenate([_nhwc_requantize(t, out, profile) for t in tensors], axis=1)
        return QTensor(ints, out.scale, out.zero_point, out.dtype, memory_format=MemoryFormat.channels_last)
    floats = np.concatenate([dequantize(t) for t in tensors], axis=axis)
    result = quantize_per_tensor(floats, out.scale, out.zero_point, out.dtype, profile)
    channels_last = all(t.memory_format is MemoryFormat.channels_last for t in tensors)
    memory_format = MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous
    return QTensor(result.int_repr, out.scale, out.zero_point, out.dtype, memory_format=memory_format)


def _nhwc_requantize(t: QTensor, out: QTensor, profile: NumericsProfile) -> np.ndarray:
    """One input's channels in the NHWC kernel: copy, vector blocks, scalar tail."""
    if copied_unchanged(t, out):
        return t.int_repr  # std::memcpy
    vector, scalar = nhwc_vector_blocks(t, out), nhwc_scalar_tail(t, out, profile)
    channels = t.shape[1]
    in_vector = (np.arange(channels) < channels // NHWC_VECTOR_CHANNELS * NHWC_VECTOR_CHANNELS)[None, :, None, None]
    return np.where(in_vector, vector, scalar)


def copied_unchanged(t: QTensor, out: QTensor) -> bool:
    """Whether the NHWC kernel copies input `t`: its qparams are the output's (double scale compared exactly)."""
    return float(t.scale) == float(out.scale) and t.zero_point == out.zero_point


# `float curr_scale = scales[tidx]`; Vectorized<q>::dequantize (an fma) in the blocks,
# dequantize_val (`f32(s * float(q - z))`, `dequantize`'s formula) in the tail.
def nhwc_vector_blocks(t: QTensor, out: QTensor) -> np.ndarray:
    """The NHWC kernel's vector blocks: `t`'s integers requantized to `out`'s qparams."""
    inv = f32(1.0 / np.float64(out.scale))  # `static_cast<float>(1.0 / scale)`
    return aten_vec_quantize_round_then_add_zp(dequantize_vector(t), inv, out.zero_point, out.dtype)


def nhwc_scalar_tail(t: QTensor, out: QTensor, profile: NumericsProfile) -> np.ndarray:
    """The NHWC kernel's last `C_i % 8` channels: `t`'s integers requantized to `out`'s qparams."""
    return quantize_val(dequantize(t), out.scale, out.zero_point, out.dtype, profile)


def checked_arguments(
    tensors: Sequence[QTensor],
    dim: int,
    output_scale: Optional[float],
    output_zero_point: Optional[int],
    profile: NumericsProfile,
) -> tuple[list[QTensor], int, QTensor, NumericsProfile]:
    """`cat`'s arguments checked: the tensors as a list, `dim` in [0, ndim), the output qparams
    (as an empty QTensor) and the profile."""
    profile = as_profile(profile)
    tensors, axis = _check_inputs(tensors, dim)
    first = tensors[0]
    scale = first.scale if output_scale is None else output_scale
    zero_point = first.zero_point if output_zero_point is None else output_zero_point
    return tensors, axis, output_qparams(scale, zero_point, first.dtype), profile


def takes_nhwc_kernel_path(tensors: list[QTensor], axis: int) -> bool:
    """`qcat_nhwc_kernel`'s condition: dim 1, every input 4-d and `is_contiguous(ChannelsLast)`."""
    return axis == 1 and all(t.int_repr.ndim == 4 and takes_nhwc_kernel(t) for t in tensors)


def _check_inputs(tensors: Sequence[QTensor], dim: int) -> tuple[list[QTensor], int]:
    """The tensors as a list and `dim` in [0, ndim); ArgumentError naming the argument."""
    if isinstance(tensors, (str, bytes, QTensor)) or not isinstance(tensors, Iterable):
        raise ArgumentError(f"cat: tensors must be a sequence of QTensors, got {describe(tensors)}")
    tensors = list(tensors)
    if not tensors:
        raise ArgumentError("cat: tensors must hold at least one tensor, got none")
    for index, t in enumerate(tensors):
        check_qtensor(t, f"tensors[{index}]")
        check_per_tensor_8bit(t, "cat", f"tensors[{index}]")
    first = tensors[0]
    ndim = first.int_repr.ndim
    if ndim == 0:
        raise ArgumentError("cat: tensors[0] is 0-d; zero-dimensional tensors cannot be concatenated")
    axis = dim_index(dim, "dim", ndim)
    for index, t in enumerate(tensors):
        if t.dtype is not first.dtype:
            raise ValueError(f"cat: tensors[{index}] has dtype {t.dtype.label}, tensors[0] has {first.dtype.label}")
        other_dims = [d for d in range(ndim) if d != axis]
        if t.int_repr.ndim != ndim or any(t.shape[d] != first.shape[d] for d in other_dims):
            raise ValueError(
                f"cat: tensors[{index}] has shape {t.shape}; expected {first.shape} except along dim {dim}"
            )
    return tensors, axis
