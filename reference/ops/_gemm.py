"""The exact integer u8 x s8 GEMM of FBGEMM's conv/linear paths, computed fast with BLAS.

FBGEMM forms `acc[i, j] = sum_k a[i, k] * w[k, j]` in int32 and subtracts the zero-point
terms with row/column offsets (`ReQuantizeOutput`): all int32 adds and `mullo`s, so the
result is `sum_k (a - a_zp)(w - w_zp)` wrapped to int32, except where `vpmaddubsw`
saturates a pair of products to int16 first (see `pair_saturation_correction`).
"""

from __future__ import annotations

import numpy as np

from ..numerics import INT16_MAX, INT16_MIN, saturate_int16

# float32 represents every integer of magnitude <= 2^24 exactly.
_F32_EXACT = 2**24


def exact_centered_matmul(a: np.ndarray, a_zero_point: int, w: np.ndarray, w_zero_point: np.ndarray) -> np.ndarray:
    """`sum_k (a[g, i, k] - a_zp) * (w[g, k, j] - w_zp[g, j])` exactly, as int64.

    Args:
        a: uint8 activations, shape (G, M, K) (one GEMM per group).
        a_zero_point: the activation zero point.
        w: int8 weights, shape (G, K, N).
        w_zero_point: int64 weight zero points, shape (G, N) (per output channel).

    Exactness (TFLite-style argument): every term is an integer with
    |term| <= amax * wmax, where amax = max |a - a_zp| and wmax = max |w - w_zp| over the
    data. BLAS sums in float32 in any order and may fuse multiply-adds, but every partial
    sum it forms is a sum of at most `chunk` terms, so |partial| <= chunk * amax * wmax.
    With chunk = floor((2^24 - 1) / (amax * wmax)) that is < 2^24, where float32 holds
    every integer: no product or addition ever rounds. Each K-chunk result is then an
    exact integer, and the chunks are added in int64.
    """
    a_c = a.astype(np.float32) - np.float32(a_zero_point)
    w_c = w.astype(np.float32) - w_zero_point[:, None, :].astype(np.float32)
    amax = float(np.abs(a_c).max(initial=0.0))
    wmax = float(np.abs(w_c).max(initial=0.0))
    depth = a.shape[2]
    total = np.zeros((a.shape[0], a.shape[1], w.shape[2]), dtype=np.int64)
    if amax == 0.0 or wmax == 0.0 or depth == 0:
        return total
    chunk = max(1, int((_F32_EXACT - 1) // (amax * wmax)))
    for start in range(0, depth, chunk):
        partial = np.matmul(a_c[:, :, start : start + chunk], w_c[:, start : start + chunk, :])
        total += partial.astype(np.int64)
    return total


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


def saturated_pair_sum(products0: np.ndarray, products1: np.ndarray) -> np.ndarray:
    """`sat16(p0 + p1)` of two int32 product arrays (one `vpmaddubsw` lane), as int32."""
    pair = products0 + products1
    np.clip(pair, INT16_MIN, INT16_MAX, out=pair)
    return pair
