"""Helpers shared by the element-wise, pooling and cat references: argument checks,
pooling window arithmetic (output sizes, window sums) and the NHWC-kernel routing.
Private to reference.ops."""

from __future__ import annotations

import numpy as np

from .._arguments import ArgumentError, int_tuple
from ..numerics import cvt_rne, f32, ieee_float_ops, normal_scale_f32, pack_u8
from ..qtensor import MemoryFormat, QDtype, QTensor, memory_format_of
from ._tensor_iterator import orders_coincide


def check_per_tensor_8bit(q: QTensor, op: str, name: str) -> None:
    """Refuse inputs the 8-bit per-tensor kernels of `op` do not specify."""
    if not isinstance(q, QTensor):
        raise TypeError(f"{op}: {name} must be a QTensor, got {type(q).__name__}")
    if q.per_channel:
        raise ValueError(f"{op}: {name} is per-channel (axis={q.axis}); only per-tensor qparams are supported")
    if q.dtype not in (QDtype.quint8, QDtype.qint8):
        raise ValueError(f"{op}: {name} has dtype {q.dtype.label}; expected quint8 or qint8")


def check_4d(q: QTensor, op: str, name: str) -> None:
    """Refuse anything but a 4-d NCHW tensor."""
    if q.int_repr.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-d (N, C, H, W), got shape {q.shape}")


def pair(value: int | tuple[int, ...] | list[int], name: str, op: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or a 1-/2-sequence of ints (>= `minimum`) as (height, width), like ATen's pooling
    argument parsing; ArgumentError naming `name` otherwise."""
    if type(value) is int and (minimum is None or value >= minimum):  # the common case, without int_tuple's ~10 us
        return value, value
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    try:
        first, second = int_tuple(value, name, 2, minimum)
    except ArgumentError as error:
        raise ArgumentError(f"{op}: {error}") from None
    return first, second


def pool_stride(stride: int | tuple[int, ...] | list[int] | None, kernel: tuple[int, int], op: str) -> tuple[int, int]:
    """A pooling stride as (height, width): the kernel size when None or empty (TorchScript's
    default is [])."""
    if stride is None or (isinstance(stride, (list, tuple, np.ndarray)) and len(stride) == 0):
        return kernel
    return pair(stride, "stride", op, minimum=1)


def pooling_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """ATen `pooling_output_shape` (Pool.h): integer arithmetic, floor or ceil division.

    `out = floor_or_ceil((size + 2*pad - dilation*(kernel-1) - 1) / stride) + 1`; in ceil
    mode the last window must start inside the input or the left padding, else it is dropped.
    """
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def window_sums(
    values: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The exact integer sum of every window of `values` (N, C, H, W; int64), (N, C, OH, OW),
    and the window sizes (OH, OW). Window (i, j) spans rows [rows[0][i], rows[1][i]) and
    columns [cols[0][j], cols[1][j]), already clipped to the input.

    2-d prefix sums: `P[r, c]` = sum of `values[:r, :c]`, and a window's sum is
    `P[r1, c1] - P[r0, c1] - P[r1, c0] + P[r0, c0]` (integers: exact).

    >>> rows, cols = (np.array([0]), np.array([2])), (np.array([1]), np.array([2]))  # rows 0-1, column 1
    >>> sums, size = window_sums(np.arange(4).reshape(1, 1, 2, 2), rows, cols)  # [[0, 1], [2, 3]]
    >>> sums.tolist(), size.tolist()  # 1 + 3, a 2 x 1 window
    ([[[[4]]]], [[2]])
    """
    n, c, h, w = values.shape
    # In the input's memory order, each running-sum step below is one vectorized add over
    # whole rows: NumPy's cumsum loops element by element, which is slower (docs/speed.md).
    if memory_format_of(values) is MemoryFormat.channels_last:
        prefix = np.zeros((n, h + 1, w + 1, c), np.int64).transpose(0, 3, 1, 2)
    else:
        prefix = np.zeros((n, c, h + 1, w + 1), np.int64)
    prefix[:, :, 1:, 1:] = values
    for row in range(2, h + 1):
        prefix[:, :, row] += prefix[:, :, row - 1]
    for col in range(2, w + 1):
        prefix[:, :, :, col] += prefix[:, :, :, col - 1]
    (r0, r1), (c0, c1) = rows, cols
    sums = (
        prefix[:, :, r1[:, None], c1[None, :]]
        - prefix[:, :, r0[:, None], c1[None, :]]
        - prefix[:, :, r1[:, None], c0[None, :]]
        + prefix[:, :, r0[:, None], c0[None, :]]
    )
    return sums, (r1 - r0)[:, None] * (c1 - c0)[None, :]


def takes_nhwc_kernel(q: QTensor) -> bool:
    """ATen's `input.is_contiguous(ChannelsLast)`, the test the pooling and cat ops route on.

    True for channels_last tensors, and also for NCHW tensors with C == 1 or H*W == 1,
    whose NCHW memory is also valid NHWC memory.
    """
    return q.memory_format is MemoryFormat.channels_last or orders_coincide(q.shape)


def nhwc_kernel_result(logical: np.ndarray, x: QTensor) -> tuple[np.ndarray, MemoryFormat]:
    """What torch returns when an NHWC pooling kernel computed `logical` (NCHW index order)
    from input `x`: the integers in NCHW index order, and the output's memory format.

    The output is allocated in the input's `suggest_memory_format()`, but the NHWC kernel
    always writes NHWC memory. An input with H*W == 1 has NCHW strides in torch
    (`contiguous(memory_format=channels_last)` leaves them: they are already valid
    channels-last strides), so its output is allocated NCHW: when the output has C > 1
    and more than one pixel, torch reads the NHWC-ordered memory back as NCHW and returns
    `nhwc_memory.reshape(N, C, OH, OW)`, a scrambled result (measured on 2.13 and 2.14.1).
    Otherwise this is `logical` in the input's memory format.
    """
    _, _, height, width = x.shape
    if height * width != 1:
        return logical, x.memory_format
    scrambled = np.ascontiguousarray(logical.transpose(0, 2, 3, 1)).reshape(logical.shape)
    return scrambled, MemoryFormat.contiguous


def qnnpack_average(acc: np.ndarray, count: int, q: QTensor) -> np.ndarray:
    """pytorch_qnnpack's average-pooling output stage (kernels `q8avgpool`, `q8gavgpool`, SSE2;
    parameters `pytorch_qnnp_compute_avgpool_quantization_params`) for window sums
    `acc = sum (q - zp)` of `count` taps, input and output qparams both q's:
      s = f32(float(scale) / f32(float(scale) * float(count)))   `input_scale / (output_scale * (float)n)`
      out = pack_u8(cvt(f32(float(acc) * s)), zp)
    `s` is not always exactly 1 / count (count 9 with most scales). A scale that is not a
    positive normal float32 is refused (EngineRefusedError).

    Hand-worked, scale 0.5, zp 3, count 4: s = 0.5 / 2 = 0.25; acc 6 -> 1.5 -> 2 -> 5;
    acc -2 -> -0.5 -> -0 -> 3.

    >>> qnnpack_average(np.array([6, -2]), 4, QTensor(np.zeros(1, np.uint8), 0.5, 3, "quint8")).tolist()
    [5, 3]
    """
    scale = normal_scale_f32(q.scale, "average pooling scale")
    with ieee_float_ops():
        multiplier = f32(scale / f32(scale * np.float32(count)))
        r = cvt_rne(f32(f32(acc) * multiplier))
    return pack_u8(r, q.zero_point)
