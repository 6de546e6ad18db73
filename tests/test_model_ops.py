"""The reference ops whole models need: relu, clamp/hardtanh, mul, hardswish, hardsigmoid,
mean, transpose/chunk/contiguous and the float-island ops. Hand-worked examples first,
then a cross-check against torch (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.ops import (
    chunk,
    clamp,
    contiguous,
    hardsigmoid,
    hardswish,
    hardtanh,
    mean,
    mul,
    relu,
    transpose,
)
from quantspec.reference.ops.float_ops import FLOAT_OPS
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")
P214 = get_profile("torch2.14-avx512_vnni-fbgemm")


def q8(values, scale, zero_point, memory_format=MemoryFormat.contiguous) -> QTensor:
    return QTensor(np.asarray(values, dtype=np.uint8), scale, zero_point, "quint8", memory_format=memory_format)


def test_relu_clamps_at_the_zero_point_per_tensor_and_per_channel():
    # zp 10: max(q, 10)
    assert relu(q8([0, 10, 200], 0.5, 10)).int_repr.tolist() == [0 + 10, 10, 200]
    # per-channel zps [1, 5] on axis 0: row 0 max(q, 1), row 1 max(q, 5)
    q = QTensor(np.array([[0, 3], [4, 9]], np.int8), np.array([1.0, 1.0]), np.array([1, 5]), "qint8", axis=0)
    assert relu(q).int_repr.tolist() == [[1, 3], [5, 9]]


def test_clamp_bound_tie_differs_between_releases():
    # scale 0.5, zp 3, max 1.25: 1.25 * f32(1/0.5) = 2.5 exactly.
    # 2.13 quantize_val adds zp first: rne(3 + 2.5) = rne(5.5) = 6
    # 2.14 rounds first:               3 + rne(2.5) = 3 + 2 = 5
    q = q8([0, 4, 9], 0.5, 3)
    assert clamp(q, 0.0, 1.25, P213).int_repr.tolist() == [3, 4, 6]
    assert clamp(q, 0.0, 1.25, P214).int_repr.tolist() == [3, 4, 5]
    # one-sided: only min (0.0 -> zp 3)
    assert clamp(q, 0.0, None, P213).int_repr.tolist() == [3, 4, 9]


def test_hardtanh_is_relu6_on_integers():
    # scale 0.05, zp 10: 0.0 -> 10; 6.0 * f32(1/0.05f) = 6 * 20 = 120 -> 130
    q = q8([0, 50, 200], 0.05, 10)
    assert hardtanh(q, 0.0, 6.0, P213).int_repr.tolist() == [10, 50, 130]


def test_clamp_rejects_per_channel_and_missing_bounds():
    q = QTensor(np.zeros((2, 1), np.int8), np.array([1.0, 1.0]), np.array([0, 0]), "qint8", axis=0)
    with pytest.raises(ValueError, match="per-tensor"):
        clamp(q, 0.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        clamp(q8([1], 1.0, 0), None, None)


def test_mul_requantizes_the_integer_product():
    # sa = sb = 0.5, zp 0; out scale 0.25 zp 1: mult = f32(f32(0.25) * 4) = 1
    # c = [3*3, 5*1] = [9, 5] -> +1 -> [10, 6]
    out = mul(q8([3, 5], 0.5, 0), q8([3, 1], 0.5, 0), 0.25, 1)
    assert out.int_repr.tolist() == [10, 6]
    assert (out.scale, out.zero_point) == (0.25, 1)


def test_mul_vector_body_and_scalar_tail_differ_beyond_int32():
    # 65 elements, qa = qb = 255, zp 0, scales 1, out scale 2^-20: c = 65025,
    # c * mult = 65025 * 2^20 > 2^31.  Vector body (first 64): cvt gives INT32_MIN, + zp,
    # saturating packs -> 0.  Scalar tail (element 64): lrintf is 64-bit -> clamp 255.
    a = q8(np.full(65, 255), 1.0, 0)
    out = mul(a, a, 2.0**-20, 0).int_repr
    assert out[:64].tolist() == [0] * 64 and out[64] == 255


def test_mul_broadcasts_a_gate_and_keeps_a_layout():
    # x (1, 2, 1, 2) channels_last times gate (1, 2, 1, 1): channel 0 * 2, channel 1 * 3
    x = q8([[[[1, 2]], [[3, 4]]]], 1.0, 0, MemoryFormat.channels_last)
    gate = q8([[[[2]], [[3]]]], 1.0, 0)
    out = mul(x, gate, 1.0, 0)
    assert out.int_repr.tolist() == [[[[2, 4]], [[9, 12]]]]
    assert out.memory_format is MemoryFormat.channels_last


def test_hardswish_scalar_tail_tie_follows_the_profile():
    # q = 3, s = 1, zp 0 -> x = 3; y = 3 * min(max(3 + 3, 0), 6) / 6 = 3; out scale 2, zp 1:
    # y / 2 = 1.5.  Vector body (first 64 of 65): rne(1.5) + 1 = 3.
    # Scalar tail (element 64): 2.13 rne(1 + 1.5) = rne(2.5) = 2; 2.14 rne(1.5) + 1 = 3.
    q = q8(np.full(65, 3), 1.0, 0)
    out13 = hardswish(q, 2.0, 1, profile=P213).int_repr
    out14 = hardswish(q, 2.0, 1, profile=P214).int_repr
    assert out13[:64].tolist() == [3] * 64 and out13[64] == 2
    assert out14.tolist() == [3] * 65


def test_hardswish_tail_depends_on_the_thread_split():
    # 2 * 32768 + 2 elements on 2 threads: two ranges of 32769, each with a scalar tail of
    # 32769 % 64 = 1 element: positions 32768 and 65537.  One thread: only the last 2 elements.
    q = q8(np.full(2 * 32768 + 2, 3), 1.0, 0)
    two = hardswish(q, 2.0, 1, num_threads=2, profile=P213).int_repr
    one = hardswish(q, 2.0, 1, num_threads=1, profile=P213).int_repr
    assert np.flatnonzero(two == 2).tolist() == [32768, 65537]
    assert np.flatnonzero(one == 2).tolist() == [65536, 65537]


def test_hardsigmoid_has_fixed_output_qparams():
    # s 0.5, zp 2: q = [2, 5, 20] -> x = [0, 1.5, 9] -> y = [0.5, 0.75, 1] -> * 256 = [128, 192, 256 -> 255]
    out = hardsigmoid(q8([2, 5, 20], 0.5, 2))
    assert out.int_repr.tolist() == [128, 192, 255]
    assert (out.scale, out.zero_point) == (1 / 256, 0)
    signed = hardsigmoid(QTensor(np.array([0], np.int8), 0.5, 0, "qint8"))
    assert (signed.zero_point, signed.int_repr.tolist()) == (-128, [0])  # 0.5 * 256 - 128 = 0


def test_mean_inner_dims_averages_raw_integers():
    # contiguous (1, 2, 1, 3): channel sums 1+2+4 = 7 and 10+10+11 = 31;
    # f32(7 / 3) = 2.333.. -> 2; f32(31 / 3) = 10.333.. -> 10; zp cancels, qparams kept
    q = q8([[[[1, 2, 4]], [[10, 10, 11]]]], 0.3, 200)
    out = mean(q, (2, 3), keepdim=True)
    assert out.int_repr.reshape(-1).tolist() == [2, 10]
    assert out.shape == (1, 2, 1, 1) and (out.scale, out.zero_point) == (0.3, 200)


def test_mean_channels_last_takes_the_float_path():
    # channels_last (1, 2, 1, 2), s 0.5, zp 1: channel 0 q = [1, 2] -> x = [0, 0.5], mean 0.25;
    # channel 1 q = [3, 5] -> x = [1, 2], mean 1.5.  Quantize 2.13 (zp before rounding):
    # cvt(fma(0.25, 2, 1)) = cvt(1.5) = 2;  cvt(fma(1.5, 2, 1)) = 4
    q = q8([[[[1, 2]], [[3, 5]]]], 0.5, 1, MemoryFormat.channels_last)
    assert mean(q, (2, 3), keepdim=False, profile=P213).int_repr.tolist() == [[2, 4]]


def test_mean_refuses_layouts_it_does_not_model():
    q = q8(np.zeros((1, 2, 2, 2)), 0.5, 1, MemoryFormat.channels_last)
    with pytest.raises(NotImplementedError, match="does not model"):
        mean(q, (1,))


def test_shape_ops_move_integers_only():
    q = QTensor(np.arange(6, dtype=np.uint8).reshape(1, 2, 3), 0.5, 1, "quint8")
    assert transpose(q, 1, 2).int_repr.tolist() == [[[0, 3], [1, 4], [2, 5]]]
    # 3 along dim 2 in 2 chunks: size ceil(3/2) = 2 -> widths 2 and 1
    assert [c.shape for c in chunk(q, 2, 2)] == [(1, 2, 2), (1, 2, 1)]
    nhwc = QTensor(np.zeros((1, 2, 1, 1), np.uint8), 1.0, 0, "quint8", memory_format=MemoryFormat.channels_last)
    assert contiguous(nhwc).memory_format is MemoryFormat.contiguous
    assert contiguous(nhwc, 2).memory_format is MemoryFormat.channels_last
    with pytest.raises(ValueError, match="memory_format code"):
        contiguous(nhwc, 7)


def test_float_island_ops():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    # option-A shortcut: x[:, :, ::2, ::2] then pad channels by 1 on each side
    sliced = FLOAT_OPS["aten::slice"](FLOAT_OPS["aten::slice"](x, 2, 0, None, 2), 3, 0, None, 2)
    padded = FLOAT_OPS["aten::pad"](sliced, [0, 0, 0, 0, 1, 1], "constant", 0.0)
    assert padded.reshape(-1).tolist() == [0.0, 0.0, 4.0, 0.0]
    # add rounds once: 0.1f + 0.2f
    total = FLOAT_OPS["aten::add"](np.float32([0.1]), np.float32([0.2]), 1)
    assert total.tolist() == [float(np.float32(np.float32(0.1) + np.float32(0.2)))]
    assert FLOAT_OPS["aten::relu"](np.float32([-1, 2])).tolist() == [0.0, 2.0]
    with pytest.raises(TypeError, match="float32"):
        FLOAT_OPS["aten::relu"](np.array([1.0]))


def test_float_pools_of_islands():
    # 1x1x3x3 = 0..8, kernel 2, stride 2, padding 1 (windows clipped at the input):
    # max: [[0, 2], [6, 8]]; avg count_include_pad: window sizes 2*2 each ->
    # [[0/4, (1+2)/4], [(3+6)/4, (4+5+7+8)/4]] = [[0, 0.75], [2.25, 6]]; without pad counting:
    # [[0/1, 3/2], [9/2, 24/4]] = [[0, 1.5], [4.5, 6]]
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    assert FLOAT_OPS["aten::max_pool2d"](x, [2, 2], [2, 2], [1, 1], [1, 1], False).tolist() == [[[[0, 2], [6, 8]]]]
    counted = FLOAT_OPS["aten::avg_pool2d"](x, [2, 2], [2, 2], [1, 1], False, True, None)
    assert counted.tolist() == [[[[0, 0.75], [2.25, 6]]]]
    uncounted = FLOAT_OPS["aten::avg_pool2d"](x, [2, 2], [2, 2], [1, 1], False, False, None)
    assert uncounted.tolist() == [[[[0, 1.5], [4.5, 6]]]]


def test_float_pools_ceil_mode_dilation_and_nan():
    # 1x1x1x5 = [0, 1, nan, 3, 4], kernel (1, 2), stride (1, 2), ceil_mode: windows start at
    # 0, 2, 4; the last holds only column 4 (the rest lies beyond the input).
    # max: [1, nan, 4]; avg (count_include_pad, ceil window clipped to the input + padding 0,
    # so its size is 1): [0.5, nan, 4]. Dilation 2, kernel 2, stride 1: taps (0,2) (1,3) (2,4):
    # max [nan, 3, nan].
    x = np.float32([0, 1, np.nan, 3, 4]).reshape(1, 1, 1, 5)
    pooled = FLOAT_OPS["aten::max_pool2d"](x, [1, 2], [1, 2], [0, 0], [1, 1], True)
    assert np.array_equal(pooled.ravel(), [1, np.nan, 4], equal_nan=True)
    avg = FLOAT_OPS["aten::avg_pool2d"](x, [1, 2], [1, 2], [0, 0], True, True, None)
    assert np.array_equal(avg.ravel(), [0.5, np.nan, 4], equal_nan=True)
    dilated = FLOAT_OPS["aten::max_pool2d"](x, [1, 2], [1, 1], [0, 0], [1, 2], False)
    assert np.array_equal(dilated.ravel(), [np.nan, 3, np.nan], equal_nan=True)


# --- torch cross-check -------------------------------------------------------------


def _torch_cases():
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    return torch, from_torch, detect_profile(), fbgemm_engine


@pytest.mark.parametrize("channels_last", [False, True])
def test_against_torch(channels_last):
    torch, from_torch, profile, fbgemm_engine = _torch_cases()
    rng = np.random.default_rng(7)
    compared = 0
    with fbgemm_engine():
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for shape in [(1, 8, 5, 5), (2, 16, 7, 7), (1, 3, 3, 3), (2, 4, 6, 6), (1, 7, 4, 4)]:
                for _ in range(3):
                    scale, zp = float(rng.choice([0.5, 0.25, 1 / 3, 0.0375])), int(rng.integers(0, 256)) | 1
                    x = torch._make_per_tensor_quantized_tensor(
                        torch.from_numpy(rng.integers(0, 256, size=shape).astype(np.uint8)), scale, zp
                    )
                    y = torch._make_per_tensor_quantized_tensor(
                        torch.from_numpy(rng.integers(0, 256, size=shape).astype(np.uint8)), 0.125, 127
                    )
                    if channels_last:
                        x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
                    rx, ry = from_torch(x), from_torch(y)
                    out_scale, out_zp = float(rng.choice([0.5, 0.25, 2.0**-6])), int(rng.integers(0, 256))
                    pairs = [
                        (torch.ops.quantized.mul(x, y, out_scale, out_zp), mul(rx, ry, out_scale, out_zp)),
                        (
                            torch.ops.quantized.hardswish(x, out_scale, out_zp),
                            hardswish(rx, out_scale, out_zp, profile=profile),
                        ),
                        (torch.nn.functional.hardsigmoid(x), hardsigmoid(rx, profile=profile)),
                        (
                            torch.nn.functional.hardtanh(x, -0.5 * scale, 20.5 * scale),
                            hardtanh(rx, -0.5 * scale, 20.5 * scale, profile),
                        ),
                        (torch.relu(x), relu(rx)),
                        (torch.mean(x, (2, 3), keepdim=True), mean(rx, (2, 3), True, profile)),
                    ]
                    for expected, actual in pairs:
                        assert np.array_equal(expected.int_repr().numpy(), actual.int_repr)
                        assert (expected.q_scale(), expected.q_zero_point()) == (actual.scale, actual.zero_point)
                        compared += expected.numel()
        finally:
            torch.set_num_threads(previous)
    assert compared > 10_000


def test_mean_of_channels_last_with_unit_spatial_size_takes_the_integer_path():
    # channels_last (1, 2, 1, 1) is also NCHW-contiguous (size-1 dims' strides are ignored):
    # qmean_inner_dim averages one integer each -> unchanged; torch fails without keepdim.
    q = q8([[[[7]], [[200]]]], 0.3, 5, MemoryFormat.channels_last)
    assert mean(q, (2, 3), keepdim=True).int_repr.reshape(-1).tolist() == [7, 200]
    with pytest.raises(ValueError, match="torch fails"):
        mean(q, (2, 3), keepdim=False)


def test_mean_with_fewer_than_8_channels_uses_scalar_outer_sum():
    # channels_last (2, 4, 6, 6): with C < 8 ATen's cascade_sum runs scalar_outer_sum, whose
    # groups of 4 columns take multi_row_sum (36 rows < 16-row step: a plain running sum),
    # not row_sum's 4 interleaved streams; on these integers the two orders give different
    # float means and one quantized mean differs (120 vs 121). Found by conformance.models.
    torch, from_torch, profile, fbgemm_engine = _torch_cases()
    from quantspec.production.bridge import to_torch

    ints = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 6)).astype(np.uint8)
    q = QTensor(ints, 0.1, 3, "quint8", memory_format=MemoryFormat.channels_last)
    with fbgemm_engine():
        expected = torch.mean(to_torch(q), (2, 3), keepdim=True)
    assert np.array_equal(mean(q, (2, 3), True, profile).int_repr, expected.int_repr().numpy())
