"""oneDNN's conv2d and linear (AVX2 kernels), fast: the exact sum as one float64 GEMM per group,
then the int16 pair saturation as a sparse correction, then oneDNN's output stage.

Equal to `ops.conv2d` / `ops.linear` under an onednn profile (tests/test_onednn.py checks it):
- the exact part `sum (a - a_zp) w` over the taps inside the image is a float64 GEMM of the
  centered windows (padding taps hold a_zp, so they add 0): every partial sum is an integer
  below K * 255 * 128 < 2^53, so no BLAS order rounds;
- `vpmaddubsw` saturates a pair only if `|a0 w0 + a1 w1| > 32767`: `sat16(P) - P` is added by
  `gemm.pair_saturation_correction` at oneDNN's pair starts (raw activations, taps outside
  the image read as 0: never a candidate);
- int32 adds wrap (`vpaddd`), so wrapping the int64 total once is the same.
The weight side (`OnednnWeights`: float64 copies, the pairs' |w| and candidates) is formed once
per prepared weight (`gemm.PreparedWeights.derived`), as oneDNN reorders a weight once; the
output-stage scales once per prepared weight and pair of input and output scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from ..numerics import onednn_gemm_k_blocks, requant_scales_onednn_ref, requantize_u8acc32_onednn_ref, wrap_int32
from ..ops.conv2d import conv_weight_in_k_order, conv_windows_in_k_order, onednn_conv_kernel, onednn_tap_validity
from ..ops.linear import refuse_asymmetric_onednn_weight
from ..qtensor import MemoryFormat, QDtype, QTensor
from .gemm import PairWeights, PreparedWeights, pair_saturation_correction, prepare_pair_weights

# Rows of the im2col matrix formed at once (bounds the float64 windows to ~ROW_BAND * K * 8 bytes).
ROW_BAND = 16384


@dataclass(frozen=True)
class OnednnWeights:
    """The weight operands of `_saturating_dot`, per group: formed once per weight.

    Attributes:
        exact: float64 (N/G, K) per group: the int8 weight for the exact GEMM (exact integers).
        pairs: `prepare_pair_weights` (1, N/G, K) per group, at oneDNN's pair starts.
    """

    exact: tuple[np.ndarray, ...]
    pairs: tuple[PairWeights, ...]


def onednn_weights(raw: np.ndarray, starts: np.ndarray) -> OnednnWeights:
    """`OnednnWeights` of int8 weights (G, N/G, K) whose pairs start at `starts` in every group."""
    return OnednnWeights(tuple(raw.astype(np.float64)), tuple(prepare_pair_weights(w[None], starts) for w in raw))


def linear(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    out: QTensor,
    relu: bool,
    prepared: PreparedWeights | None = None,
) -> QTensor:
    """`ops.linear` under an onednn profile, for validated arguments (`out` carries the output
    scale and zero point, as `ops._validate.output_qparams` returns them); `prepared`: the
    weight's `fast.linear.prepare_linear_weight` (checked by the caller), which keeps its
    oneDNN operands, or None (formed here)."""
    refuse_asymmetric_onednn_weight(np.asarray(weight.zero_point))
    rows = x.int_repr.reshape(-1, weight.shape[1])
    weights = _kept(prepared, lambda: weight.int_repr[None], lambda: _linear_pair_starts(weight.shape[1]))
    acc = _saturating_dot(rows, rows, x.zero_point, weights.exact[0], weights.pairs[0])
    scales = _requant_scales(prepared, x, weight, out, "linear")
    ints = requantize_u8acc32_onednn_ref(acc, bias, scales, out.zero_point, relu)
    shape = x.shape[:-1] + (weight.shape[0],)
    return QTensor(ints.reshape(shape), out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.contiguous)


def conv2d(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    geometry: tuple,
    groups: int,
    out: QTensor,
    relu: bool,
    prepared: PreparedWeights | None = None,
) -> QTensor:
    """`ops.conv2d` under an onednn profile, for validated arguments; `geometry` is
    (stride, padding, dilation) as int pairs; `prepared`: the weight's
    `fast.conv2d.prepare_conv_weight` (checked by the caller), which keeps its oneDNN
    operands, or None (formed here)."""
    refuse_asymmetric_onednn_weight(np.asarray(weight.zero_point))
    stride, padding, dilation = geometry
    out_channels, kernel = weight.shape[0], (weight.shape[2], weight.shape[3])
    windows = conv_windows_in_k_order(x, kernel, stride, padding, dilation, groups)
    n, oh, ow = windows.shape[:3]
    taps, c_per_g = kernel[0] * kernel[1], x.shape[1] // groups
    inside = onednn_tap_validity(x.shape[2:], kernel, stride, padding, dilation, (oh, ow))
    valid = np.broadcast_to(inside, (n, oh, ow, taps))
    valid = np.repeat(valid.reshape(-1, taps), c_per_g, axis=1)  # (M, K), K = (tap, c)
    kernel_name = onednn_conv_kernel(x.shape[1], out_channels, groups)
    w_k = partial(conv_weight_in_k_order, weight, groups)
    weights = _kept(prepared, w_k, lambda: _conv_pair_starts(kernel_name, taps, c_per_g))
    flat = windows.reshape(n * oh * ow, groups, -1)
    acc = np.concatenate(
        [
            _saturating_dot(flat[:, g], np.where(valid, flat[:, g], 0), x.zero_point, w64, pairs)
            for g, (w64, pairs) in enumerate(zip(weights.exact, weights.pairs))
        ],
        axis=-1,
    )
    scales = _requant_scales(prepared, x, weight, out, "conv2d", kernel_name)
    nhwc = requantize_u8acc32_onednn_ref(acc, bias, scales, out.zero_point, relu, kernel_name)
    nhwc = nhwc.reshape(n, oh, ow, out_channels)
    return QTensor(
        nhwc.transpose(0, 3, 1, 2), out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.channels_last
    )


def _kept(
    prepared: PreparedWeights | None, raw: Callable[[], np.ndarray], pair_starts: Callable[[], np.ndarray]
) -> OnednnWeights:
    """`onednn_weights` of the int8 weights `raw()` (G, N/G, K), pairs at `pair_starts()`: formed
    once and kept on `prepared` (of the same weight, in the same K order: its `raw`), or formed
    now when it is None."""
    if prepared is None:
        return onednn_weights(raw(), pair_starts())
    return prepared.derived("onednn", lambda: onednn_weights(prepared.raw, pair_starts()))


def _requant_scales(
    prepared: PreparedWeights | None, x: QTensor, weight: QTensor, out: QTensor, op: str, kernel_name: str = "jit"
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """`requant_scales_onednn_ref` for this call: kept on `prepared` per (input scale, output
    scale, kernel), as oneDNN's primitive keeps the scales it was created with."""
    form = partial(requant_scales_onednn_ref, x.scale, weight.scale, out.scale, op, weight.per_channel, kernel_name)
    if prepared is None:
        return form()
    return prepared.derived(("onednn scales", x.scale, out.scale, op, kernel_name), form)


def _linear_pair_starts(depth: int) -> np.ndarray:
    """The first k of each `vpmaddubsw` pair of oneDNN's GEMM: 0, 2, 4, ... within each K block."""
    blocks = [np.arange(s, e - 1, 2) for s, e in onednn_gemm_k_blocks(depth)]
    return np.concatenate(blocks + [np.zeros(0, np.int64)]).astype(np.int64)


def _conv_pair_starts(kernel_name: str, taps: int, c_per_g: int) -> np.ndarray:
    """The first k (K = (tap, c)) of each pair of oneDNN's conv kernel: the jit kernel pairs
    channels 0, 2, 4, ... within each tap; depthwise and ref:any sum exactly (no pairs)."""
    if kernel_name != "jit":
        return np.zeros(0, np.int64)
    return (np.arange(taps)[:, None] * c_per_g + np.arange(0, c_per_g - 1, 2)[None, :]).ravel()


def _saturating_dot(a: np.ndarray, a_pairs: np.ndarray, a_zp: int, w64: np.ndarray, pairs: PairWeights) -> np.ndarray:
    """int32 `wrap(sum_k (a - a_zp) w[j, k] + sum_p (sat16(P_p) - P_p))`, (M, K) x (N, K) -> (M, N),
    where `P_p = a_pairs[k] w[j, k] + a_pairs[k+1] w[j, k+1]` for k in `pairs.starts` (`a_pairs`:
    the raw activations the kernel multiplies, 0 where it skips a tap); `w64`: w as float64."""
    total = np.empty((a.shape[0], w64.shape[0]), np.int64)
    for start in range(0, a.shape[0], ROW_BAND):
        band = slice(start, start + ROW_BAND)
        centered = a[band].astype(np.float64) - a_zp
        total[band] = (centered @ w64.T).astype(np.int64)  # exact: integers below 2^53
    correction = pair_saturation_correction(a_pairs[None], pairs)
    if correction is not None:
        total += correction
    return wrap_int32(total)
