"""Hardware arithmetic, named for what the CPU does.

Every quantized kernel in torch/FBGEMM is a short sequence of these steps. The
reference spells each formula as a composition of them, so that a reader can see
exactly where a float32 rounding, a fused multiply-add or an int16 saturation
happens.

All functions are element-wise over NumPy arrays (scalars work too) and return
arrays of the dtype the hardware produces: float32 for float steps, int32 for
conversions, int64 for integer intermediates that the caller clamps.

The last three sections compose them into the building blocks every conv and linear kernel
of an engine shares, in their plain form: FBGEMM's (its `RefImplementations` names) u8 x s8
dot product with int32 accumulation (`dot_u8i8acc32_ref`) and float32 output stage
(`requant_scales_ref`, `requantize_u8acc32_ref`); pytorch_qnnpack's exact u8 x u8
accumulation (`dot_u8u8acc32_qnnpack_ref`) and one-multiply output stage
(`requant_scales_qnnpack_ref`, `requantize_u8acc32_qnnpack_ref`). Both end in the same
x86 integer tail, `pack_u8`. oneDNN's AVX2 kernels: its GEMM's and its conv's u8 x s8 sums
(`dot_u8i8acc32_onednn_gemm_ref`, `dot_u8i8acc32_onednn_conv_ref`) and its float output stage,
which rounds after adding the zero point (`requant_scales_onednn_ref`,
`requantize_u8acc32_onednn_ref`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional

import numpy as np

from .profile import EngineRefusedError

INT32_MIN = np.int32(-(2**31))
INT16_MIN = -(2**15)
INT16_MAX = 2**15 - 1

# The largest float32 below 2^31. FBGEMM's Quantize clamps to it before cvtps_epi32
# (`_mm256_min_ps(x, 2147483520.0f)`), so large positive values saturate instead of
# converting to INT32_MIN. `min_ps` returns its second operand when the first is NaN.
FBGEMM_CVT_UPPER = np.float32(2147483520.0)


def ieee_float_ops() -> np.errstate:
    """A context in which NumPy float steps behave like the CPU's: overflow gives +-inf,
    0 * inf and inf - inf give NaN, x / 0 gives +-inf, and none of it warns.

    Kernels reach these results on purpose (huge inputs, tiny scales); NumPy's warnings
    would be noise (and errors under pytest's filterwarnings=error).
    """
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def f32(x: np.typing.ArrayLike) -> np.ndarray:
    """Round to float32 (IEEE round-to-nearest-even), as any float32 store does.

    Integers convert with one rounding too (`cvtsi2ss`/`cvtdq2ps`), e.g. an int32
    accumulator above 2^24.
    """
    with ieee_float_ops():
        return np.asarray(x).astype(np.float32)


# 2^128 - 2^103: halfway between FLT_MAX and the next power of two; sums from here up round to inf.
_F32_OVERFLOW_THRESHOLD = 2.0**128 - 2.0**103


def fma32(a: np.typing.ArrayLike, b: np.typing.ArrayLike, c: np.typing.ArrayLike) -> np.ndarray:
    """`a*b + c` of float32 operands, rounded ONCE to float32 (vfmadd*ps).

    The float64 product of two float32 values is exact (24+24 < 53 bits), so the float64
    sum is the exact sum rounded once. Rounding it again to float32 may double-round, but
    only when the float64 sum lands exactly ON a float32 rounding boundary the exact sum was
    not on: float64 rounding is monotone and the boundaries are float64 numbers. In the
    float32 normal range the boundaries are the midpoints between neighbours (29 low
    fraction bits 1000...0; the overflow threshold FLT_MAX + ulp/2 is one too); in the
    subnormal range the grid is coarser. Only those elements (rare) go through
    `_fma32_on_boundary`; elsewhere `f32(float64 sum)` is the fma's result.

    >>> import numpy as np
    >>> a, b = np.float32(1 + 2**-23), np.float32(1 - 2**-24)
    >>> c = np.float32(-1)
    >>> float(fma32(a, b, c)) == (1 + 2**-23) * (1 - 2**-24) - 1  # exact: 2^-23 - 2^-24 - 2^-47
    True
    >>> a = np.float32(1 + 2**-12)  # exact 1 + 2^-11 + 2^-24 + 2^-60: float64 lands halfway
    >>> float(fma32(a, a, np.float32(2**-60))) == 1 + 2**-11 + 2**-23
    True
    """
    a64, b64, c64 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float32).astype(np.float64) for v in (a, b, c)))
    with ieee_float_ops():
        total = a64 * b64 + c64
        result = np.array(total, dtype=np.float32)  # an ndarray also for 0-d inputs
        halfway = (total.view(np.uint64) & np.uint64(_BELOW_F32_BITS)) == np.uint64(_F32_HALFWAY)
        boundary = halfway | ((np.abs(total) < _F32_MIN_NORMAL) & (total != 0))
    if boundary.any():
        result[boundary] = _fma32_on_boundary(a64[boundary], b64[boundary], c64[boundary])
    return result


# float64 keeps 29 fraction bits below float32's 23.
_BELOW_F32_BITS = (1 << 29) - 1
_F32_HALFWAY = 1 << 28
_F32_MIN_NORMAL = 2.0**-126


def _fma32_on_boundary(a64: np.ndarray, b64: np.ndarray, c64: np.ndarray) -> np.ndarray:
    """fma32 of float32 values given as float64, exact everywhere (slow): TwoSum gives the
    float64 sum's exact error; on a float32 midpoint the error's sign says which float32
    neighbour the single rounding would pick."""
    with ieee_float_ops():
        product = a64 * b64  # exact
        total = product + c64
        # Knuth's TwoSum: error = (product + c) - total, exactly.
        c_part = total - product
        error = (product - (total - c_part)) + (c64 - c_part)
        rounded = total.astype(np.float32)
        toward_total = np.nextafter(rounded, np.where(total > rounded, np.inf, -np.inf).astype(np.float32))
        on_midpoint = (total != rounded) & (2.0 * total == rounded.astype(np.float64) + toward_total.astype(np.float64))
        # On a midpoint, float64 rounding lost `error`; the exact sum lies beyond the
        # midpoint on error's side. Pick the float32 neighbour on that side.
        exact_beyond_toward = np.sign(error) == np.sign(total - rounded.astype(np.float64))
        fix = on_midpoint & (error != 0) & np.isfinite(total)
        # The overflow threshold FLT_MAX + ulp/2 is a midpoint too, between FLT_MAX and
        # "2^128" (inf): float64 landing on it rounds to inf, although an exact sum just
        # below it rounds to FLT_MAX.
        below_overflow = (np.abs(total) == _F32_OVERFLOW_THRESHOLD) & (np.sign(error) == -np.sign(total))
    result = np.where(fix & exact_beyond_toward, toward_total, rounded)
    result = np.where(below_overflow, np.sign(total) * np.finfo(np.float32).max, result)
    return result.astype(np.float32)


def rne(x: np.typing.ArrayLike) -> np.ndarray:
    """Round half to even, keeping the float type (`std::nearbyint` in the default mode)."""
    return np.rint(x)


def cvt_rne(x: np.typing.ArrayLike) -> np.ndarray:
    """x86 `cvtps_epi32`: float32 to int32, round half to even.

    NaN and values outside the int32 range give INT32_MIN (the "integer indefinite").
    """
    x32 = np.asarray(x, dtype=np.float32)
    # rint in float32 is exact (the nearest integer of a float32 is a float32), and the
    # float32 bounds -2^31 and 2^31 are exact: in range means an integer in int32's range
    # (the largest float32 below 2^31 is 2^31 - 128). ~15x faster than a float64 detour.
    rounded = np.rint(x32)
    with np.errstate(invalid="ignore"):
        in_range = (rounded >= np.float32(-(2.0**31))) & (rounded < np.float32(2.0**31))
        return np.where(in_range, rounded, np.float32(INT32_MIN)).astype(np.int32)


def cvt_rne_fbgemm_clamped(x: np.typing.ArrayLike) -> np.ndarray:
    """FBGEMM Quantize's conversion: `cvt_rne(min(x, 2147483520.0f))`.

    `_mm256_min_ps(x, upper)` returns `upper` for NaN, so NaN and +inf become
    2147483520 instead of INT32_MIN; -inf still converts to INT32_MIN.
    """
    x32 = np.asarray(x, dtype=np.float32)
    clamped = np.where(x32 < FBGEMM_CVT_UPPER, x32, FBGEMM_CVT_UPPER)  # NaN fails `<`
    return cvt_rne(clamped)


def wrap_int32(x: np.typing.ArrayLike) -> np.ndarray:
    """Two's-complement int32 wrap-around of an integer value (vpaddd overflow)."""
    return np.asarray(x, dtype=np.int64).astype(np.int32)


def saturate_int16(x: np.typing.ArrayLike) -> np.ndarray:
    """Clamp an integer to int16, as `vpackssdw`, `vpaddsw` and `vpmaddubsw` do."""
    return np.clip(np.asarray(x, dtype=np.int64), INT16_MIN, INT16_MAX)


def pack_u8(r: np.typing.ArrayLike, zero_point: int, lower: int = 0) -> np.ndarray:
    """The integer tail of FBGEMM's and pytorch_qnnpack's x86 output stages: int32 `r` ->
    uint8 `max(clip(sat16(sat16(r) + zp), 0, 255), lower)`: `packs_epi32`, `adds_epi16` of
    the zero point, `packus_epi16`, then `max_epu8` with `lower` (the zero point under relu).

    >>> pack_u8(np.int32([-2**31, -5, 3, 40000]), 10).tolist(), pack_u8(np.int32([-5]), 10, lower=10).tolist()
    ([0, 5, 13, 255], [10])
    """
    q = saturate_int16(saturate_int16(r) + zero_point)
    return np.clip(q, lower, 255).astype(np.uint8)


# --- FBGEMM's u8 x s8 -> int32 -> u8 building blocks, plain ---------------------------


_RECORDING: contextvars.ContextVar[Optional[dict[str, np.ndarray]]] = contextvars.ContextVar(
    "quantspec_intermediates", default=None
)


@contextlib.contextmanager
def recording_intermediates() -> Iterator[dict[str, np.ndarray]]:
    """Inside the block, the kernels that call `record_steps` store their steps in the dict
    yielded; the last call wins. FBGEMM's output stage (`requantize_u8acc32_ref`, channel axis
    last): "accumulator" (int32), "requantized" (the float32 `xf * mult`), "rounded" (`cvt_rne`
    of it); the 8-bit quantize kernels: "before_rounding" (the float32 value rounded).
    Used to explain a mismatch: which step first differs. Outside the block nothing is stored.

    >>> with recording_intermediates() as steps:
    ...     _ = requantize_u8acc32_ref(np.int32([6]), None, (np.float32(1), np.float32(0.25)), False, 0, False, True)
    >>> steps["requantized"].tolist(), steps["rounded"].tolist()
    ([1.5], [2])
    """
    steps: dict[str, np.ndarray] = {}
    token = _RECORDING.set(steps)
    try:
        yield steps
    finally:
        _RECORDING.reset(token)


def record_steps(**steps: np.ndarray) -> None:
    """Store named intermediate arrays when inside `recording_intermediates` (else nothing)."""
    recording = _RECORDING.get()
    if recording is not None:
        recording.update(steps)


def dot_u8i8acc32_ref(
    a: np.ndarray, a_zp: int, w: np.ndarray, w_zp: np.typing.ArrayLike, saturate_pairs: bool
) -> np.ndarray:
    """The int32 accumulators of FBGEMM's u8 x s8 kernels: (..., K) x (N, K) -> int32 (..., N).

    Mirrors `fbgemm::matmul_u8i8acc32_ref` + the offset terms of `requantize_u8acc32_ref`
    (RefImplementations.cc), and, with `saturate_pairs`, the `vpmaddubsw` kernels: the
    raw products are taken two at a time along K, k = (0, 1), (2, 3), ..., each pair's
    sum saturated to int16 (`saturate_int16`), a lone last product alone (|255 * -128| =
    32640 never saturates), and the pairs summed exactly in int32:
      S[..., j] = sum_p saturate_int16(a[2p] w[j, 2p] + a[2p+1] w[j, 2p+1])
    Then the zero-point terms, as the kernels subtract them with row and column offsets:
      acc[..., j] = wrap_int32(S - a_zp * sum_k w[j, k] - w_zp[j] * sum_k a[k] + K a_zp w_zp[j])
    Without saturation this is `wrap_int32(sum_k (a[k] - a_zp)(w[j, k] - w_zp[j]))`.
    Every int32 add wraps (`vpaddd`), so wrapping once at the end is the same.

    Args:
        a: uint8 activations as the kernel reads them (a conv's padding taps hold a_zp).
        a_zp: the activation zero point.
        w: int8 weights (N, K), K in the kernel's order.
        w_zp: the weight zero point, a scalar or one per row of `w` (N,).
        saturate_pairs: whether the kernel adds products in int16-saturated pairs.

    Hand-worked, K = 2: a = [255, 255] (zp 0), w = [[127, 127]]: the pair 255*127*2 =
    64770 saturates to 32767; exactly, 64770.

    >>> a, w = np.uint8([255, 255]), np.int8([[127, 127]])
    >>> dot_u8i8acc32_ref(a, 0, w, 0, True).tolist(), dot_u8i8acc32_ref(a, 0, w, 0, False).tolist()
    ([32767], [64770])
    """
    a64, w64 = np.asarray(a, np.int64), np.asarray(w, np.int64)
    depth = w64.shape[1]
    raw = np.zeros(a64.shape[:-1] + (w64.shape[0],), np.int64)
    for k in range(0, depth, 2):
        pair = a64[..., k, None] * w64[:, k]
        if k + 1 < depth:
            pair += a64[..., k + 1, None] * w64[:, k + 1]
            if saturate_pairs:
                pair = saturate_int16(pair)
        raw += pair
    w_zp64 = np.asarray(w_zp, np.int64)
    offsets = a_zp * w64.sum(axis=1) + w_zp64 * a64.sum(axis=-1, keepdims=True) - depth * a_zp * w_zp64
    return wrap_int32(raw - offsets)


def requant_scales_ref(
    act_scale: float, w_scale: np.typing.ArrayLike, out_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 constants ATen hands FBGEMM's requantization: `(atws, mult)`.

    `PackedConvWeight::GetQuantizationParams` / `PackedLinearWeight::apply_impl`: the double
    scales are narrowed to float32 first (`float act_scale = act.q_scale()`; the packed
    weight stores `std::vector<float> w_scale`), then one float32 multiply and one float32
    divide: `atws = f32(act_scale * w_scale)`, `mult = f32(atws / out_scale)`. Extreme
    scales overflow or underflow as on the CPU.

    >>> atws, mult = requant_scales_ref(0.5, 0.25, 1.0)
    >>> float(atws), float(mult)
    (0.125, 0.125)
    """
    with ieee_float_ops():
        atws = f32(f32(act_scale) * f32(w_scale))
        return atws, f32(atws / f32(out_scale))


def requantize_u8acc32_ref(
    acc: np.ndarray,
    bias: np.ndarray | None,
    scales: tuple[np.ndarray, np.ndarray],
    per_channel: bool,
    output_zero_point: int,
    relu: bool,
    per_tensor_bias_fma: bool,
) -> np.ndarray:
    """FBGEMM's output stage: int32 accumulators (channel axis last) -> uint8.

    Mirrors `requantizeOutputProcessingAvx2` / `requantizeOutputProcessingGConvAvx2` and the
    depthwise kernels' `requantize_` (every vector tail is a masked copy of the body, so no
    element depends on its position). Per element of output channel j, with
    `(atws, mult) = scales` from `requant_scales_ref`:
      xf = f32(acc)                                   `cvtepi32_ps` (rne above 2^24)
      per-channel bias: xf = f32(xf + f32(bias[j] / atws[j]))     `div_ps`, `add_ps`
      per-tensor bias:  rcp = f32(1.0 / double(atws))    a double divide, then narrowed
          fused:   xf = fma32(bias[j], rcp, xf)            GEMM paths; depthwise on 2.13
          unfused: xf = f32(xf + f32(bias[j] * rcp))       depthwise on 2.14
        (the source writes `add_ps(cvt(x), mul_ps(bias, rcp))`; GCC contracts it to one
        `vfmadd` in the builds `NumericsProfile.depthwise_per_tensor_bias_fma` names)
      r = cvt_rne(f32(xf * mult[j]))          `mul_ps`, `cvtps_epi32` (NaN, out of range -> INT32_MIN)
      q = saturate_int16(saturate_int16(r) + zp)          `packs_epi32`, `adds_epi16`
      out = max(clip(q, 0, 255), zp if relu else 0)       `packus_epi16`, `max_epu8`
    r = INT32_MIN (a tiny output scale) thus gives 0 (zp with relu), not 255. The last three
    steps are `pack_u8`.

    Hand-worked, per-tensor, atws = 0.5, mult = 0.25, zp = 10, no bias:
      acc 6 -> 6 * 0.25 = 1.5 -> rne 2 -> 12;  acc -100 -> -25 -> -15 -> clipped to 0

    >>> scales = (np.float32(0.5), np.float32(0.25))
    >>> requantize_u8acc32_ref(np.int32([[6], [-100]]), None, scales, False, 10, False, True).ravel().tolist()
    [12, 0]
    """
    atws, mult = scales
    xf = f32(acc)
    with ieee_float_ops():
        if bias is not None and per_channel:
            xf = f32(xf + f32(bias / atws))
        elif bias is not None:
            rcp = f32(1.0 / np.float64(np.ravel(atws)[0]))
            xf = fma32(bias, rcp, xf) if per_tensor_bias_fma else f32(xf + f32(bias * rcp))
        requantized = f32(xf * mult)
        r = cvt_rne(requantized)
    record_steps(accumulator=acc, requantized=requantized, rounded=r)
    return pack_u8(r, output_zero_point, output_zero_point if relu else 0)


# --- pytorch_qnnpack's u8 x u8 -> int32 -> u8 building blocks (x86 SSE2 build), plain ------


def normal_scale_f32(scale: np.typing.ArrayLike, what: str) -> np.ndarray:
    """A scale as a pytorch_qnnpack operator takes it, `float(scale)`, which its create
    function refuses unless positive and normal (`scale <= 0.0f || !isnormal(scale)`):
    EngineRefusedError naming `what` (torch: "failed to create ... operator").

    >>> float(normal_scale_f32(0.5, "input scale"))
    0.5
    >>> normal_scale_f32(1e-40, "input scale")  # a float32 subnormal  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    quantspec.reference.profile.EngineRefusedError: pytorch_qnnpack refuses input scale 1e-40
    """
    value = f32(scale)
    if not np.all((value >= np.finfo(np.float32).tiny) & np.isfinite(value)):
        raise EngineRefusedError(f"pytorch_qnnpack refuses {what} {scale}: not a positive normal float32")
    return value


def dot_u8u8acc32_qnnpack_ref(
    a: np.ndarray, a_zp: int, w: np.ndarray, w_zp: np.typing.ArrayLike, bias: np.ndarray | None
) -> np.ndarray:
    """The int32 accumulators of pytorch_qnnpack's conv and linear kernels (`q8gemm`,
    `q8conv`, `q8dwconv`, SSE2): (..., K) x (N, K) -> int32 (..., N).

    At the first run `PackedLinearWeightsQnnp` / `PackedConvWeightsQnnp::apply_impl` shift
    the int8 weights to uint8, `w_u8 = w + 128`, and each zero point alike,
    `w_zp_u8 = uint8(w_zp + 128)` (`make_zero_points_and_scales_tensor`, QnnpackUtils.h).
    The kernels widen `a - a_zp` and `w_u8 - w_zp_u8` to int16 (both within [-255, 255]),
    multiply-add them with `pmaddwd` (a pair is at most 2 * 255 * 255: exact) and add the
    pairs in int32, starting from the int32 bias (`quantize_kernels.quantize_bias_qnnpack`):
      acc[..., j] = wrap_int32(bias[j] + sum_k (a[k] - a_zp)(w_u8[j, k] - w_zp_u8[j]))
    No int16 saturation anywhere, so the K order does not matter; only the int32 adds wrap
    (`paddd`). Padding taps of a conv read a buffer of a_zp and add 0.

    Hand-worked, K = 2: a = [255, 255] (zp 0), w = [[127, 127]] (zp 0): w_u8 = 255,
    w_zp_u8 = 128, 255 * 127 * 2 = 64770 (FBGEMM without VNNI: 32767); bias 5 -> 64775.

    >>> a, w = np.uint8([255, 255]), np.int8([[127, 127]])
    >>> dot_u8u8acc32_qnnpack_ref(a, 0, w, 0, None).tolist()
    [64770]
    >>> dot_u8u8acc32_qnnpack_ref(a, 0, w, 0, np.int32([5])).tolist()
    [64775]
    """
    w_u8 = np.asarray(w, np.int64) + 128
    w_zp_u8 = np.reshape(np.asarray(w_zp, np.int64) + 128, (-1, 1))  # qint8 zero points: 0..255
    acc = (np.asarray(a, np.int64) - a_zp) @ (w_u8 - w_zp_u8).T  # exact in int64
    return wrap_int32(acc if bias is None else acc + bias)


def requant_scales_qnnpack_ref(act_scale: float, w_scale: np.typing.ArrayLike, out_scale: float) -> np.ndarray:
    """pytorch_qnnpack's requantization scale per output channel (`generate_requantization_scales`,
    QnnpackUtils.h; the scales arrive as float32):
      requant[j] = f32(f32(float(w_scale[j]) * float(act_scale)) * f32(1.0f / float(out_scale)))
    three float32 roundings (FBGEMM's `mult` divides instead: `requant_scales_ref`). Every
    channel's scale, and that of the 8 padding channels (weight scale 1.0f), must be positive
    and normal, else EngineRefusedError (torch: "failed to create op with requantization scale").

    >>> requant_scales_qnnpack_ref(0.5, 0.25, 1.0).tolist()
    0.125
    >>> requant_scales_qnnpack_ref(1e-30, 1e30, 1e10)  # padding: 1e-30 / 1e10  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    quantspec.reference.profile.EngineRefusedError: pytorch_qnnpack refuses requantization scale (padding channels)
    """
    with ieee_float_ops():
        inverse_out = f32(np.float32(1.0) / f32(out_scale))
        requant = f32(f32(f32(w_scale) * f32(act_scale)) * inverse_out)
        padding_channels = f32(f32(act_scale) * inverse_out)  # 1.0f * act_scale is exact
    normal_scale_f32(requant, "requantization scale")
    normal_scale_f32(padding_channels, "requantization scale (padding channels)")
    return requant


def requantize_u8acc32_qnnpack_ref(
    acc: np.ndarray, requant: np.typing.ArrayLike, output_zero_point: int, relu: bool
) -> np.ndarray:
    """pytorch_qnnpack's output stage (`q8gemm`, `q8conv`, `q8dwconv` SSE2 kernels, every tail):
    int32 accumulators (channel axis last; the bias is already in them) -> uint8:
      r = cvt_rne(f32(f32(acc) * requant[j]))         `cvtepi32_ps`, `mul_ps`, `cvtps_epi32`
      out = pack_u8(r, zp, zp if relu else 0)         `packs`, `adds` zp, `packus`, `max_epu8`
    (`min_epu8` with 255 changes nothing). No fma: the kernels are SSE2. relu's lower
    bound `activationLimits(..., RELU)` is `QuantizeValue(scale, zp, 0.0) = zp`.

    Hand-worked: acc 6 and -100 with requant 0.25, zp 10: 1.5 -> 2 -> 12; -25 -> -15 -> 0.

    >>> requantize_u8acc32_qnnpack_ref(np.int32([[6], [-100]]), np.float32(0.25), 10, False).ravel().tolist()
    [12, 0]
    """
    with ieee_float_ops():
        r = cvt_rne(f32(f32(acc) * requant))
    return pack_u8(r, output_zero_point, output_zero_point if relu else 0)


# --- oneDNN's u8 x s8 -> int32 -> u8 building blocks (x64 AVX2 kernels, no VNNI), plain ---------

# oneDNN's int8 GEMM blocking on AVX2 without VNNI (`gemm_info_t` for s8u8s32: bk_traditional, bk).
ONEDNN_GEMM_BK_TRADITIONAL = 256
ONEDNN_GEMM_BK = 384


def onednn_gemm_k_blocks(depth: int) -> list[tuple[int, int]]:
    """The K ranges [start, stop) oneDNN's int8 GEMM (`gemm_driver`, AVX2 without VNNI) sums
    one after another: `get_k_padd` gives the block size, `uk` = 1 on AVX2 so nothing rounds it:
      K <= 256:        one block of K
      256 < K < 768:   blocks of (K + 1) // 2 (an odd size shifts the second block's pairs)
      K >= 768:        blocks of 384
    Measured on 1 and 2 threads; the driver may also split K between threads when M and N are
    small and K >= 6146 (its KBLK 3072), which shifts nothing while every slice is a multiple of 4.

    >>> onednn_gemm_k_blocks(10), onednn_gemm_k_blocks(257), onednn_gemm_k_blocks(800)
    ([(0, 10)], [(0, 129), (129, 257)], [(0, 384), (384, 768), (768, 800)])
    """
    if depth <= ONEDNN_GEMM_BK_TRADITIONAL:
        size = max(depth, 1)
    elif depth < 2 * ONEDNN_GEMM_BK:
        size = (depth + 1) // 2
    else:
        size = ONEDNN_GEMM_BK
    return [(start, min(start + size, depth)) for start in range(0, depth, size)]


def dot_u8i8acc32_onednn_gemm_ref(a: np.ndarray, a_zp: int, w: np.ndarray) -> np.ndarray:
    """The int32 accumulators of oneDNN's int8 matmul on AVX2 (`gemm:jit`: `gemm_x8s8s32x_matmul_t`
    -> `gemm_s8u8s32`, kernel `jit_avx2_gemm_s8u8s32_kern`): (..., K) x (N, K) -> int32 (..., N).

    The kernel multiplies raw u8 activations by s8 weights with `vpmaddubsw` (each adjacent pair
    of products saturated to int16), `vpmaddwd` with ones and `vpaddd`, like FBGEMM without VNNI,
    but pairs restart at every K block (`onednn_gemm_k_blocks`). The source zero point enters
    as the GEMM's offset: the driver subtracts `a_zp * sum_k w[j, k]` exactly (weights are
    symmetric, zero point 0):
      acc[..., j] = wrap_int32(sum_blocks S_block[..., j] - a_zp * sum_k w[j, k])
      S_block = dot_u8i8acc32_ref(a[..., block], 0, w[:, block], 0, saturate_pairs=True)

    Hand-worked, K = 257, a = 255 at k = 129 and 130 only, w = 127: the blocks are [0, 129) and
    [129, 257), so k = 129 and 130 form a pair: 255*127*2 = 64770 -> 32767. FBGEMM pairs
    (128, 129) and (130, 131): no pair saturates, 64770.

    >>> a = np.zeros(257, np.uint8); a[129:131] = 255
    >>> dot_u8i8acc32_onednn_gemm_ref(a, 0, np.full((1, 257), 127, np.int8)).tolist()
    [32767]
    """
    a64, w64 = np.asarray(a), np.asarray(w)
    total = np.zeros(a64.shape[:-1] + (w64.shape[0],), np.int64)
    for start, stop in onednn_gemm_k_blocks(w64.shape[1]):
        total += dot_u8i8acc32_ref(a64[..., start:stop], 0, w64[:, start:stop], 0, True)
    return wrap_int32(total - a_zp * w64.astype(np.int64).sum(axis=1))


def dot_u8i8acc32_onednn_conv_ref(
    taps: np.ndarray, a_zp: int, w_taps: np.ndarray, valid: np.ndarray, saturate_pairs: bool
) -> np.ndarray:
    """The int32 accumulators of oneDNN's int8 convolution on AVX2, one group:
    (..., T, C) uint8 taps x (N, T, C) int8 weights -> int32 (..., N), `valid` (..., T) marking
    the taps inside the image.

    `jit_uni_x8s8s32x_fwd_kernel` (`jit_uni_int8:avx2`) and its 1x1 sibling (`jit_uni_int8_1x1`)
    multiply with `vpmaddubsw`: the pairs are adjacent INPUT CHANNELS of one tap, (c0, c1),
    (c2, c3), ... (channels padded with zeros to the block of 4 or 8), saturated to int16, then
    `vpmaddwd` with ones and `vpaddd`. Taps outside the image are skipped, and the source zero
    point is compensated per tap inside the image (the reorder's `-sum w` compensation, plus the
    kernel's padding compensation), so an outside tap adds nothing:
      acc[..., j] = wrap_int32(sum_{t valid} dot_u8i8acc32_ref(taps[..., t, :], a_zp, w[j, t, :], 0, saturate_pairs))
    With `saturate_pairs` False this is the exact `sum_{t valid} sum_c (a - a_zp) w`, which the
    depthwise kernel (`vpmaddwd` of int16 values) and the reference kernel (`ref:any`, int32
    products) compute. FBGEMM instead pairs along its (kh, kw, c) K order across taps and reads
    padding taps as a_zp.

    Hand-worked, C = 2, one tap: a = [255, 255], w = [[127, 127]], zp 0: 32767 (exact 64770);
    the same tap outside the image: 0.

    >>> taps, w = np.full((2, 1, 2), 255, np.uint8), np.full((1, 1, 2), 127, np.int8)
    >>> dot_u8i8acc32_onednn_conv_ref(taps, 0, w, np.array([[True], [False]]), True).tolist()
    [[32767], [0]]
    """
    total = np.zeros(taps.shape[:-2] + (w_taps.shape[0],), np.int64)
    for t in range(w_taps.shape[1]):
        tap = dot_u8i8acc32_ref(taps[..., t, :], a_zp, w_taps[:, t, :], 0, saturate_pairs)
        total += np.where(valid[..., t, None], tap, 0)
    return wrap_int32(total)


def _onednn_reciprocal_of_torch_reciprocal(scale: np.typing.ArrayLike) -> np.ndarray:
    """`f32(1 / f32(1.0 / double(scale)))`: torch hands ideep `1.0 / scale` (a double divide
    narrowed to float), ideep hands oneDNN its reciprocal again. ideep's matmul divides in
    double and narrows, its conv divides in float: the same float32 (a double divide of
    float32 operands, narrowed, is the float32 divide)."""
    with ieee_float_ops():
        torch_side = f32(1.0 / np.asarray(scale, np.float64))
        return f32(np.float32(1.0) / torch_side)


def requant_scales_onednn_ref(
    act_scale: float, w_scale: np.typing.ArrayLike, out_scale: float, op: str, per_channel: bool, kernel: str = "jit"
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The float32 constants of oneDNN's output stage under torch's onednn engine:
    `(factors, dst_inv)`, the accumulator multiplied by each factor in turn, then by `dst_inv`.

    torch passes ideep `1.0/x_scale` and `1.0/out_scale`; the weight scales come from prepack.
    Per op (`op` "linear" or "conv2d"):
      src     = f32(1 / f32(1.0 / double(x_scale)))         both ops (ideep inverts again)
      wei     linear, per tensor:  f32(1 / double(f32(1.0 / double(w_scale))))
                      (PackedLinearWeightsOnednn::prepack stores 1.0/q_scale(); ideep matmul inverts)
              linear, per channel: f32(1 / double(f32(1.0f / float(w_scale[j]))))
              conv2d:              float(w_scale[j])  (PackedConvWeightsOnednn::prepack stores
                      q_scale as float; ideep's conv passes it on)
      factors = (f32(src * wei[j]),)   the jit kernels and the matmul (`precompute_scales`)
                (src, wei[j])          `kernel` "ref": oneDNN 3.12's `ref_convolution_int8_fwd_t`
                                       multiplies by each in turn (measured: 17 of 17
                                       discriminating cases; the product disagreed in 11)
      dst     = f32(1.0f / f32(1.0 / double(out_scale)))    ideep
      dst_inv = f32(1.0f / dst)                             DEFINE_ARG_SCALES_BUFFER inverts DST scales
    The reciprocal round trips move some scales by one ulp from float(x_scale) etc.

    >>> factors, dst_inv = requant_scales_onednn_ref(0.5, 0.25, 4.0, "linear", False)
    >>> [float(f) for f in factors], float(dst_inv)
    ([0.125], 0.25)
    """
    with ieee_float_ops():
        src = _onednn_reciprocal_of_torch_reciprocal(act_scale)
        if op == "conv2d":
            wei = f32(w_scale)
        elif per_channel:
            stored = f32(np.float32(1.0) / f32(w_scale))
            wei = f32(1.0 / stored.astype(np.float64))
        else:
            wei = _onednn_reciprocal_of_torch_reciprocal(w_scale)
        dst = _onednn_reciprocal_of_torch_reciprocal(out_scale)
        factors = (src, wei) if kernel == "ref" else (f32(src * wei),)
        return factors, f32(np.float32(1.0) / dst)


def requantize_u8acc32_onednn_ref(
    acc: np.ndarray,
    bias: np.ndarray | None,
    scales: tuple[tuple[np.ndarray, ...], np.ndarray],
    output_zero_point: int,
    relu: bool,
    kernel: str = "jit",
) -> np.ndarray:
    """oneDNN's int8 output stage (AVX2): int32 accumulators (channel axis last) -> uint8.

    The conv kernels' `store_output` (`jit_uni_x8s8s32x_fwd_kernel`), the matmul's post-processing
    kernel (`jit_pp_kernel_t`) and the reference conv (`ref_convolution_int8_fwd_t`, `kernel`
    "ref") all do, per element of output channel j, with `(factors, dst_inv) =
    requant_scales_onednn_ref(...)`:
      v = f32(acc); v = f32(v * f[j]) for f in factors    `cvtdq2ps`, `mulps` (no fma)
      v = f32(v + bias[j])                      the float32 bias, as given (`addps`)
      relu, before the dst scale: jit `max(v, 0)` (`maxps`: NaN and -inf give 0);
            ref `v if v > 0 else 0 * v` (the eltwise post-op: -inf and NaN give NaN)
      v = f32(v * dst_inv)                      `mulps`
      v = f32(v + float(zp))                    the dst zero point, in float, BEFORE rounding
      out = cvt_rne(min(max(v, 0), 255))        saturate in float, `cvtps2dq`, pack; NaN gives 0
    FBGEMM instead adds `bias / atws` before its single multiply and the zero point after rounding.

    Hand-worked, scale 0.25, dst_inv 1, zp 11, no bias (FBGEMM's same constants in brackets):
      acc 6:  1.5 + 11 = 12.5 -> 12 (rne)     [rne(1.5) = 2, + 11 = 13]
      acc 10: 2.5 + 11 = 13.5 -> 14           [rne(2.5) = 2, + 11 = 13]

    >>> scales = ((np.float32(0.25),), np.float32(1.0))
    >>> requantize_u8acc32_onednn_ref(np.int32([[6], [10]]), None, scales, 11, False).ravel().tolist()
    [12, 14]
    """
    factors, dst_inv = scales
    with ieee_float_ops():
        v = f32(acc)
        for factor in factors:
            v = f32(v * factor)
        if bias is not None:
            v = f32(v + bias)
        if relu:
            v = np.where(v > 0, v, np.float32(0) if kernel != "ref" else f32(np.float32(0) * v))
        v = f32(f32(v * dst_inv) + np.float32(output_zero_point))
        clamped = np.minimum(np.maximum(v, np.float32(0)), np.float32(255))
        out = np.where(np.isnan(clamped), np.float32(0), clamped)
    return cvt_rne(out).astype(np.uint8)
