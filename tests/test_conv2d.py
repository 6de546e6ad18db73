"""quantized::conv2d: FBGEMM path choice, depthwise pair saturation, release differences.

Every hand-worked case runs through both the plain definition (`reference.ops.conv2d`) and
the fast kernel (`reference.fast.conv2d`); tests/test_fast_conv2d.py checks the fast kernel's
own machinery (Winograd, bands, threads, prepared weights) against the plain definition.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest
from qtensors import q_s8, q_u8

from quantspec.reference import fast
from quantspec.reference.ops import OPS, conv2d, conv2d_relu, conv_path
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

VNNI_213 = get_profile("torch2.13-avx512_vnni-fbgemm")
VNNI_214 = get_profile("torch2.14-avx512_vnni-fbgemm")
AVX2_213 = get_profile("torch2.13-avx2-fbgemm")


# The plain definition and the fast kernel, same arguments.
IMPLEMENTATIONS = pytest.mark.parametrize(
    "conv", [conv2d, fast.conv2d, functools.partial(fast.conv2d, workers=2)], ids=["plain", "fast", "fast-2-workers"]
)


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


@IMPLEMENTATIONS
def test_depthwise_per_tensor_bias_fma_213_vs_214(conv):
    # acc = 4*3 = 12, act scale 0.125, weight scale f32(0.105), bias f32(0.28), out scale 0.125:
    # atws = 0.0131249995902..., rcp = f32(1/atws) = 76.19047546386719, mult = 0.1049999967...
    # 2.13 fma: xf = f32(12 + 0.28f*rcp) = f32(33.3333332207) = 33.33333206 -> *mult 3.49999976 -> 3
    # 2.14:     f32(0.28f*rcp) = 21.33333397; xf = 33.33333588 -> *mult 3.50000024 -> 4
    x, w = depthwise_center_tap(4, 3)
    args = (q_s8(w, 0.105), np.full(8, 0.28, np.float32), (1, 1), (1, 1), (1, 1), 8, 0.125, 0)
    assert conv(x, *args, profile=VNNI_213).int_repr.ravel().tolist() == [3] * 8
    assert conv(x, *args, profile=VNNI_214).int_repr.ravel().tolist() == [4] * 8


@IMPLEMENTATIONS
def test_gemm_path_bias_is_fused_on_both_releases(conv):
    # The same numbers through the im2col path (1 channel, groups 1): fma on 2.13 and 2.14 -> 3.
    x = q_u8(np.full((1, 1, 1, 1), 4), 0.125)
    w = np.zeros((1, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 3
    for profile in (VNNI_213, VNNI_214):
        out = conv(x, q_s8(w, 0.105), np.float32([0.28]), (1, 1), (1, 1), (1, 1), 1, 0.125, 0, profile=profile)
        assert out.int_repr.ravel().tolist() == [3]


@IMPLEMENTATIONS
def test_depthwise_border_saturates_even_on_vnni(conv):
    # a = 255 everywhere, a_zp = 255, w = 127 on all 9 taps, 1x1 image with padding 1: every
    # tap reads 255 (8 of them are padding, which holds a_zp). Pairs (0,1) (2,3) (4,5) (6,7):
    # 255*127*2 = 64770 -> 32767; tap 8 alone 32385. S = 4*32767 + 32385 = 163453;
    # acc = S - a_zp * sum(w) = 163453 - 255*1143 = -128012 (exactly it would be 0).
    # Scales 1, out scale 1000: -128.012 -> -128; + zp 128 = 0 (the exact model gives 128).
    x = q_u8(np.full((1, 8, 1, 1), 255), 1.0, 255)
    w = q_s8(np.full((8, 1, 3, 3), 127))
    for profile in (VNNI_213, AVX2_213):
        out = conv(x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128, profile=profile)
        assert out.int_repr.ravel().tolist() == [0] * 8


@IMPLEMENTATIONS
def test_depthwise_two_outputs_per_channel(conv):
    # OC = 2G: output channel j reads input channel j // 2. 8 input channels valued 0..7 (zp 0),
    # center tap weights 1 (even outputs) and -1 (odd outputs); scales 1, out zp 10:
    #   outputs 10 + [0, -0, 1, -1, 2, -2, ..., 7, -7]
    x = q_u8(np.arange(8).reshape(1, 8, 1, 1))
    w = np.zeros((16, 1, 3, 3), np.int8)
    w[0::2, 0, 1, 1], w[1::2, 0, 1, 1] = 1, -1
    out = conv(x, q_s8(w), None, (1, 1), (1, 1), (1, 1), 8, 1.0, 10)
    assert out.int_repr.ravel().tolist() == [10 + s * c for c in range(8) for s in (1, -1)]


@IMPLEMENTATIONS
def test_im2col_pairs_saturate_only_without_vnni(conv):
    # 2 input channels, 1x1 kernel, stride 2 (im2col): K = 2 = one pair (c0, c1).
    # a = [255, 255], w = [127, 127], scales 1, out scale 1024:
    #   VNNI exact 64770/1024 = 63.25 -> 63;  AVX2 32767/1024 -> 32
    x = q_u8(np.full((1, 2, 1, 1), 255))
    w = q_s8(np.full((1, 2, 1, 1), 127))
    args = (w, None, (2, 2), (0, 0), (1, 1), 1, 1024.0, 0)
    assert conv_path(2, 1, (1, 1), (2, 2), (0, 0), (1, 1), 1) == "im2col"
    assert conv(x, *args, profile=VNNI_213).int_repr.ravel().tolist() == [63]
    assert conv(x, *args, profile=AVX2_213).int_repr.ravel().tolist() == [32]


@IMPLEMENTATIONS
def test_im2col_order_and_padding_with_zero_point(conv):
    # 1 channel 2x2 image [[1, 2], [3, 4]] with zp 1 (centered [[0, 1], [2, 3]]), 2x2 kernel
    # [[1, 2], [3, 4]], padding (1, 0), stride 1: output 3x1 rows.
    #   row 0 (top row is padding, reads zp -> 0): [0, 0; 0, 1] . w = 1*4 = 4
    #   row 1: [0, 1; 2, 3] . [1, 2; 3, 4] = 0 + 2 + 6 + 12 = 20
    #   row 2 (bottom pad): [2, 3; 0, 0] . w = 2*1 + 3*2 = 8
    x = q_u8([[[[1, 2], [3, 4]]]], 1.0, 1)
    w = q_s8([[[[1, 2], [3, 4]]]])
    out = conv(x, w, None, (1, 1), (1, 0), (1, 1), 1, 1.0, 0)
    assert out.shape == (1, 1, 3, 1)
    assert out.int_repr.ravel().tolist() == [4, 20, 8]
    assert out.memory_format is MemoryFormat.channels_last


@IMPLEMENTATIONS
def test_relu_and_int32_min_pitfall(conv):
    # 1x1 conv, a = 255, w = 127: acc = 32385; out scale 1e-6 -> 3.2e10 >= 2^31 -> INT32_MIN ->
    # 0 (not 255); relu clamps at the zero point instead: 9.
    x = q_u8(np.full((1, 1, 1, 1), 255))
    w = q_s8(np.full((1, 1, 1, 1), 127))
    assert conv(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1e-6, 9).int_repr.ravel().tolist() == [0]
    assert conv(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1e-6, 9, relu=True).int_repr.ravel().tolist() == [9]
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
@IMPLEMENTATIONS
def test_bad_inputs_are_named(conv, kwargs, message):
    args = dict(x=q_u8(np.zeros((1, 4, 3, 3))), weight=q_s8(np.zeros((2, 4, 1, 1))), bias=None, stride=(1, 1),
                padding=(0, 0), dilation=(1, 1), groups=1, output_scale=1.0, output_zero_point=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        conv(**args)


def test_matches_torch_on_every_path(monkeypatch):
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    monkeypatch.setattr(sys.modules["quantspec.reference.fast.threads"], "MIN_MACS_PER_WORKER", 1)  # band small convs
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
        args = (x, w, bias, stride, padding, (1, 1), groups, 0.2, 100)
        for got in (conv2d(*args, profile=profile), fast.conv2d(*args, profile=profile, workers=2)):
            assert np.array_equal(expected.int_repr, got.int_repr)
            assert expected.memory_format is got.memory_format
    assert seen == {"depthwise", "groupwise", "pointwise", "im2col"}
