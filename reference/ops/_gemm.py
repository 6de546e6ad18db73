"""The exact integer u8 x s8 GEMM of FBGEMM's conv/linear paths, computed fast with BLAS.

FBGEMM forms `acc[i, j] = sum_k a[i, k] * w[k, j]` in int32 and subtracts the zero-point
terms with row/column offsets (`ReQuantizeOutput`): all int32 adds and `mullo`s, so the
result is `sum_k (a - a_zp)(w - w_zp)` wrapped to int32, except where `vpmaddubsw`
saturates a pair of products to int16 first (see `pair_saturation_correction`).
"""

from __future__ import annotations

import numpy as np

from ..numerics import saturate_int16, wrap_int32

# float32 represents every integer of magnitude <= 2^24 exactly.
_F32_EXACT = 2**24


def centered_bound(values: np.ndarray, zero_point: int) -> int:
    """max |values - zero_point| (0 for an empty array)."""
    if values.size == 0:
        return 0
    return max(abs(int(values.max()) - zero_point), abs(int(values.min()) - zero_point))


def centered_f32(values: np.ndarray, zero_point: np.typing.ArrayLike) -> np.ndarray:
    """`values - zero_point` as float32 in one pass (exact: |difference| <= 255 + 128)."""
    out = np.empty(values.shape, dtype=np.float32)
    np.subtract(values, np.asarray(zero_point, dtype=np.float32), out=out, casting="unsafe")
    return out


def exact_matmul(a: np.ndarray, w: np.ndarray, a_bound: int) -> np.ndarray:
    """`wrap_int32(sum_k a[g, i, k] * w[g, k, j])` of integer-valued float32 operands, exactly.

    The int32 accumulator FBGEMM forms when no pair saturates (its adds wrap).

    Args:
        a: centered activations `a - a_zp` as float32, shape (G, M, K) (one GEMM per group).
        w: centered weights `w - w_zp` as float32, shape (G, K, N).
        a_bound: an upper bound of |a| (from the raw tensor: cheaper than scanning `a`).

    Exactness (TFLite-style argument): every term is an integer with
    |term| <= amax * wmax, where amax = a_bound and wmax = max |w| over the data.
    BLAS sums in float32 in any order and may fuse multiply-adds, but every partial sum
    it forms is a sum of at most `chunk` terms, so |partial| <= chunk * amax * wmax.
    With chunk = floor((2^24 - 1) / (amax * wmax)) that is < 2^24, where float32 holds
    every integer: no product or addition ever rounds. One chunk converts to int32
    directly; several are added in int64 (|total| <= K * 255 * 255 < 2^63) and wrapped.
    """
    amax = float(a_bound)
    wmax = float(np.abs(w).max(initial=0.0))
    depth = a.shape[2]
    if amax == 0.0 or wmax == 0.0 or depth == 0:
        return np.zeros((a.shape[0], a.shape[1], w.shape[2]), dtype=np.int32)
    chunk = max(1, int((_F32_EXACT - 1) // (amax * wmax)))
    first = np.matmul(a[:, :, :chunk], w[:, :chunk, :])
    if chunk >= depth:
        return first.astype(np.int32)  # |sum| < 2^24: exact, no wrap possible
    total = first.astype(np.int64)
    for start in range(chunk, depth, chunk):
        total += np.matmul(a[:, :, start : start + chunk], w[:, start : start + chunk, :]).astype(np.int64)
    return wrap_int32(total)


def pair_saturation_correction(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`sum_p sat16(P_p) - P_p` for the `vpmaddubsw` pairs `P_p = a[2p] w[2p] + a[2p+1] w[2p+1]`.

    Without VNNI, FBGEMM's GEMM kernels (`genU8I8S32FMA`: `vpmaddubsw`, then `vpmaddwd`
    with ones, then `vpaddd`) add each adjacent pair of raw u8 x s8 products and saturate
    the pair to int16 before the exact int32 accumulation. Pairs start at k = 0 of every
    group's K (K is padded with zeros to a multiple of 4); a lone last product cannot
    saturate (|255 * -128| = 32640).

    Args:
        a: uint8 activations as the kernel reads them (padding taps hold a_zp), (G, M, K).
        w: int8 weights, (G, K, N).

    Returns the int64 correction, (G, M, N), to add to the exact sum.

    Only candidate pairs are evaluated: |P| <= 128 (a0 + a1), so P > 32767 needs
    a0 + a1 >= 259 and P < -32768 needs a0 + a1 >= 257; and |P| <= 510 max(|w0|, |w1|)
    needs max(|w0|, |w1|) >= 65. Activations <= 127 (reduce_range) never saturate.
    """
    groups, rows, depth = a.shape
    cols = w.shape[2]
    correction = np.zeros((groups, rows, cols), dtype=np.int64)
    pairs = depth // 2
    if pairs == 0:
        return correction
    a0 = a[:, :, 0 : 2 * pairs : 2].astype(np.int32)
    a1 = a[:, :, 1 : 2 * pairs : 2].astype(np.int32)
    w0 = w[:, 0 : 2 * pairs : 2, :].astype(np.int32)
    w1 = w[:, 1 : 2 * pairs : 2, :].astype(np.int32)
    row_candidate = (a0 + a1) >= 257
    col_candidate = np.maximum(np.abs(w0), np.abs(w1)) >= 65
    for g, p in zip(*np.nonzero(row_candidate.any(axis=1) & col_candidate.any(axis=2))):
        r = np.flatnonzero(row_candidate[g, :, p])
        c = np.flatnonzero(col_candidate[g, p])
        pair = a0[g, r, p, None] * w0[g, p, c] + a1[g, r, p, None] * w1[g, p, c]
        excess = saturate_int16(pair) - pair
        if excess.any():
            correction[g][np.ix_(r, c)] += excess
    return correction
