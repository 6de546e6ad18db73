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


def centered_bound(values: np.ndarray, zero_point: np.typing.ArrayLike) -> int:
    """max |values - zero_point| (0 for an empty array); per-channel zero points index axis 0."""
    if values.size == 0:
        return 0
    zp = np.asarray(zero_point, dtype=np.int64)
    rows = values.reshape(zp.size, -1) if zp.ndim else values.reshape(1, -1)
    high = rows.max(axis=1).astype(np.int64) - zp.reshape(-1)
    low = rows.min(axis=1).astype(np.int64) - zp.reshape(-1)
    return int(max(np.abs(high).max(), np.abs(low).max()))


def centered_f32(values: np.ndarray, zero_point: np.typing.ArrayLike) -> np.ndarray:
    """`values - zero_point` as float32 in one pass (exact: |difference| <= 255 + 128)."""
    out = np.empty(values.shape, dtype=np.float32)
    np.subtract(values, np.asarray(zero_point, dtype=np.float32), out=out, casting="unsafe")
    return out


def exact_matmul(a: np.ndarray, w: np.ndarray, a_bound: int, w_bound: int) -> np.ndarray:
    """`wrap_int32(sum_k a[g, i, k] * w[g, j, k])` of integer-valued float32 operands, exactly.

    The int32 accumulator FBGEMM forms when no pair saturates (its adds wrap).

    Args:
        a: centered activations `a - a_zp` as float32, shape (G, M, K) (one GEMM per group).
        w: centered weights `w - w_zp` as float32, shape (G, N, K) (a row per output channel).
        a_bound, w_bound: upper bounds of |a| and |w| (from the raw int8 tensors: cheaper
            than scanning the float32 operands).

    Returns the int32 accumulators, shape (G, M, N).

    Exactness (TFLite-style argument): every term is an integer with
    |term| <= amax * wmax, where amax = a_bound and wmax = w_bound.
    BLAS sums in float32 in any order and may fuse multiply-adds, but every partial sum
    it forms is a sum of at most `chunk` terms, so |partial| <= chunk * amax * wmax.
    With chunk = floor((2^24 - 1) / (amax * wmax)) that is < 2^24, where float32 holds
    every integer: no product or addition ever rounds. One chunk converts to int32
    directly; several are added in int64 (|total| <= K * 255 * 255 < 2^63) and wrapped.
    """
    groups, rows, depth = a.shape
    out = np.zeros((groups, rows, w.shape[1]), dtype=np.int32)
    if a_bound == 0 or w_bound == 0 or depth == 0:
        return out
    chunk = max(1, int((_F32_EXACT - 1) // (a_bound * w_bound)))
    for g in range(groups):  # 2-d products: BLAS sgemm with a transposed operand, no copies
        if chunk >= depth:
            out[g] = a[g] @ w[g].T  # |sum| < 2^24: exact, no wrap possible
            continue
        total = np.zeros((rows, w.shape[1]), dtype=np.int64)
        for start in range(0, depth, chunk):
            total += (a[g, :, start : start + chunk] @ w[g, :, start : start + chunk].T).astype(np.int64)
        out[g] = wrap_int32(total)
    return out


def pair_saturation_correction(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`sum_p sat16(P_p) - P_p` for the `vpmaddubsw` pairs `P_p = a[2p] w[2p] + a[2p+1] w[2p+1]`.

    Without VNNI, FBGEMM's GEMM kernels (`genU8I8S32FMA`: `vpmaddubsw`, then `vpmaddwd`
    with ones, then `vpaddd`) add each adjacent pair of raw u8 x s8 products and saturate
    the pair to int16 before the exact int32 accumulation. Pairs start at k = 0 of every
    group's K (K is padded with zeros to a multiple of 4); a lone last product cannot
    saturate (|255 * -128| = 32640).

    Args:
        a: uint8 activations as the kernel reads them (padding taps hold a_zp), (G, M, K).
        w: int8 weights, (G, N, K), K in the kernel's order.

    Returns the int64 correction, (G, M, N), to add to the exact sum.

    Only candidate pairs are evaluated: |P| <= 128 (a0 + a1), so P > 32767 needs
    a0 + a1 >= 259 and P < -32768 needs a0 + a1 >= 257; and |P| <= 510 max(|w0|, |w1|)
    needs max(|w0|, |w1|) >= 65. Activations <= 127 (reduce_range) never saturate.
    """
    groups, rows, depth = a.shape
    cols = w.shape[1]
    correction = np.zeros((groups, rows, cols), dtype=np.int64)
    pairs = depth // 2
    if pairs == 0:
        return correction
    a0 = a[:, :, 0 : 2 * pairs : 2].astype(np.int32)
    a1 = a[:, :, 1 : 2 * pairs : 2].astype(np.int32)
    w0 = w[:, :, 0 : 2 * pairs : 2].astype(np.int32)
    w1 = w[:, :, 1 : 2 * pairs : 2].astype(np.int32)
    row_candidate = (a0 + a1) >= 257  # (G, M, pairs)
    col_candidate = np.maximum(np.abs(w0), np.abs(w1)) >= 65  # (G, N, pairs)
    for g, p in zip(*np.nonzero(row_candidate.any(axis=1) & col_candidate.any(axis=1))):
        r = np.flatnonzero(row_candidate[g, :, p])
        c = np.flatnonzero(col_candidate[g, :, p])
        pair = a0[g, r, p, None] * w0[g, c, p] + a1[g, r, p, None] * w1[g, c, p]
        excess = saturate_int16(pair) - pair
        if excess.any():
            correction[g][np.ix_(r, c)] += excess
    return correction
