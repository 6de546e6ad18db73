"""avg_pool2d on quantized tensors (`avg_pool2d_quantized_cpu`, quantized/cpu/AveragePool2d.cpp)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .._arguments import flag, integer
from ..numerics import f32, rne
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import aten_vec_quantize_round_then_add_zp, quantize_val
from ._pool_common import (
    check_4d,
    check_per_tensor_8bit,
    nhwc_kernel_result,
    pair,
    pool_stride,
    pooling_output_size,
    qnnpack_average,
    takes_nhwc_kernel,
    window_sums,
)
from ._registry import register_op
from ._validate import check_qtensor

IntOrPair = Union[int, Sequence[int]]


@register_op("aten::avg_pool2d", "quantized::avg_pool2d")
def avg_pool2d(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair] = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.nn.functional.avg_pool2d` on a quantized tensor. The output keeps the input's
    scale and zero point; only integers of valid (unpadded) taps are summed.

    Per window: `acc = sum q - size * zp` (int32, `size` = valid taps), divided by
    `d` = `divisor_override`, else the window clipped to the padded input
    (`count_include_pad`), else `size`. Two kernels, chosen by `is_contiguous(ChannelsLast)`
    (also true for NCHW inputs with C == 1 or H*W == 1):

    NCHW (`avg_pool2d_out_frame`, generic build, no fma):
      `mult = float(double(s_in / s_out) / d)` (a double divide, narrowed);
      `q = clamp(rne(f32(f32(float(acc) * mult) + float(zp))))`: zp before rounding, any release.
    NHWC (`qavg_pool2d_nhwc_kernel`, AVX512 build on AVX512 CPUs, else AVX2):
      `mult = f32(f32(float(s_in) / float(s_out)) / d)`; channels below `C // L * L`
      (`L` = profile.aten_avx512_float_lanes: 16 on AVX512, 8 on AVX2) go through ATen's
      vector quantize `clamp(cvt(f32(float(acc) * mult)) + zp)` (round, then add zp);
      the other channels through `quantize_val(float(acc), scale=f32(1.0f / mult), zp)`
      (zp before rounding on 2.13, after on 2.14).
    Window: `start = o*stride - pad`, `end = min(start + k, in + pad)`, clipped to the input.

    Hand-worked, NCHW quint8 zp 1, one channel [[0, 1], [2, 2]], kernel 2:
      acc = 5 - 4*1 = 1, mult = 1/4 = 0.25, f32(1 * 0.25) + 1 = 1.25 -> rne 1
    and [[0, 1], [1, 2]]: acc = 4 - 4 = 0 -> 0 + 1 = 1.0 -> 1.
    NHWC kernel (C == 1 routes there; one channel is a scalar tail), zp 1, [[2, 1]],
    kernel (1, 2): acc = 3 - 2*1 = 1, mult = 0.5, scale = 1/0.5 = 2, t = 1 * (1/2) = 0.5;
    2.13: rne(1 + 0.5) = 2;   2.14: 1 + rne(0.5) = 1.

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> q = QTensor(np.array([[[[0, 1], [2, 2]]]], np.uint8), 0.1, 1, "quint8")
    >>> avg_pool2d(q, 2).int_repr.tolist()
    [[[[1]]]]
    >>> t = QTensor(np.array([[[[2, 1]]]], np.uint8), 0.1, 1, "quint8")   # C == 1: NHWC kernel
    >>> avg_pool2d(t, (1, 2)).int_repr.tolist()
    [[[[2]]]]
    >>> avg_pool2d(t, (1, 2), profile=get_profile("torch2.14-avx512_vnni-fbgemm")).int_repr.tolist()
    [[[[1]]]]

    Under the qnnpack engine a quint8 input without ceil_mode takes pytorch_qnnpack's kernel
    (`qnnpack_avg_pool2d`), which divides by the full window whatever `count_include_pad` and
    `divisor_override` say; qint8 keeps the kernels above. Hand-worked, 2x2 of 100 (scale 1,
    zp 0), kernel 2, stride 1, padding 1, count_include_pad=False: ATen divides each window's
    sum by its valid taps (100 everywhere); qnnpack by 4: corners 100/4 = 25, edges 200/4 = 50,
    centre 400/4 = 100.

    >>> hundreds = QTensor(np.full((1, 1, 2, 2), 100, np.uint8), 1.0, 0, "quint8")
    >>> avg_pool2d(hundreds, 2, 1, 1, count_include_pad=False).int_repr.ravel().tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100]
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> avg_pool2d(hundreds, 2, 1, 1, count_include_pad=False, profile=qnnpack).int_repr.ravel().tolist()
    [25, 50, 25, 50, 100, 50, 25, 50, 25]
    """
    kernel, strides, pad, profile = checked_arguments(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, profile
    )
    if profile.engine == "qnnpack" and x.dtype is QDtype.quint8 and not ceil_mode:
        return qnnpack_avg_pool2d(x, kernel, strides, pad)
    acc, divisor = _window_sums(x, kernel, strides, pad, ceil_mode, count_include_pad, divisor_override)
    if takes_nhwc_kernel(x):
        ints, memory_format = nhwc_kernel_result(requantize_nhwc(acc, divisor, x, profile), x)
    else:
        ints, memory_format = requantize_nchw(acc, divisor, x), x.memory_format
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


def checked_arguments(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair],
    padding: IntOrPair,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
    profile: NumericsProfile,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], NumericsProfile]:
    """`avg_pool2d`'s arguments checked: kernel, stride and padding as pairs, and the profile."""
    check_qtensor(x, "x")
    kernel = pair(kernel_size, "kernel_size", "avg_pool2d", minimum=1)
    strides = pool_stride(stride, kernel, "avg_pool2d")
    pad = pair(padding, "padding", "avg_pool2d", minimum=0)
    flag(ceil_mode, "ceil_mode")
    flag(count_include_pad, "count_include_pad")
    if divisor_override is not None:
        integer(divisor_override, "divisor_override")
    profile = as_profile(profile)
    check_per_tensor_8bit(x, "avg_pool2d", "x")
    check_4d(x, "avg_pool2d", "x")
    _check_window(kernel, strides, pad, divisor_override)
    return kernel, strides, pad, profile


def qnnpack_avg_pool2d(
    x: QTensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> QTensor:
    """pytorch_qnnpack's average pooling of a quint8 NCHW tensor (`qnnp_avgpool_helper::
    qnnpack_avg_pool2d`, AveragePool2d.cpp -> `pytorch_qnnp_create_average_pooling2d_nhwc_q8`,
    average-pooling.c), which the qnnpack engine runs for `avg_pool2d` (without ceil_mode) and
    for `adaptive_avg_pool2d` of divisible sizes:
      acc = sum over the kH x kW window of (q - zp)   (padding taps read a buffer of zp: they add 0)
      out = qnnpack_average(acc, kH * kW, x)          (always the full window, never the valid taps)
    Output qparams are the input's; computed in NHWC and returned in the input's suggested
    memory format (contiguous for H*W == 1, without the NHWC kernels' scramble). Refused
    (EngineRefusedError): a 1x1 window ("1x1 pooling is meaningless"), 2^24 or more taps, an
    empty output.
    """
    area = kernel[0] * kernel[1]
    _, _, height, width = x.shape
    rows = _axis_windows(height, kernel[0], stride[0], padding[0], False)[:2]
    cols = _axis_windows(width, kernel[1], stride[1], padding[1], False)[:2]
    if area == 1 or area >= 2**24 or not (rows[0].size and cols[0].size):
        raise EngineRefusedError(f"pytorch_qnnpack refuses average pooling of {x.shape} with a {kernel} window")
    sums, size = window_sums(x.int_repr.astype(np.int64), rows, cols)
    ints = qnnpack_average(sums - size * x.zero_point, area, x)
    memory_format = MemoryFormat.contiguous if height * width == 1 else x.memory_format
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


def _window_sums(
    x: QTensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
) -> tuple[np.ndarray, np.ndarray]:
    """`acc = sum q - size*zp` per output (N, C, OH, OW) and the divisor per output pixel (OH, OW)."""
    rows, cols, divisor = window_geometry(x.shape, kernel, stride, pad, ceil_mode, count_include_pad, divisor_override)
    sums, size = window_sums(x.int_repr.astype(np.int64), rows, cols)
    return sums - size * x.zero_point, divisor


def window_geometry(
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Each window's clipped rows [r0, r1) and columns [c0, c1) (per output row / column), and
    the divisor per output pixel (OH, OW)."""
    _, _, height, width = shape
    r0, r1, r_pool = _axis_windows(height, kernel[0], stride[0], pad[0], ceil_mode)
    c0, c1, c_pool = _axis_windows(width, kernel[1], stride[1], pad[1], ceil_mode)
    if divisor_override is not None:
        divisor = np.full((r0.size, c0.size), int(divisor_override), dtype=np.int64)
    elif count_include_pad:
        divisor = r_pool[:, None] * c_pool[None, :]
    else:
        divisor = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return (r0, r1), (c0, c1), divisor


def _axis_windows(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> tuple[np.ndarray, ...]:
    """Per output index along one axis: clipped [start, end) and the padded window length."""
    count = pooling_output_size(size, kernel, pad, stride, 1, ceil_mode)
    if count < 0:  # torch returns an empty output for 0 (no size check in q_avg_pool2d)
        raise ValueError(f"avg_pool2d: output size {count} from input size {size} is negative")
    start = np.arange(count, dtype=np.int64) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    pool = end - start  # counts padding, not the part past `size + pad`
    return np.maximum(start, 0), np.minimum(end, size), pool


def requantize_nchw(acc: np.ndarray, divisor: np.ndarray, x: QTensor) -> np.ndarray:
    """The NCHW kernel's output stage for window sums `acc` (broadcasting with `divisor`)."""
    # scale_factor = in_scale / out_scale in double (1.0: the output keeps the input's
    # scale); `float multiplier = scale_factor / divide_factor` narrows a double divide.
    mult = f32(np.float64(x.scale) / np.float64(x.scale) / divisor.astype(np.float64))
    # `nearbyint(sum * multiplier + output_zero_point)`: two float32 roundings (generic
    # build, not contracted), zp added before rounding; then an int32 clamp.
    value = rne(f32(f32(f32(acc) * mult) + np.float32(x.zero_point)))
    return np.clip(value, x.dtype.qmin, x.dtype.qmax).astype(x.dtype.storage)


def requantize_nhwc(acc: np.ndarray, divisor: np.ndarray, x: QTensor, profile: NumericsProfile) -> np.ndarray:
    """The NHWC kernel's output stage for window sums `acc` (N, C, OH, OW): vector lanes, scalar tail."""
    vector = nhwc_vector_lanes(acc, divisor, x)
    scalar = nhwc_scalar_tail(acc, divisor, x, profile)
    channels = x.shape[1]
    in_vector = (np.arange(channels) < nhwc_vector_channels(channels, profile))[None, :, None, None]
    return np.where(in_vector, vector, scalar)


def nhwc_vector_channels(channels: int, profile: NumericsProfile) -> int:
    """How many leading channels the NHWC kernel's vector loop quantizes: `C // L * L`."""
    lanes = profile.aten_avx512_float_lanes
    return channels // lanes * lanes


def _nhwc_multiplier(divisor: np.ndarray, x: QTensor) -> np.ndarray:
    # `float multiplier = input_scale / output_scale / divide_factor`, all float32.
    return f32(f32(np.float32(x.scale) / np.float32(x.scale)) / f32(divisor))


def nhwc_vector_lanes(acc: np.ndarray, divisor: np.ndarray, x: QTensor) -> np.ndarray:
    """The NHWC kernel's vector quantize of window sums `acc` (broadcasting with `divisor`)."""
    return aten_vec_quantize_round_then_add_zp(f32(acc), _nhwc_multiplier(divisor, x), x.zero_point, x.dtype)


def nhwc_scalar_tail(acc: np.ndarray, divisor: np.ndarray, x: QTensor, profile: NumericsProfile) -> np.ndarray:
    """The NHWC kernel's scalar tail: quantize_val(1.0f / multiplier, zp, acc), i.e. scale = f32(1/mult)."""
    mult = _nhwc_multiplier(divisor, x)
    return quantize_val(f32(acc), f32(np.float32(1) / mult), x.zero_point, x.dtype, profile)


def _check_window(
    kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int], divisor_override: Optional[int]
) -> None:
    if min(kernel) <= 0 or min(stride) <= 0:
        raise ValueError(f"avg_pool2d: kernel_size {kernel} and stride {stride} must be positive")
    if min(pad) < 0 or pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"avg_pool2d: padding {pad} must be between 0 and half the kernel {kernel}")
    if divisor_override is not None and int(divisor_override) == 0:
        raise ValueError("avg_pool2d: divisor_override must not be zero")
