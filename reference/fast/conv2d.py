"""`quantspec.reference.ops.conv2d`, fast: the same integers, by exact float32 BLAS GEMMs.

Paths, by what the plain definition computes (FBGEMM's path names, `ops.conv2d.conv_path`):
* depthwise (`_depthwise_conv`): the exact float32 sums, one einsum per stride phase, then
  `sat16(P) - P` for the tap pairs that can leave int16 (never for pytorch_qnnpack, which
  sums exactly), and the zero-point term as an offset.
* im2col, pointwise, groupwise: `gemm.exact_matmul` over im2col rows of the centered input
  (a 1x1 stride-1 input already is that matrix), plus `gemm.pair_saturation_correction`
  when FBGEMM's pairs can saturate. Stride-1 3x3 single-group convs with at least
  `WINOGRAD_MIN_PIXELS` outputs per image take `winograd` instead, when its exactness bound
  holds and no pair can saturate (VNNI, pytorch_qnnpack, or `gemm.pairs_can_saturate` false).
pytorch_qnnpack's int32 bias (`ops.conv2d.qnnpack_conv_bias`) is added to the exact sums before
their int32 wrap, on every path; its output stage is `requantize_u8acc32` without a float bias.
The work is cut into bands of output rows or channels (`_run_in_bands`), on `workers`
threads; every output element is computed the same way in any band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._arguments import ArgumentError, int_tuple, integer
from ..numerics import INT16_MAX, INT16_MIN, wrap_int32
from ..ops._validate import check_qtensor, checked_bias, output_qparams
from ..ops.conv2d import (
    check_conv_arguments,
    check_conv_inputs,
    check_conv_weight,
    conv_output_size,
    conv_path,
    conv_weight_in_k_order,
    qnnpack_conv_bias,
)
from ..profile import DEFAULT_PROFILE, NumericsProfile, specified_library
from ..qtensor import MemoryFormat, QDtype, QTensor
from . import onednn
from .gemm import (
    PreparedWeights,
    exact_matmul,
    one_gemm_is_exact,
    pair_saturation_correction,
    pairs_can_saturate,
    prepare_weights,
)
from .requantize import RequantParams, requant_params, requantize_u8acc32
from .threads import bands, parallel_for, useful_workers
from .winograd import (
    WinogradWeights,
    prepare_winograd,
    tile_counts,
    winograd_inputs,
    winograd_is_exact,
    winograd_sums,
)

# Output pixels per image from which a stride-1 3x3 conv takes Winograd: below it, its 16
# GEMMs of few rows each are slower than one im2col GEMM (docs/speed.md).
WINOGRAD_MIN_PIXELS = 14 * 14

# Bytes of intermediates per band of output rows (Winograd's transformed inputs and
# products, im2col's rows and products): bands this size stay in cache between the steps
# that write and read them (docs/speed.md). Bands never split the weights.
BAND_BYTES = 2 * 2**20


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
    """`quantspec.reference.ops.conv2d` (same arguments and result), fast.

    `prepared`: `prepare_conv_weight(weight, groups, stride, dilation)`, for callers that run
    one weight many times (the model interpreter; torch's `conv2d_prepack`); formed here when
    None. `workers`: threads for the bands (module docstring); the result does not depend on it.
    The same as `run_conv_plan(x, plan_conv2d(...), workers)`.

    >>> x = QTensor(np.full((1, 8, 1, 1), 255, np.uint8), 1.0, 255, "quint8")
    >>> w = QTensor(np.full((8, 1, 3, 3), 127, np.int8), 1.0, 0, "qint8")
    >>> conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128).int_repr.ravel().tolist()  # ops.conv2d's case
    [0, 0, 0, 0, 0, 0, 0, 0]
    """
    integer(workers, "workers", minimum=1)
    plan = plan_conv2d(
        x, weight, bias, stride, padding, dilation, groups, output_scale, output_zero_point, relu, profile, prepared
    )
    return run_conv_plan(x, plan, workers)


@dataclass(frozen=True)
class ConvPlan:
    """Everything `conv2d` checks and decides before it computes, for one weight and one kind
    of input (its channel count, dtype, qscheme): a caller that runs the same conv many times
    (the model interpreter) forms it once (`plan_conv2d`) and calls `run_conv_plan` per input."""

    weight: QTensor
    prepared: ConvWeights | None  # None: formed per call on the GEMM paths
    bias: np.ndarray | None  # float32 (OC,)
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    out: QTensor  # the output qparams
    relu: bool
    profile: NumericsProfile
    path: str
    library: str

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups


def plan_conv2d(
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
    prepared: ConvWeights | None = None,
) -> ConvPlan:
    """The checks of `conv2d` (ArgumentError / ValueError naming the argument) and its
    decisions (FBGEMM path, kernel library) for inputs like `x`."""
    checked = check_conv_arguments(x, weight, stride, padding, dilation, groups, relu, profile)
    profile, stride, padding, dilation = checked
    out_channels, kernel = check_conv_inputs(x, weight, groups)
    path = conv_path(x.shape[1], out_channels, kernel, stride, padding, dilation, groups, profile)  # checks geometry
    if prepared is not None:
        if not isinstance(prepared, ConvWeights):
            raise ArgumentError(f"prepared must be prepare_conv_weight's result or None, got {type(prepared).__name__}")
        if prepared.geometry != (kernel, stride, dilation, groups):
            raise ArgumentError(
                f"prepared was formed for (kernel, stride, dilation, groups) = {prepared.geometry}, "
                f"not this call's {(kernel, stride, dilation, groups)}"
            )
        prepared.check_formed_from(weight)
    library = specified_library(profile.conv2d_library(weight.zero_point, groups), "quantized::conv2d", profile)
    bias32 = checked_bias(bias, out_channels)
    out = output_qparams(output_scale, output_zero_point, QDtype.quint8)
    return ConvPlan(weight, prepared, bias32, stride, padding, dilation, groups, out, relu, profile, path, library)


def run_conv_plan(x: QTensor, plan: ConvPlan, workers: int = 1) -> QTensor:
    """`conv2d` of `x` by a plan formed for inputs like it (same channel count, quint8 per
    tensor; refused otherwise); `workers` as in `conv2d` (not checked here)."""
    if not isinstance(x, QTensor) or x.int_repr.ndim != 4 or x.shape[1] != plan.in_channels or x.per_channel:
        raise ArgumentError(f"the plan was formed for a per-tensor 4-d input of {plan.in_channels} channels, got {x!r}")
    if x.dtype is not QDtype.quint8:
        raise ArgumentError(f"conv2d expects a quint8 input, got {x!r}")
    weight, profile, out, relu = plan.weight, plan.profile, plan.out, plan.relu
    stride, (ph, pw), dilation, groups = plan.stride, plan.padding, plan.dilation, plan.groups
    library, out_channels, kernel = plan.library, weight.shape[0], weight.shape[2:]
    bias32 = plan.bias
    if library == "onednn":
        return onednn.conv2d(x, weight, bias32, (stride, plan.padding, dilation), groups, out, relu, plan.prepared)

    out_hw = conv_output_size(x.shape[2:], kernel, stride, (ph, pw), dilation)
    prepared = plan.prepared
    if prepared is None:
        params = requant_params(x.scale, weight.scale, out.scale, out_channels, library)
    else:
        params = prepared.requant_params(x.scale, out.scale, library)
    qnnpack = library == "qnnpack"
    # pytorch_qnnpack adds its int32 bias to the sums; FBGEMM adds the float bias in requantization.
    acc_offset = qnnpack_conv_bias(bias32, x.scale, weight, kernel, stride, (ph, pw), profile) if qnnpack else None
    float_bias = None if qnnpack else bias32

    # `fused`: requantizeOutputProcessing(GConv)Avx2 fuse the per-tensor bias fma on both releases.
    def requantize(acc: np.ndarray, channels: slice, fused: bool = True) -> np.ndarray:
        band_bias = None if float_bias is None else float_bias[channels]
        band_params = params.channel_band(channels)
        return requantize_u8acc32(acc, band_bias, band_params, out.zero_point, relu, per_tensor_bias_fma=fused)

    if plan.path == "depthwise":
        if prepared is None:
            prepared = prepare_conv_weight(weight, groups, stride, dilation)
        ints = _depthwise_conv(x, plan, prepared, out_hw, (params, acc_offset, float_bias), workers)
    else:
        if prepared is None:
            prepared = prepare_conv_weight(weight, groups, stride, dilation)
        geometry = (kernel, stride, (ph, pw), dilation, groups)
        pairs_saturate = not qnnpack and profile.gemm_pairs_saturate
        ints = _gemm_conv(x, prepared, geometry, out_hw, (pairs_saturate, acc_offset), requantize, workers)
    nchw = ints.transpose(0, 3, 1, 2)  # a view of the NHWC buffer: channels_last
    return QTensor(nchw, out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.channels_last)


def _depthwise_conv(
    x: QTensor,
    plan: ConvPlan,
    prepared: ConvWeights,
    out_hw: tuple[int, int],
    constants: tuple[RequantParams, np.ndarray | None, np.ndarray | None],
    workers: int,
) -> np.ndarray:
    """The uint8 NHWC output of a depthwise conv (`_depthwise_sums`, the saturated pairs, the
    zero-point term, then `requantize_u8acc32`); `constants` = (requantization constants,
    pytorch_qnnpack's int32 bias or None, the float bias or None). Every per-channel constant is
    repeated along a row of OW pixels, so each step runs along whole (N, rows, OW * OC) rows
    instead of broadcasting a short channel vector per pixel (2x faster at 96 channels)."""
    params, acc_offset, float_bias = constants
    width, out_channels, library = out_hw[1], plan.weight.shape[0], plan.library

    def along_rows(per_channel: np.ndarray) -> np.ndarray:
        return np.tile(per_channel, width)

    def row_constants() -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, RequantParams]:
        zero_point_term = along_rows(x.zero_point * prepared.depthwise_weight_sums) if x.zero_point else None
        offset = None if acc_offset is None else along_rows(acc_offset.astype(np.int64))
        bias = None if float_bias is None else along_rows(float_bias)
        return zero_point_term, offset, bias, params.tiled(width)

    # Formed once per width, input and output qparams, bias and library: a model's conv sees the same ones every run.
    key = ("depthwise rows", width, x.scale, x.zero_point, plan.out.scale, library,
           None if float_bias is None else float_bias.tobytes(), None if acc_offset is None else acc_offset.tobytes())
    zero_point_term, offset, bias, row_params = prepared.derived(key, row_constants)
    phases = _raw_phases(x, plan.padding, plan.stride[1], out_channels // x.shape[1])
    weight_rows = prepared.depthwise_rows(width)
    # FBGEMM's kernels saturate their tap pairs (vpmaddubsw); pytorch_qnnpack's q8dwconv sums exactly.
    risky = () if library == "qnnpack" else _risky_tap_pairs(prepared, x)
    ints = np.empty((x.shape[0], out_hw[0], width * out_channels), np.uint8)

    def depthwise_band(rows: slice, _: Any, __: slice) -> None:
        acc = _depthwise_sums(phases, weight_rows, plan.stride, out_hw, rows)
        for pair in risky:
            acc += _pair_saturation(phases, prepared, pair, plan.stride, out_hw, rows)
        if zero_point_term is not None:
            acc -= zero_point_term  # a_zp * sum_t (w - w_zp): exact, as every term (`_depthwise_sums`)
        if offset is not None:
            acc = wrap_int32(acc.astype(np.int64) + offset)
        fused = plan.profile.depthwise_per_tensor_bias_fma
        ints[:, rows] = requantize_u8acc32(acc, bias, row_params, plan.out.zero_point, plan.relu, fused)

    # Bands of output rows sized by the float32 accumulator alone: the einsum streams the
    # taps, and fewer, larger bands measured faster (docs/speed.md).
    row_bytes = 4 * x.shape[0] * width * out_channels
    _run_in_bands(lambda rows: rows, depthwise_band, out_hw[0], row_bytes, out_channels, plan.groups, workers)
    return ints.reshape(x.shape[0], out_hw[0], width, out_channels)


@dataclass(frozen=True)
class ConvWeights(PreparedWeights):
    """A conv weight as the reference's GEMM paths use it, formed once per packed weight.

    Attributes (besides `gemm.PreparedWeights`'):
        gemm: the im2col GEMM operand: FBGEMM's packed weight (`KRSC`) and
            `PackAWithIm2Col` order K as (kh, kw, c) within a group: (G, OC/G, kh*kw*C/G),
            each row minus its output channel's zero point.
        geometry: (kernel, stride, dilation, groups) it was formed for.
    """

    geometry: tuple[tuple[int, int], tuple[int, ...], tuple[int, ...], int] = field(kw_only=True)

    @property
    def winograd_eligible(self) -> bool:
        """A 3x3, stride 1, dilation 1, single-group conv (`winograd`)."""
        return self.geometry == ((3, 3), (1, 1), (1, 1), 1)

    def depthwise_rows(self, width: int) -> np.ndarray:
        """Depthwise: the centered weights `w - w_zp` as float32 (kh, kw, width * OC), each
        tap's per-channel weights repeated along an output row `width` pixels wide; formed once
        per width."""
        return self._depthwise_tiles(width, raw=False)

    def depthwise_raw_rows(self, width: int) -> np.ndarray:
        """Depthwise: the raw int8 weights as float32 (taps, width * OC), taps in (r, s) order."""
        return self._depthwise_tiles(width, raw=True)

    @cached_property
    def depthwise_pair_bounds(self) -> np.ndarray:
        """Depthwise: max over channels of |w_t| + |w_t+1| on raw weights for each tap pair
        (t, t + 1), t = 0, 2, 4, ... (FBGEMM's `vpmaddubsw` pairs of taps)."""
        taps = np.abs(self._tap_major(self.raw).astype(np.int32))
        return (taps[0 : len(taps) - 1 : 2] + taps[1::2]).max(axis=1, initial=0)

    @cached_property
    def depthwise_weight_sums(self) -> np.ndarray:
        """Depthwise: sum over taps of `w - w_zp` per output channel, float32 (exact: |sum| <= 49 * 255)."""
        return self._tap_major(self.gemm.centered).sum(axis=0, dtype=np.float32)

    def _depthwise_tiles(self, width: int, raw: bool) -> np.ndarray:
        (kh, kw), weights = self.geometry[0], self.raw if raw else self.gemm.centered

        def form() -> np.ndarray:
            tiled = np.tile(self._tap_major(weights).astype(np.float32), (1, width))
            return tiled if raw else tiled.reshape(kh, kw, -1)

        return self.derived(f"depthwise {'raw' if raw else 'centered'} rows {width}", form)

    @staticmethod
    def _tap_major(weights: np.ndarray) -> np.ndarray:
        """(G, OC/G, taps) depthwise weights as (taps, OC)."""
        return weights.reshape(-1, weights.shape[-1]).T

    @cached_property
    def winograd(self) -> WinogradWeights:
        """The Winograd F(2x2, 3x3) filters, formed on first use."""
        groups, out_channels, _ = self.gemm.centered.shape
        return prepare_winograd(self.gemm.centered.reshape(groups * out_channels, 3, 3, -1))


def prepare_conv_weight(
    weight: QTensor, groups: int, stride: Sequence[int] = (1, 1), dilation: Sequence[int] = (1, 1)
) -> ConvWeights:
    """`ConvWeights` of `weight` for a conv with this geometry."""
    check_qtensor(weight, "weight")
    integer(groups, "groups", minimum=1)
    check_conv_weight(weight, groups)
    stride = int_tuple(stride, "stride", 2, minimum=1)
    dilation = int_tuple(dilation, "dilation", 2, minimum=1)
    krsc = conv_weight_in_k_order(weight, groups)
    kh, kw = weight.shape[2:]
    geometry = ((kh, kw), stride, dilation, groups)
    return ConvWeights(prepare_weights(krsc, weight.zero_point), krsc, geometry=geometry, source=weight)


def _gemm_conv(
    x: QTensor,
    weights: ConvWeights,
    geometry: tuple,
    out_hw: tuple[int, int],
    sums: tuple[bool, np.ndarray | None],
    requantize: Callable[[np.ndarray, slice], np.ndarray],
    workers: int,
) -> np.ndarray:
    """The quint8 outputs (N, OH, OW, OC) of the im2col / pointwise / groupwise paths.

    `sums` = (pairs_saturate, acc_offset): whether FBGEMM's int16 pairs saturate (no VNNI),
    and an int32 per output channel added to every sum before the int32 wrap
    (pytorch_qnnpack's bias) or None.
    The activation side, in K order (kh, kw, c) per group: the zero-point-centered input,
    padded with 0 (padding taps read a_zp), then its windows copied into the im2col matrix
    (none for a 1x1 stride-1 conv, whose NHWC input already is that matrix). The pair
    saturation is computed on the raw uint8 windows, where padding reads a_zp, unless
    `gemm.pairs_can_saturate` rules it out for this input's largest value; then Winograd
    is open to FBGEMM's saturating profiles too.
    The work is cut into bands (`_run_in_bands`) that each form their GEMM and requantization;
    every output element is computed the same way in any band. Stride-1 3x3 convs with at
    least `WINOGRAD_MIN_PIXELS` outputs per image take Winograd F(2x2, 3x3) instead
    (`winograd`: the same exact sums, in bands of tile rows) when its exactness bound holds.
    `requantize(acc, channels)` requantizes the sums of the output channels `channels`.
    """
    kernel, stride, padding, dilation, groups = geometry
    pairs_saturate, acc_offset = sums
    prepared = weights.gemm
    depth = kernel[0] * kernel[1] * (x.shape[1] // groups)
    macs = x.shape[0] * out_hw[0] * out_hw[1] * prepared.out_channels * depth
    workers = useful_workers(macs, workers)
    raw = x.int_repr
    raw_max, raw_min = (int(raw.max()), int(raw.min())) if raw.size else (x.zero_point, x.zero_point)
    a_max_abs = max(raw_max - x.zero_point, x.zero_point - raw_min)
    # Where no pair can leave int16 for these activations, FBGEMM's saturating pairs sum
    # exactly, as VNNI's do.
    if pairs_saturate:
        pairs_saturate = pairs_can_saturate(max(raw_max, x.zero_point), weights.pairs) and _some_pair_reaches_257(
            x, groups, padding
        )
    winograd = weights.winograd_eligible and not pairs_saturate and out_hw[0] * out_hw[1] >= WINOGRAD_MIN_PIXELS
    # Winograd's 4x4 tiles reach up to one row and column past the last output's window.
    extra = (out_hw[0] % 2, out_hw[1] % 2) if winograd else (0, 0)
    centered = _centered_padded_nhwc(x, padding, extra)
    out = np.empty((x.shape[0],) + out_hw + (prepared.out_channels,), np.uint8)
    if winograd and winograd_is_exact(centered, weights.winograd, out_hw, a_max_abs):

        def tile_sums(inputs: np.ndarray, tile_rows: slice, channels: slice) -> None:  # 2 output rows per tile row
            acc = winograd_sums(inputs, weights.winograd, out_hw, tile_rows, channels)
            if acc_offset is not None:
                acc = wrap_int32(acc + acc_offset[channels].astype(np.int64))
            first = 2 * tile_rows.start
            out[:, first : first + acc.shape[1], :, channels] = requantize(acc, channels)

        def inputs(tile_rows: slice) -> np.ndarray:
            return winograd_inputs(centered, out_hw, tile_rows)

        tiles_h, tiles_w = tile_counts(out_hw)
        tile_row_bytes = x.shape[0] * tiles_w * 16 * 4 * (x.shape[1] + prepared.out_channels)  # V and products
        _run_in_bands(inputs, tile_sums, tiles_h, tile_row_bytes, prepared.out_channels, groups, workers)
        return out
    norms = None
    if not one_gemm_is_exact(depth, a_max_abs, None, prepared):  # the simple bound fails: try Cauchy-Schwarz
        norms = _max_window_square_norm(centered, kernel, stride, dilation, out_hw, groups, a_max_abs)
    raw_padded = _padded_nhwc(x, padding) if pairs_saturate else None  # the raw uint8 operand, same K order

    def im2col(rows: slice) -> tuple[np.ndarray, np.ndarray | None]:  # (G, band pixels, K), centered and raw
        raw_rows = None if raw_padded is None else _im2col_rows(raw_padded, geometry, out_hw, rows)
        return _im2col_rows(centered, geometry, out_hw, rows), raw_rows

    def products(matrices: tuple[np.ndarray, np.ndarray | None], rows: slice, channels: slice) -> None:
        a, raw_rows = matrices
        band_pairs = None if raw_rows is None else weights.pairs.channel_band(channels)
        correction = None if raw_rows is None else pair_saturation_correction(raw_rows, band_pairs)
        if acc_offset is not None:  # pytorch_qnnpack's bias; its pairs never saturate
            offset = acc_offset[channels].astype(np.int64)
            correction = np.broadcast_to(offset, (a.shape[1], offset.size))
        acc = exact_matmul(a, prepared.channel_band(channels), a_max_abs, norms, correction)  # (band pixels, OC)
        band_out = out[:, rows, :, channels]
        band_out[...] = requantize(acc.reshape(band_out.shape), channels)

    row_bytes = x.shape[0] * out_hw[1] * 4 * (groups * depth + prepared.out_channels)  # im2col rows and products
    _run_in_bands(im2col, products, out_hw[0], row_bytes, prepared.out_channels, groups, workers)
    return out


def _some_pair_reaches_257(x: QTensor, groups: int, padding: tuple[int, int]) -> bool:
    """Whether some `vpmaddubsw` pair of the im2col rows may have a0 + a1 >= 257, which any
    saturating pair needs (`gemm.pair_saturation_correction`), judged on the input itself.

    With an even number of channels per group, K = (kh, kw, c) pairs channels (2q, 2q + 1)
    of one pixel (each group's K starts at an even channel), so every pair of every row is
    a pixel's channel pair, or (a_zp, a_zp) for a padding tap: checking each pixel once
    replaces checking kh * kw copies of it. Otherwise (odd C/G) pairs straddle taps: True.
    """
    c_per_g = x.shape[1] // groups
    if c_per_g % 2:
        return True
    if any(padding) and 2 * x.zero_point >= 257:
        return True
    raw = x.int_repr  # (N, C, H, W)
    return bool((np.add(raw[:, 0::2], raw[:, 1::2], dtype=np.uint16) >= 257).any())


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
    GEMMs of a few dozen rows, slower per multiply-add.
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


def _raw_phases(x: QTensor, padding: tuple[int, int], stride_w: int, multiplier: int) -> list[np.ndarray]:
    """The depthwise operand: the raw input values as float32 NHWC padded with a_zp (what
    FBGEMM's kernels read outside the image), one channel per output channel (output channel j
    reads input channel j // multiplier), split into its stride phases: phase p holds the
    padded columns p, p + SW, p + 2 SW, ... contiguously, so every tap reads whole rows of
    OW * OC values. Each phase is written once, straight from the input."""
    (ph, pw), (n, _, h, w) = padding, x.shape
    nhwc = x.int_repr.transpose(0, 2, 3, 1)
    if multiplier > 1:
        nhwc = np.repeat(nhwc, multiplier, axis=3)
    phases = []
    for p in range(stride_w):
        columns = len(range(p, w + 2 * pw, stride_w))
        first, stop = -(-max(pw - p, 0) // stride_w), len(range(p, pw + w, stride_w))  # the image's columns
        phase = np.empty((n, h + 2 * ph, columns, nhwc.shape[3]), np.float32)
        for border in (phase[:, :ph], phase[:, ph + h :], phase[:, ph : ph + h, :first], phase[:, ph : ph + h, stop:]):
            border.fill(x.zero_point)
        image_columns = nhwc[:, :, p + first * stride_w - pw :: stride_w][:, :, : stop - first]
        np.copyto(phase[:, ph : ph + h, first:stop], image_columns, casting="unsafe")  # exact: 0..255
        phases.append(phase)
    return phases


def _phase_taps(phases: list[np.ndarray], stride: Sequence[int], kernel: tuple[int, int], out_hw: tuple[int, int],
                rows: slice, phase: int) -> np.ndarray:
    """The taps (r, s) with s % SW == phase of the output rows `rows`, as a strided view
    (N, rows, kh, taps in the phase, OW * OC): tap (r, s) of output (oh, ow) reads padded row
    oh * SH + r, column ow * SW + s, which is column ow + s // SW of the phase; within a row
    the OW * OC values from that column on are contiguous. The view is built directly on the
    phase's buffer (`sliding_window_view` costs 20x more for these small arrays); NumPy
    refuses it if it reached past the buffer."""
    (sh, sw), (kh, kw), source = stride, kernel, phases[phase]
    n, _, _, channels = source.shape
    step_n, step_row, step_column, item = source.strides
    shape = (n, rows.stop - rows.start, kh, len(range(phase, kw, sw)), out_hw[1] * channels)
    strides = (step_n, sh * step_row, step_row, step_column, item)
    return np.ndarray(shape, source.dtype, source, rows.start * sh * step_row, strides)


def _depthwise_sums(
    phases: list[np.ndarray], weight_rows: np.ndarray, stride: Sequence[int], out_hw: tuple[int, int], rows: slice
) -> np.ndarray:
    """`sum over taps a (w - w_zp)` of the output rows `rows` on raw values (padding reads
    a_zp), float32 (N, R, OW * OC); `run_conv_plan` then subtracts `a_zp * sum_t (w - w_zp)`.

    Exact in float32 in any order, fused or not: every product and partial sum is an integer
    of magnitude at most taps * 255 * 255 = taps * 65,025, as is the a_zp term, and with the
    taps / 2 pair corrections (`_pair_saturation`, each at most -32,768 + 65,280 = 32,512 in
    magnitude) every intermediate stays within taps * (65,025 + 16,256) <= 2^24 for taps <= 206
    (the depthwise path has at most 7x7 = 49: `conv_path`). So no int32 wrap can occur either,
    and one einsum per stride phase sums its taps.
    """
    kh, kw = weight_rows.shape[:2]
    total = None
    for phase in range(stride[1]):
        taps = _phase_taps(phases, stride, (kh, kw), out_hw, rows, phase)
        part = np.einsum("nbrqx,rqx->nbx", taps, weight_rows[:, phase :: stride[1]])
        total = part if total is None else np.add(total, part, out=total)
    return total


def _risky_tap_pairs(prepared: ConvWeights, x: QTensor) -> tuple[int, ...]:
    """The first taps t of FBGEMM's depthwise tap pairs (t, t + 1), t = 0, 2, 4, ... in
    (r, s) order, that can leave int16 for this input: a_max * max_c(|w_t| + |w_t+1|) > 32,767
    on raw values (a lone last tap cannot: |255 * -128| = 32,640), where a_max is the largest
    input value or a_zp (what padding reads); read only when a pair of 255s could saturate."""
    bounds = prepared.depthwise_pair_bounds
    safe_up_to = INT16_MAX // max(int(bounds.max(initial=0)), 1)  # a_max <= this: no pair can saturate
    if safe_up_to >= 255:
        return ()
    a_max = max(int(x.int_repr.max(initial=0)), x.zero_point)
    if a_max <= safe_up_to:
        return ()
    return tuple(2 * int(p) for p in np.flatnonzero(a_max * bounds > INT16_MAX))


def _pair_saturation(
    phases: list[np.ndarray],
    prepared: ConvWeights,
    first: int,
    stride: Sequence[int],
    out_hw: tuple[int, int],
    rows: slice,
) -> np.ndarray:
    """`sat16(P) - P` for the tap pair P = a_t w_t + a_t+1 w_t+1 on raw values (`saturate_int16`
    of FBGEMM's `vpmaddubsw` in its depthwise kernels), float32 (N, R, OW * OC); added to the
    exact sums it gives FBGEMM's. |P| <= 2 * 255 * 128: exact in float32."""
    sw, kernel = stride[1], prepared.geometry[0]
    raw_rows = prepared.depthwise_raw_rows(out_hw[1])
    pair = None
    for t in (first, first + 1):
        r, s = divmod(t, kernel[1])
        tap = _phase_taps(phases, stride, kernel, out_hw, rows, s % sw)[:, :, r, s // sw]  # (N, R, OW * OC)
        product = np.multiply(tap, raw_rows[t])
        pair = product if pair is None else np.add(pair, product, out=pair)
    return np.clip(pair, INT16_MIN, INT16_MAX) - pair


def _im2col(
    padded: np.ndarray, kernel: tuple[int, int], stride: Sequence[int], dilation: Sequence[int], out_hw: tuple[int, int]
) -> np.ndarray:
    """Windows of a padded NHWC array in K order: (N, OH, OW, kh, kw, C), a strided view."""
    kh, kw = kernel
    if (kh, kw) == (1, 1):  # one pixel per window: the same view without sliding_window_view's cost
        pixels = padded[:, : stride[0] * out_hw[0] : stride[0], : stride[1] * out_hw[1] : stride[1]]
        return pixels[:, :, :, None, None, :]
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
