"""Float ops of the float islands a converted model keeps (dequantize -> float ops -> quantize).

These run on float32 arrays, not QTensors, so they live in their own table `FLOAT_OPS`
(torch op name -> function) next to the quantized registry `OPS`, which shares some
names (`aten::relu` on a quantized tensor is a different kernel).

Exact: slicing, constant padding, relu, dropout in eval mode, element-wise add (IEEE
float32, one rounding per element; ATen's `a + alpha*b` is one fma, exact for alpha 1),
flatten/view, max_pool2d and avg_pool2d (verified: 90,632 outputs each, 0 mismatches, 2.13
and 2.14, NCHW and channels_last, 1 and 2 threads; their vectorized form again on 119,100
outputs of 600 random geometries with NaN/inf, 0 mismatches, 2.13.0 and 2.14.1). Float adaptive_avg_pool2d is not
provided: its window bounds and division order are not modelled yet (a plain row-major
sum divided by kh then kw misses ~1% of outputs).

`aten::linear` and `aten::conv2d` hand their float32 sums to MKL / oneDNN, whose order
depends on the library release and the CPU vendor: `NumericsProfile.float_gemm` names it.
Under "mkl2024.2-amd" (torch 2.13.0 / 2.14.1 on AMD) the shapes of the verified set are
computed in that order, bit-exact (`_float_gemm`: MKL SGEMM's gemv / dot / fma kernels,
ATen's use_mkldnn backend choice, oneDNN's fma chains). Under "unspecified", and outside
the verified set, both sum exactly in float64 and round once (correctly rounded up to the
float64 sum's own error): torch can differ in the last bit, a following quantize can then
differ by 1 at a tie, and node-by-node verification reports such nodes.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .._registry import registrar
from ..numerics import f32, fma32, ieee_float_ops
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, memory_format_of
from . import _float_gemm
from ._pool_common import pair, pooling_output_size

FLOAT_OPS: dict[str, Callable] = {}
_float_op = registrar(FLOAT_OPS, "float op")


def _float32(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"{name} expects a float32 array, got {getattr(x, 'dtype', type(x).__name__)}")
    return x


@_float_op("aten::relu", "aten::relu_")
def relu(x: np.ndarray) -> np.ndarray:
    """`torch.relu` of float32: `max(x, 0)`, NaN stays NaN; exact.

    >>> relu(np.array([-1.5, 0.0, 2.5], np.float32)).tolist()
    [0.0, 0.0, 2.5]
    """
    x = _float32(x, "relu")
    return np.where(np.isnan(x) | (x > 0), x, np.float32(0)).astype(np.float32)


@_float_op("aten::add", "aten::add_")
def add(a: np.ndarray, b: np.ndarray, alpha: float = 1) -> np.ndarray:
    """`torch.add(a, b, alpha=alpha)` of float32 arrays (broadcasting): `fma32(b, alpha, a)`,
    ATen's `a + alpha * b` contracted into one fma; for alpha 1 that is `f32(a + b)`.

    >>> add(np.array([0.1], np.float32), np.array([0.2], np.float32)).tolist() == [np.float32(0.1) + np.float32(0.2)]
    True
    """
    a, b = _float32(a, "add"), _float32(b, "add")
    if alpha == 1:
        return f32(a + b)
    return fma32(b, np.float32(alpha), a)


@_float_op("aten::slice")
def slice_(
    x: np.ndarray, dim: int = 0, start: Optional[int] = None, end: Optional[int] = None, step: int = 1
) -> np.ndarray:
    """`x[..., start:end:step]` along `dim` (`aten::slice`, a view); exact. torch clamps
    out-of-range bounds as Python slicing does (end = 2^63 - 1 means "to the end").

    >>> slice_(np.arange(6, dtype=np.float32), 0, 0, None, 2).tolist()
    [0.0, 2.0, 4.0]
    """
    if step < 1:
        raise ValueError(f"slice step must be positive, got {step}")
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, end, step)
    return x[tuple(index)]


@_float_op("aten::pad", "aten::constant_pad_nd")
def pad(x: np.ndarray, pads: Sequence[int], mode: str = "constant", value: Optional[float] = None) -> np.ndarray:
    """`F.pad(x, pads, "constant", value)`: pads given from the LAST dimension backwards
    as (before, after) pairs; negative pads crop. Exact.

    >>> pad(np.ones((1, 2), np.float32), (1, 0)).tolist()
    [[0.0, 1.0, 1.0]]
    """
    if mode != "constant":
        raise ValueError(f"pad mode {mode!r} is not supported; only 'constant'")
    if len(pads) % 2 or len(pads) // 2 > x.ndim:
        raise ValueError(f"pad needs (before, after) pairs for at most {x.ndim} dims, got {list(pads)}")
    fill = np.float32(0 if value is None else value)
    result = x
    for i in range(len(pads) // 2):
        dim = x.ndim - 1 - i
        before, after = int(pads[2 * i]), int(pads[2 * i + 1])
        result = _pad_dim(result, dim, before, after, fill)
    return result


def _pad_dim(x: np.ndarray, dim: int, before: int, after: int, fill: np.float32) -> np.ndarray:
    length = x.shape[dim]
    index = [slice(None)] * x.ndim
    index[dim] = slice(max(0, -before), length - max(0, -after))
    cropped = x[tuple(index)]
    widths = [(0, 0)] * x.ndim
    widths[dim] = (max(0, before), max(0, after))
    return np.pad(cropped, widths, constant_values=fill)


@_float_op("aten::dropout", "aten::dropout_", "aten::feature_dropout")
def dropout(x: np.ndarray, p: float = 0.5, train: bool = False) -> np.ndarray:
    """`F.dropout(x, p, training=False)`: the identity (a converted model is in eval mode).

    >>> dropout(np.ones(2, np.float32), 0.5, False).tolist()
    [1.0, 1.0]
    """
    if train:
        raise ValueError("dropout with train=True is random; a converted model runs in eval mode")
    return x


@_float_op("aten::flatten")
def flatten(x: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """`torch.flatten` of a float array (row-major); exact.

    >>> flatten(np.zeros((2, 3, 1, 1), np.float32), 1).shape
    (2, 3)
    """
    ndim = max(x.ndim, 1)
    start, end = start_dim % ndim, end_dim % ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1 :])


@_float_op("aten::view", "aten::reshape")
def view(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """`x.view(shape)` / `x.reshape(shape)` of a float array (row-major); exact.

    >>> view(np.zeros(6, np.float32), (2, -1)).shape
    (2, 3)
    """
    return x.reshape(tuple(int(s) for s in shape))


@_float_op("aten::linear")
def linear(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    profile: NumericsProfile = DEFAULT_PROFILE,
    num_threads: int = 1,
) -> np.ndarray:
    """`F.linear(x, weight, bias)` in float32; `num_threads` is torch's thread count.

    Under `profile.float_gemm == "mkl2024.2-amd"`, for a 2-d input with a bias (ATen's
    `addmm` -> MKL SGEMM('T','N', out, batch, in), C = bias, beta 1) whose shape is in the
    verified set (`_float_gemm.sgemm_order_known`: >= 4 outputs, batch <= 1024,
    K <= 1024, M <= 1024, K % 8 == 0 unless batch >= 4 and M >= 12, 1 or 2 threads, not a
    batch of 5-7 or 9-11 with 2 threads, which MKL splits): MKL's own float32
    order, bit-exact (`_float_gemm.mkl_sgemm_tn`: gemv for batch 1, 4/8-lane dot
    products without fma for batch 2-3 or < 12 outputs, else fma chains per 192-K block).
    Otherwise (profile "unspecified", no bias, other ranks or shapes): today's computation,
    `f32(sum_k x[k] * w[j, k] + bias[j])` summed in float64 (exact products, one float64
    rounding per add) and rounded once; torch can differ in the last bit there.

    Hand-worked (float64 path): 1*3 + 2*4 + 0.5 = 11.5 exactly.

    >>> linear(np.array([[1, 2]], np.float32), np.array([[3, 4]], np.float32), np.array([0.5], np.float32)).tolist()
    [[11.5]]
    """
    x, weight = _float32(x, "linear"), _float32(weight, "linear")
    if bias is not None:
        bias = _float32(bias, "linear bias")
    if (
        profile.float_gemm == "mkl2024.2-amd" and bias is not None and x.ndim == 2 and weight.ndim == 2
        and _float_gemm.sgemm_order_known(x.shape[0], weight.shape[0], x.shape[1], num_threads)
    ):
        return _float_gemm.mkl_sgemm_tn(x, weight, bias)
    total = x.astype(np.float64) @ weight.astype(np.float64).T
    if bias is not None:
        total = total + bias.astype(np.float64)
    return f32(total)


@_float_op("aten::conv2d")
def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
    *,
    profile: NumericsProfile = DEFAULT_PROFILE,
    num_threads: int = 1,
) -> np.ndarray:
    """`F.conv2d` in float32; `x` holds NCHW values, its strides say torch's memory format
    (channels_last strides, as the interpreter's dequantize of a channels_last tensor
    gives, select the channels_last kernels); `num_threads` is torch's thread count.

    Under `profile.float_gemm == "mkl2024.2-amd"`, with a bias, groups 1, dilation 1, a 3x3
    kernel and 1 or 2 threads (the verified set, `_float_gemm.conv_order_known`): the backend
    ATen's `ConvParams::use_mkldnn` picks, bit-exact: oneDNN (one fma chain per output over
    (kh, kw, ic), + bias; NCHW with C > 16 on AVX-512, jit:avx512_core: a chain per 16
    channels; NCHW on AVX2 (`profile.avx512` false), jit:avx2: one chain from the bias over
    8-channel blocks) or slow_conv2d (im2col + MKL SGEMM, see `linear`). Otherwise (profile
    "unspecified" or outside that set): today's computation, summed in float64 and rounded
    once; torch can differ in the last bit.

    Hand-worked (float64 path): four taps 1*1 sum to 4.

    >>> conv2d(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32)).tolist()
    [[[[4.0]]]]
    """
    x, weight = _float32(x, "conv2d"), _float32(weight, "conv2d")
    if isinstance(padding, str):
        raise ValueError(f"string padding {padding!r} is not supported; give explicit pads")
    if bias is not None:
        bias = _float32(bias, "conv2d bias")
    stride, padding, dilation = (
        pair(v, name, "aten::conv2d") for v, name in ((stride, "stride"), (padding, "padding"), (dilation, "dilation"))
    )
    n, c, h, w = x.shape
    oc, cpg, kh, kw = weight.shape
    if c != cpg * groups or oc % groups:
        raise ValueError(f"conv2d: input channels {c} and weight {weight.shape} do not match groups {groups}")
    if profile.float_gemm == "mkl2024.2-amd" and bias is not None:
        channels_last = memory_format_of(x) is MemoryFormat.channels_last
        onednn = _float_gemm.uses_mkldnn(x.shape, (kh, kw), stride, dilation, groups, num_threads)
        out_size = ((h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1)
        if _float_gemm.conv_order_known(weight.shape, out_size, dilation, groups, channels_last, onednn, num_threads,
                                        avx512=profile.avx512):
            return _float_gemm.conv2d(x, weight, bias, stride, padding, channels_last, onednn, avx512=profile.avx512)
    return _conv2d_float64(x, weight, bias, stride, padding, dilation, groups)


def _conv2d_float64(x, weight, bias, stride, padding, dilation, groups) -> np.ndarray:
    """Every output summed exactly in float64 (products exact) and rounded once to float32."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oc, cpg, kh, kw = weight.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (n, c, oh, ow, kh, kw)
    outputs = []
    per_group = oc // groups
    for g in range(groups):
        patch = windows[:, g * cpg : (g + 1) * cpg]
        kernel = weight[g * per_group : (g + 1) * per_group].astype(np.float64)
        outputs.append(np.einsum("ncyxij,ocij->noyx", patch, kernel))
    total = np.concatenate(outputs, axis=1)
    if bias is not None:
        total = total + bias.astype(np.float64).reshape(1, -1, 1, 1)
    return f32(total)


@_float_op("aten::hardsigmoid", "aten::hardsigmoid_")
def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """`F.hardsigmoid` of float32: `f32(min(max(f32(x + 3), 0), 6) / 6)` per element, a true
    division (measured: 100,000 values, 0 mismatches; multiplying by `f32(1/6)` misses 18%).

    >>> hardsigmoid(np.array([0.0, 3.0, -4.0], np.float32)).tolist()
    [0.5, 1.0, 0.0]
    """
    x = _float32(x, "hardsigmoid")
    return f32(np.minimum(np.maximum(f32(x + np.float32(3)), np.float32(0)), np.float32(6)) / np.float32(6))


@_float_op("aten::max_pool2d")
def max_pool2d(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    ceil_mode: bool = False,
) -> np.ndarray:
    """`F.max_pool2d` of float32 NCHW: the max over each window's valid taps (padding never
    wins; NaN propagates). Exact.

    >>> max_pool2d(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), [2, 2]).tolist()
    [[[[3.0]]]]
    """
    x = _float32(x, "max_pool2d")
    rows, cols = _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "aten::max_pool2d")
    windows = _pool_taps(x, rows, cols, fill=np.float32(-np.inf))  # -inf taps never win
    return windows.max(axis=(4, 5), initial=np.float32(-np.inf))  # np.maximum propagates NaN


@_float_op("aten::avg_pool2d")
def avg_pool2d(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] = (0, 0),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> np.ndarray:
    """`F.avg_pool2d` of float32 NCHW (`cpu_avg_pool2d`): a float32 sum over the valid taps
    in row-major order from 0, divided once by `divisor_override`, else the window size
    clipped to the padded input (count_include_pad) or to the input. Exact.

    The taps outside the input read +0.0 here, which changes no sum: the running sum
    starts at +0.0 and never becomes -0.0 (a float32 add gives -0.0 only from two -0.0s).

    >>> avg_pool2d(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), [2, 2]).tolist()
    [[[[1.5]]]]
    """
    x = _float32(x, "avg_pool2d")
    rows, cols = _pool_geometry(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode, "aten::avg_pool2d")
    windows = _pool_taps(x, rows, cols, fill=np.float32(0))
    total = np.zeros(windows.shape[:4], np.float32)
    with ieee_float_ops():  # inf - inf gives NaN, as on the CPU
        for i in range(windows.shape[4]):  # row-major tap order, one float32 rounding per add
            for j in range(windows.shape[5]):
                total += windows[:, :, :, :, i, j]
    if divisor_override:
        divisor = np.full((rows.count, cols.count), divisor_override, np.float32)
    elif count_include_pad:
        divisor = np.outer(rows.padded_size, cols.padded_size).astype(np.float32)
    else:
        divisor = np.outer(rows.valid, cols.valid).astype(np.float32)
    empty = np.outer(rows.valid, cols.valid) == 0  # a window with no valid tap gives 0
    with ieee_float_ops():
        return np.where(empty, np.float32(0), total / divisor).astype(np.float32)


class _AxisWindows:
    """One axis of a pooling: output count, each window's valid taps and size clipped to the padded input."""

    def __init__(self, size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> None:
        self.count = max(pooling_output_size(size, k, p, s, d, ceil_mode), 0)
        self.kernel, self.stride, self.padding, self.dilation = k, s, p, d
        start = np.arange(self.count) * s - p
        taps = start[:, None] + np.arange(k) * d
        self.valid = ((taps >= 0) & (taps < size)).sum(axis=1)
        self.padded_size = np.minimum(start + (k - 1) * d + 1, size + p) - start
        # the padded length that holds every window: p before, what the last window needs after
        self.after = max(0, (self.count - 1) * s + (k - 1) * d + 1 - p - size) if self.count else 0


def _pool_geometry(
    shape, kernel_size, stride, padding, dilation, ceil_mode, op: str
) -> tuple[_AxisWindows, _AxisWindows]:
    kh, kw = pair(kernel_size, "kernel_size", op)
    sh, sw = pair(stride, "stride", op) if len(stride) else (kh, kw)
    ph, pw = pair(padding, "padding", op)
    dh, dw = pair(dilation, "dilation", op)
    _, _, h, w = shape
    return _AxisWindows(h, kh, sh, ph, dh, ceil_mode), _AxisWindows(w, kw, sw, pw, dw, ceil_mode)


def _pool_taps(x: np.ndarray, rows: _AxisWindows, cols: _AxisWindows, fill: np.float32) -> np.ndarray:
    """Every window's taps, (N, C, OH, OW, kh, kw), a strided view of x padded with `fill`."""
    padded = np.pad(
        x, ((0, 0), (0, 0), (rows.padding, rows.after), (cols.padding, cols.after)), constant_values=fill
    )
    spans = tuple((axis.kernel - 1) * axis.dilation + 1 for axis in (rows, cols))
    if padded.shape[2] < spans[0] or padded.shape[3] < spans[1]:
        return np.empty(x.shape[:2] + (rows.count, cols.count, rows.kernel, cols.kernel), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(2, 3))
    windows = windows[:, :, :: rows.stride, :: cols.stride, :: rows.dilation, :: cols.dilation]
    return windows[:, :, : rows.count, : cols.count]
