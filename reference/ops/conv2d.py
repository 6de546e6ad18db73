"""quantized::conv2d / conv2d_relu: quint8 NCHW activations x qint8 weights -> quint8 (fbgemm, qnnpack).

The plain definition. `quantspec.reference.fast.conv2d` computes the same integers quickly
(and is checked equal to this one); the interpreter runs that one. Which library's kernel
runs is `NumericsProfile.conv2d_library` (the x86 engine picks FBGEMM or oneDNN at prepack).
oneDNN's AVX2 kernels are specified (`onednn_conv_kernel` names which one runs); its AVX512
kernels are not.

pytorch_qnnpack sums every conv exactly (`numerics.dot_u8u8acc32_qnnpack_ref`: dense,
depthwise and grouped alike) and has one output stage. FBGEMM picks one of four kernels for
a 2-d convolution (`fbgemm::ConvFastPath`, FbgemmConv.cc); `conv_path` names it. All four
form the same sum over the window in the same K order, (kh, kw, c) within a group, and
requantize it the same way. They differ only in whether adjacent products are added in
int16-saturated pairs (`vpmaddubsw`) first:

| path | kernel | pairs saturate |
|---|---|---|
| depthwise | JIT AVX2 kernel (GenerateI8Depthwise.cc), `vpmaddubsw` even on VNNI | always |
| groupwise, pointwise, im2col | GEMM-like: `vpdpbusd` (exact) on VNNI, else `vpmaddubsw` | `gemm_pairs_saturate` |

and in one requantization step: the depthwise kernel's per-tensor bias is fused into an fma
on torch 2.13 and not on 2.14 (`profile.depthwise_per_tensor_bias_fma`); the others fuse it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._arguments import flag, int_tuple, integer
from ..numerics import (
    dot_u8i8acc32_onednn_conv_ref,
    dot_u8i8acc32_ref,
    dot_u8u8acc32_qnnpack_ref,
    requant_scales_onednn_ref,
    requant_scales_qnnpack_ref,
    requant_scales_ref,
    requantize_u8acc32_onednn_ref,
    requantize_u8acc32_qnnpack_ref,
    requantize_u8acc32_ref,
)
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile, specified_library
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import quantize_bias_qnnpack
from ._registry import register_op
from ._validate import check_qtensor, checked_bias, output_qparams
from .linear import refuse_asymmetric_onednn_weight


@register_op("quantized::conv2d")
def conv2d(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.conv2d(x, conv2d_prepack(weight, bias, stride, padding, dilation, groups), scale, zp)`.

    fbgemm (and x86 where it packs FBGEMM's weight): ATen `PackedConvWeight<2>::apply_impl` ->
    `fbgemm::fbgemmConv`, whose reference is `fbgemm::conv_ref` + `requantize_u8acc32_ref` (RefImplementations.cc).
    Output pixel (n, oh, ow), output channel j of group g, K = kh * kw * C/G:
      a[k] = x[n, g*C/G + c, oh*sh - ph + r*dh, ow*sw - pw + s*dw]   for k = (r, s, c) in that order,
             a_zp where the tap falls outside the image (FBGEMM pads with the zero point)
      acc = dot_u8i8acc32_ref(a, a_zp, w[j, :, r, s] in the same K order, w_zp[j], pairs saturate)
      out = requantize_u8acc32_ref(acc, bias, requant_scales_ref(x_scale, w_scale, out_scale), ...)
    where pairs saturate on the depthwise path always and elsewhere when
    `profile.gemm_pairs_saturate` (no VNNI), and the per-tensor bias fma is fused except on
    the depthwise path when `profile.depthwise_per_tensor_bias_fma` is false (module
    docstring).
    qnnpack (`PackedConvWeightsQnnp<2>::apply_impl`, qconv.cpp -> `q8conv`, `q8dwconv`, or
    `q8gemm` for 1x1): the same windows, the bias quantized to int32 and summed exactly:
      acc = dot_u8u8acc32_qnnpack_ref(a, a_zp, w[j, :, r, s], w_zp[j], qnnpack_conv_bias(bias, ...)[j])
      out = requantize_u8acc32_qnnpack_ref(acc, requant_scales_qnnpack_ref(x_scale, w_scale, out_scale), ...)
    torch recomputes the int32 bias and the scales only when the input scale differs from
    the previous call's; the reference is stateless (docs/spec.md, Engines).
    onednn, AVX2 (`PackedConvWeightsOnednn<2>::apply_impl` -> ideep `convolution_forward` -> oneDNN;
    symmetric weights only): the same windows by tap, taps outside the image skipped, and
      acc = dot_u8i8acc32_onednn_conv_ref(taps, a_zp, w[j, (r, s), c], valid, pairs saturate)
      out = requantize_u8acc32_onednn_ref(acc, bias, requant_scales_onednn_ref(..., "conv2d", ...), zp, relu)
    where pairs (adjacent input channels of one tap) saturate in the "jit" kernel, never in the
    "depthwise" and "ref" kernels (`onednn_conv_kernel`), and the "ref" kernel multiplies by the
    source and weight scales in turn (`requant_scales_onednn_ref`). With the depthwise example
    below oneDNN sums exactly, as qnnpack: 128.
    The output is quint8 in channels_last memory (as ATen allocates it, on every engine);
    `int_repr` is in logical NCHW order.

    Hand-worked depthwise pair saturation (8 channels, 3x3, pad 1, all a = 255, a_zp 255,
    w = 127 everywhere, 1x1 image; only the center tap (4) is inside):
      every tap reads 255; pairs (0,1), (2,3), (4,5), (6,7): 255*127*2 = 64770 -> 32767 each,
      tap 8 alone 32385: S = 4*32767 + 32385 = 163453
      acc = S - a_zp * sum(w) = 163453 - 255*9*127 = 163453 - 291465 = -128012
      (the exact sum is 0: (255-255)*127). With atws 1*1 = 1, out scale 1000 (mult 0.001),
      zp 128: -128012 * 0.001 = -128.012 -> -128; -128 + 128 = 0.
    qnnpack sums exactly: acc = 0 -> 0 + 128 = 128.

    >>> from quantspec.reference.profile import get_profile
    >>> x = QTensor(np.full((1, 8, 1, 1), 255, np.uint8), 1.0, 255, "quint8")
    >>> w = QTensor(np.full((8, 1, 3, 3), 127, np.int8), 1.0, 0, "qint8")
    >>> out = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128)
    >>> out.int_repr.ravel().tolist()
    [0, 0, 0, 0, 0, 0, 0, 0]
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128, profile=qnnpack).int_repr.ravel().tolist()
    [128, 128, 128, 128, 128, 128, 128, 128]
    >>> onednn = get_profile("torch2.13-avx2-onednn")
    >>> conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128, profile=onednn).int_repr.ravel().tolist()
    [128, 128, 128, 128, 128, 128, 128, 128]
    """
    checked = check_conv_arguments(x, weight, stride, padding, dilation, groups, relu, profile)
    profile, stride, padding, dilation = checked
    out_channels, kernel = check_conv_inputs(x, weight, groups)
    path = conv_path(x.shape[1], out_channels, kernel, stride, padding, dilation, groups, profile)  # checks geometry
    library = specified_library(profile.conv2d_library(weight.zero_point, groups), "quantized::conv2d", profile)
    bias32 = checked_bias(bias, out_channels)
    out = output_qparams(output_scale, output_zero_point, QDtype.quint8)
    windows, w_k, w_zp = conv_gemm_operands(x, weight, stride, padding, dilation, groups)
    if library == "onednn":
        refuse_asymmetric_onednn_weight(w_zp)
        acc = onednn_conv_acc(x, windows, w_k, kernel, (stride, padding, dilation), groups)
        kernel_name = onednn_conv_kernel(x.shape[1], out_channels, groups)
        scales = requant_scales_onednn_ref(x.scale, weight.scale, out.scale, "conv2d", weight.per_channel, kernel_name)
        nhwc = requantize_u8acc32_onednn_ref(acc, bias32, scales, out.zero_point, relu, kernel_name)
    elif library == "qnnpack":
        # PackedConvWeightsQnnp::apply_impl (qconv.cpp): the int32 bias joins the exact sums.
        bias_q = qnnpack_conv_bias(bias32, x.scale, weight, kernel, stride, padding, profile)
        bias_by_group = [None] * groups if bias_q is None else bias_q.reshape(groups, -1)
        acc = _by_group(
            windows, lambda a, g: dot_u8u8acc32_qnnpack_ref(a, x.zero_point, w_k[g], w_zp[g], bias_by_group[g])
        )
        requant = requant_scales_qnnpack_ref(x.scale, weight.scale, out.scale)
        nhwc = requantize_u8acc32_qnnpack_ref(acc, requant, out.zero_point, relu)
    else:
        pairs_saturate = path == "depthwise" or profile.gemm_pairs_saturate
        acc = _by_group(
            windows, lambda a, g: dot_u8i8acc32_ref(a, x.zero_point, w_k[g], w_zp[g], pairs_saturate)
        )
        fused = path != "depthwise" or profile.depthwise_per_tensor_bias_fma
        scales = requant_scales_ref(x.scale, weight.scale, out.scale)
        nhwc = requantize_u8acc32_ref(acc, bias32, scales, weight.per_channel, out.zero_point, relu, fused)
    nchw = nhwc.transpose(0, 3, 1, 2)  # a view of the NHWC buffer: channels_last
    return QTensor(nchw, out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.channels_last)


@register_op("quantized::conv2d_relu")
def conv2d_relu(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    output_scale: float,
    output_zero_point: int,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantized::conv2d_relu`: `conv2d(..., relu=True)`; outputs are clamped below at the zero point.

    Hand-worked 1x1 conv, a = 3 (zp 1), w = -2, scales 1, output zp 10:
      acc = (3-1)*(-2) = -4 -> -4 + 10 = 6 -> relu clamps to 10

    >>> x = QTensor(np.full((1, 1, 1, 1), 3, np.uint8), 1.0, 1, "quint8")
    >>> w = QTensor(np.full((1, 1, 1, 1), -2, np.int8), 1.0, 0, "qint8")
    >>> conv2d_relu(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1.0, 10).int_repr.ravel().tolist()
    [10]
    """
    return conv2d(x, weight, bias, stride, padding, dilation, groups, output_scale, output_zero_point, True, profile)


def qnnpack_conv_bias(
    bias: np.ndarray | None,
    act_scale: float,
    weight: QTensor,
    kernel: tuple[int, int],
    stride: Sequence[int],
    padding: tuple[int, int],
    profile: NumericsProfile,
) -> np.ndarray | None:
    """The int32 bias pytorch_qnnpack's conv kernels start their sums from: `quantize_bias_qnnpack`,
    except that a bias saturated at INT32_MAX enters the `q8conv` and `q8dwconv` kernels as
    INT32_MIN. Only the `q8gemm` path (1x1 kernel, stride 1, no padding; as linear) keeps
    INT32_MAX. Measured on torch 2.13.0 and 2.14.1 (all-zero windows give INT32_MIN's output,
    a window sum of -1 INT32_MAX's); where the kernels turn it over was not traced. Only a
    saturated value is affected: below, a float32 bias quantizes to 2147483520 at most.

    >>> w = QTensor(np.zeros((1, 1, 3, 3), np.int8), 1.0, 0, "qint8")
    >>> profile = DEFAULT_PROFILE
    >>> qnnpack_conv_bias(np.float32([3e9]), 1.0, w, (3, 3), (1, 1), (1, 1), profile).tolist()
    [-2147483648]
    >>> qnnpack_conv_bias(np.float32([3e9]), 1.0, w, (1, 1), (1, 1), (0, 0), profile).tolist()
    [2147483647]
    """
    bias_q = quantize_bias_qnnpack(bias, act_scale, weight.scale, profile)
    gemm_path = kernel == (1, 1) and tuple(stride) == (1, 1) and padding == (0, 0)
    if bias_q is None or gemm_path:
        return bias_q
    return np.where(bias_q == np.iinfo(np.int32).max, np.iinfo(np.int32).min, bias_q).astype(np.int32)


def onednn_conv_kernel(in_channels: int, out_channels: int, groups: int) -> str:
    """Which oneDNN kernel torch's onednn conv2d runs on an AVX2 CPU (nhwc u8 source, s8 weights):
    "jit", "depthwise" or "ref".

    `jit_uni_x8s8s32x_fwd_kernel::init_conf` (and the 1x1 kernel's) takes every conv with one
    group (channels padded to blocks of 8) and grouped convs whose channels per group, in and
    out, are both multiples of 4 (blocks of 4 or 8; oneDNN does not pad groups): "jit", whose
    `vpmaddubsw` pairs input channels. One input and one output channel per group is its
    depthwise kernel ("depthwise": `vpmaddwd` of widened values, exact). Every other grouped
    conv falls to oneDNN's reference convolution (`ref:any`, exact int32 sums).

    >>> onednn_conv_kernel(16, 32, 1), onednn_conv_kernel(16, 16, 16), onednn_conv_kernel(16, 16, 4)
    ('jit', 'depthwise', 'jit')
    >>> onednn_conv_kernel(10, 20, 5), onednn_conv_kernel(8, 16, 8)
    ('ref', 'ref')
    """
    c_per_g, k_per_g = in_channels // groups, out_channels // groups
    if groups > 1 and c_per_g == k_per_g == 1:
        return "depthwise"
    if groups == 1 or (c_per_g % 4 == 0 and k_per_g % 4 == 0):
        return "jit"
    return "ref"


def onednn_conv_acc(
    x: QTensor, windows: np.ndarray, w_k: np.ndarray, kernel: tuple[int, int], geometry: tuple, groups: int
) -> np.ndarray:
    """oneDNN's int32 accumulators (N, OH, OW, OC) from `conv_gemm_operands`' windows and weights:
    each group's K = (kh, kw, c) split into taps of C/G channels, taps outside the image
    (`onednn_tap_validity`) skipped, pairs saturating where `onednn_conv_kernel` is "jit"."""
    n, oh, ow = windows.shape[:3]
    taps, c_per_g = kernel[0] * kernel[1], x.shape[1] // groups
    saturate = onednn_conv_kernel(x.shape[1], w_k.shape[0] * w_k.shape[1], groups) == "jit"
    valid = onednn_tap_validity(x.shape[2:], kernel, *geometry, (oh, ow))

    def accumulate(a: np.ndarray, g: int) -> np.ndarray:
        w_taps = w_k[g].reshape(-1, taps, c_per_g)
        return dot_u8i8acc32_onednn_conv_ref(a.reshape(n, oh, ow, taps, c_per_g), x.zero_point, w_taps, valid, saturate)

    return _by_group(windows, accumulate)


def onednn_tap_validity(
    hw: Sequence[int],
    kernel: tuple[int, int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """(OH, OW, KH * KW) bool: whether tap (r, s) of output pixel (oh, ow) reads inside the image,
    `0 <= oh*sh - ph + r*dh < H` and likewise for the width.

    >>> onednn_tap_validity((1, 1), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)).astype(int).ravel().tolist()
    [0, 0, 0, 0, 1, 0, 0, 0, 0]
    """
    inside = []
    for d in range(2):
        position = np.arange(out_hw[d])[:, None] * stride[d] - padding[d] + np.arange(kernel[d])[None, :] * dilation[d]
        inside.append((position >= 0) & (position < hw[d]))
    rows, cols = inside
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(out_hw[0], out_hw[1], -1)


def conv_path(
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> str:
    """Which FBGEMM kernel torch's fbgemm conv2d runs: "depthwise", "groupwise", "pointwise" or "im2col".

    `fbgemm::ConvFastPath` (FbgemmConv.cc; the same in the FBGEMM of torch 2.13.0 and
    2.14.1), tried in this order:
      depthwise (`takeDepthWiseFastPath`): groups == in_channels, out_channels in
        {groups, 2*groups}, groups % 8 == 0, every stride 1 or 2, kH == kW in {3, 5, 7},
        dilation 1, padding == (k - 1) // 2 in both dims.
      groupwise (`fbgemmOptimizedGConv`): C/G == OC/G in {2, 4, 8, 16}, 3x3, padding 1,
        dilation 1, strides both 1 or both 2, and groups >= `groups_together(C/G)`: the
        only CPU-dependent condition (C/G = 2 needs G >= 8 on AVX512, G >= 4 on AVX2).
      pointwise (`takePointWiseFastPath`): 1x1, stride 1, dilation 1, padding 0 (any groups).
      im2col: everything else (the direct-conv path is for transposed convs only).
    torch's groupwise kernel is broken when groups % groups_together != 0 (nondeterministic
    outputs, heap corruption); the reference gives the intended convolution there.

    >>> conv_path(32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32)
    'depthwise'
    >>> conv_path(64, 64, (3, 3), (2, 2), (1, 1), (1, 1), 1)
    'im2col'
    """
    integer(in_channels, "in_channels", minimum=1)
    integer(out_channels, "out_channels", minimum=1)
    kh, kw = int_tuple(kernel_size, "kernel_size", 2, minimum=1)
    sh, sw = int_tuple(stride, "stride", 2, minimum=1)
    ph, pw = int_tuple(padding, "padding", 2, minimum=0)
    dh, dw = int_tuple(dilation, "dilation", 2, minimum=1)
    integer(groups, "groups", minimum=1)
    profile = as_profile(profile)
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide in_channels={in_channels} and out_channels={out_channels}"
        )
    if (
        groups == in_channels
        and out_channels in (groups, 2 * groups)
        and groups % 8 == 0
        and sh in (1, 2)
        and sw in (1, 2)
        and kh == kw
        and kh in (3, 5, 7)
        and (dh, dw) == (1, 1)
        and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2)
    ):
        return "depthwise"
    c_per_g, k_per_g = in_channels // groups, out_channels // groups
    if (
        c_per_g == k_per_g
        and c_per_g in (2, 4, 8, 16)
        and groups >= groups_together(c_per_g, profile.avx512)
        and (kh, kw) == (3, 3)
        and (ph, pw) == (1, 1)
        and (dh, dw) == (1, 1)
        and (sh, sw) in ((1, 1), (2, 2))
    ):
        return "groupwise"
    if (kh, kw, sh, sw, dh, dw, ph, pw) == (1, 1, 1, 1, 1, 1, 0, 0):
        return "pointwise"
    return "im2col"


def groups_together(c_per_g: int, avx512: bool) -> int:
    """FBGEMM's `numOfGroupsTogether` (GroupwiseConv.h): how many groups the groupwise kernel
    packs into one vector register, `max(W // (C/G) // max(C/G, 4), 1)` with W = 64 bytes
    on AVX512 and 32 on AVX2.

    >>> groups_together(4, avx512=True), groups_together(4, avx512=False), groups_together(16, True)
    (4, 2, 1)
    """
    vector_bytes = 64 if avx512 else 32
    return max(vector_bytes // c_per_g // max(c_per_g, 4), 1)


def _by_group(windows: np.ndarray, accumulate: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """The accumulators (N, OH, OW, OC) of every group side by side: group g's channels
    g*OC/G ... (g+1)*OC/G - 1 are `accumulate(windows of group g (N, OH, OW, K), g)`."""
    return np.concatenate([accumulate(windows[..., g, :], g) for g in range(windows.shape[3])], axis=-1)


def conv_gemm_operands(
    x: QTensor,
    weight: QTensor,
    stride: Sequence[int],
    padding: tuple[int, int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GEMM a conv computes, in K order (kh, kw, c) within a group: the raw uint8 windows
    (N, OH, OW, G, K), the int8 weights (G, OC/G, K) and their zero points (G, OC/G)."""
    out_channels, kernel = weight.shape[0], (weight.shape[2], weight.shape[3])
    windows = conv_windows_in_k_order(x, kernel, stride, padding, dilation, groups)
    w_k = conv_weight_in_k_order(weight, groups)
    w_zp = np.broadcast_to(np.asarray(weight.zero_point, np.int64), (out_channels,)).reshape(groups, -1)
    return windows, w_k, w_zp


def conv_weight_in_k_order(weight: QTensor, groups: int) -> np.ndarray:
    """The int8 weights (G, OC/G, K), K = (kh, kw, c) within a group: FBGEMM's packed `KRSC`
    order, which `PackAWithIm2Col` and oneDNN's reordered weight share."""
    out_channels = weight.shape[0]
    return weight.int_repr.transpose(0, 2, 3, 1).reshape(groups, out_channels // groups, -1)


def conv_windows_in_k_order(
    x: QTensor,
    kernel: tuple[int, int],
    stride: Sequence[int],
    padding: tuple[int, int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """The raw uint8 input each output pixel reads, (N, OH, OW, G, K), K = (kh, kw, c) within
    a group: the NHWC image padded with the zero point, its dilated, strided windows."""
    out_hw = conv_output_size(x.shape[2:], kernel, stride, padding, dilation)
    (ph, pw), (kh, kw) = padding, kernel
    nhwc = x.int_repr.transpose(0, 2, 3, 1)
    padded = np.pad(nhwc, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=x.zero_point)
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    windows = sliding_window_view(padded, span, axis=(1, 2))  # (N, H', W', C, span_h, span_w)
    windows = windows[:, :: stride[0], :: stride[1], :, :: dilation[0], :: dilation[1]][:, : out_hw[0], : out_hw[1]]
    n, oh, ow, channels = windows.shape[:4]
    by_group = windows.reshape(n, oh, ow, groups, channels // groups, kh, kw)
    return by_group.transpose(0, 1, 2, 3, 5, 6, 4).reshape(n, oh, ow, groups, -1)


def conv_output_size(
    hw: Sequence[int],
    kernel: tuple[int, int],
    stride: Sequence[int],
    padding: tuple[int, int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """`(H + 2p - d(k-1) - 1) // s + 1` per dim; refuses empty outputs as ATen does."""
    padded = tuple(hw[i] + 2 * padding[i] for i in range(2))
    sizes = tuple((padded[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))
    if min(sizes) <= 0:
        raise ValueError(
            f"conv2d output would be empty: output size {sizes} from padded input {padded}, kernel {kernel}"
        )
    return sizes


def check_conv_arguments(
    x: QTensor,
    weight: QTensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    relu: bool,
    profile: NumericsProfile | str,
) -> ConvArguments:
    """The argument checks of `conv2d` and `fast.conv2d` (ArgumentError naming the argument);
    return the profile (`as_profile`) and the geometry as int pairs."""
    check_qtensor(x, "x")
    check_qtensor(weight, "weight")
    stride = int_tuple(stride, "stride", 2, minimum=1)
    padding = int_tuple(padding, "padding", 2, minimum=0)
    dilation = int_tuple(dilation, "dilation", 2, minimum=1)
    integer(groups, "groups", minimum=1)
    flag(relu, "relu")
    return ConvArguments(as_profile(profile), stride, padding, dilation)


class ConvArguments(NamedTuple):
    """What `check_conv_arguments` returns."""

    profile: NumericsProfile
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def check_conv_inputs(x: QTensor, weight: QTensor, groups: int) -> tuple[int, tuple[int, int]]:
    """Validate dtypes, qschemes and shapes; return (out_channels, (kH, kW))."""
    if x.dtype is not QDtype.quint8 or x.per_channel or x.int_repr.ndim != 4:
        raise ValueError(f"conv2d expects x to be a 4-d per-tensor quint8 activation (NCHW), got {x!r}")
    out_channels, kernel = check_conv_weight(weight, groups)
    if weight.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"groups={groups} with weight {weight.shape} expects {weight.shape[1] * groups} input channels; "
            f"got input {x.shape}"
        )
    return out_channels, kernel


def check_conv_weight(weight: QTensor, groups: int) -> tuple[int, tuple[int, int]]:
    """Validate the weight's dtype, qscheme and shape for `groups`; return (out_channels, (kH, kW))."""
    if weight.dtype is not QDtype.qint8 or weight.int_repr.ndim != 4:
        raise ValueError(f"conv2d expects weight to be a 4-d qint8 tensor (OC, IC/groups, kH, kW), got {weight!r}")
    if weight.per_channel and weight.axis != 0:
        raise ValueError(f"per-channel conv weights must use axis 0, got axis {weight.axis}")
    out_channels = weight.shape[0]
    if groups < 1 or out_channels % groups:
        raise ValueError(f"groups={groups} expects out_channels divisible by it; got weight {weight.shape}")
    return out_channels, (weight.shape[2], weight.shape[3])

