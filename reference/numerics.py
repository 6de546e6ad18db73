"""Hardware arithmetic, named for what the CPU does.

Every quantized kernel in torch/FBGEMM is a short sequence of these steps. The
reference spells each formula as a composition of them, so that a reader can see
exactly where a float32 rounding, a fused multiply-add or an int16 saturation
happens.

All functions are element-wise over NumPy arrays (scalars work too) and return
arrays of the dtype the hardware produces: float32 for float steps, int32 for
conversions, int64 for integer intermediates that the caller clamps.
"""

from __future__ import annotations

import numpy as np

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
