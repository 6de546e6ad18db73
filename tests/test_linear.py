"""quantized::linear: hand-worked requantization, pair saturation, int32 wrap, INT32_MIN.

Every hand-worked case runs through the plain definition (`reference.ops.linear`) and the
fast kernel (`reference.fast.linear`); the fast kernel's GEMM machinery is checked against
the plain definition at the end and in tests/test_gemm_property.py.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from qtensors import q_s8, q_u8

from quantspec.reference import fast
from quantspec.reference.ops import OPS, linear, linear_relu
from quantspec.reference.profile import PROFILES, EngineNotSpecifiedError, EngineRefusedError, get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

VNNI = get_profile("torch2.13-avx512_vnni-fbgemm")
AVX2 = get_profile("torch2.13-avx2-fbgemm")


IMPLEMENTATIONS = pytest.mark.parametrize(
    "impl", [linear, fast.linear, functools.partial(fast.linear, workers=2)], ids=["plain", "fast", "fast-2-workers"]
)
GEMM = sys.modules["quantspec.reference.fast.gemm"]
THREADS = sys.modules["quantspec.reference.fast.threads"]


def test_registered_under_torch_names():
    assert OPS["quantized::linear"] is linear
    assert OPS["quantized::linear_relu"] is linear_relu


@IMPLEMENTATIONS
def test_per_tensor_bias_is_one_fma(impl):
    # x = 4 (scale 0.125, zp 0), w = 3 (scale f32(0.105)), bias f32(0.28), out scale 0.125, zp 0.
    # acc = 4*3 = 12; atws = 0.125 * 0.104999996721744... = 0.013124999590218...;
    # rcp = f32(1/atws) = 76.19047546386719; mult = f32(atws / 0.125) = 0.104999996721744.
    # fused: 0.28f * rcp = 21.3333332207 exactly, + 12 = 33.3333332207 -> f32 33.33333206;
    #        * mult = 3.4999997572 -> f32 3.49999976 -> 3.
    # (rounding 0.28f * rcp first gives 21.33333397, xf 33.33333588, xf * mult 3.5000002 -> 4.)
    out = impl(q_u8([[4]], 0.125), q_s8([[3]], 0.105), np.float32([0.28]), 0.125, 0)
    assert out.int_repr.tolist() == [[3]]


@IMPLEMENTATIONS
def test_per_channel_bias_divides_by_atws(impl):
    # Two outputs; weight scales 0.5 and 0.25, act scale 1.0 -> atws 0.5 and 0.25; out scale 1.
    # x = [10, 20] (zp 10) -> centered [0, 10]; w rows [1, 2] and [3, -1] (zp 0):
    #   acc0 = 0*1 + 10*2 = 20; acc1 = 0*3 + 10*(-1) = -10
    #   bias [1.0, 1.0] / atws -> 2.0 and 4.0: xf = 22 and -6
    #   * mult (0.5, 0.25) -> 11.0 and -1.5 -> 11 and -2 (rne); + zp 100 -> 111 and 98
    w = q_s8([[1, 2], [3, -1]], np.array([0.5, 0.25]), np.array([0, 0]), axis=0)
    out = impl(q_u8([[10, 20]], 1.0, 10), w, np.float32([1.0, 1.0]), 1.0, 100)
    assert out.int_repr.tolist() == [[111, 98]]


@IMPLEMENTATIONS
def test_weight_zero_point_and_leading_dims(impl):
    # x shape (2, 1, 2), zp 1; w = [[5, 7]] with zp 2 -> centered w [3, 5]; scales 1, out scale 1, zp 0.
    #   row [1, 4] -> [0, 3]: 0*3 + 3*5 = 15;  row [3, 1] -> [2, 0]: 2*3 + 0 = 6
    x = QTensor(np.array([[[1, 4]], [[3, 1]]], np.uint8), 1.0, 1, "quint8")
    out = impl(x, q_s8([[5, 7]], 1.0, 2), None, 1.0, 0)
    assert out.shape == (2, 1, 1)
    assert out.int_repr.ravel().tolist() == [15, 6]
    assert out.memory_format is MemoryFormat.contiguous


@IMPLEMENTATIONS
def test_pair_saturation_vnni_vs_avx2(impl):
    # x = [255, 255], w = [127, 127], all scales 1, zp 0, out scale 1024:
    #   VNNI (vpdpbusd, exact): acc = 2 * 32385 = 64770; 64770/1024 = 63.25 -> 63
    #   AVX2 (vpmaddubsw): the pair saturates to 32767; 32767/1024 = 31.999 -> 32
    x, w = q_u8([[255, 255]]), q_s8([[127, 127]])
    assert impl(x, w, None, 1024.0, 0, profile=VNNI).int_repr.tolist() == [[63]]
    assert impl(x, w, None, 1024.0, 0, profile=AVX2).int_repr.tolist() == [[32]]


@IMPLEMENTATIONS
def test_reduce_range_activations_never_saturate(impl):
    # a <= 127: a pair is at most 127*128*2 = 32512 in magnitude, inside int16, so AVX2 = VNNI.
    # x = [127, 127], w = [-128, -128]: acc = -32512; out scale 256 -> -127 -> + zp 200 = 73
    x, w = q_u8([[127, 127]]), q_s8([[-128, -128]])
    assert impl(x, w, None, 256.0, 200, profile=AVX2).int_repr.tolist() == [[73]]
    assert impl(x, w, None, 256.0, 200, profile=VNNI).int_repr.tolist() == [[73]]


@IMPLEMENTATIONS
def test_accumulator_wraps_int32(impl):
    # K = 70000 products (0 - 255) * (-128) = 32640: sum 2_284_800_000 > 2^31 - 1 wraps to
    # 2_284_800_000 - 2^32 = -2_010_167_296; out scale 2^24: -119.81 -> -120; + zp 128 = 8
    # (without the wrap: 136.18 -> 136 + 128 -> 255).
    k = 70000
    out = impl(q_u8(np.zeros((1, k)), 1.0, 255), q_s8(np.full((1, k), -128)), None, 2.0**24, 128)
    assert out.int_repr.tolist() == [[8]]


@IMPLEMENTATIONS
def test_int32_min_pitfall(impl):
    # acc = 255*127 = 32385; out scale 1e-6: mult = f32(1/1e-6) ~ 1e6; 32385 * 1e6 > 2^31, so
    # cvtps_epi32 gives INT32_MIN; packs -> -32768, + zp saturates low, packus -> 0 (not 255).
    # With relu the lower clamp is the zero point: 7.
    x, w = q_u8([[255]]), q_s8([[127]])
    assert impl(x, w, None, 1e-6, 0).int_repr.tolist() == [[0]]
    assert impl(x, w, None, 1e-6, 7, relu=True).int_repr.tolist() == [[7]]


@IMPLEMENTATIONS
def test_huge_negative_accumulator_gives_the_lower_clamp(impl):
    # acc = 255 * -127 = -32385; out scale 1e-6: -32385 * ~1e6 < -2^31, cvtps_epi32 gives
    # INT32_MIN -> -32768 -> + zp 7 = -32761 -> packus 0; with relu max(0, 7) = 7. A second
    # output 255 * 1 = 255 -> 2.55e8 stays below 2^31: the fast float32 path takes the batch.
    x, w = q_u8([[255]]), q_s8([[-127], [1]])
    assert impl(x, w, None, 1e-6, 7).int_repr.tolist() == [[0, 255]]
    assert impl(x, w, None, 1e-6, 7, relu=True).int_repr.tolist() == [[7, 255]]


@IMPLEMENTATIONS
def test_nan_bias_gives_zero(impl):
    # NaN bias -> xf NaN -> cvt INT32_MIN -> 0 (zp 50 or not).
    out = impl(q_u8([[3]]), q_s8([[2]]), np.float32([np.nan]), 1.0, 50)
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
@IMPLEMENTATIONS
def test_bad_inputs_are_named(impl, x, w, bias, message):
    with pytest.raises((ValueError, TypeError), match=message):
        impl(x, w, bias, 1.0, 0)


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
        assert np.array_equal(expected, fast.linear(x, w, bias, 0.3, 77, True, profile).int_repr)


def test_one_float32_gemm_when_cauchy_schwarz_bounds_every_partial_sum(monkeypatch):
    # K = 600, w = -128 everywhere: K * 255 * 128 = 19,584,000 > 2^24, so the simple bound
    # asks for chunks of floor((2^24 - 1) / 32640) = 514 terms (2 BLAS calls).
    # Row [255, 0, ..., 0]: sum a^2 * sum w^2 = 65,025 * 9,830,400 = 6.4e11 <= 2^48: one call.
    #   S = 255 * -128 = -32640; out scale 2^8: -127.5 -> rne -128; + zp 200 = 72
    # Rows of 255 everywhere: 39,015,000 * 9,830,400 = 3.8e14 > 2^48 (2.8e14): chunks.
    #   S = 600 * -32640 = -19,584,000; out scale 2^17: -149.41 -> -149; + zp 200 = 51
    calls = []
    original = GEMM._grouped_matmul
    monkeypatch.setattr(GEMM, "_grouped_matmul", lambda *args: calls.append(args[0].shape) or original(*args))
    w = q_s8(np.full((1, 600), -128))
    one_tap = np.zeros((1, 600))
    one_tap[0, 0] = 255
    assert fast.linear(q_u8(one_tap), w, None, 2.0**8, 200).int_repr.tolist() == [[72]]
    assert calls == [(1, 1, 600)]
    calls.clear()
    assert fast.linear(q_u8(np.full((2, 600), 255)), w, None, 2.0**17, 200).int_repr.tolist() == [[51], [51]]
    assert calls == [(1, 2, 514), (1, 2, 86)]


def test_gemm_workers_do_not_change_the_result(monkeypatch):
    monkeypatch.setattr(THREADS, "MIN_MACS_PER_WORKER", 1)  # band even this small GEMM
    rng = np.random.default_rng(3)
    x = QTensor(rng.integers(0, 256, (37, 300)).astype(np.uint8), 0.02, 7, "quint8")
    w = QTensor(rng.integers(-128, 128, (11, 300)).astype(np.int8), 0.01, 0, "qint8")
    bias = rng.normal(0, 1, 11).astype(np.float32)
    one = linear(x, w, bias, 0.5, 100).int_repr  # the plain definition
    assert np.array_equal(fast.linear(x, w, bias, 0.5, 100, workers=3).int_repr, one)  # 3 bands of rows
    two_rows = QTensor(x.int_repr[:2], 0.02, 7, "quint8")  # fewer rows than outputs: bands of outputs
    assert np.array_equal(fast.linear(two_rows, w, bias, 0.5, 100, workers=2).int_repr, one[:2])


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.integers(1, 4), st.integers(1, 700), st.integers(1, 20), st.sampled_from(sorted(PROFILES)),
    st.sampled_from([0, 3, 128, 255]), st.booleans(), st.booleans(), st.data(),
)
def test_fast_equals_plain_on_drawn_operands(rows, depth, features, profile_name, a_zp, per_channel, relu, data):
    # Edge-heavy operands: activations 0/255 and weights -128/127 saturate pairs; odd K leaves a
    # lone product. (Mixed signs keep |acc| well below 2^24 here: the K chunks of the fast GEMM
    # are reached by tests/test_gemm_property.py and tests/test_fast_conv2d.py.)
    x = data.draw(hnp.arrays(np.uint8, (rows, depth), elements=st.sampled_from([0, 1, 127, 200, 255])))
    w_ints = data.draw(hnp.arrays(np.int8, (features, depth), elements=st.sampled_from([-128, -127, -1, 0, 64, 127])))
    if per_channel:
        w = QTensor(w_ints, np.linspace(0.01, 0.02, features), np.arange(features) % 5 - 2, "qint8", axis=0)
    else:
        w = QTensor(w_ints, 0.015, 1, "qint8")
    bias = data.draw(st.none() | hnp.arrays(np.float32, features, elements=st.floats(-50, 50, width=32)))
    profile = get_profile(profile_name)
    args = (q_u8(x, 0.02, a_zp), w, bias, data.draw(st.sampled_from([0.1, 3.0, 2.0**12])), 100, relu, profile)
    workers = data.draw(st.sampled_from([1, 2]))
    try:
        expected = linear(*args).int_repr
    except (EngineNotSpecifiedError, EngineRefusedError) as refused:  # oneDNN: AVX512, or an asymmetric weight
        assert profile.linear_library == "onednn"
        with pytest.raises(type(refused)):
            fast.linear(*args, workers=workers)
        return
    assert np.array_equal(fast.linear(*args, workers=workers).int_repr, expected)
