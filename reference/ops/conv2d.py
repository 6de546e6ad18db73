"""quantized::conv2d / conv2d_relu: quint8 NCHW activations x qint8 weights -> quint8 (fbgemm).

FBGEMM picks one of four kernels for a 2-d convolution (`ConvFastPath`, FbgemmConv.cc);
`conv_path` names it. All compute the same exact sum except for int16 saturation of
`vpmaddubsw` pairs, which depends on the path and the CPU:

* depthwise: a JIT AVX2 kernel (GenerateI8Depthwise.cc) that always uses `vpmaddubsw`,
  even on VNNI CPUs: taps in row-major (kh, kw) order pair up as (0, 1), (2, 3), ...,
  the last tap alone; each pair saturates to int16.
* groupwise, pointwise, im2col: GEMM-like kernels; `vpdpbusd` (exact) on AVX512-VNNI,
  `vpmaddubsw` pairs along K = (kh, kw, c) within a group otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..numerics import INT16_MAX, INT16_MIN, wrap_int32
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ._gemm import (
    GemmWeights,
    bands,
    exact_matmul,
    one_gemm_is_exact,
    pair_saturation_correction,
    parallel_for,
    prepare_weights,
    useful_workers,
)
from ._registry import register_op
from ._requantize import RequantParams, checked_bias, requant_params, requantize_u8acc32
from ._winograd import (
    WinogradWeights,
    prepare_winograd,
    tile_counts,
    winograd_inputs,
    winograd_is_exact,
    winograd_sums,
)

CONV_PATHS = ("depthwise", "groupwise", "pointwise", "im2col")

# Output pixels per image from which a stride-1 3x3 conv takes Winograd. Measured (best of
# 21, one thread, C = OC): faster at 56x56 (64 ch), 28x28 (128) and 14x14 (256: 2.7 ms
# against 3.1), slower at 7x7 (512: 5.3 ms against 4.3; 16 GEMMs of 16 rows).
WINOGRAD_MIN_PIXELS = 14 * 14

# Bytes of intermediates per band of output rows (Winograd's transformed inputs and
# products, im2col's rows and products): bands this size stay in cache between the steps
# that write and read them. Measured (medians of 25-31 interleaved runs, one thread) on
# ResNet-18: the 56x56x64 Winograd conv 3.4 ms unbanded, 3.0 at 4 MB, 2.6 at 2 MB, 2.9 at
# 1 MB (per-call overhead); the 7x7 stride-2 im2col conv 5.6 ms unbanded, 5.0 at 2 MB.
# (Bands never split the weights: each band reads all of them.)
BAND_BYTES = 2 * 2**20


def groups_together(c_per_g: int, avx512: bool) -> int:
    """FBGEMM's `numOfGroupsTogether` (GroupwiseConv.h): how many groups the groupwise kernel
    packs into one vector register, `max(W // (C/G) // max(C/G, 4), 1)` with W = 64 bytes
    on AVX512 and 32 on AVX2.

    >>> groups_together(4, avx512=True), groups_together(4, avx512=False), groups_together(16, True)
    (4, 2, 1)
    """
    vector_bytes = 64 if avx512 else 32
    return max(vector_bytes // c_per_g // max(c_per_g, 4), 1)


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

    `fbgemm::ConvFastPath` (FbgemmConv.cc; unchanged from the FBGEMM in torch 2.13.0,
    8d08cc10a0, through the May 2026 one in 2.14.1), tried in this order:
      depthwise (`takeDepthWiseFastPath`): groups == in_channels, out_channels in
        {groups, 2*groups}, groups % 8 == 0, every stride 1 or 2, kH == kW in {3, 5, 7},
        dilation 1, padding == (k - 1) // 2 in both dims.
      groupwise (`fbgemmOptimizedGConv`): C/G == OC/G in {2, 4, 8, 16}, 3x3, padding 1,
        dilation 1, strides both 1 or both 2, and groups >= G_together, where
        G_together = max(W // (C/G) // max(C/G, 4), 1) with W = 64 bytes on AVX512 CPUs
        and 32 on AVX2 (`PackWeightMatrixForGConv::numOfGroupsTogether`): the only
        CPU-dependent condition (C/G = 2 needs G >= 8 on AVX512, G >= 4 on AVX2).
      pointwise (`takePointWiseFastPath`): 1x1, stride 1, dilation 1, padding 0 (any groups).
      im2col: everything else (the direct-conv path is for transposed convs only).
    torch's groupwise kernel is broken when groups % G_together != 0 (nondeterministic
    outputs, heap corruption); the reference gives the intended convolution there.

    >>> conv_path(32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32)
    'depthwise'
    >>> conv_path(64, 64, (3, 3), (2, 2), (1, 1), (1, 1), 1)
    'im2col'
    """
    kh, kw = _pair("kernel_size", kernel_size, minimum=1)
    sh, sw = _pair("stride", stride, minimum=1)
    ph, pw = _pair("padding", padding, minimum=0)
    dh, dw = _pair("dilation", dilation, minimum=1)
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide in_channels={in_channels} and out_channels={out_channels}")
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
    *,
    prepared: ConvWeights | None = None,
    workers: int = 1,
) -> QTensor:
    """`torch.ops.quantized.conv2d(x, conv2d_prepack(weight, bias, stride, padding, dilation, groups), scale, zp)`.

    Mirrors ATen `PackedConvWeight<2>::apply_impl` (fbgemm) -> `fbgemm::fbgemmConv`.
    The output is quint8 in channels_last memory (as ATen allocates it); `int_repr` is
    in logical NCHW order.

    Formula, output pixel (n, oh, ow), output channel j in group g:
      acc = wrap_int32(sum over (kh, kw, c in g) (a - a_zp) * (w[j] - w_zp[j]))
    where taps outside the image read a_zp (so they add 0, except through saturation:
    the kernel's pairs see the raw a_zp). int16 pair saturation applies on the depthwise
    path always and on the other paths when `profile.gemm_pairs_saturate` (no VNNI);
    see the module docstring. Then `requantize_u8acc32`: float32 `atws`, `mult`; the
    per-tensor bias is `fma32(bias, rcp, f32(acc))` except on the depthwise path of
    torch 2.14 (`profile.depthwise_per_tensor_bias_fma` false), which rounds `bias * rcp`
    first; per-channel bias `f32(f32(acc) + f32(bias / atws))`.

    `prepared`: `prepare_conv_weight(weight, groups, stride, dilation)`, for callers that run
    one weight many times (the model interpreter); formed here when None. `workers`: threads for the GEMM
    (see `exact_matmul`); the result does not depend on it.

    Hand-worked depthwise pair saturation (8 channels, 3x3, pad 1, all a = 255, a_zp 255,
    w = 127 everywhere, 1x1 image; only the center tap (4) is inside):
      every tap reads 255; pairs (0,1), (2,3), (4,5), (6,7): 255*127*2 = 64770 -> 32767 each,
      tap 8 alone 32385: S = 4*32767 + 32385 = 163453
      acc = S - a_zp * sum(w) = 163453 - 255*9*127 = 163453 - 291465 = -128012
      (the exact sum is 0: (255-255)*127). With atws 1*1 = 1, out scale 1000 (mult 0.001),
      zp 128: -128012 * 0.001 = -128.012 -> -128; -128 + 128 = 0.

    >>> x = QTensor(np.full((1, 8, 1, 1), 255, np.uint8), 1.0, 255, "quint8")
    >>> w = QTensor(np.full((8, 1, 3, 3), 127, np.int8), 1.0, 0, "qint8")
    >>> out = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128)
    >>> out.int_repr.ravel().tolist()
    [0, 0, 0, 0, 0, 0, 0, 0]
    """
    out_channels, kernel = _check_conv_inputs(x, weight, groups)
    path = conv_path(x.shape[1], out_channels, kernel, stride, padding, dilation, groups, profile)
    bias32 = checked_bias(bias, out_channels)
    out = QTensor(np.zeros((0,), np.uint8), output_scale, output_zero_point, QDtype.quint8)  # validates qparams

    ph, pw = _pair("padding", padding, minimum=0)
    out_hw = _output_size((x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), kernel, stride, dilation)
    if prepared is None:
        params = requant_params(x.scale, weight.scale, out.scale, out_channels)
    else:
        params = prepared.requant_params(x.scale, out.scale)
    if path == "depthwise":
        w_zp = np.broadcast_to(np.asarray(weight.zero_point, np.int64), (out_channels,))
        acc = _depthwise_acc(_padded_nhwc(x, (ph, pw)), x.zero_point, weight.int_repr, w_zp, stride, out_hw)
        fused = profile.depthwise_per_tensor_bias_fma
        ints = requantize_u8acc32(acc, bias32, params, out.zero_point, relu, per_tensor_bias_fma=fused)
    else:
        if prepared is None:
            prepared = prepare_conv_weight(weight, groups, stride, dilation)
        geometry = (kernel, stride, (ph, pw), dilation, groups)

        # requantizeOutputProcessing(GConv)Avx2: the fused bias fma on both releases.
        def requantize(acc: np.ndarray, channels: slice) -> np.ndarray:
            band_bias = None if bias32 is None else bias32[channels]
            band_params = params.channel_band(channels)
            return requantize_u8acc32(acc, band_bias, band_params, out.zero_point, relu, per_tensor_bias_fma=True)

        ints = _gemm_conv(x, prepared, weight, geometry, out_hw, profile, requantize, workers)
    nchw = ints.transpose(0, 3, 1, 2)  # a view of the NHWC buffer: channels_last
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


@dataclass(frozen=True)
class ConvWeights:
    """A conv weight as the reference's GEMM paths use it, formed once per packed weight.

    Attributes:
        gemm: the im2col GEMM operand: FBGEMM's packed weight (`KRSC`) and
            `PackAWithIm2Col` order K as (kh, kw, c) within a group: (G, OC/G, kh*kw*C/G),
            each row minus its output channel's zero point.
        winograd_eligible: a 3x3, stride 1, dilation 1, single-group conv (`winograd`).
        weight_scale: the weight's scale(s), for `requant_params`.
    """

    gemm: GemmWeights
    winograd_eligible: bool
    weight_scale: float | np.ndarray
    _requant: dict[tuple[float, float], RequantParams] = field(default_factory=dict, compare=False, repr=False)

    def requant_params(self, act_scale: float, out_scale: float) -> RequantParams:
        """`requant_params` of this weight, formed once per (input scale, output scale): a
        loaded model runs each conv with the same scales every time. (Its Python steps cost
        little on one thread but stall the other worker on two: ResNet-18 at two threads,
        medians of 40 interleaved runs, 43.3 -> 42.4 ms.)"""
        key = (act_scale, out_scale)
        if key not in self._requant:
            self._requant[key] = requant_params(act_scale, self.weight_scale, out_scale, self.gemm.out_channels)
        return self._requant[key]

    @cached_property
    def winograd(self) -> WinogradWeights:
        """The Winograd F(2x2, 3x3) filters, formed on first use."""
        groups, out_channels, _ = self.gemm.centered.shape
        return prepare_winograd(self.gemm.centered.reshape(groups * out_channels, 3, 3, -1))


def prepare_conv_weight(
    weight: QTensor, groups: int, stride: Sequence[int] = (1, 1), dilation: Sequence[int] = (1, 1)
) -> ConvWeights:
    """`ConvWeights` of `weight` for a conv with this geometry."""
    out_channels, c_per_g, kh, kw = weight.shape
    krsc = weight.int_repr.transpose(0, 2, 3, 1).reshape(groups, out_channels // groups, kh * kw * c_per_g)
    eligible = (kh, kw) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
    return ConvWeights(prepare_weights(krsc, weight.zero_point), eligible, weight.scale)


def _gemm_conv(
    x: QTensor,
    weights: ConvWeights,
    weight: QTensor,
    geometry: tuple,
    out_hw: tuple[int, int],
    profile: NumericsProfile,
    requantize: Callable[[np.ndarray, slice], np.ndarray],
    workers: int,
) -> np.ndarray:
    """The quint8 outputs (N, OH, OW, OC) of the im2col / pointwise / groupwise paths.

    The activation side, in K order (kh, kw, c) per group: the zero-point-centered input,
    padded with 0 (padding taps read a_zp), then its windows copied into the im2col matrix
    (none for a 1x1 stride-1 conv, whose NHWC input already is that matrix). The pair
    saturation (no VNNI) is computed on the raw uint8 windows, where padding reads a_zp.
    The work is cut into bands (`_run_in_bands`) that each form their GEMM and requantization;
    every output element is computed the same way in any band. Stride-1 3x3 convs with at
    least `WINOGRAD_MIN_PIXELS` outputs per image take Winograd F(2x2, 3x3) instead
    (`_winograd`: the same exact sums, in bands of tile rows) when its exactness bound holds.
    `requantize(acc, channels)` requantizes the sums of the output channels `channels`.
    """
    kernel, stride, padding, dilation, groups = geometry
    prepared = weights.gemm
    depth = kernel[0] * kernel[1] * (x.shape[1] // groups)
    macs = x.shape[0] * out_hw[0] * out_hw[1] * prepared.out_channels * depth
    workers = useful_workers(macs, workers)
    raw = x.int_repr
    a_max_abs = max(int(raw.max()) - x.zero_point, x.zero_point - int(raw.min())) if raw.size else 0
    winograd = (
        weights.winograd_eligible and not profile.gemm_pairs_saturate and out_hw[0] * out_hw[1] >= WINOGRAD_MIN_PIXELS
    )
    # Winograd's 4x4 tiles reach up to one row and column past the last output's window.
    extra = (out_hw[0] % 2, out_hw[1] % 2) if winograd else (0, 0)
    centered = _centered_padded_nhwc(x, padding, extra)
    out = np.empty((x.shape[0],) + out_hw + (prepared.out_channels,), np.uint8)
    if winograd and winograd_is_exact(centered, weights.winograd, out_hw, a_max_abs):

        def tile_sums(inputs: np.ndarray, tile_rows: slice, channels: slice) -> None:  # 2 output rows per tile row
            sums = winograd_sums(inputs, weights.winograd, out_hw, tile_rows, channels)
            first = 2 * tile_rows.start
            out[:, first : first + sums.shape[1], :, channels] = requantize(sums, channels)

        def inputs(tile_rows: slice) -> np.ndarray:
            return winograd_inputs(centered, out_hw, tile_rows)

        tiles_h, tiles_w = tile_counts(out_hw)
        tile_row_bytes = x.shape[0] * tiles_w * 16 * 4 * (x.shape[1] + prepared.out_channels)  # V and products
        _run_in_bands(inputs, tile_sums, tiles_h, tile_row_bytes, prepared.out_channels, groups, workers)
        return out
    norms = None
    if not one_gemm_is_exact(depth, a_max_abs, None, prepared):  # the simple bound fails: try Cauchy-Schwarz
        norms = _max_window_square_norm(centered, kernel, stride, dilation, out_hw, groups, a_max_abs)
    raw_padded, raw_w = None, None
    if profile.gemm_pairs_saturate:  # the raw uint8/int8 operands, in the same K order
        raw_padded = _padded_nhwc(x, padding)
        raw_w = weight.int_repr.transpose(0, 2, 3, 1).reshape(prepared.centered.shape)

    def im2col(rows: slice) -> tuple[np.ndarray, np.ndarray | None]:  # (G, band pixels, K), centered and raw
        raw_rows = None if raw_padded is None else _im2col_rows(raw_padded, geometry, out_hw, rows)
        return _im2col_rows(centered, geometry, out_hw, rows), raw_rows

    def products(matrices: tuple[np.ndarray, np.ndarray | None], rows: slice, channels: slice) -> None:
        a, raw_rows = matrices
        correction = None if raw_rows is None else pair_saturation_correction(raw_rows, raw_w[:, channels])
        acc = exact_matmul(a, prepared.channel_band(channels), a_max_abs, norms, correction)  # (band pixels, OC)
        band_out = out[:, rows, :, channels]
        band_out[...] = requantize(acc.reshape(band_out.shape), channels)

    row_bytes = x.shape[0] * out_hw[1] * 4 * (groups * depth + prepared.out_channels)  # im2col rows and products
    _run_in_bands(im2col, products, out_hw[0], row_bytes, prepared.out_channels, groups, workers)
    return out


def _run_in_bands(
    prepare: Callable[[slice], Any],
    finish: Callable[[Any, slice, slice], None],
    rows: int,
    row_bytes: int,
    out_channels: int,
    groups: int,
    workers: int,
) -> None:
    """`finish(prepare(rows), rows, channels)` over bands that cover a conv's output rows
    and channels, on `workers` threads.

    A single-group conv whose intermediates (`row_bytes` per output row) fit one band of
    `BAND_BYTES` is cut by output channels, one band per worker, all finishing one
    activation side prepared on the calling thread: row bands of a small image would make
    GEMMs of a few dozen rows, slower per multiply-add (ResNet-18 at two threads, whole
    model, medians of 40 interleaved runs in one process: 42.7 ms in row bands, 40.9 ms).
    Otherwise, cache-sized bands of rows, at least one per worker, each preparing its own.
    """
    if workers > 1 and groups == 1 and rows * row_bytes <= BAND_BYTES:
        everything = slice(0, rows)
        shared = prepare(everything)
        parallel_for(lambda channels: finish(shared, everything, channels), bands(out_channels, workers), workers)
        return
    row_bands = bands(rows, max(workers, -(-rows * row_bytes // BAND_BYTES)))
    all_channels = slice(0, out_channels)
    parallel_for(lambda band: finish(prepare(band), band, all_channels), row_bands, workers)


def _im2col_rows(padded: np.ndarray, geometry: tuple, out_hw: tuple[int, int], rows: slice) -> np.ndarray:
    """The im2col matrix of output rows `rows`: (G, N * len(rows) * OW, K), K = (kh, kw, c) per group."""
    kernel, stride, _, dilation, groups = geometry
    windows = _im2col(padded, kernel, stride, dilation, out_hw)[:, rows]  # (N, rows, OW, kh, kw, C) view
    grouped = windows.reshape(windows.shape[:5] + (groups, padded.shape[3] // groups)).transpose(5, 0, 1, 2, 3, 4, 6)
    depth = kernel[0] * kernel[1] * grouped.shape[-1]
    return np.ascontiguousarray(grouped).reshape(groups, -1, depth)  # no copy when already laid out so


def _max_window_square_norm(
    centered: np.ndarray,
    kernel: tuple[int, int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_hw: tuple[int, int],
    groups: int,
    a_max_abs: int,
) -> int:
    """max over im2col rows (output pixel, group) of sum_k a_k^2, without forming the rows:
    per-pixel sums of squares over each group's channels, then summed over each window.
    The per-pixel sums run in float32 when exact (every partial sum <= C/G * max|a|^2 <=
    2^24), else in float64; the window sums in float64 (integers below 2^53)."""
    n, h, w, channels = centered.shape
    grouped = centered.reshape(n, h, w, groups, channels // groups)
    if channels // groups * a_max_abs**2 <= 2**24:
        per_pixel = np.einsum("nhwgc,nhwgc->nhwg", grouped, grouped).astype(np.float64)
    else:
        per_pixel = np.square(grouped, dtype=np.float64).sum(axis=4)
    windows = _im2col(per_pixel, kernel, stride, dilation, out_hw)  # (N, OH, OW, kh, kw, G)
    return int(windows.sum(axis=(3, 4)).max(initial=0))  # exact: integers below 2^53


def _depthwise_acc(
    padded: np.ndarray,
    a_zp: int,
    weight: np.ndarray,
    w_zp: np.ndarray,
    stride: Sequence[int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """int32 accumulators (N, OH, OW, OC) of FBGEMM's depthwise kernel, pairs saturated.

    `S = sum over tap pairs sat16(a_t0 w_t0 + a_t1 w_t1)` on raw values (padding reads
    a_zp), then `acc = S - a_zp * sum_t w - w_zp * sum_t a + taps * a_zp * w_zp`, all
    int32 (`requantize_` subtracts `a_zp * col_offsets` and `row_offsets * w_zp`).
    |S| <= 25 * 32768 fits int32, so the pair sums accumulate without wrapping. A pair
    is clipped only if it can leave int16: max(a) * max_c(|w_t0| + |w_t1|) > 32767.
    """
    out_channels, _, kh, kw = weight.shape
    if out_channels != padded.shape[3]:  # OC = 2C: output channel j reads input channel j // 2
        padded = np.repeat(padded, out_channels // padded.shape[3], axis=3)
    taps = [
        padded[:, r : r + stride[0] * out_hw[0] : stride[0], s : s + stride[1] * out_hw[1] : stride[1]]
        for r in range(kh)
        for s in range(kw)
    ]
    w_taps = weight.reshape(out_channels, kh * kw).T.astype(np.int32)  # (taps, OC), row-major taps
    a_max = int(padded.max(initial=0))
    total = np.zeros(taps[0].shape, dtype=np.int32)
    pair = np.empty_like(total)
    second = np.empty_like(total)
    for t in range(0, len(taps), 2):
        np.multiply(taps[t], w_taps[t], out=pair)  # u8 x s8 products (vpmaddubsw lanes)
        if t + 1 < len(taps):
            np.multiply(taps[t + 1], w_taps[t + 1], out=second)
            pair += second
            if a_max * int((np.abs(w_taps[t]) + np.abs(w_taps[t + 1])).max()) > INT16_MAX:
                np.clip(pair, INT16_MIN, INT16_MAX, out=pair)  # saturate_int16, in place
        total += pair
    # Per-channel constant terms, wrapped once; the int32 array arithmetic below wraps
    # like vpaddd/vpsubd/vpmulld.
    col_sum = w_taps.sum(axis=0, dtype=np.int64)
    total += wrap_int32(len(taps) * a_zp * w_zp - a_zp * col_sum)
    if np.any(w_zp):  # row offsets (sum of the window's activations) only matter then
        row_sum = np.zeros(taps[0].shape, dtype=np.int32)
        for tap in taps:
            row_sum += tap
        total -= wrap_int32(w_zp) * row_sum
    return total


def _im2col(
    padded: np.ndarray, kernel: tuple[int, int], stride: Sequence[int], dilation: Sequence[int], out_hw: tuple[int, int]
) -> np.ndarray:
    """Windows of a padded NHWC array in K order: (N, OH, OW, kh, kw, C), a strided view."""
    kh, kw = kernel
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    windows = sliding_window_view(padded, (span_h, span_w), axis=(1, 2))  # (N, H', W', C, span_h, span_w)
    windows = windows[:, :: stride[0], :: stride[1], :, :: dilation[0], :: dilation[1]]
    return windows[:, : out_hw[0], : out_hw[1]].transpose(0, 1, 2, 4, 5, 3)


def _padded_nhwc(x: QTensor, padding: tuple[int, int]) -> np.ndarray:
    """The activation as NHWC uint8, padded with its zero point (what FBGEMM reads outside)."""
    ph, pw = padding
    nhwc = x.int_repr.transpose(0, 2, 3, 1)
    return np.pad(nhwc, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=x.zero_point)


def _centered_padded_nhwc(x: QTensor, padding: tuple[int, int], extra: tuple[int, int] = (0, 0)) -> np.ndarray:
    """`a - a_zp` as float32 NHWC (exact), padded with 0: the padding taps read a_zp;
    `extra` more zero rows / columns at the bottom / right."""
    (ph, pw), (n, c, h, w) = padding, x.shape
    out = np.empty((n, h + 2 * ph + extra[0], w + 2 * pw + extra[1], c), np.float32)
    for border in (out[:, :ph], out[:, ph + h :], out[:, :, :pw], out[:, :, pw + w :]):
        border.fill(0)
    np.subtract(x.int_repr.transpose(0, 2, 3, 1), np.float32(x.zero_point), out=out[:, ph : ph + h, pw : pw + w])
    return out


def _output_size(padded_hw: tuple[int, int], kernel: tuple[int, int], stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, int]:
    """`(H + 2p - d(k-1) - 1) // s + 1` per dim; refuses empty outputs as ATen does."""
    sizes = tuple((padded_hw[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))
    if min(sizes) <= 0:
        raise ValueError(f"conv2d output would be empty: output size {sizes} from padded input {padded_hw}, kernel {kernel}")
    return sizes


def _check_conv_inputs(x: QTensor, weight: QTensor, groups: int) -> tuple[int, tuple[int, int]]:
    """Validate dtypes, qschemes and shapes; return (out_channels, (kH, kW))."""
    if x.dtype is not QDtype.quint8 or x.per_channel or x.int_repr.ndim != 4:
        raise ValueError(f"conv2d expects a 4-d per-tensor quint8 activation (NCHW), got {x!r}")
    if weight.dtype is not QDtype.qint8 or weight.int_repr.ndim != 4:
        raise ValueError(f"conv2d expects a 4-d qint8 weight (OC, IC/groups, kH, kW), got {weight!r}")
    if weight.per_channel and weight.axis != 0:
        raise ValueError(f"per-channel conv weights must use axis 0, got axis {weight.axis}")
    out_channels, c_per_g = weight.shape[:2]
    if groups < 1 or out_channels % groups or c_per_g * groups != x.shape[1]:
        raise ValueError(
            f"groups={groups} with weight {weight.shape} expects {c_per_g * groups} input channels "
            f"and out_channels divisible by groups; got input {x.shape}"
        )
    return out_channels, (weight.shape[2], weight.shape[3])


def _pair(name: str, value: Sequence[int], minimum: int) -> tuple[int, int]:
    """A 2-d conv parameter as two ints >= minimum."""
    items = tuple(value)
    if len(items) != 2 or any(int(v) != v or v < minimum for v in items):
        raise ValueError(f"{name} must be two integers >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])
