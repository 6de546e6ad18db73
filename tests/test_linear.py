"""reference.ops.linear: hand-worked requantization, pair saturation, int32 wrap, INT32_MIN."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from quantspec.reference.ops import OPS, linear, linear_relu
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

VNNI = get_profile("torch2.13-avx512_vnni-fbgemm")
AVX2 = get_profile("torch2.13-avx2-fbgemm")


def q_u8(values, scale=1.0, zero_point=0) -> QTensor:
    return QTensor(np.array(values, np.uint8), scale, zero_point, "quint8")


def q_s8(values, scale=1.0, zero_point=0, axis=None) -> QTensor:
    return QTensor(np.array(values, np.int8), scale, zero_point, "qint8", axis=axis)


def test_registered_under_torch_names():
    assert OPS["quantized::linear"] is linear
    assert OPS["quantized::linear_relu"] is linear_relu


def test_per_tensor_bias_is_one_fma():
    # x = 4 (scale 0.125, zp 0), w = 3 (scale f32(0.105)), bias f32(0.28), out scale 0.125, zp 0.
    # acc = 4*3 = 12; atws = 0.125 * 0.104999996721744... = 0.013124999590218...;
    # rcp = f32(1/atws) = 76.19047546386719; mult = f32(atws / 0.125) = 0.104999996721744.
    # fused: 0.28f * rcp = 21.3333332207 exactly, + 12 = 33.3333332207 -> f32 33.33333206;
    #        * mult = 3.4999997572 -> f32 3.49999976 -> 3.
    # (rounding 0.28f * rcp first gives 21.33333397, xf 33.33333588, xf * mult 3.5000002 -> 4.)
    out = linear(q_u8([[4]], 0.125), q_s8([[3]], 0.105), np.float32([0.28]), 0.125, 0)
    assert out.int_repr.tolist() == [[3]]


def test_per_channel_bias_divides_by_atws():
    # Two outputs; weight scales 0.5 and 0.25, act scale 1.0 -> atws 0.5 and 0.25; out scale 1.
    # x = [10, 20] (zp 10) -> centered [0, 10]; w rows [1, 2] and [3, -1] (zp 0):
    #   acc0 = 0*1 + 10*2 = 20; acc1 = 0*3 + 10*(-1) = -10
    #   bias [1.0, 1.0] / atws -> 2.0 and 4.0: xf = 22 and -6
    #   * mult (0.5, 0.25) -> 11.0 and -1.5 -> 11 and -2 (rne); + zp 100 -> 111 and 98
    w = q_s8([[1, 2], [3, -1]], np.array([0.5, 0.25]), np.array([0, 0]), axis=0)
    out = linear(q_u8([[10, 20]], 1.0, 10), w, np.float32([1.0, 1.0]), 1.0, 100)
    assert out.int_repr.tolist() == [[111, 98]]


def test_weight_zero_point_and_leading_dims():
    # x shape (2, 1, 2), zp 1; w = [[5, 7]] with zp 2 -> centered w [3, 5]; scales 1, out scale 1, zp 0.
    #   row [1, 4] -> [0, 3]: 0*3 + 3*5 = 15;  row [3, 1] -> [2, 0]: 2*3 + 0 = 6
    out = linear(QTensor(np.array([[[1, 4]], [[3, 1]]], np.uint8), 1.0, 1, "quint8"), q_s8([[5, 7]], 1.0, 2), None, 1.0, 0)
    assert out.shape == (2, 1, 1)
    assert out.int_repr.ravel().tolist() == [15, 6]
    assert out.memory_format is MemoryFormat.contiguous


def test_pair_saturation_vnni_vs_avx2():
    # x = [255, 255], w = [127, 127], all scales 1, zp 0, out scale 1024:
    #   VNNI (vpdpbusd, exact): acc = 2 * 32385 = 64770; 64770/1024 = 63.25 -> 63
    #   AVX2 (vpmaddubsw): the pair saturates to 32767; 32767/1024 = 31.999 -> 32
    x, w = q_u8([[255, 255]]), q_s8([[127, 127]])
    assert linear(x, w, None, 1024.0, 0, profile=VNNI).int_repr.tolist() == [[63]]
    assert linear(x, w, None, 1024.0, 0, profile=AVX2).int_repr.tolist() == [[32]]


def test_reduce_range_activations_never_saturate():
    # a <= 127: a pair is at most 127*128*2 = 32512 in magnitude, inside int16, so AVX2 = VNNI.
    # x = [127, 127], w = [-128, -128]: acc = -32512; out scale 256 -> -127 -> + zp 200 = 73
    x, w = q_u8([[127, 127]]), q_s8([[-128, -128]])
    assert linear(x, w, None, 256.0, 200, profile=AVX2).int_repr.tolist() == [[73]]
    assert linear(x, w, None, 256.0, 200, profile=VNNI).int_repr.tolist() == [[73]]


def test_accumulator_wraps_int32():
    # K = 70000 products (0 - 255) * (-128) = 32640: sum 2_284_800_000 > 2^31 - 1 wraps to
    # 2_284_800_000 - 2^32 = -2_010_167_296; out scale 2^24: -119.81 -> -120; + zp 128 = 8
    # (without the wrap: 136.18 -> 136 + 128 -> 255).
    k = 70000
    out = linear(q_u8(np.zeros((1, k)), 1.0, 255), q_s8(np.full((1, k), -128)), None, 2.0**24, 128)
    assert out.int_repr.tolist() == [[8]]


def test_int32_min_pitfall():
    # acc = 255*127 = 32385; out scale 1e-6: mult = f32(1/1e-6) ~ 1e6; 32385 * 1e6 > 2^31, so
    # cvtps_epi32 gives INT32_MIN; packs -> -32768, + zp saturates low, packus -> 0 (not 255).
    # With relu the lower clamp is the zero point: 7.
    x, w = q_u8([[255]]), q_s8([[127]])
    assert linear(x, w, None, 1e-6, 0).int_repr.tolist() == [[0]]
    assert linear_relu(x, w, None, 1e-6, 7).int_repr.tolist() == [[7]]


def test_huge_negative_accumulator_gives_the_lower_clamp():
    # acc = 255 * -127 = -32385; out scale 1e-6: -32385 * ~1e6 < -2^31, cvtps_epi32 gives
    # INT32_MIN -> -32768 -> + zp 7 = -32761 -> packus 0; with relu max(0, 7) = 7. A second
    # output 255 * 1 = 255 -> 2.55e8 stays below 2^31: the fast float32 path takes the batch.
    x, w = q_u8([[255]]), q_s8([[-127], [1]])
    assert linear(x, w, None, 1e-6, 7).int_repr.tolist() == [[0, 255]]
    assert linear_relu(x, w, None, 1e-6, 7).int_repr.tolist() == [[7, 255]]


def test_nan_bias_gives_zero():
    # NaN bias -> xf NaN -> cvt INT32_MIN -> 0 (zp 50 or not).
    out = linear(q_u8([[3]]), q_s8([[2]]), np.float32([np.nan]), 1.0, 50)
    assert out.int_repr.tolist() == [[0]]


@pytest.mark.parametrize(
    "x, w, bias, message",
    [
        (QTensor(np.zeros((1, 2), np.int8), 1.0, 0, "qint8"), q_s8([[1, 2]]), None, "quint8"),
        (q_u8([[1, 2]]), q_s8([[1, 2, 3]]), None, "in_features"),
        (q_u8([[1, 2]]), q_s8([[1, 2]]), np.float64([1.0]), "float32"),
        (q_u8([[1, 2]]), q_s8([[1, 2]]), np.float32([1.0, 2.0]), "shape"),
    ],
)
def test_bad_inputs_are_named(x, w, bias, message):
    with pytest.raises((ValueError, TypeError), match=message):
        linear(x, w, bias, 1.0, 0)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    profile = detect_profile()
    rng = np.random.default_rng(0)
    for k, n, per_channel in [(1, 1, False), (17, 9, True), (300, 33, False), (64, 70, True)]:
        x = QTensor(rng.integers(0, 256, (3, k)).astype(np.uint8), 0.05, int(rng.integers(0, 256)), "quint8")
        ints = rng.integers(-128, 128, (n, k)).astype(np.int8)
        w = (QTensor(ints, rng.uniform(0.001, 0.02, n), np.zeros(n, np.int64), "qint8", axis=0) if per_channel
             else QTensor(ints, 0.01, 0, "qint8"))
        bias = rng.normal(0, 1, n).astype(np.float32)
        with fbgemm_engine():
            packed = torch.ops.quantized.linear_prepack(to_torch(w), torch.from_numpy(bias))
            expected = torch.ops.quantized.linear_relu(to_torch(x), packed, 0.3, 77).int_repr().numpy()
        assert np.array_equal(expected, linear_relu(x, w, bias, 0.3, 77, profile).int_repr)


def test_one_float32_gemm_when_cauchy_schwarz_bounds_every_partial_sum(monkeypatch):
    # K = 600, w = -128 everywhere: K * 255 * 128 = 19,584,000 > 2^24, so the simple bound
    # asks for chunks of floor((2^24 - 1) / 32640) = 514 terms (2 BLAS calls).
    # Row [255, 0, ..., 0]: sum a^2 * sum w^2 = 65,025 * 9,830,400 = 6.4e11 <= 2^48: one call.
    #   S = 255 * -128 = -32640; out scale 2^8: -127.5 -> rne -128; + zp 200 = 72
    # Rows of 255 everywhere: 39,015,000 * 9,830,400 = 3.8e14 > 2^48 (2.8e14): chunks.
    #   S = 600 * -32640 = -19,584,000; out scale 2^17: -149.41 -> -149; + zp 200 = 51
    gemm = sys.modules["quantspec.reference.ops._gemm"]
    calls = []
    original = gemm._grouped_matmul
    monkeypatch.setattr(gemm, "_grouped_matmul", lambda *args: calls.append(args[0].shape) or original(*args))
    w = q_s8(np.full((1, 600), -128))
    one_tap = np.zeros((1, 600))
    one_tap[0, 0] = 255
    assert linear(q_u8(one_tap), w, None, 2.0**8, 200).int_repr.tolist() == [[72]]
    assert calls == [(1, 1, 600)]
    calls.clear()
    assert linear(q_u8(np.full((2, 600), 255)), w, None, 2.0**17, 200).int_repr.tolist() == [[51], [51]]
    assert calls == [(1, 2, 514), (1, 2, 86)]


def test_gemm_workers_do_not_change_the_result(monkeypatch):
    monkeypatch.setattr(sys.modules["quantspec.reference.ops._gemm"], "MIN_MACS_PER_WORKER", 1)  # band even this small GEMM
    rng = np.random.default_rng(3)
    x = QTensor(rng.integers(0, 256, (37, 300)).astype(np.uint8), 0.02, 7, "quint8")
    w = QTensor(rng.integers(-128, 128, (11, 300)).astype(np.int8), 0.01, 0, "qint8")
    bias = rng.normal(0, 1, 11).astype(np.float32)
    one = linear(x, w, bias, 0.5, 100).int_repr
    assert np.array_equal(linear(x, w, bias, 0.5, 100, workers=3).int_repr, one)  # 3 bands of rows
    two_rows = QTensor(x.int_repr[:2], 0.02, 7, "quint8")  # fewer rows than outputs: bands of outputs
    assert np.array_equal(linear(two_rows, w, bias, 0.5, 100, workers=2).int_repr, one[:2])
