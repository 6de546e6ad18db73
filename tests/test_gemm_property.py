"""Property tests (NumPy only) of reference/fast/gemm.py, the exact float32 u8 x s8 GEMM and
the `vpmaddubsw` pair-saturation correction, against the plain definition
`numerics.dot_u8i8acc32_ref`; and of that definition against the centered sums written out.

Drawn operands reach the hard cases: extreme values (0/255 activations, -128/127 weights,
zero points at the range ends), odd K (a lone last product, no pair), K long enough for
|acc| > 2^24 (where float32 stops holding every integer and the accumulator rounds) and
for int32 wrap-around, grouped GEMMs, per-channel weight zero points, and loose bounds.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quantspec.reference.fast.gemm import (
    exact_matmul,
    one_gemm_is_exact,
    pair_saturation_correction,
    pairs_can_saturate,
    prepare_pair_weights,
    prepare_weights,
)
from quantspec.reference.fast.threads import parallel_for
from quantspec.reference.numerics import INT16_MAX, dot_u8i8acc32_ref

U8_EDGES = (0, 1, 127, 128, 129, 254, 255)
S8_EDGES = (-128, -127, -1, 0, 1, 64, 65, 126, 127)
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _elements(low: int, high: int, edges: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


def u8_arrays(shape: tuple[int, ...], fill: int) -> st.SearchStrategy[np.ndarray]:
    """uint8 arrays: mostly `fill` (an edge value), some elements anywhere in 0..255."""
    return hnp.arrays(np.uint8, shape, elements=_elements(0, 255, U8_EDGES), fill=st.just(fill))


def s8_arrays(shape: tuple[int, ...], fill: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int8, shape, elements=_elements(-128, 127, S8_EDGES), fill=st.just(fill))


# K: short with odd tails, past 2^24 / 255^2 = 258 (|acc| > 2^24 with extreme values), and
# past 2^31 / 255^2 = 33026 (int32 wrap-around; M = N = 1 there to stay fast).
SHORT_DEPTHS = st.one_of(st.integers(1, 64), st.integers(250, 700))
DEPTHS = st.one_of(SHORT_DEPTHS, st.integers(33020, 33800))


@st.composite
def gemm_operands(
    draw: st.DrawFn, depths: st.SearchStrategy[int] = DEPTHS
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """(a uint8 (G, M, K), a_zp, w int8 (G, N/G, K), w_zp per output channel (N,))."""
    depth = draw(depths)
    small = depth < 30000
    groups = draw(st.integers(1, 3)) if small else 1
    rows, per_group = (draw(st.integers(1, 5)), draw(st.integers(1, 5))) if small else (1, 1)
    a_fill, w_fill = draw(st.sampled_from(U8_EDGES)), draw(st.sampled_from(S8_EDGES))
    a = draw(u8_arrays((groups, rows, depth), a_fill))
    w = draw(s8_arrays((groups, per_group, depth), w_fill))
    channels = groups * per_group
    if draw(st.booleans()):  # zero points at the far end from the fills: |centered| up to 255
        return a, 255 if a_fill < 128 else 0, w, np.full(channels, 127 if w_fill < 0 else -128, np.int64)
    a_zp = draw(_elements(0, 255, U8_EDGES))
    if draw(st.booleans()):
        w_zp = draw(hnp.arrays(np.int64, channels, elements=_elements(-128, 127, S8_EDGES)))
    else:
        w_zp = np.full(channels, draw(_elements(-128, 127, S8_EDGES)), np.int64)
    return a, a_zp, w, w_zp


# --- the plain sums -------------------------------------------------------------------------


def side_by_side(sums: np.ndarray) -> np.ndarray:
    """(G, M, N/G) -> (M, N): group g's output channels in columns g*N/G ... (g+1)*N/G - 1."""
    return np.concatenate(list(sums), axis=1)


def plain_acc(a: np.ndarray, a_zp: int, w: np.ndarray, w_zp: np.ndarray, saturate_pairs: bool) -> np.ndarray:
    """The plain definition per group, side by side: int32 (M, N)."""
    zps = w_zp.reshape(w.shape[0], w.shape[1])
    return side_by_side(np.stack([dot_u8i8acc32_ref(a[g], a_zp, w[g], zps[g], saturate_pairs) for g in range(len(w))]))


def wrap_int32_plainly(values: np.ndarray) -> np.ndarray:
    """Two's complement: (v + 2^31) mod 2^32 - 2^31, in int64."""
    return (values.astype(np.int64) + 2**31) % 2**32 - 2**31


def centered_sums(a: np.ndarray, a_zp: int, w: np.ndarray, w_zp: np.ndarray) -> np.ndarray:
    """S[i, g*N/G + j] = sum_k (a[g,i,k] - a_zp)(w[g,j,k] - w_zp[g*N/G + j]), exactly in int64."""
    groups, per_group = w.shape[0], w.shape[1]
    ac = a.astype(np.int64) - a_zp  # (G, M, K)
    wc = w.astype(np.int64) - w_zp.reshape(groups, per_group, 1)  # (G, N/G, K)
    return side_by_side((ac[:, :, None, :] * wc[:, None, :, :]).sum(axis=-1))  # every term, (G, M, N/G, K)


def as_float32(sums: np.ndarray) -> np.ndarray:
    """`cvtepi32_ps` of int32 values: one round-to-nearest-even to float32."""
    return sums.astype(np.float32)


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


def _bounds(a: np.ndarray, a_zp: int) -> tuple[int, int]:
    """max |a - a_zp| and max over rows of sum_k (a - a_zp)^2, plainly."""
    centered = a.astype(np.int64) - a_zp
    return int(np.abs(centered).max()), int((centered * centered).sum(axis=2).max())


def _run_exact(
    a: np.ndarray, a_zp: int, w: np.ndarray, w_zp: np.ndarray, slack: int, norm: Optional[bool],
    correction: Optional[np.ndarray] = None, workers: int = 1,
) -> np.ndarray:
    a_centered = (a.astype(np.int64) - a_zp).astype(np.float32)
    max_abs, max_norm = _bounds(a, a_zp)
    square_norm = None if norm is None else max_norm + slack
    return exact_matmul(a_centered, prepare_weights(w, w_zp), max_abs + slack, square_norm, correction, workers)


# --- properties --------------------------------------------------------------------------------


@PROPERTY
@given(gemm_operands(), st.sampled_from([0, 0, 1, 300]), st.sampled_from([None, True]), st.sampled_from([1, 2, 3]))
def test_exact_matmul_is_the_wrapped_int32_sum_rounded_once_to_float32(operands, slack, norm, workers):
    # Bounds: exact, or loose by `slack` (the contract asks for upper bounds only); with or
    # without the Cauchy-Schwarz row-norm bound (another route to the one-GEMM case); one
    # GEMM or bands of rows / output channels on `workers` threads.
    a, a_zp, w, w_zp = operands
    expected = as_float32(wrap_int32_plainly(centered_sums(a, a_zp, w, w_zp)))
    actual = _run_exact(a, a_zp, w, w_zp, slack, norm, workers=workers)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.array_equal(bits(actual), bits(expected))


@PROPERTY
@given(gemm_operands(SHORT_DEPTHS), st.sampled_from([None, True]))
def test_one_gemm_is_exact_only_when_every_partial_sum_fits_float32(operands, norm):
    # Soundness of the one-GEMM shortcut: T = sum_k |a_ik| |w_jk| bounds every partial sum
    # BLAS can form; it must be <= 2^24 for every (i, j) whenever the shortcut is taken.
    a, a_zp, w, w_zp = operands
    max_abs, max_norm = _bounds(a, a_zp)
    if one_gemm_is_exact(a.shape[2], max_abs, None if norm is None else max_norm, prepare_weights(w, w_zp)):
        ac = np.abs(a.astype(np.int64) - a_zp)  # (G, M, K)
        wc = np.abs(w.astype(np.int64) - w_zp.reshape(w.shape[0], w.shape[1], 1))  # (G, N/G, K)
        assert (ac[:, :, None, :] * wc[:, None, :, :]).sum(axis=-1).max() <= 2**24


@PROPERTY
@given(gemm_operands(st.integers(1, 64)))
def test_prepare_weights_centers_and_bounds_exactly(operands):
    _, _, w, w_zp = operands
    prepared = prepare_weights(w, w_zp)
    centered = w.astype(np.int64) - w_zp.reshape(w.shape[0], w.shape[1], 1)
    assert np.array_equal(prepared.centered, centered.astype(np.float32))
    assert prepared.max_abs == int(np.abs(centered).max())
    assert prepared.max_square_norm == int((centered * centered).sum(axis=2).max())


@PROPERTY
@given(gemm_operands())
def test_plain_dot_without_saturation_is_the_wrapped_centered_sum(operands):
    # The offset form of the definition (raw sums minus zero-point terms) equals the
    # centered sum when no pair saturates, including past the int32 wrap.
    a, a_zp, w, w_zp = operands
    assert np.array_equal(plain_acc(a, a_zp, w, w_zp, False), wrap_int32_plainly(centered_sums(a, a_zp, w, w_zp)))


@PROPERTY
@given(gemm_operands(SHORT_DEPTHS))  # (the correction's cost grows with K; K's size adds nothing here)
def test_pair_saturation_correction_is_saturated_minus_exact_pair_sums(operands):
    # |correction| <= K/2 * 32,512 < 2^31 here, so the difference of the wrapped plain
    # accumulators, wrapped again, is the correction itself.
    a, a_zp, w, w_zp = operands
    difference = plain_acc(a, a_zp, w, w_zp, True).astype(np.int64) - plain_acc(a, a_zp, w, w_zp, False)
    assert np.array_equal(correction_of(a, w), wrap_int32_plainly(difference))


@PROPERTY
@given(gemm_operands(SHORT_DEPTHS), st.sampled_from([None, True]))
def test_gemm_with_pair_saturation_is_the_plain_saturated_accumulator(operands, norm):
    a, a_zp, w, w_zp = operands
    expected = as_float32(plain_acc(a, a_zp, w, w_zp, True))
    actual = _run_exact(a, a_zp, w, w_zp, 0, norm, correction_of(a, w))
    assert np.array_equal(bits(actual), bits(expected))


@PROPERTY
@given(st.integers(250, 520), st.integers(1, 4), st.integers(1, 4), st.sampled_from([None, True]), st.data())
def test_exact_matmul_where_float32_partial_sums_would_round(depth, rows, cols, norm, data):
    # Nearly every term is (255 - 0) * (127 - -128) = 65,025, so S passes 2^24 for K > 258 and
    # any float32 partial sum beyond 2^24 would round: only exact bounds keep BLAS exact.
    a = data.draw(hnp.arrays(np.uint8, (1, rows, depth), elements=_elements(0, 255, U8_EDGES), fill=st.just(255)))
    w = data.draw(hnp.arrays(np.int8, (1, cols, depth), elements=_elements(-128, 127, S8_EDGES), fill=st.just(127)))
    w_zp = np.full(cols, -128, np.int64)
    expected = as_float32(wrap_int32_plainly(centered_sums(a, 0, w, w_zp)))
    assert np.array_equal(bits(_run_exact(a, 0, w, w_zp, 0, norm)), bits(expected))


def test_hand_worked_extremes_round_and_wrap():
    # K = 259 terms of (255 - 0) * (127 - -128) = 65025: S = 16,841,475 > 2^24 = 16,777,216 is
    # odd, halfway between float32 neighbours (ulp 2 there); the tie goes to the even mantissa,
    # 16,841,476 = 2 * 8,420,738.
    a = np.full((1, 1, 259), 255, np.uint8)
    w = np.full((1, 1, 259), 127, np.int8)
    got = exact_matmul(a.astype(np.float32), prepare_weights(w, [-128]), 255)
    assert 259 * 65025 == 16_841_475 and got.tolist() == [[16_841_476.0]]
    # K = 33,027: S = 2,147,580,675 > 2^31 - 1 wraps to 2,147,580,675 - 2^32 = -2,147,386,621,
    # which float32 (ulp 128 there) rounds to -2,147,386,624.
    a = np.full((1, 1, 33_027), 255, np.uint8)
    w = np.full((1, 1, 33_027), 127, np.int8)
    got = exact_matmul(a.astype(np.float32), prepare_weights(w, [-128]), 255)
    assert 33_027 * 65025 - 2**32 == -2_147_386_621 and got.tolist() == [[-2_147_386_624.0]]


def test_hand_worked_pair_saturation():
    # a = [255, 255, 255], w = [127, 127, 127]: pair (0, 1) = 64,770 saturates to 32,767
    # (correction -32,003); the lone third product 32,385 stays. With w = -128: the pair is
    # -65,280 -> -32,768 (correction +32,512).
    a = np.full((1, 1, 3), 255, np.uint8)
    assert correction_of(a, np.full((1, 1, 3), 127, np.int8)).tolist() == [[-32_003]]
    assert correction_of(a, np.full((1, 1, 3), -128, np.int8)).tolist() == [[32_512]]
    # At the candidate thresholds, pair sums 257, 258, 259: times -128 they are -32,896,
    # -33,024, -33,152, saturated to -32,768 (+128, +256, +384); times 127 they are 32,639
    # and 32,766 (fit) and 32,893 -> 32,767 (-126).
    pairs = np.array([[[128, 129], [129, 129], [129, 130]]], np.uint8).reshape(1, 3, 2)
    weights = np.array([[[-128, -128], [127, 127]]], np.int8)
    assert correction_of(pairs, weights).tolist() == [[128, 0], [256, 0], [384, -126]]
    # The weight threshold: (255 + 255) * 64 = 32,640 fits; * 65 = 33,150 -> 32,767 (-383).
    full = np.full((1, 1, 2), 255, np.uint8)
    assert correction_of(full, np.array([[[64, 64], [65, 65]]], np.int8)).tolist() == [[0, -383]]
    # Activations <= 127 (reduce_range) never saturate: 127 * 127 * 2 = 32,258 <= 32,767.
    low = np.full((1, 1, 4), 127, np.uint8)
    assert pair_saturation_correction(low, prepare_pair_weights(np.full((1, 1, 4), 127, np.int8))) is None


@PROPERTY
@given(gemm_operands(SHORT_DEPTHS), st.booleans())
def test_pairs_can_saturate_is_false_only_where_no_pair_saturates(operands, at_the_bound):
    # The shortcut the conv and linear kernels take: where `pairs_can_saturate` says no, the
    # plain saturated and unsaturated accumulators agree. Drawn operands mostly can saturate,
    # so half the cases clip the activations to the largest value the bound allows
    # (32767 // max(|w0| + |w1|)): those must take the shortcut, right at its edge.
    a, a_zp, w, w_zp = operands
    pairs = prepare_pair_weights(w)
    if at_the_bound:
        a = np.minimum(a, min(255, INT16_MAX // max(pairs.max_pair_abs, 1))).astype(np.uint8)
        assert not pairs_can_saturate(int(a.max(initial=0)), pairs)
    if not pairs_can_saturate(int(a.max(initial=0)), pairs):
        assert np.array_equal(plain_acc(a, a_zp, w, w_zp, True), plain_acc(a, a_zp, w, w_zp, False))


def correction_of(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`pair_saturation_correction` as an array (its None is a zero correction)."""
    correction = pair_saturation_correction(a, prepare_pair_weights(w))
    return np.zeros((a.shape[1], w.shape[0] * w.shape[1]), np.int64) if correction is None else correction


def test_parallel_for_runs_every_item_once_on_the_caller_and_the_pool():
    import threading
    import time

    seen = []
    lock = threading.Lock()

    def record(item: int) -> None:
        with lock:
            seen.append((item, threading.current_thread() is threading.main_thread()))
        time.sleep(0.001)  # releases the GIL, as NumPy's loops do: every thread gets items

    parallel_for(record, list(range(50)), workers=3)
    assert sorted(item for item, _ in seen) == list(range(50))
    assert any(on_caller for _, on_caller in seen)  # the calling thread takes items too


def test_parallel_for_raises_the_first_error_after_every_thread_stopped():
    import threading

    done = []

    def fail_on_three(item: int) -> None:
        if item == 3:
            raise ValueError("item 3")
        done.append(item)

    with pytest.raises(ValueError, match="item 3"):
        parallel_for(fail_on_three, list(range(8)), workers=2)
    finished = len(done)
    threading.Event().wait(0.05)  # nothing still runs after the call returned
    assert len(done) == finished and set(done) == set(range(8)) - {3}
