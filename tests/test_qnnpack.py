"""Engines, NumPy only (no torch needed): the profile's engine rule and the minimal inputs
where qnnpack differs from fbgemm. The same ops against torch under the qnnpack engine:
tests/test_qnnpack_torch.py."""

from __future__ import annotations

import numpy as np
import pytest
from qtensors import q_s8, q_u8

from quantspec.reference import fast
from quantspec.reference.ops import (
    add,
    avg_pool2d,
    clamp,
    conv2d,
    hardswish,
    hardtanh,
    linear,
)
from quantspec.reference.profile import (
    ENGINES,
    PROFILES,
    EngineNotSpecifiedError,
    EngineRefusedError,
    NumericsProfile,
    get_profile,
)
from quantspec.reference.qtensor import MemoryFormat, QTensor

AVX2_FBGEMM = get_profile("torch2.13-avx2-fbgemm")
QNNPACK = get_profile("torch2.13-avx2-qnnpack")
CL = MemoryFormat.channels_last


# --- the profile's engines (NumPy only) -------------------------------------------------------


def test_every_release_cpu_and_engine_is_a_profile():
    assert len(PROFILES) == 2 * 3 * len(ENGINES) and set(ENGINES) == {"fbgemm", "qnnpack", "onednn", "x86"}
    assert get_profile("torch2.14-avx512_vnni-x86") == NumericsProfile("2.14", "avx512_vnni", "x86")
    with pytest.raises(ValueError, match="engine"):
        NumericsProfile("2.13", "avx2", "xnnpack")


@pytest.mark.parametrize(
    "cpu, zero_point, groups, library",
    [
        ("avx512_vnni", 0, 1, "onednn"),
        ("avx512_vnni", np.zeros(4, np.int64), 100, "onednn"),
        ("avx512_vnni", 0, 101, "fbgemm"),  # groups > 100
        ("avx512_vnni", np.array([0, 0, 1, 0]), 1, "fbgemm"),  # asymmetric per-channel weight
        ("avx512_vnni", 5, 1, "fbgemm"),
        ("avx512", 0, 1, "fbgemm"),  # no VNNI
        ("avx2", 0, 1, "fbgemm"),
    ],
)
def test_x86_conv_library_rule(cpu, zero_point, groups, library):
    profile = NumericsProfile("2.13", cpu, "x86")
    assert profile.conv2d_library(zero_point, groups) == library
    assert profile.linear_library == "fbgemm"  # x86 linear is always FBGEMM's


def test_onednn_conv_and_linear_are_not_specified_and_its_aten_ops_are_fbgemms():
    onednn = get_profile("torch2.13-avx512_vnni-onednn")
    x, w = q_u8(np.full((1, 1, 3, 3), 7)), q_s8(np.ones((2, 1, 1, 1)))
    for conv in (conv2d, fast.conv2d):
        with pytest.raises(EngineNotSpecifiedError, match="oneDNN"):
            conv(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1.0, 0, profile=onednn)
    for dense in (linear, fast.linear):
        with pytest.raises(EngineNotSpecifiedError, match="oneDNN"):
            dense(q_u8([[1, 2]]), q_s8([[1, 1]]), None, 1.0, 0, profile=onednn)
    # The x86 engine's oneDNN choice (VNNI, symmetric weights) is refused the same way.
    with pytest.raises(EngineNotSpecifiedError):
        conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1.0, 0, profile=get_profile("torch2.13-avx512_vnni-x86"))
    a = q_u8(np.arange(70) % 256, 0.5, 3)
    fbgemm = get_profile("torch2.13-avx512_vnni-fbgemm")
    assert np.array_equal(add(a, a, 0.75, 9, profile=onednn).int_repr, add(a, a, 0.75, 9, profile=fbgemm).int_repr)


def test_x86_without_vnni_is_fbgemm():
    rng = np.random.default_rng(0)
    x = QTensor(rng.integers(0, 256, (1, 16, 6, 6)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-128, 128, (8, 16, 3, 3)).astype(np.int8), 0.01, 0, "qint8")  # symmetric
    args = (x, w, rng.normal(0, 1, 8).astype(np.float32), (1, 1), (1, 1), (1, 1), 1, 0.3, 7)
    x86 = conv2d(*args, profile=get_profile("torch2.13-avx2-x86")).int_repr
    assert np.array_equal(x86, conv2d(*args, profile=AVX2_FBGEMM).int_repr)


# --- minimal inputs where qnnpack differs from fbgemm (docs/profiles.md) ----------------------


def test_requantization_multiplies_by_the_reciprocal():
    # x = [[9]] (scale 0.1), w = [[1]] (scale 1), output scale 0.6: fbgemm f32(0.1f / 0.6f) =
    # 0.16666666, 9x = 1.4999999 -> 1; qnnpack f32(0.1f * f32(1 / 0.6f)) = 0.16666667, 9x = 1.5 -> 2.
    args = (q_u8([[9]], 0.1), q_s8([[1]]), None, 0.6, 0)
    assert linear(*args, profile=AVX2_FBGEMM).int_repr.tolist() == [[1]]
    assert linear(*args, profile=QNNPACK).int_repr.tolist() == [[2]]


def test_bias_is_rounded_to_int32_before_the_sum():
    # x = [[1]], w = [[1]], scales 1, bias 0.5: fbgemm 1 + 0.5 = 1.5 -> 2; qnnpack rne(0.5) = 0 -> 1.
    args = (q_u8([[1]]), q_s8([[1]]), np.float32([0.5]), 1.0, 0)
    assert linear(*args, profile=AVX2_FBGEMM).int_repr.tolist() == [[2]]
    assert linear(*args, profile=QNNPACK).int_repr.tolist() == [[1]]
    assert fast.linear(*args, profile=QNNPACK).int_repr.tolist() == [[1]]


def test_no_int16_pair_saturation():
    # [255, 255] x [127, 127], output scale 1000: AVX2 fbgemm sat16(64770) = 32767 -> 32.767 -> 33;
    # qnnpack sums exactly: 64.77 -> 65.
    args = (q_u8([[255, 255]]), q_s8([[127, 127]]), None, 1000.0, 0)
    assert linear(*args, profile=AVX2_FBGEMM).int_repr.tolist() == [[33]]
    assert linear(*args, profile=QNNPACK).int_repr.tolist() == [[65]]


def test_add_rounds_half_away_from_zero():
    # 1 + 0 into scale 2: 0.5. fbgemm rne -> 0; qnnpack 1. With a's zp 1: 0 + 0 -> -0.5,
    # fbgemm rne(-0.5) + 10 = 10; qnnpack -1 + 10 = 9.
    one, zero = q_u8([1]), q_u8([0])
    assert add(one, zero, 2.0, 0, profile=AVX2_FBGEMM).int_repr.tolist() == [0]
    assert add(one, zero, 2.0, 0, profile=QNNPACK).int_repr.tolist() == [1]
    assert add(q_u8([0], 1.0, 1), zero, 2.0, 10, profile=AVX2_FBGEMM).int_repr.tolist() == [10]
    assert add(q_u8([0], 1.0, 1), zero, 2.0, 10, profile=QNNPACK).int_repr.tolist() == [9]


def test_add_shift_of_32_and_more_wraps_the_c_shifts():
    # sa = sb = 2^-12, so = 1: ratios 2^-12, exponent -12, shift 33, am = bm = 2^21.
    # a = [255], b = [0], zp 0: acc = 255 * 2^21 (the value 255 * 2^-12 = 0.06 -> 0 exactly).
    # Scalar loop (fewer than 8 elements): shift and mask taken mod 32 (1, mask 1, threshold 0):
    # rem = 0 -> q = acc >> 1 = 255 * 2^20 -> clipped to 255. Vector loop (8 elements): psrad by
    # 33 leaves the sign, 0 -> output 0.
    tiny = 2.0**-12
    lone = add(q_u8([255], tiny), q_u8([0], tiny), 1.0, 0, profile=QNNPACK)
    eight = add(q_u8([255] * 8, tiny), q_u8([0] * 8, tiny), 1.0, 0, profile=QNNPACK)
    assert lone.int_repr.tolist() == [255] and eight.int_repr.tolist() == [0] * 8


def test_average_pooling_always_divides_by_the_window():
    # 2x2 of 100 (scale 1, zp 0). k 2, stride 2, divisor_override 1: fbgemm 400 -> 255; qnnpack 100.
    hundreds = q_u8(np.full((1, 1, 2, 2), 100))
    assert avg_pool2d(hundreds, 2, divisor_override=1, profile=AVX2_FBGEMM).int_repr.ravel().tolist() == [255]
    assert avg_pool2d(hundreds, 2, divisor_override=1, profile=QNNPACK).int_repr.ravel().tolist() == [100]
    # ceil_mode keeps ATen's kernel (divisor_override honoured) also under qnnpack.
    ceil = avg_pool2d(hundreds, 2, ceil_mode=True, divisor_override=1, profile=QNNPACK)
    assert ceil.int_repr.ravel().tolist() == [255]
    with pytest.raises(EngineRefusedError):  # "1x1 pooling is meaningless"
        avg_pool2d(hundreds, 1, profile=QNNPACK)


def test_hardswish_table_adds_the_zero_point_before_rounding():
    # 0..255 (scale 1, zp 0) into scale 2, zp 1, every element in a 64-block (vector lambda):
    # x = 3..12 gives fbgemm 3,3,3,4,5,5,5,6,7,7 and qnnpack 2,3,4,4,4,5,6,6,6,7.
    x = q_u8(np.arange(256))
    assert hardswish(x, 2.0, 1, profile=AVX2_FBGEMM).int_repr[3:13].tolist() == [3, 3, 3, 4, 5, 5, 5, 6, 7, 7]
    assert hardswish(x, 2.0, 1, profile=QNNPACK).int_repr[3:13].tolist() == [2, 3, 4, 4, 4, 5, 6, 6, 6, 7]


def test_clamp_needs_both_bounds_and_permutes_channels_last():
    x = q_u8(np.arange(12).reshape(1, 3, 2, 2), memory_format=CL)
    assert clamp(x, 0.0, 100.0, AVX2_FBGEMM).int_repr.ravel().tolist() == list(range(12))
    permuted = clamp(x, 0.0, 100.0, QNNPACK)
    assert permuted.int_repr.ravel().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert permuted.memory_format is MemoryFormat.contiguous
    assert hardtanh(x, 0.0, 6.0, QNNPACK).int_repr.ravel().tolist() == [0, 4, 6, 1, 5, 6, 2, 6, 6, 3, 6, 6]
    for dtype_input in (x, QTensor(np.zeros(3, np.int8), 1.0, 0, "qint8")):
        with pytest.raises(EngineRefusedError, match="both min and max"):
            clamp(dtype_input, 0.0, None, QNNPACK)
