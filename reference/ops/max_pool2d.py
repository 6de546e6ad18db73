"""max_pool2d on quantized tensors: the exact integer maximum over each window."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .._arguments import flag
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile
from ..qtensor import MemoryFormat, QDtype, QTensor, memory_format_of
from ._pool_common import (
    check_4d,
    check_per_tensor_8bit,
    nhwc_kernel_result,
    pair,
    pool_stride,
    pooling_output_size,
    takes_nhwc_kernel,
)
from ._registry import register_op
from ._validate import check_qtensor

IntOrPair = Union[int, Sequence[int]]
Pair = tuple[int, int]
# kernel, stride, padding, dilation, output size
Window = tuple[Pair, Pair, Pair, Pair, Pair]


@register_op("quantized::max_pool2d", "aten::max_pool2d")
def max_pool2d(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair] = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.nn.functional.max_pool2d` / `torch.ops.quantized.max_pool2d` on a quantized tensor
    (`q_maxpool_2d`, quantized/cpu/Pooling.cpp).

    Integer only: each output is the max of the raw integers in its window; padded taps
    are skipped (never compared), so no float step and no rounding happens, and the
    output keeps the input's scale, zero point and dtype. Output size per dimension is
    ATen's `pooling_output_shape` (floor, or ceil with the last window starting inside
    the input). A channels_last input (`is_contiguous(ChannelsLast)`) takes the NHWC
    kernel (`qmaxpool_2d_nhwc_kernel`) and the output is channels_last; both kernels
    compute the same integers. Requires `padding <= kernel_size // 2` (torch's check).
    NCHW inputs with C == 1 or H*W == 1 also take the NHWC kernel; with H*W == 1, C > 1
    and a multi-pixel output torch returns NHWC-ordered memory read as NCHW
    (`_pool_common.nhwc_kernel_result`), which the reference reproduces.

    Hand-worked, one channel [[1, 5, 2], [7, 0, 3]], kernel 2, stride 1, padding 0:
      windows [1,5,7,0] -> 7 and [5,2,0,3] -> 5, so [[7, 5]]

    Under the qnnpack engine a quint8 input without ceil_mode takes pytorch_qnnpack's max
    pooling (`qnnpack_maxpool2d`, Pooling.cpp -> `pytorch_qnnp_create_max_pooling2d_nhwc_u8`):
    a tap outside the image reads the nearest edge pixel (its indirection buffer clamps the
    coordinates), which changes the maximum only when dilation takes the window past rows or
    columns it does not otherwise cover; computed in NHWC and returned in the input's
    suggested memory format, so an H*W == 1 input is NOT scrambled (contiguous output); a
    1x1 window is refused ("1x1 pooling is meaningless", EngineRefusedError).
    Hand-worked, [10, 20, 30] as (1, 3, 1, 1), kernel 2, stride 1, padding 1: each channel's
    2x2 output is its own value under qnnpack; ATen returns the NHWC memory read as NCHW.
    And one column [5, 1, 2], kernel (2, 1), padding (1, 0), dilation (2, 1): the outputs
    take rows (-1, 1), (0, 2), (1, 3); ATen [1, 5, 1]; qnnpack reads row 0 for -1 and row 2
    for 3: [5, 5, 2].

    >>> import numpy as np
    >>> from quantspec.reference.profile import get_profile
    >>> q = QTensor(np.array([[[[1, 5, 2], [7, 0, 3]]]], np.uint8), 0.5, 3, "quint8")
    >>> max_pool2d(q, 2, stride=1).int_repr.tolist()
    [[[[7, 5]]]]
    >>> pixel = QTensor(np.array([10, 20, 30], np.uint8).reshape(1, 3, 1, 1), 0.5, 3, "quint8")
    >>> max_pool2d(pixel, 2, 1, 1).int_repr.ravel().tolist()
    [10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30]
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> max_pool2d(pixel, 2, 1, 1, profile=qnnpack).int_repr.ravel().tolist()
    [10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30]
    >>> column = QTensor(np.array([5, 1, 2], np.uint8).reshape(1, 1, 3, 1), 0.5, 3, "quint8")
    >>> max_pool2d(column, (2, 1), 1, (1, 0), (2, 1)).int_repr.ravel().tolist()
    [1, 5, 1]
    >>> max_pool2d(column, (2, 1), 1, (1, 0), (2, 1), profile=qnnpack).int_repr.ravel().tolist()
    [5, 5, 2]
    """
    window, qnnpack = checked_arguments(x, kernel_size, stride, padding, dilation, ceil_mode, profile)
    return pooled_qtensor(_window_max(x.int_repr, *window, edge_padding=qnnpack), x, qnnpack)


def checked_arguments(
    x: QTensor,
    kernel_size: IntOrPair,
    stride: Optional[IntOrPair],
    padding: IntOrPair,
    dilation: IntOrPair,
    ceil_mode: bool,
    profile: NumericsProfile,
) -> tuple[Window, bool]:
    """`max_pool2d`'s arguments checked: the window (kernel, stride, padding, dilation, output
    size, each a pair) and whether pytorch_qnnpack's kernel (edge padding) computes it."""
    check_qtensor(x, "x")
    kh, kw = pair(kernel_size, "kernel_size", "max_pool2d", minimum=1)
    sh, sw = pool_stride(stride, (kh, kw), "max_pool2d")
    ph, pw = pair(padding, "padding", "max_pool2d", minimum=0)
    dh, dw = pair(dilation, "dilation", "max_pool2d", minimum=1)
    flag(ceil_mode, "ceil_mode")
    profile = as_profile(profile)
    check_per_tensor_8bit(x, "max_pool2d", "x")
    check_4d(x, "max_pool2d", "x")
    _check_window(kh, kw, sh, sw, ph, pw, dh, dw)
    _, _, height, width = x.shape
    oh = pooling_output_size(height, kh, ph, sh, dh, ceil_mode)
    ow = pooling_output_size(width, kw, pw, sw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"max_pool2d: output size ({oh}, {ow}) from input {x.shape} is too small")
    qnnpack = profile.engine == "qnnpack" and x.dtype is QDtype.quint8 and not ceil_mode
    if qnnpack and kh * kw == 1:
        raise EngineRefusedError("pytorch_qnnpack refuses max pooling with a 1x1 window")
    return ((kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)), qnnpack


def pooled_qtensor(ints: np.ndarray, x: QTensor, qnnpack: bool) -> QTensor:
    """The window maxima `ints` (NCHW-indexed) as the QTensor torch returns for input `x`."""
    _, _, height, width = x.shape
    memory_format = x.memory_format
    if qnnpack:
        memory_format = MemoryFormat.contiguous if height * width == 1 else x.memory_format
    elif takes_nhwc_kernel(x):
        ints, memory_format = nhwc_kernel_result(ints, x)
    return QTensor(ints, x.scale, x.zero_point, x.dtype, memory_format=memory_format)


def _window_max(
    values: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
    edge_padding: bool = False,
) -> np.ndarray:
    """Max over dilated windows; padding is filled with the dtype's lowest value, which
    never wins over a real tap (every window holds at least one, as padding <= k // 2), or
    with `edge_padding` repeats the nearest edge pixel (pytorch_qnnpack's clamped taps).
    Works in the input's memory order (an NHWC buffer stays NHWC: each tap is then a run
    of whole pixels) and returns the result in the same order, as an NCHW-indexed view."""
    (kh, kw), (sh, sw), _, (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_size
    padded, (h_axis, w_axis) = padded_in_memory_order(values, kernel, stride, padding, dilation, out_size, edge_padding)
    result = None
    for i in range(kh):
        for j in range(kw):
            tap = [slice(None)] * 4
            tap[h_axis] = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            tap[w_axis] = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            result = padded[tuple(tap)].copy() if result is None else np.maximum(result, padded[tuple(tap)], out=result)
    return result.transpose(0, 3, 1, 2) if h_axis == 1 else result


def padded_in_memory_order(
    values: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
    edge_padding: bool,
) -> tuple[np.ndarray, tuple[int, int]]:
    """`values` (NCHW-indexed) padded for the windows, in its memory order (NHWC axes for an
    NHWC buffer), and the (H, W) axes of the result: the dtype's lowest value around it, or
    with `edge_padding` the nearest edge pixel."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_size
    channels_last = memory_format_of(values) is MemoryFormat.channels_last
    work = values.transpose(0, 2, 3, 1) if channels_last else values
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    # Pad enough on the bottom/right for ceil-mode windows that run past the input.
    extra_h = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - values.shape[2] - ph)
    extra_w = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - values.shape[3] - pw)
    pad_width = [(0, 0)] * 4
    pad_width[h_axis], pad_width[w_axis] = (ph, extra_h), (pw, extra_w)
    if edge_padding:
        return np.pad(work, pad_width, mode="edge"), (h_axis, w_axis)
    # np.pad(work, pad_width, constant_values=lowest), without its ~30 us of Python
    padded = np.full([n + before + after for n, (before, after) in zip(work.shape, pad_width)],
                     np.iinfo(values.dtype).min, values.dtype)
    padded[tuple(slice(before, before + n) for n, (before, _) in zip(work.shape, pad_width))] = work
    return padded, (h_axis, w_axis)


def _check_window(kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int) -> None:
    if min(kh, kw) <= 0 or min(sh, sw) <= 0 or min(dh, dw) <= 0:
        raise ValueError(
            f"max_pool2d: kernel_size ({kh}, {kw}), stride ({sh}, {sw}) and dilation ({dh}, {dw}) must be positive"
        )
    if ph < 0 or pw < 0 or ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"max_pool2d: padding ({ph}, {pw}) must be between 0 and half the kernel ({kh}, {kw})")
