"""The hardware primitives: fma32 against the C library's fmaf, cvt_rne, saturation, wrap."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra import numpy as hnp

from quantspec.reference.numerics import (
    INT32_MIN,
    cvt_rne,
    cvt_rne_fbgemm_clamped,
    f32,
    fma32,
    saturate_int16,
    wrap_int32,
)


def _libm_fmaf():
    path = ctypes.util.find_library("m")
    if path is None:
        pytest.skip("no C math library to serve as the fmaf oracle")
    fmaf = ctypes.CDLL(path).fmaf
    fmaf.restype = ctypes.c_float
    fmaf.argtypes = [ctypes.c_float] * 3
    return fmaf


def test_fma32_single_rounding_where_float64_double_rounds():
    # a*b = (1 - 2^-15)(1 + 2^-15) * 2^-16 = 2^-16 - 2^-46, c = 256 + 2^-15 (odd last bit).
    # Exact sum: c + 2^-16 - 2^-46, just below the float32 midpoint c + 2^-16 -> rounds to c.
    # float64 first rounds to the midpoint (its ulp at 256 is 2^-44), then ties-to-even
    # would give c + 2^-15: the double rounding fma32 must avoid.
    a = np.float32(1 - 2**-15)
    b = np.float32((1 + 2**-15) * 2**-16)
    c = np.float32(256 + 2**-15)
    naive = np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    assert naive == np.float32(256 + 2**-14)
    assert fma32(a, b, c) == c


def test_fma32_mirror_case_rounds_up():
    # a*b = -(2^-16 - 2^-46), c = 256 + 2^-15 (odd last bit). Exact sum c - 2^-16 + 2^-46 is just
    # above the midpoint between 256 (even) and c, so it rounds to c. float64 rounding lands on the
    # midpoint and ties-to-even would go down to 256.
    a, b = np.float32(1 - 2**-15), np.float32(-(1 + 2**-15) * 2**-16)
    c = np.float32(256 + 2**-15)
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(256)
    assert fma32(a, b, c) == c


def test_fma32_rounds_just_below_the_overflow_threshold_to_flt_max():
    # a*b = (1 + 2^-23)(1 - 2^-23) 2^103 = 2^103 - 2^57, c = FLT_MAX = 2^128 - 2^104.
    # Exact sum 2^128 - 2^103 - 2^57: just below the threshold FLT_MAX + ulp/2, so -> FLT_MAX.
    # float64 rounds it onto the threshold, and float32 rounding from there gives inf.
    a, b = np.float32(1 + 2**-23), np.float32((1 - 2**-23) * 2.0**103)
    c = np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(np.float64(a) * np.float64(b) + np.float64(c)))
    assert fma32(a, b, c) == c and fma32(a, -b, -c) == -c
    assert np.isinf(fma32(np.float32(2.0**103), np.float32(1), c))  # exactly on it: ties away to inf


finite_f32 = hnp.from_dtype(np.dtype(np.float32), allow_nan=False, allow_infinity=False)


@given(
    hnp.arrays(np.float32, 64, elements=finite_f32),
    hnp.arrays(np.float32, 64, elements=finite_f32),
    hnp.arrays(np.float32, 64, elements=finite_f32),
)
def test_fma32_matches_c_fmaf(a, b, c):
    fmaf = _libm_fmaf()
    expected = np.array([fmaf(x, y, z) for x, y, z in zip(a, b, c)], dtype=np.float32)
    assert np.array_equal(fma32(a, b, c).view(np.uint32), expected.view(np.uint32))


def test_cvt_rne_ties_to_even_and_integer_indefinite():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, np.nan, np.inf, -np.inf, 2.0**31, -(2.0**31)], dtype=np.float32)
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2; NaN, +-inf and 2^31 are out of
    # range -> INT32_MIN; -2^31 is representable.
    assert cvt_rne(x).tolist() == [0, 2, 2, 0, -2] + [int(INT32_MIN)] * 4 + [-(2**31)]


def test_fbgemm_clamped_conversion_saturates_nan_and_positive_overflow():
    x = np.array([np.nan, np.inf, 3e9, -np.inf], dtype=np.float32)
    # min_ps(x, 2147483520) sends NaN, +inf and 3e9 to 2147483520, which converts exactly.
    assert cvt_rne_fbgemm_clamped(x).tolist() == [2147483520, 2147483520, 2147483520, -(2**31)]


def test_wrap_and_saturate():
    assert wrap_int32(np.int64(2**31)).item() == -(2**31)
    assert wrap_int32(np.int64(-(2**31) - 1)).item() == 2**31 - 1
    assert saturate_int16(np.array([40000, -40000, 5])).tolist() == [32767, -32768, 5]


def test_f32_rounds_int_accumulators_above_2_24():
    # 2^24 + 1 is not a float32; ties-to-even gives 2^24. 2^24 + 3 -> 2^24 + 4.
    assert f32(np.int32(2**24 + 1)) == np.float32(2**24)
    assert f32(np.int32(2**24 + 3)) == np.float32(2**24 + 4)
