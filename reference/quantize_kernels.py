"""The float -> integer quantization formulas that many ops share.

torch has three ways to turn a float32 into a quantized integer, and an op's result
at exact .5 ties depends on which one it calls:

* `fbgemm_quantize_u8s8`: FBGEMM's vectorized `Quantize` (quantize_per_tensor of
  8-bit types, conv/linear activations).
* `quantize_val`: ATen's scalar `at::native::quantize_val` -> `fbgemm::Quantize<T>`
  (per-channel quantize, qint32 (pytorch_qnnpack's int32 bias: `quantize_bias_qnnpack`),
  and every scalar tail of a vectorized ATen kernel).
* `aten_vec_quantize_round_then_add_zp`: ATen's `Vectorized<q>::quantize` (the vector
  body of qadd and of several pooling kernels).

Each differs in where the zero point is added relative to rounding, in how NaN and
out-of-range values come out, and (between torch releases) in the order itself.
"""

from __future__ import annotations

import numpy as np

from .numerics import cvt_rne_fbgemm_clamped, f32, fma32, ieee_float_ops, record_steps, rne, wrap_int32
from .profile import NumericsProfile
from .qtensor import QDtype


def inverse_scale_f32(scale: np.typing.ArrayLike) -> np.ndarray:
    """`1.0f / static_cast<float>(scale)`: the double scale is narrowed, then inverted in float32."""
    with ieee_float_ops():  # float(scale) may be 0 (tiny doubles) or inf (huge ones)
        return f32(np.float32(1.0) / f32(scale))


def fbgemm_quantize_u8s8(
    x: np.ndarray, scale: float, zero_point: int, dtype: QDtype, profile: NumericsProfile
) -> np.ndarray:
    """FBGEMM `QuantizeAvx2<T, LEGACY>` (QuantUtilsAvx2.cc), 8-bit outputs.

    torch 2.13 (LEGACY): `t = fma32(x, inv, float(zp))` (zp before rounding, one rounding);
    `q = clamp(cvt_rne(min(t, 2147483520.0f)))`.
    torch 2.14: `t = f32(x * inv)`; `q = clamp(wrap_int32(cvt_rne(min(t, 2147483520.0f)) + zp))`:
    the zero point is an int32 add after rounding, which wraps, so +inf/NaN with
    zp >= 128 give 0 (quint8).

    The masked tail uses the same arithmetic, so results do not depend on length.
    """
    inv = inverse_scale_f32(scale)
    if profile.zero_point_before_rounding:
        t = fma32(x, inv, np.float32(zero_point))
        record_steps(before_rounding=t)
        if dtype is not QDtype.qint32:
            return _clamp_rne_8bit(t, dtype)
        return np.clip(cvt_rne_fbgemm_clamped(t), dtype.qmin, dtype.qmax).astype(dtype.storage)
    # 2.14: round, then an int32 add of the zero point: ATen's vector quantize formula.
    return aten_vec_quantize_round_then_add_zp(x, inv, zero_point, dtype)


def _clamp_rne_8bit(t: np.ndarray, dtype: QDtype) -> np.ndarray:
    """`clip(cvt_rne_fbgemm_clamped(t), qmin, qmax)` for 8-bit dtypes, in float32.

    Equal because the bounds are small integers: NaN, +inf and t >= 2147483520 give qmax
    (`fmin` drops NaN, as `min_ps` does); -inf and t < -2^31 give qmin; in between,
    cvt_rne(t) = rint(t), and rint is monotone and keeps integers, so clipping before or
    after it agrees.
    """
    clamped = np.fmax(np.fmin(t, np.float32(dtype.qmax)), np.float32(dtype.qmin))
    return np.rint(clamped, out=clamped).astype(dtype.storage)


def quantize_val(
    x: np.ndarray,
    scale: np.typing.ArrayLike,
    zero_point: np.typing.ArrayLike,
    dtype: QDtype,
    profile: NumericsProfile,
) -> np.ndarray:
    """FBGEMM's scalar `fbgemm::Quantize<T, LEGACY>(float, zp, float scale, precision)`
    (QuantUtils.h), reached through ATen's `quantize_val` (per-channel quantize, scalar
    tails) and through FBGEMM's array `Quantize` when precision != 8 (qint32 per-tensor).
    2.13's FBGEMM defaults LEGACY to true: `nearbyint(zp + t)`; 2.14's has only
    `zp + nearbyint(t)`. `zp + ...` is an int32 + float, i.e. a float32 add.

    `t = f32(x * f32(1.0f / float(scale)))`, then
    torch 2.13: `u = rne(f32(float(zp) + t))` (zp before rounding, a float32 add);
    torch 2.14: `u = f32(float(zp) + rne(t))` (round first, then a float32 add).
    `clamp<double, T>` clamps in double with std::max/std::min, which pass NaN through,
    and the double -> T conversion of NaN is `cvttsd2si`'s INT32_MIN, truncated to T's
    bits: NaN gives 0 for quint8/qint8 and INT32_MIN for qint32; +-inf clamp to qmax/qmin.

    `scale` and `zero_point` broadcast against `x` (per-channel callers pass columns).
    """
    x = np.asarray(x, dtype=np.float32)
    zp = f32(np.asarray(zero_point, dtype=np.float64))
    with ieee_float_ops():
        t = f32(x * inverse_scale_f32(scale))
        if profile.zero_point_before_rounding:
            u = rne(f32(zp + t))
        else:
            u = f32(zp + rne(t))
    clamped = np.clip(u.astype(np.float64), dtype.qmin, dtype.qmax)  # NaN stays NaN
    nan_as_int32_min = np.where(np.isnan(clamped), float(-(2**31)), clamped).astype(np.int64)
    return nan_as_int32_min.astype(np.int32).astype(dtype.storage)  # truncating, like the C cast


def aten_vec_quantize_round_then_add_zp(
    x: np.ndarray, inverse_scale: np.float32, zero_point: int, dtype: QDtype
) -> np.ndarray:
    """ATen `Vectorized<quint8/qint8>::quantize` (vec256_qint.h, `QuantizeAvx2`):
    `clamp(wrap_int32(cvt_rne(min(f32(x * inv), 2147483520.0f)) + zp))`.

    Round first, then an int32 add of the zero point that wraps on overflow. Like FBGEMM,
    `QuantizeAvx2` clamps with `_mm256_min_ps(x, int32_float_max_val)` before converting,
    so +inf, NaN and huge products become 2147483520 (qmax unless the zp add wraps);
    -inf and huge negative products convert to INT32_MIN. The same in 2.13 and 2.14.
    """
    with ieee_float_ops():
        scaled = f32(np.asarray(x, dtype=np.float32) * inverse_scale)
        rounded = cvt_rne_fbgemm_clamped(scaled)
    record_steps(before_rounding=scaled)
    shifted = wrap_int32(rounded.astype(np.int64) + zero_point)
    return np.clip(shifted, dtype.qmin, dtype.qmax).astype(dtype.storage)


def quantize_bias_qnnpack(
    bias: np.ndarray | None, act_scale: float, weight_scale: np.typing.ArrayLike, profile: NumericsProfile
) -> np.ndarray | None:
    """pytorch_qnnpack's int32 bias (`quant_utils::QuantizeBias`, QuantUtils.h), formed at the
    first run of a qnnpack-packed conv or linear, beside the exact accumulation
    (`numerics.dot_u8u8acc32_qnnpack_ref`): the float bias quantized to qint32 with zero point
    0 and scale `double(w_scale[j]) * double(act_scale)` (a double product of the stored
    doubles; per-tensor `quantize_per_tensor`, per-channel `quantize_per_channel`, both
    `quantize_val` here): `clamp(rne(f32(bias[j] * inv)))`, `inv = f32(1.0f / float(scale))`.
    Zero point 0 makes 2.13 and 2.14 agree. None stays None (no bias: adds 0).

    Hand-worked: bias 0.5 with scale 1 * 1: rne(0.5) = 0 (FBGEMM adds 0.5 in float instead);
    bias 3e9 clamps to INT32_MAX.

    >>> from quantspec.reference.profile import DEFAULT_PROFILE
    >>> quantize_bias_qnnpack(np.float32([0.5, 1.5, 3e9]), 1.0, 1.0, DEFAULT_PROFILE).tolist()
    [0, 2, 2147483647]
    """
    if bias is None:
        return None
    scale = np.float64(act_scale) * np.asarray(weight_scale, np.float64)
    return quantize_val(bias, scale, 0, QDtype.qint32, profile)
