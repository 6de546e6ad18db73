"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: hand-worked windows, NCHW vs NHWC kernels,
release and CPU differences, the C == 1 / H*W == 1 routing, and a torch cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.ops import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")
P214 = get_profile("torch2.14-avx512_vnni-fbgemm")
P213_AVX2 = get_profile("torch2.13-avx2-fbgemm")
CL = MemoryFormat.channels_last


def quint8(
    values: np.ndarray | list, zero_point: int = 0, memory_format: MemoryFormat = MemoryFormat.contiguous
) -> QTensor:
    return QTensor(np.asarray(values, np.uint8), 0.1, zero_point, "quint8", memory_format=memory_format)


# --- max_pool2d -----------------------------------------------------------------------


def test_max_pool_ceil_mode_keeps_the_partial_last_window() -> None:
    # 5x5 arange, kernel 2, stride 2: out = (5 - 1 - 1 + 1) // 2 + 1 = 3 in ceil mode
    # (last window starts at 4 < 5). Windows: rows {0,1},{2,3},{4}; cols likewise.
    # max(0,1,5,6) = 6, max(2,3,7,8) = 8, max(4,9) = 9; ... ; max(20,21) = 21, 23, 24.
    x = quint8(np.arange(25).reshape(1, 1, 5, 5))
    assert max_pool2d(x, 2, ceil_mode=True).int_repr[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    assert max_pool2d(x, 2).int_repr[0, 0].tolist() == [[6, 8], [16, 18]]


def test_max_pool_dilation_and_padding_skip_taps() -> None:
    # [3, 9, 1, 7, 2], kernel (1, 2), dilation (1, 2), stride 1: taps (0,2) (1,3) (2,4)
    # -> max(3,1) = 3, max(9,7) = 9, max(1,2) = 2.
    x = quint8([[[[3, 9, 1, 7, 2]]]])
    assert max_pool2d(x, (1, 2), stride=1, dilation=(1, 2)).int_repr.ravel().tolist() == [3, 9, 2]
    # qint8 all -100 with padding 1: padded taps are never compared, so -100 (not -128).
    y = QTensor(np.full((1, 1, 2, 2), -100, np.int8), 0.1, 0, "qint8")
    assert max_pool2d(y, 3, stride=1, padding=1).int_repr.ravel().tolist() == [-100] * 4


def test_max_pool_hw1_input_returns_nhwc_memory_read_as_nchw() -> None:
    # (1, 3, 1, 1) NCHW [10, 20, 30] counts as channels-last, so the NHWC kernel runs, but
    # the output is allocated NCHW. kernel 2, stride 1, padding 1 -> 2x2 pixels, each the
    # channel's own value; NHWC memory is pixel-major [10, 20, 30] * 4, read as (1, 3, 2, 2).
    out = max_pool2d(quint8(np.array([10, 20, 30]).reshape(1, 3, 1, 1)), 2, 1, 1)
    assert out.int_repr.ravel().tolist() == [10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30]
    assert out.memory_format is MemoryFormat.contiguous


def test_max_pool_refuses_padding_over_half_the_kernel() -> None:
    with pytest.raises(ValueError, match="padding"):
        max_pool2d(quint8(np.zeros((1, 1, 4, 4))), 2, padding=2)


# --- avg_pool2d -----------------------------------------------------------------------


def test_avg_pool_nchw_adds_zero_point_before_rounding() -> None:
    # NCHW, C = 2 (not routed NHWC), zp 1, each channel [[2, 1]], kernel (1, 2):
    # acc = 3 - 2*1 = 1, mult = float(1.0 / 2) = 0.5, f32(1 * 0.5) + 1 = 1.5 -> rne 2 (any release).
    x = quint8(np.tile(np.array([2, 1]), (1, 2, 1, 1)), zero_point=1)
    assert avg_pool2d(x, (1, 2), profile=P213).int_repr.ravel().tolist() == [2, 2]
    assert avg_pool2d(x, (1, 2), profile=P214).int_repr.ravel().tolist() == [2, 2]


def test_avg_pool_nhwc_vector_lanes_depend_on_the_cpu() -> None:
    # Same windows, 12 channels, channels_last: acc = 1, mult = 0.5.
    # vector lanes round first: cvt(0.5) = 0, + 1 = 1; the scalar tail (quantize_val,
    # scale 1/0.5 = 2): 2.13 rne(1 + 0.5) = 2.
    # AVX512: lanes of 16 -> 12 < 16, all 12 channels scalar -> 2.
    # AVX2: lanes of 8 -> channels 0..7 vector (1), 8..11 scalar (2).
    x = quint8(np.tile(np.array([2, 1]), (1, 12, 1, 1)), zero_point=1, memory_format=CL)
    assert avg_pool2d(x, (1, 2), profile=P213).int_repr.ravel().tolist() == [2] * 12
    assert avg_pool2d(x, (1, 2), profile=P213_AVX2).int_repr.ravel().tolist() == [1] * 8 + [2] * 4
    # On 2.14 the scalar tail also rounds first: 1 + rne(0.5) = 1 everywhere.
    assert avg_pool2d(x, (1, 2), profile=P214).int_repr.ravel().tolist() == [1] * 12


def test_avg_pool_c1_routes_to_the_nhwc_scalar_tail() -> None:
    # NCHW with C == 1 is channels-last memory: NHWC kernel, one channel = scalar tail.
    # [[2, 1]] zp 1: 2.13 rne(1 + 0.5) = 2; 2.14 1 + rne(0.5) = 1 (the NCHW kernel gives 2 on both).
    x = quint8([[[[2, 1]]]], zero_point=1)
    assert avg_pool2d(x, (1, 2), profile=P213).int_repr.ravel().tolist() == [2]
    assert avg_pool2d(x, (1, 2), profile=P214).int_repr.ravel().tolist() == [1]


def test_avg_pool_divisor_choices() -> None:
    # 2x2 of 4s, zp 0, kernel 2, stride 2, padding 1 -> 2x2 outputs with 1 valid tap each.
    # count_include_pad: divisor 4 -> 4 * 0.25 = 1;  without: divisor 1 -> 4;
    # divisor_override 3: 4 * f32(1/3) = 1.3333334 -> 1.
    x = quint8(np.full((1, 2, 2, 2), 4))
    assert avg_pool2d(x, 2, 2, 1).int_repr[0, 0].tolist() == [[1, 1], [1, 1]]
    assert avg_pool2d(x, 2, 2, 1, count_include_pad=False).int_repr[0, 0].tolist() == [[4, 4], [4, 4]]
    assert avg_pool2d(x, 2, 2, 1, divisor_override=3).int_repr[0, 0].tolist() == [[1, 1], [1, 1]]


def test_avg_pool_ceil_window_is_clipped_to_the_padded_input() -> None:
    # [[3, 3, 3]], kernel (1, 2), stride (1, 2), ceil_mode: W out = (3 - 1 - 1 + 1) // 2 + 1 = 2.
    # Window 1 = [2, min(4, 3 + 0)) = [2, 3): pool_size 1 even with count_include_pad -> 3 / 1 = 3.
    x = quint8(np.full((1, 2, 1, 3), 3))
    assert avg_pool2d(x, (1, 2), (1, 2), ceil_mode=True).int_repr[0, 0].tolist() == [[3, 3]]


# --- adaptive_avg_pool2d --------------------------------------------------------------


def test_adaptive_nchw_overlapping_windows() -> None:
    # Width 5 -> 3: start floor(0/3, 5/3, 10/3) = 0, 1, 3; end ceil(5/3, 10/3, 15/3) = 2, 4, 5.
    # [1..5]: sums 3, 9, 9; kr = 1/2, f32(1/3), 1/2 -> 1.5 -> 2, 3.0000002 -> 3, 4.5 -> 4.
    # Two channels (NCHW kernel: raw integers averaged, the zero point cancels).
    x = quint8(np.tile(np.arange(1, 6), (1, 2, 1, 1)), zero_point=7)
    assert adaptive_avg_pool2d(x, (1, 3)).int_repr[0, 0].tolist() == [[2, 3, 4]]


def test_adaptive_nhwc_release_difference() -> None:
    # 8 channels, channels_last, each [[0, 1]] zp 1, output 1x1: acc = 1 - 2*1 = -1,
    # mult = f32(1/2) = 0.5, scale = 1/0.5 = 2, inv = 0.5.
    # Vector (FBGEMM Quantize) 2.13: cvt(fma(-1, 0.5, 1)) = cvt(0.5) = 0; 2.14: cvt(-0.5) + 1 = 1.
    x = quint8(np.tile(np.array([0, 1]), (1, 8, 1, 1)), zero_point=1, memory_format=CL)
    assert adaptive_avg_pool2d(x, 1, P213).int_repr.ravel().tolist() == [0] * 8
    assert adaptive_avg_pool2d(x, 1, P214).int_repr.ravel().tolist() == [1] * 8
    # The NCHW kernel on the same integers averages raw q: 1 * 0.5 = 0.5 -> rne 0, any release.
    nchw = quint8(np.tile(np.array([0, 1]), (1, 8, 1, 1)), zero_point=1)
    assert adaptive_avg_pool2d(nchw, 1, P214).int_repr.ravel().tolist() == [0] * 8


def test_adaptive_hw1_upsampling_is_scrambled_like_torch() -> None:
    # (1, 2, 1, 1) NCHW [5, 9] -> output 2x1: the NHWC kernel writes [5, 9, 5, 9] (pixel-major),
    # read as NCHW: channel 0 = [5, 9], channel 1 = [5, 9].
    x = quint8(np.array([5, 9]).reshape(1, 2, 1, 1))
    assert adaptive_avg_pool2d(x, (2, 1)).int_repr.ravel().tolist() == [5, 9, 5, 9]


# --- torch --------------------------------------------------------------------------


def test_pools_match_torch_on_tie_inputs() -> None:
    pytest.importorskip("torch")
    import torch.nn.functional as F

    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    rng = np.random.default_rng(1)
    profile = detect_profile()
    compared = 0
    with fbgemm_engine():
        for channels, fmt in [(1, MemoryFormat.contiguous), (21, MemoryFormat.contiguous), (21, CL), (3, CL)]:
            x = QTensor(rng.integers(0, 256, (2, channels, 7, 6)).astype(np.uint8), 0.1, 5, "quint8", memory_format=fmt)
            t = to_torch(x)
            pairs = [
                (F.max_pool2d(t, 3, 2, 1, 2, True), max_pool2d(x, 3, 2, 1, 2, True)),
                (F.avg_pool2d(t, 2, 1, 1, True, False), avg_pool2d(x, 2, 1, 1, True, False, profile=profile)),
                (F.avg_pool2d(t, (3, 2), 2, 1, False, True, 5), avg_pool2d(x, (3, 2), 2, 1, False, True, 5, profile)),
                (F.adaptive_avg_pool2d(t, (4, 5)), adaptive_avg_pool2d(x, (4, 5), profile)),
            ]
            for expected, ours in pairs:
                assert np.array_equal(from_torch(expected).int_repr, ours.int_repr)
                compared += ours.int_repr.size
    assert compared > 2000
