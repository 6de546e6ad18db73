"""adaptive_avg_pool2d on quantized tensors (`adaptive_avg_pool2d_quantized_cpu`,
quantized/cpu/AdaptiveAveragePooling.cpp)."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ..numerics import f32, rne
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile
from ..qtensor import QDtype, QTensor
from ..quantize_kernels import fbgemm_quantize_u8s8, quantize_val
from ._pool_common import check_4d, check_per_tensor_8bit, nhwc_kernel_result, pair, takes_nhwc_kernel, window_sums
from ._registry import register_op
from ._validate import check_qtensor
from .avg_pool2d import qnnpack_avg_pool2d

# qadaptive_avg_pool*_ndhwc_stub is registered with REGISTER_DISPATCH: the AVX2 build runs
# on AVX512 CPUs too, so `do_avg_pool_on_AVX_n` vectorizes 8 channels at a time.
NHWC_VECTOR_CHANNELS = 8


@register_op("aten::adaptive_avg_pool2d", "aten::_adaptive_avg_pool2d")
def adaptive_avg_pool2d(
    x: QTensor, output_size: Union[int, Sequence[int]], profile: NumericsProfile = DEFAULT_PROFILE
) -> QTensor:
    """`torch.nn.functional.adaptive_avg_pool2d` on a quantized tensor; the output keeps
    the input's scale and zero point.

    Windows along an axis of input length `n` and output length `m`:
    `start = floor(float(o*n) / m)`, `end = ceil(float((o+1)*n) / m)`, each a float32 divide.
    Two kernels, chosen by `is_contiguous(ChannelsLast)` (also true for NCHW inputs with
    C == 1 or H*W == 1):

    NCHW (`adaptive_avg_pool_single_out_frame`): the raw integers are averaged (the zero
    point cancels): `q = rne(f32(float(sum q) * kr))`, `kr = f32(f32(1.0f / kH) / kW)`;
    no clamp (an average of in-range integers stays in range).
    NHWC (`_qadaptive_avg_pool_kernel`, AVX2 build): `acc = sum q - zp*kH*kW` (int32),
    `mult = f32(f32(float(s_in) / float(s_out)) / (kH*kW))`, quantized as
    `quantize(float(acc), scale = f32(1.0f / mult), zp)`: channels below `C // 8 * 8`
    through FBGEMM's vector `Quantize` (`fbgemm_quantize_u8s8`: one fma with zp before
    rounding on 2.13, round then add zp on 2.14), the rest through `quantize_val` (2.13: zp
    added in float32 before rounding; 2.14 after).

    Hand-worked, NCHW quint8 zp 1, C = 2, 1x2 input per channel, output 1x1:
      channel 0 [0, 1]: kr = f32(1/1)/2 = 0.5, 1 * 0.5 = 0.5 -> rne 0
    The same channel on its own (C == 1: NHWC kernel, a scalar tail), 2.13:
      acc = 1 - 2*1 = -1, mult = 0.5, scale 2, inv 0.5, rne(f32(1 + -0.5)) = rne(0.5) = 0;
      2.14: 1 + rne(-0.5) = 1 + 0 = 1.

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> q = QTensor(np.array([[[[0, 1]], [[3, 4]]]], np.uint8), 0.1, 1, "quint8")
    >>> adaptive_avg_pool2d(q, 1).int_repr.ravel().tolist()   # 3.5 -> 4 (even)
    [0, 4]
    >>> one = QTensor(np.array([[[[0, 1]]]], np.uint8), 0.1, 1, "quint8")
    >>> adaptive_avg_pool2d(one, 1).int_repr.ravel().tolist()
    [0]
    >>> adaptive_avg_pool2d(one, 1, get_profile("torch2.14-avx2-fbgemm")).int_repr.ravel().tolist()
    [1]

    Under the qnnpack engine a quint8 input whose size is a multiple of the output size and
    differs from it (`enable_qnnpack_for_ada_avgpool`) is average-pooled by pytorch_qnnpack
    with kernel = stride = (H / oH, W / oW), no padding (`qnnpack_avg_pool2d`); other sizes and
    qint8 keep the kernels above. The first example there: channel 0 sums (0-1) + (1-1) = -1,
    -1 * 0.5 = -0.5 -> -0, + 1 = 1; channel 1 (3-1) + (4-1) = 5 -> 2.5 -> 2 -> 3.

    >>> adaptive_avg_pool2d(q, 1, get_profile("torch2.13-avx2-qnnpack")).int_repr.ravel().tolist()
    [1, 3]
    """
    (out_h, out_w), profile = checked_arguments(x, output_size, profile)
    _, _, height, width = x.shape
    if takes_qnnpack_kernel(x, (out_h, out_w), profile):
        window = (height // out_h, width // out_w)
        return qnnpack_avg_pool2d(x, window, window, (0, 0))
    rows, cols = axis_windows(height, out_h), axis_windows(width, out_w)
    sums, size = window_sums(x.int_repr.astype(np.int64), rows, cols)
    if takes_nhwc_kernel(x):
        ints, memory_format = nhwc_kernel_result(_requantize_nhwc(sums, size, x, profile), x)
    else:
        k_h, k_w = (rows[1] - rows[0])[:, None], (cols[1] - cols[0])[None, :]
        ints, memory_format = average_nchw(sums, k_h, k_w, x), x.memory_format
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


def checked_arguments(
    x: QTensor, output_size: Union[int, Sequence[int]], profile: NumericsProfile
) -> tuple[tuple[int, int], NumericsProfile]:
    """`adaptive_avg_pool2d`'s arguments checked: the output size as a pair, and the profile."""
    check_qtensor(x, "x")
    profile = as_profile(profile)
    check_per_tensor_8bit(x, "adaptive_avg_pool2d", "x")
    check_4d(x, "adaptive_avg_pool2d", "x")
    out_h, out_w = pair(output_size, "output_size", "adaptive_avg_pool2d", minimum=0)
    _, _, height, width = x.shape
    if min(out_h, out_w) <= 0 or min(height, width) <= 0:
        raise ValueError(f"adaptive_avg_pool2d: output_size ({out_h}, {out_w}) and input {x.shape} must be non-empty")
    return (out_h, out_w), profile


def takes_qnnpack_kernel(x: QTensor, output_size: tuple[int, int], profile: NumericsProfile) -> bool:
    """Whether the qnnpack engine average-pools `x` (`enable_qnnpack_for_ada_avgpool`)."""
    (_, _, height, width), (out_h, out_w) = x.shape, output_size
    divisible = height % out_h == 0 and width % out_w == 0 and (height, width) != (out_h, out_w)
    return profile.engine == "qnnpack" and x.dtype is QDtype.quint8 and divisible


def axis_windows(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """`start_index` / `end_index`: float32 divides of int products, then floor / ceil."""
    o = np.arange(out_len, dtype=np.int64)
    start = np.floor(f32(f32(o * in_len) / np.float32(out_len))).astype(np.int64)
    end = np.ceil(f32(f32((o + 1) * in_len) / np.float32(out_len))).astype(np.int64)
    return start, end


def average_nchw(sums: np.ndarray, k_h: np.ndarray, k_w: np.ndarray, x: QTensor) -> np.ndarray:
    """The NCHW kernel's average of window sums `sums` over windows of k_h x k_w (broadcasting)."""
    # kDr = float(1.0 / kD) = 1 for 2-d; kDHr = kDr / kH and kDHWr = kDHr / kW: float32 divides.
    kr = f32(f32(np.float32(1) / f32(k_h)) / f32(k_w))
    # `std::nearbyint(sum * kDHWr)`: int64 sum -> float, one float32 product, rne.
    return rne(f32(f32(sums) * kr)).astype(x.dtype.storage)


def _requantize_nhwc(sums: np.ndarray, size: np.ndarray, x: QTensor, profile: NumericsProfile) -> np.ndarray:
    vector = nhwc_vector_lanes(sums, size, x, profile)
    scalar = nhwc_scalar_tail(sums, size, x, profile)
    channels = x.shape[1]
    in_vector = (np.arange(channels) < channels // NHWC_VECTOR_CHANNELS * NHWC_VECTOR_CHANNELS)[None, :, None, None]
    return np.where(in_vector, vector, scalar)


def _nhwc_accumulator_and_scale(sums: np.ndarray, size: np.ndarray, x: QTensor) -> tuple[np.ndarray, np.ndarray]:
    acc_f = f32(sums - size * x.zero_point)  # int32 accumulator, converted exactly
    mult = f32(f32(np.float32(x.scale) / np.float32(x.scale)) / f32(size))
    scale = np.broadcast_to(f32(np.float32(1) / mult), acc_f.shape)  # `1.0f / multiplier`
    return acc_f, scale


def nhwc_vector_lanes(sums: np.ndarray, size: np.ndarray, x: QTensor, profile: NumericsProfile) -> np.ndarray:
    """The NHWC kernel's vector channels for window sums `sums` of `size` taps (broadcasting)."""
    # `quantize_vec` -> FBGEMM `Quantize` with the window's own scale: element-wise, so one
    # call covers every window size at once.
    acc_f, scale = _nhwc_accumulator_and_scale(sums, size, x)
    return fbgemm_quantize_u8s8(acc_f, scale, x.zero_point, x.dtype, profile)


def nhwc_scalar_tail(sums: np.ndarray, size: np.ndarray, x: QTensor, profile: NumericsProfile) -> np.ndarray:
    """The NHWC kernel's last `C % 8` channels (`quantize_val`) for window sums `sums` of `size` taps."""
    acc_f, scale = _nhwc_accumulator_and_scale(sums, size, x)
    return quantize_val(acc_f, scale, x.zero_point, x.dtype, profile)
