"""quantized::add / add_relu: hand-worked vector/scalar splits, release ties, int32 wrap, torch."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.ops import add, add_relu
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")
P214 = get_profile("torch2.14-avx512_vnni-fbgemm")


def ones(shape: tuple[int, ...], memory_format: MemoryFormat = MemoryFormat.contiguous) -> QTensor:
    return QTensor(np.ones(shape, np.uint8), 1.0, 0, "quint8", memory_format=memory_format)


def test_scalar_tail_tie_differs_between_releases() -> None:
    # 65 elements of 1 + 1 with output scale 4, zp 1: c = 2, c * 0.25 = 0.5 (a tie).
    # Elements 0..63 are one vector block: cvt(0.5) = 0, + zp = 1 (both releases).
    # Element 64 is the scalar tail: 2.13 rne(1 + 0.5) = rne(1.5) = 2; 2.14 1 + rne(0.5) = 1.
    a = ones((65,))
    out13 = add(a, a, 4.0, 1, profile=P213).int_repr
    out14 = add(a, a, 4.0, 1, profile=P214).int_repr
    assert out13[:64].tolist() == [1] * 64 and out13[64] == 2
    assert out14.tolist() == [1] * 65


def test_two_threads_move_the_tail_to_each_range_end() -> None:
    # n = 65600 = 1025 * 64 > 32768. One thread: every element is in a vector block (1).
    # Two threads: at::parallel_for gives [0, 32800) and [32800, 65600); 32800 = 512*64 + 32,
    # so each range ends in a 32-element scalar tail, 32768..32799 and 65568..65599 (2 on 2.13).
    a = ones((65600,))
    one = add(a, a, 4.0, 1, num_threads=1, profile=P213).int_repr
    two = add(a, a, 4.0, 1, num_threads=2, profile=P213).int_repr
    assert one.tolist() == [1] * 65600
    assert two[32767] == 1 and two[32768] == two[32799] == 2 and two[32800] == 1
    assert two[65567] == 1 and two[65568] == two[65599] == 2
    assert int((two == 2).sum()) == 64


def test_channels_last_walks_nhwc_memory() -> None:
    # Shape (1, 2, 8, 5): 80 elements, one vector block (memory positions 0..63).
    # NCHW memory: (0, 0, 7, 4) sits at 0*40 + 7*5 + 4 = 39 -> vector -> 1.
    # NHWC memory: it sits at (7*5 + 4)*2 + 0 = 78 -> scalar tail -> 2 on 2.13.
    nchw = add(ones((1, 2, 8, 5)), ones((1, 2, 8, 5)), 4.0, 1, profile=P213)
    cl = ones((1, 2, 8, 5), MemoryFormat.channels_last)
    nhwc = add(cl, cl, 4.0, 1, profile=P213)
    assert nchw.int_repr[0, 0, 7, 4] == 1 and nhwc.int_repr[0, 0, 7, 4] == 2
    assert nhwc.memory_format is MemoryFormat.channels_last


def test_mixed_memory_formats_run_every_element_scalar() -> None:
    # a NCHW, b channels_last, shape (1, 2, 8, 5): no unit-stride inner loop for both, so
    # basic_loop handles all 80 elements: 2.13 rne(1 + 0.5) = 2 everywhere (no vector 1s).
    out = add(ones((1, 2, 8, 5)), ones((1, 2, 8, 5), MemoryFormat.channels_last), 4.0, 1, profile=P213)
    assert out.int_repr.ravel().tolist() == [2] * 80 and out.memory_format is MemoryFormat.contiguous


def test_vector_requantize_clamps_then_wraps_the_zero_point_add() -> None:
    # a = 255 (scale 1, zp 0), b = 0: c = 255; output scale 1e-9: c * inv ~ 2.55e11.
    # Vector: min(2.55e11, 2147483520) -> cvt 2147483520; + zp 5 = 2147483525 <= INT32_MAX -> 255;
    # + zp 200 = 2147483720 wraps to -2147483576 -> clamps to 0.
    # Scalar tail (quantize_val clamps in double): 255 for either zero point.
    a = QTensor(np.full((65,), 255, np.uint8), 1.0, 0, "quint8")
    b = QTensor(np.zeros((65,), np.uint8), 1.0, 0, "quint8")
    assert add(a, b, 1e-9, 5).int_repr[[0, 64]].tolist() == [255, 255]
    assert add(a, b, 1e-9, 200).int_repr[[0, 64]].tolist() == [0, 255]


def test_qint32_blocks_of_16_and_the_fma_dequantize() -> None:
    # qint32, a = 4 at scale 0.1f (13421773 * 2^-27), zp 3; b = 0; output scale 2^-30, zp 0.
    # vector (elements 0..15): premul = f32(0.1f * -3) = -0.30000001192092896 (-10066330 * 2^-25);
    #   fma32(0.1f, 4, premul) = 0.4000000059604645 - 0.30000001192092896 = 0.09999999403953552
    #   (13421772 * 2^-27, exact), * 2^30 = 107374176.
    # scalar (element 16): f32(0.1f * (4 - 3)) = 0.1f = 13421773 * 2^-27, * 2^30 = 107374184.
    a = QTensor(np.full((17,), 4, np.int32), 0.1, 3, "qint32")
    b = QTensor(np.zeros((17,), np.int32), 1.0, 0, "qint32")
    out = add(a, b, 2.0**-30, 0).int_repr
    assert out[:16].tolist() == [107374176] * 16 and out[16] == 107374184


def every_pair(dtype: str, scale: float, zero_point: int, other_scale: float, other_zp: int) -> tuple[QTensor, QTensor]:
    """65536 elements holding every (qa, qb) pair once: a = element // 256, b = element % 256 (as bytes)."""
    storage = np.uint8 if dtype == "quint8" else np.int8
    byte = np.arange(256, dtype=np.uint8).view(storage)
    a = QTensor(np.repeat(byte, 256), scale, zero_point, dtype)
    b = QTensor(np.tile(byte, 256), other_scale, other_zp, dtype)
    return a, b


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_large_8bit_adds_look_each_pair_up_with_the_vector_formula(dtype: str) -> None:
    # 65536 elements (1024 blocks of 64, no tail) are computed from a 256 x 256 table; chunks of
    # 4096 (< PAIR_TABLE_MIN_SIZE, also whole blocks) run the formula per element: equal.
    # Hand-worked: a = 10 at (0.5, zp 3) -> fma(0.5, 10, -1.5) = 3.5; b = 9 at (0.25, zp 1)
    # -> fma(0.25, 9, -0.25) = 2.0; c = 5.5, output scale 1 zp 1: vector cvt(5.5) = 6, + 1 = 7
    # (the scalar lambda on 2.13 would give rne(1 + 5.5) = 6).
    a, b = every_pair(dtype, 0.5, 3, 0.25, 1)
    whole = add(a, b, 1.0, 1, profile=P213).int_repr
    chunks = [
        add(
            QTensor(a.int_repr[i : i + 4096], 0.5, 3, dtype),
            QTensor(b.int_repr[i : i + 4096], 0.25, 1, dtype),
            1.0,
            1,
            profile=P213,
        ).int_repr
        for i in range(0, 65536, 4096)
    ]
    assert np.array_equal(whole, np.concatenate(chunks))
    assert whole[10 * 256 + 9] == 7
    # Tables are cached per qparams; other output qparams or relu must not reuse this one.
    # zp 2: 6 + 2 = 8. a = 0 -> -1.5, b = 1 -> 0.0: add cvt(-1.5) = -2, + 1 = -1 (quint8
    # clamps to 0); add_relu max(-1.5, 0) = 0 -> 0 + 1 = 1.
    assert add(a, b, 1.0, 2, profile=P213).int_repr[10 * 256 + 9] == 8
    assert whole[1] == (0 if dtype == "quint8" else -1)
    assert add_relu(a, b, 1.0, 1, profile=P213).int_repr[1] == 1


def test_add_relu_clamps_the_float_sum_at_zero() -> None:
    # qint8: a = -10 (scale 0.5, zp 0) -> -5.0; b = 2 (scale 1, zp 0) -> 2.0; c = -3.0.
    # add: -3.0 / 0.5 = -6, + zp 3 = -3.   add_relu: max(-3.0, 0) = 0 -> 0 + 3 = 3.
    a = QTensor(np.array([-10], np.int8), 0.5, 0, "qint8")
    b = QTensor(np.array([2], np.int8), 1.0, 0, "qint8")
    assert add(a, b, 0.5, 3).int_repr.tolist() == [-3]
    assert add_relu(a, b, 0.5, 3).int_repr.tolist() == [3]


@pytest.mark.parametrize(
    "b, message",
    [
        (QTensor(np.ones((3,), np.uint8), 1.0, 0, "quint8"), "shapes"),
        (QTensor(np.ones((2,), np.int8), 1.0, 0, "qint8"), "dtypes"),
        (QTensor(np.ones((2,), np.int32), 1.0, 0, "qint32"), "dtypes"),
        (QTensor(np.ones((2,), np.uint8), [1.0, 2.0], [0, 0], "quint8", axis=0), "per-channel"),
    ],
)
def test_bad_operands_are_refused(b: QTensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        add(ones((2,)), b, 1.0, 0)


def test_matches_torch_at_ties_tails_and_threads() -> None:
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    rng = np.random.default_rng(0)
    profile = detect_profile()
    previous = torch.get_num_threads()
    compared = 0
    try:
        with fbgemm_engine():
            for shape, fmt, threads in [
                ((3, 5, 7, 3), MemoryFormat.contiguous, 1),
                ((2, 9, 5, 3), MemoryFormat.channels_last, 1),
                ((1, 3, 150, 150), MemoryFormat.contiguous, 2),
            ]:
                torch.set_num_threads(threads)
                a = QTensor(rng.integers(0, 256, shape).astype(np.uint8), 1.0, 3, "quint8", memory_format=fmt)
                b = QTensor(rng.integers(0, 256, shape).astype(np.uint8), 1.0, 0, "quint8", memory_format=fmt)
                expected = torch.ops.quantized.add(to_torch(a), to_torch(b), 2.0, 7)  # odd zp, .5 ties
                ours = add(a, b, 2.0, 7, num_threads=threads, profile=profile)
                assert np.array_equal(from_torch(expected).int_repr, ours.int_repr)
                compared += ours.int_repr.size
    finally:
        torch.set_num_threads(previous)
    assert compared > 67500


@pytest.mark.parametrize("dtype, relu", [("quint8", False), ("qint8", True)])
def test_every_pair_matches_torch(dtype: str, relu: bool) -> None:
    # Every (qa, qb) pair once, odd output zero point (vector/scalar ties differ), 2 threads:
    # ranges of 32768 = 512 blocks, so all vector; then 65536 - 6 elements: each range
    # (32765) ends in a 61-element scalar tail.
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    operator = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with fbgemm_engine():
            for size in (65536, 65530):
                full_a, full_b = every_pair(dtype, 0.05, 3, 0.03, -1 if dtype == "qint8" else 1)
                a = QTensor(full_a.int_repr[:size], full_a.scale, full_a.zero_point, dtype)
                b = QTensor(full_b.int_repr[:size], full_b.scale, full_b.zero_point, dtype)
                expected = from_torch(operator(to_torch(a), to_torch(b), 0.04, 5)).int_repr
                ours = add(a, b, 0.04, 5, relu=relu, num_threads=2, profile=detect_profile()).int_repr
                assert np.array_equal(expected, ours)
    finally:
        torch.set_num_threads(previous)
