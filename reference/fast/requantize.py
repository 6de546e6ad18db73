"""`numerics.requantize_u8acc32_ref`, fast: in place on a float32 buffer, one clamp for the integer tail.

The plain definition converts to int32 and saturates twice; `_clamped_in_range` proves that,
whenever no value is NaN or >= 2^31, one float32 clamp before `rint` gives the same uint8.
The constants are formed once per prepared weight and scale pair (`RequantParams`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import (
    INT16_MAX,
    INT16_MIN,
    cvt_rne,
    f32,
    fma32,
    ieee_float_ops,
    requant_scales_qnnpack_ref,
    requant_scales_ref,
)


@dataclass(frozen=True)
class RequantParams:
    """The float32 constants of one requantization, one entry per output channel.

    Attributes:
        act_times_w_scale: `f32(float(act_scale) * float(w_scale[j]))` (ATen, float32 multiply).
        multiplier: FBGEMM's `f32(act_times_w_scale[j] / float(out_scale))` (ATen, float32
            divide), or pytorch_qnnpack's `requant_scales_qnnpack_ref` (`qnnpack_requant_params`;
            its int32 bias is inside the accumulator, so no float bias step reads the rest).
        per_channel: whether the weight was per-channel (FBGEMM `OUT_CHANNEL` granularity),
            which selects the bias formula.
    """

    act_times_w_scale: np.ndarray
    multiplier: np.ndarray
    per_channel: bool

    def channel_band(self, channels: slice) -> RequantParams:
        """The constants of the output channels `channels`."""
        return RequantParams(self.act_times_w_scale[channels], self.multiplier[channels], self.per_channel)

    def tiled(self, width: int) -> RequantParams:
        """The constants repeated `width` times: for accumulators laid out (..., width * OC),
        e.g. rows of `width` pixels, whose steps then run along whole rows."""
        return RequantParams(np.tile(self.act_times_w_scale, width), np.tile(self.multiplier, width), self.per_channel)


def requant_params(
    act_scale: float, weight_scale: float | np.ndarray, out_scale: float, out_channels: int, library: str = "fbgemm"
) -> RequantParams:
    """`requant_scales_ref` (library "fbgemm") or `requant_scales_qnnpack_ref` ("qnnpack"), one
    entry per output channel (a per-tensor weight's broadcast)."""
    atws, multiplier = requant_scales_ref(act_scale, weight_scale, out_scale)
    if library == "qnnpack":  # f32(atws * f32(1 / out_scale)) instead of FBGEMM's divide
        multiplier = requant_scales_qnnpack_ref(act_scale, weight_scale, out_scale)
    return RequantParams(
        np.broadcast_to(atws, (out_channels,)).astype(np.float32),
        np.broadcast_to(multiplier, (out_channels,)).astype(np.float32),
        np.ndim(weight_scale) != 0,
    )


def requantize_u8acc32(
    acc: np.ndarray,
    bias: np.ndarray | None,
    params: RequantParams,
    output_zero_point: int,
    relu: bool,
    per_tensor_bias_fma: bool,
) -> np.ndarray:
    """`requantize_u8acc32_ref` (same arguments but the constants): int32 accumulators
    (channel axis last) -> uint8.

    `acc` is int32, or already the float32 `cvtepi32_ps` makes of it (what `exact_matmul`
    returns); a float32 `acc` is used as the work buffer and overwritten.

    Hand-worked, per-tensor, atws = 0.5, mult = 0.25, zp = 10, no bias:
      acc 6 -> 6*0.25 = 1.5 -> rne 2 -> 12;  acc -100 -> -25 -> -15 -> packus 0

    >>> p = RequantParams(np.float32([0.5]), np.float32([0.25]), per_channel=False)
    >>> requantize_u8acc32(np.int32([[6], [-100]]), None, p, 10, False, True).ravel().tolist()
    [12, 0]
    """
    xf = acc if acc.dtype == np.float32 else f32(acc)
    with ieee_float_ops():  # huge/NaN biases and extreme scales give inf/NaN, as on the CPU
        if bias is not None:
            xf = _add_bias(xf, bias, params, per_tensor_bias_fma)
        np.multiply(xf, params.multiplier, out=xf)  # mul_ps: float32 x float32, one rounding
    lower = output_zero_point if relu else 0
    if xf.size and xf.max() < _CVT_LIMIT:  # no NaN either (it fails the comparison)
        return _clamped_in_range(xf, output_zero_point, lower)
    rounded = cvt_rne(xf)
    # The integer tail in place on int32 (each clip is `saturate_int16` / vpackuswb's uint8 clamp
    # without their int64 copies: these arrays are as large as the output).
    np.clip(rounded, INT16_MIN, INT16_MAX, out=rounded)  # packs_epi32
    rounded += np.int32(output_zero_point)  # adds_epi16: |sum| < 2^16, no int32 overflow ...
    np.clip(rounded, INT16_MIN, INT16_MAX, out=rounded)  # ... then its int16 saturation
    np.clip(rounded, lower, 255, out=rounded)  # packus_epi16 (0..255), max_epu8 with relu ? zp : 0
    return rounded.astype(np.uint8)


# cvtps_epi32 converts every float32 in [-2^31, 2^31) (the largest below 2^31 is 2^31 - 128).
_CVT_LIMIT = np.float32(2.0**31)


def _clamped_in_range(xf: np.ndarray, output_zero_point: int, lower: int) -> np.ndarray:
    """The integer tail of `requantize_u8acc32` when no xf is NaN or >= 2^31, in float32.

    For xf >= -2^31, r = cvt_rne(xf) = rint(xf), exactly (rint of a float32 is a float32);
    below, cvt_rne gives INT32_MIN, which the saturations below map to `lower`, as
    clamping xf to `lower - zp` first does, so one max() decides this path. The three
    saturations then compose to one clamp: clamp(clamp16(clamp16(r) + zp), lower, 255) =
    clamp(r + zp, lower, 255), since 0 <= lower <= 255 lie inside int16 and adding zp is
    monotone; that is clamp(r, lower - zp, 255 - zp) + zp, and clamping before rint gives
    the same (rint is monotone and keeps the integer bounds). The final add of zp to
    integers in [lower - zp, 255 - zp] is exact and lands in uint8.
    """
    np.clip(xf, lower - output_zero_point, 255 - output_zero_point, out=xf)
    np.rint(xf, out=xf)
    out = np.empty(xf.shape, np.uint8)
    return np.add(xf, np.float32(output_zero_point), out=out, casting="unsafe")


def _add_bias(xf: np.ndarray, bias: np.ndarray, params: RequantParams, fused: bool) -> np.ndarray:
    """The float bias step of `requantize_u8acc32` (see there for the formulas)."""
    if params.per_channel:
        return np.add(xf, f32(bias / params.act_times_w_scale), out=xf)  # add_ps: one float32 rounding
    # Per-tensor: one reciprocal, formed in double (`1.0 / act_times_w_scale[0]`).
    rcp = f32(1.0 / params.act_times_w_scale[:1].astype(np.float64))
    if fused:
        return fma32(bias, rcp, xf)
    return np.add(xf, f32(bias * rcp), out=xf)  # add_ps: one float32 rounding
