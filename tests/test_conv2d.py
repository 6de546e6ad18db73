"""reference.ops.conv2d: FBGEMM path choice, depthwise pair saturation, release differences."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from plain_gemm import saturated_pair_sums

from quantspec.reference.ops import OPS, conv2d, conv2d_relu, conv_path
from quantspec.reference.ops.conv2d import prepare_conv_weight
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

VNNI_213 = get_profile("torch2.13-avx512_vnni-fbgemm")
VNNI_214 = get_profile("torch2.14-avx512_vnni-fbgemm")
AVX2_213 = get_profile("torch2.13-avx2-fbgemm")


def q_u8(values, scale=1.0, zero_point=0) -> QTensor:
    return QTensor(np.array(values, np.uint8), scale, zero_point, "quint8")


def q_s8(values, scale=1.0, zero_point=0) -> QTensor:
    return QTensor(np.array(values, np.int8), scale, zero_point, "qint8")


def test_registered_under_torch_names():
    assert OPS["quantized::conv2d"] is conv2d
    assert OPS["quantized::conv2d_relu"] is conv2d_relu


# (in, out, kernel, stride, padding, dilation, groups, cpu) -> path
PATH_TABLE = [
    ((32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32), "avx512_vnni", "depthwise"),
    ((8, 16, (5, 5), (2, 1), (2, 2), (1, 1), 8), "avx512_vnni", "depthwise"),  # OC = 2G, mixed strides
    ((16, 16, (7, 7), (2, 2), (3, 3), (1, 1), 16), "avx2", "depthwise"),
    ((12, 12, (3, 3), (1, 1), (1, 1), (1, 1), 12), "avx512_vnni", "im2col"),  # G % 8 != 0
    ((32, 32, (3, 3), (1, 1), (0, 0), (1, 1), 32), "avx512_vnni", "im2col"),  # padding != (k-1)/2
    ((32, 32, (3, 3), (1, 1), (1, 1), (2, 2), 32), "avx512_vnni", "im2col"),  # dilation
    ((32, 32, (3, 3), (3, 3), (1, 1), (1, 1), 32), "avx512_vnni", "im2col"),  # stride 3
    ((32, 96, (3, 3), (1, 1), (1, 1), (1, 1), 32), "avx512_vnni", "im2col"),  # OC = 3G
    ((16, 16, (3, 3), (1, 1), (1, 1), (1, 1), 8), "avx512_vnni", "groupwise"),  # C/G 2, G_together 8
    ((8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 4), "avx512_vnni", "im2col"),  # C/G 2, G 4 < 8
    ((8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 4), "avx2", "groupwise"),  # AVX2: G_together 4
    ((16, 16, (3, 3), (2, 2), (1, 1), (1, 1), 1), "avx512_vnni", "groupwise"),  # C/G 16, G 1
    ((16, 16, (3, 3), (1, 2), (1, 1), (1, 1), 1), "avx512_vnni", "im2col"),  # unequal strides
    ((24, 24, (3, 3), (1, 1), (1, 1), (1, 1), 2), "avx512_vnni", "im2col"),  # C/G 12
    ((64, 128, (1, 1), (1, 1), (0, 0), (1, 1), 1), "avx512_vnni", "pointwise"),
    ((64, 128, (1, 1), (1, 1), (0, 0), (1, 1), 2), "avx512_vnni", "pointwise"),  # any groups
    ((64, 128, (1, 1), (2, 2), (0, 0), (1, 1), 1), "avx512_vnni", "im2col"),  # ResNet downsample
    ((3, 64, (7, 7), (2, 2), (3, 3), (1, 1), 1), "avx512_vnni", "im2col"),  # ResNet stem
]


@pytest.mark.parametrize("config, cpu, expected", PATH_TABLE)
def test_conv_path(config, cpu, expected):
    assert conv_path(*config, get_profile(f"torch2.13-{cpu}-fbgemm")) == expected


def test_conv_path_rejects_bad_groups():
    with pytest.raises(ValueError, match="groups=3"):
        conv_path(8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 3)


def depthwise_center_tap(value: int, weight_center: int, zero_point: int = 0):
    """8 channels, 1x1 image, 3x3 kernel with only the center tap nonzero: acc = (value - zp) * w."""
    w = np.zeros((8, 1, 3, 3), np.int8)
    w[:, 0, 1, 1] = weight_center
    return q_u8(np.full((1, 8, 1, 1), value), 0.125, zero_point), w


def test_depthwise_per_tensor_bias_fma_213_vs_214():
    # acc = 4*3 = 12, act scale 0.125, weight scale f32(0.105), bias f32(0.28), out scale 0.125:
    # atws = 0.0131249995902..., rcp = f32(1/atws) = 76.19047546386719, mult = 0.1049999967...
    # 2.13 fma: xf = f32(12 + 0.28f*rcp) = f32(33.3333332207) = 33.33333206 -> *mult 3.49999976 -> 3
    # 2.14:     f32(0.28f*rcp) = 21.33333397; xf = 33.33333588 -> *mult 3.50000024 -> 4
    x, w = depthwise_center_tap(4, 3)
    args = (q_s8(w, 0.105), np.full(8, 0.28, np.float32), (1, 1), (1, 1), (1, 1), 8, 0.125, 0)
    assert conv2d(x, *args, profile=VNNI_213).int_repr.ravel().tolist() == [3] * 8
    assert conv2d(x, *args, profile=VNNI_214).int_repr.ravel().tolist() == [4] * 8


def test_gemm_path_bias_is_fused_on_both_releases():
    # The same numbers through the im2col path (1 channel, groups 1): fma on 2.13 and 2.14 -> 3.
    x = q_u8(np.full((1, 1, 1, 1), 4), 0.125)
    w = np.zeros((1, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 3
    for profile in (VNNI_213, VNNI_214):
        out = conv2d(x, q_s8(w, 0.105), np.float32([0.28]), (1, 1), (1, 1), (1, 1), 1, 0.125, 0, profile=profile)
        assert out.int_repr.ravel().tolist() == [3]


def test_depthwise_border_saturates_even_on_vnni():
    # a = 255 everywhere, a_zp = 255, w = 127 on all 9 taps, 1x1 image with padding 1: every
    # tap reads 255 (8 of them are padding, which holds a_zp). Pairs (0,1) (2,3) (4,5) (6,7):
    # 255*127*2 = 64770 -> 32767; tap 8 alone 32385. S = 4*32767 + 32385 = 163453;
    # acc = S - a_zp * sum(w) = 163453 - 255*1143 = -128012 (exactly it would be 0).
    # Scales 1, out scale 1000: -128.012 -> -128; + zp 128 = 0 (the exact model gives 128).
    x = q_u8(np.full((1, 8, 1, 1), 255), 1.0, 255)
    w = q_s8(np.full((8, 1, 3, 3), 127))
    for profile in (VNNI_213, AVX2_213):
        out = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128, profile=profile)
        assert out.int_repr.ravel().tolist() == [0] * 8


def test_depthwise_two_outputs_per_channel():
    # OC = 2G: output channel j reads input channel j // 2. 8 input channels valued 0..7 (zp 0),
    # center tap weights 1 (even outputs) and -1 (odd outputs); scales 1, out zp 10:
    #   outputs 10 + [0, -0, 1, -1, 2, -2, ..., 7, -7]
    x = q_u8(np.arange(8).reshape(1, 8, 1, 1))
    w = np.zeros((16, 1, 3, 3), np.int8)
    w[0::2, 0, 1, 1], w[1::2, 0, 1, 1] = 1, -1
    out = conv2d(x, q_s8(w), None, (1, 1), (1, 1), (1, 1), 8, 1.0, 10)
    assert out.int_repr.ravel().tolist() == [10 + s * c for c in range(8) for s in (1, -1)]


def test_im2col_pairs_saturate_only_without_vnni():
    # 2 input channels, 1x1 kernel, stride 2 (im2col): K = 2 = one pair (c0, c1).
    # a = [255, 255], w = [127, 127], scales 1, out scale 1024:
    #   VNNI exact 64770/1024 = 63.25 -> 63;  AVX2 32767/1024 -> 32
    x = q_u8(np.full((1, 2, 1, 1), 255))
    w = q_s8(np.full((1, 2, 1, 1), 127))
    args = (w, None, (2, 2), (0, 0), (1, 1), 1, 1024.0, 0)
    assert conv_path(2, 1, (1, 1), (2, 2), (0, 0), (1, 1), 1) == "im2col"
    assert conv2d(x, *args, profile=VNNI_213).int_repr.ravel().tolist() == [63]
    assert conv2d(x, *args, profile=AVX2_213).int_repr.ravel().tolist() == [32]


def test_im2col_order_and_padding_with_zero_point():
    # 1 channel 2x2 image [[1, 2], [3, 4]] with zp 1 (centered [[0, 1], [2, 3]]), 2x2 kernel
    # [[1, 2], [3, 4]], padding (1, 0), stride 1: output 3x1 rows.
    #   row 0 (top row is padding, reads zp -> 0): [0, 0; 0, 1] . w = 1*4 = 4
    #   row 1: [0, 1; 2, 3] . [1, 2; 3, 4] = 0 + 2 + 6 + 12 = 20
    #   row 2 (bottom pad): [2, 3; 0, 0] . w = 2*1 + 3*2 = 8
    x = q_u8([[[[1, 2], [3, 4]]]], 1.0, 1)
    w = q_s8([[[[1, 2], [3, 4]]]])
    out = conv2d(x, w, None, (1, 1), (1, 0), (1, 1), 1, 1.0, 0)
    assert out.shape == (1, 1, 3, 1)
    assert out.int_repr.ravel().tolist() == [4, 20, 8]
    assert out.memory_format is MemoryFormat.channels_last


def test_relu_and_int32_min_pitfall():
    # 1x1 conv, a = 255, w = 127: acc = 32385; out scale 1e-6 -> 3.2e10 >= 2^31 -> INT32_MIN ->
    # 0 (not 255); relu clamps at the zero point instead: 9.
    x = q_u8(np.full((1, 1, 1, 1), 255))
    w = q_s8(np.full((1, 1, 1, 1), 127))
    assert conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1e-6, 9).int_repr.ravel().tolist() == [0]
    assert conv2d_relu(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1e-6, 9).int_repr.ravel().tolist() == [9]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(groups=3), "groups=3"),
        (dict(stride=(0, 1)), "stride"),
        (dict(padding=(1,)), "padding"),
        (dict(bias=np.zeros(4, np.float32)), "bias"),
        (dict(output_zero_point=256), "zero_point"),
    ],
)
def test_bad_inputs_are_named(kwargs, message):
    args = dict(x=q_u8(np.zeros((1, 4, 3, 3))), weight=q_s8(np.zeros((2, 4, 1, 1))), bias=None, stride=(1, 1),
                padding=(0, 0), dilation=(1, 1), groups=1, output_scale=1.0, output_zero_point=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        conv2d(**args)


def test_matches_torch_on_every_path(monkeypatch):
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    monkeypatch.setattr(sys.modules["quantspec.reference.ops._gemm"], "MIN_MACS_PER_WORKER", 1)  # band even these small convs
    profile = detect_profile()
    rng = np.random.default_rng(1)
    configs = [  # (in, out, kernel, stride, padding, groups)
        (16, 16, (3, 3), (1, 1), (1, 1), 16),
        (16, 16, (3, 3), (1, 1), (1, 1), 1),
        (10, 7, (1, 1), (1, 1), (0, 0), 1),
        (6, 9, (3, 2), (2, 1), (1, 0), 3),
    ]
    seen = set()
    for cin, cout, kernel, stride, padding, groups in configs:
        seen.add(conv_path(cin, cout, kernel, stride, padding, (1, 1), groups, profile))
        x = QTensor(rng.integers(150, 256, (1, cin, 6, 5)).astype(np.uint8), 0.05, 200, "quint8")
        w = QTensor(rng.integers(-128, 128, (cout, cin // groups) + kernel).astype(np.int8), 0.01, 0, "qint8")
        bias = rng.normal(0, 1, cout).astype(np.float32)
        with fbgemm_engine():
            packed = torch.ops.quantized.conv2d_prepack(to_torch(w), torch.from_numpy(bias), list(stride),
                                                        list(padding), [1, 1], groups)
            expected = from_torch(torch.ops.quantized.conv2d(to_torch(x), packed, 0.2, 100))
        got = conv2d(x, w, bias, stride, padding, (1, 1), groups, 0.2, 100, profile=profile)
        assert np.array_equal(expected.int_repr, got.int_repr)
        # Two workers: bands of output channels (one group) or of output rows (groupwise).
        banded = conv2d(x, w, bias, stride, padding, (1, 1), groups, 0.2, 100, profile=profile, workers=2)
        assert np.array_equal(expected.int_repr, banded.int_repr)
        for workers in (1, 2):  # one output row per band, on one thread and on two
            with monkeypatch.context() as patch:
                patch.setattr(sys.modules["quantspec.reference.ops.conv2d"], "BAND_BYTES", 1)
                row_bands = conv2d(x, w, bias, stride, padding, (1, 1), groups, 0.2, 100, profile=profile, workers=workers)
            assert np.array_equal(expected.int_repr, row_bands.int_repr)
        assert expected.memory_format is got.memory_format
    assert seen == {"depthwise", "groupwise", "pointwise", "im2col"}


def test_gemm_path_one_float32_gemm_when_window_norms_allow(monkeypatch):
    # 3x3 conv, 64 channels (K = 576), pad 1, w = 127 everywhere, a_zp 0:
    # 576 * 255 * 127 = 18,653,760 > 2^24, so the simple bound fails.
    gemm = sys.modules["quantspec.reference.ops._gemm"]
    calls = []
    original = gemm._grouped_matmul
    monkeypatch.setattr(gemm, "_grouped_matmul", lambda *args: calls.append(args[0].shape) or original(*args))
    w = q_s8(np.full((1, 64, 3, 3), 127))
    # One nonzero activation (255 at channel 5, the centre): every window's sum of squares
    # is 65,025; times sum w^2 = 576 * 16,129 = 9,290,304 gives 6.0e11 <= 2^48: one GEMM.
    # Every output window covers the centre: S = 255 * 127 = 32385; / 256 = 126.50 -> 127.
    sparse = np.zeros((1, 64, 3, 3))
    sparse[0, 5, 1, 1] = 255
    out = conv2d(q_u8(sparse), w, None, (1, 1), (1, 1), (1, 1), 1, 256.0, 0)
    assert out.int_repr.ravel().tolist() == [127] * 9
    assert calls == [(1, 9, 576)]
    # All 255: the centre window's 576 * 65,025 = 37,454,400 times 9,290,304 = 3.5e14 > 2^48:
    # chunks of floor((2^24 - 1) / 32385) = 518 terms. S = valid taps * 64 * 32385, / 2^17:
    # corners 4 taps 63.25 -> 63, edges 6 taps 94.875 -> 95, centre 9 taps 142.31 -> 142.
    calls.clear()
    out = conv2d(q_u8(np.full((1, 64, 3, 3), 255)), w, None, (1, 1), (1, 1), (1, 1), 1, 2.0**17, 0)
    assert out.int_repr.reshape(3, 3).tolist() == [[63, 95, 63], [95, 142, 95], [63, 95, 63]]
    assert calls == [(1, 9, 518), (1, 9, 58)]


def test_winograd_gives_the_direct_sums(monkeypatch):
    # Stride-1 3x3 convs with >= WINOGRAD_MIN_PIXELS outputs take Winograd F(2x2, 3x3); forced
    # here for a 3x3 image [[1, 2, 3], [4, 5, 6], [7, 8, 9]] (zp 0), weights all 1, padding 1:
    # each output is the sum of its 3x3 neighbourhood, e.g. corner 1+2+4+5 = 12, centre 45.
    # The 3x3 output takes 2x2 tiles, the last row and column of which are cut off.
    conv = sys.modules["quantspec.reference.ops.conv2d"]
    monkeypatch.setattr(conv, "WINOGRAD_MIN_PIXELS", 0)
    calls = []
    original = conv.winograd_sums
    monkeypatch.setattr(conv, "winograd_sums", lambda *args: calls.append(1) or original(*args))
    x = q_u8(np.arange(1, 10).reshape(1, 1, 3, 3))
    out = conv2d(x, q_s8(np.ones((1, 1, 3, 3))), None, (1, 1), (1, 1), (1, 1), 1, 1.0, 0)
    assert out.int_repr.reshape(3, 3).tolist() == [[12, 21, 16], [27, 45, 33], [24, 39, 28]]
    assert calls == [1]


def test_winograd_matches_torch(monkeypatch):
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    # 30x29 outputs (870 >= WINOGRAD_MIN_PIXELS): 15x15 tiles, the last column cut off.
    rng = np.random.default_rng(5)
    x = QTensor(rng.integers(0, 120, (1, 16, 30, 29)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-100, 100, (8, 16, 3, 3)).astype(np.int8), rng.uniform(0.005, 0.01, 8), np.zeros(8, np.int64), "qint8", axis=0)
    bias = rng.normal(0, 1, 8).astype(np.float32)
    with fbgemm_engine():
        packed = torch.ops.quantized.conv2d_prepack(to_torch(w), torch.from_numpy(bias), [1, 1], [1, 1], [1, 1], 1)
        expected = from_torch(torch.ops.quantized.conv2d_relu(to_torch(x), packed, 0.3, 7))
    conv = sys.modules["quantspec.reference.ops.conv2d"]
    monkeypatch.setattr(sys.modules["quantspec.reference.ops._gemm"], "MIN_MACS_PER_WORKER", 1)  # 30 * 29 * 8 * 144 = 1.0M multiply-adds: band it
    bands = []  # (tile rows, output channels) of every winograd_sums call; threads append in any order
    original = conv.winograd_sums
    monkeypatch.setattr(conv, "winograd_sums", lambda *args: bands.append(args[3:5]) or original(*args))

    def run_and_check(workers: int) -> list[tuple[slice, slice]]:
        bands.clear()
        got = conv2d(x, w, bias, (1, 1), (1, 1), (1, 1), 1, 0.3, 7, relu=True, profile=detect_profile(), workers=workers)
        assert np.array_equal(expected.int_repr, got.int_repr)
        return sorted(bands, key=lambda band: (band[0].start, band[1].start))

    everything = (slice(0, 15), slice(0, 8))
    assert run_and_check(1) == [everything]  # Winograd's exactness bound held
    # Two workers: 15 x 15 tiles x 16 positions x 4 bytes x (16 + 8) channels = 346 KB of
    # intermediates fit one 2 MB band, so the workers take output channels 0-3 and 4-7.
    assert run_and_check(2) == [(slice(0, 15), slice(0, 4)), (slice(0, 15), slice(4, 8))]
    # Cache-sized bands: one tile row per band when a band may hold only a few bytes, on
    # one thread and on two.
    monkeypatch.setattr(conv, "BAND_BYTES", 1)
    for workers in (1, 2):
        assert run_and_check(workers) == [(slice(row, row + 1), slice(0, 8)) for row in range(15)]


def test_prepared_weights_form_requant_params_once_per_pair_of_scales(monkeypatch):
    conv = sys.modules["quantspec.reference.ops.conv2d"]
    calls = []
    original = conv.requant_params
    monkeypatch.setattr(conv, "requant_params", lambda *args: calls.append(args[0::2]) or original(*args))
    rng = np.random.default_rng(2)
    x = QTensor(rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8), rng.uniform(0.01, 0.02, 6), np.zeros(6, np.int64), "qint8", axis=0)
    prepared = prepare_conv_weight(w, 1)
    for out_scale in (0.5, 0.5, 0.25):
        unprepared = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, out_scale, 7)
        with_prepared = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, out_scale, 7, prepared=prepared)
        assert np.array_equal(unprepared.int_repr, with_prepared.int_repr)
    # Unprepared calls form them every time (3); the prepared weight once per output scale (2).
    assert calls.count((0.05, 0.5)) == 3 and calls.count((0.05, 0.25)) == 2


def _saturated_pair_acc(x: QTensor, w: QTensor, padding: tuple[int, int]) -> np.ndarray:
    """Plain FBGEMM im2col accumulators (N, OH, OW, OC) without VNNI, for a per-tensor weight
    with zero point 0: the raw windows in K order (kh, kw, c), padding taps reading a_zp,
    through `plain_gemm.saturated_pair_sums`, minus a_zp * sum(w) (the column offsets)."""
    ph, pw = padding
    raw = np.pad(x.int_repr, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=x.zero_point)
    windows = sliding_window_view(raw, w.shape[2:], axis=(2, 3))  # (N, C, OH, OW, kh, kw)
    n, _, oh, ow = windows.shape[:4]
    a = windows.transpose(0, 2, 3, 4, 5, 1).reshape(1, n * oh * ow, -1)
    taps = w.int_repr.transpose(0, 2, 3, 1).reshape(1, w.shape[0], -1)
    saturated, _ = saturated_pair_sums(a, taps)
    return (saturated - x.zero_point * taps[0].sum(axis=1, dtype=np.int64)).reshape(n, oh, ow, -1)


def test_pair_saturation_is_the_same_in_every_band_cut(monkeypatch):
    # Without VNNI the im2col path saturates vpmaddubsw pairs; the correction is formed per
    # band from the band's raw windows and the band's weight rows. High activations times
    # same-signed extreme weights saturate most pairs (255 * 127 * 2 = 64770 > 32767);
    # every cut must give the plain accumulators of `_saturated_pair_acc`, requantized.
    from quantspec.reference.ops._requantize import requant_params, requantize_u8acc32

    conv = sys.modules["quantspec.reference.ops.conv2d"]
    monkeypatch.setattr(sys.modules["quantspec.reference.ops._gemm"], "MIN_MACS_PER_WORKER", 1)
    rng = np.random.default_rng(4)
    x = QTensor(rng.integers(240, 256, (2, 16, 6, 7)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(np.where(rng.random((8, 16, 3, 3)) < 0.9, 127, -128).astype(np.int8), 0.01, 0, "qint8")
    bias = rng.normal(0, 1, 8).astype(np.float32)
    args = (x, w, bias, (1, 1), (1, 1), (1, 1), 1, 40.0, 5)
    acc = _saturated_pair_acc(x, w, (1, 1))
    plain = requantize_u8acc32(acc.astype(np.int32), bias, requant_params(0.05, 0.01, 40.0, 8), 5, False, True)
    expected = plain.transpose(0, 3, 1, 2)
    assert not np.array_equal(conv2d(*args, profile=VNNI_213).int_repr, expected)  # the saturation shows
    assert np.array_equal(conv2d(*args, profile=AVX2_213).int_repr, expected)  # one band
    assert np.array_equal(conv2d(*args, profile=AVX2_213, workers=2).int_repr, expected)  # output-channel bands
    monkeypatch.setattr(conv, "BAND_BYTES", 1)
    assert np.array_equal(conv2d(*args, profile=AVX2_213, workers=2).int_repr, expected)  # one-row bands
