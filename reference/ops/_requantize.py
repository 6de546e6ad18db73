"""FBGEMM's requantization of an int32 accumulator to quint8, shared by conv and linear.

torch's fbgemm conv/linear kernels end every path (GEMM, groupwise, depthwise) with the
same float32 sequence; only the per-tensor bias step differs between the depthwise
kernel and the others (and, for depthwise, between torch releases). The parameters are
formed once per call by ATen (`PackedConvWeight::GetQuantizationParams`,
`PackedLinearWeight::apply_impl`) and the per-element steps by FBGEMM
(`requantizeOutputProcessingAvx2`, `requantizeOutputProcessingGConvAvx2` and the
depthwise `requantize_`). Every vector tail is a masked copy of the vector body, so the
result never depends on the channel count or the position of an element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import INT16_MAX, INT16_MIN, cvt_rne, f32, fma32, ieee_float_ops
from ._validate import as_float32_array


@dataclass(frozen=True)
class RequantParams:
    """The float32 constants of one requantization, one entry per output channel.

    Attributes:
        act_times_w_scale: `f32(float(act_scale) * float(w_scale[j]))` (ATen, float32 multiply).
        multiplier: `f32(act_times_w_scale[j] / float(out_scale))` (ATen, float32 divide).
        per_channel: whether the weight was per-channel (FBGEMM `OUT_CHANNEL` granularity),
            which selects the bias formula.
    """

    act_times_w_scale: np.ndarray
    multiplier: np.ndarray
    per_channel: bool

    def channel_band(self, channels: slice) -> RequantParams:
        """The constants of the output channels `channels`."""
        return RequantParams(self.act_times_w_scale[channels], self.multiplier[channels], self.per_channel)


def requant_params(
    act_scale: float, weight_scale: float | np.ndarray, out_scale: float, out_channels: int
) -> RequantParams:
    """The constants ATen hands FBGEMM.

    The double scales are narrowed to float32 first (`float act_scale = act.q_scale()`,
    the packed weight stores `std::vector<float> w_scale`), then
    `atws = f32(act_scale * w_scale)` and `mult = f32(atws / float(out_scale))`.
    A per-tensor weight gives one value, broadcast to every channel.
    """
    per_channel = np.ndim(weight_scale) != 0
    with ieee_float_ops():  # extreme scales overflow/underflow in float32, as on the CPU
        atws = f32(f32(act_scale) * f32(weight_scale))
        multiplier = f32(atws / f32(out_scale))
    atws = np.broadcast_to(atws, (out_channels,)).astype(np.float32)
    multiplier = np.broadcast_to(multiplier, (out_channels,)).astype(np.float32)
    return RequantParams(atws, multiplier, per_channel)


def requantize_u8acc32(
    acc: np.ndarray,
    bias: np.ndarray | None,
    params: RequantParams,
    output_zero_point: int,
    relu: bool,
    per_tensor_bias_fma: bool,
) -> np.ndarray:
    """int32 accumulators (channel axis last) -> quint8 outputs, as FBGEMM's AVX2 requantization.

    `acc` holds sum (a - a_zp)(w - w_zp) wrapped to int32, either as int32 or already as
    the float32 `cvtepi32_ps` makes of it (what `exact_matmul` returns); a float32 `acc`
    is used as the work buffer and overwritten. Per element of output channel j:
      xf = f32(acc)                                  (`cvtepi32_ps`, rne above 2^24)
      per-channel bias: xf = f32(xf + f32(bias[j] / atws[j]))       (`div_ps`, `add_ps`)
      per-tensor bias:  rcp = f32(1.0 / double(atws))  (a double divide, then narrowed)
          fused (GEMM paths; depthwise on 2.13): xf = fma32(bias[j], rcp, xf)
          unfused (depthwise on 2.14):           xf = f32(xf + f32(bias[j] * rcp))
        the source writes `add_ps(cvt(x), mul_ps(bias, rcp))`; GCC contracts it to one
        `vfmadd` where noted (measured, see `NumericsProfile.depthwise_per_tensor_bias_fma`).
      r = cvt_rne(f32(xf * mult[j]))   (`mul_ps`, `cvtps_epi32`: out of range or NaN -> INT32_MIN)
      out = max(relu ? zp : 0, packus(adds_epi16(packs_epi32(r), zp)))
    The int16 saturations make r = INT32_MIN (a tiny output scale) come out as 0 (zp with
    relu), not 255: the INT32_MIN pitfall.

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


def checked_bias(bias: np.ndarray | None, out_channels: int) -> np.ndarray | None:
    """bias must be None or float32 of shape (out_channels,)."""
    if bias is None:
        return None
    bias32 = as_float32_array(bias, "bias")
    if bias32.shape != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {bias32.shape}")
    return bias32
