"""Plain int64 sums of FBGEMM's u8 x s8 GEMM for tests: every product written out, no BLAS."""

from __future__ import annotations

import numpy as np


def saturated_pair_sums(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(saturated, exact) raw sums in int64, (M, G * N/G). saturated: `vpmaddubsw` + `vpmaddwd`
    + `vpaddd`, each product pair (k = 0, 1), (2, 3), ... of u8 x s8 saturated to int16, the
    pairs and a lone last product (odd K) summed, before the int32 wrap; exact: the plain sum."""
    depth = a.shape[2]
    products = a.astype(np.int64)[:, :, None, :] * w.astype(np.int64)[:, None, :, :]  # (G, M, N/G, K)
    pairs = products[..., 0 : depth - 1 : 2] + products[..., 1:depth:2]
    lone = products[..., -1] if depth % 2 else 0
    saturated = np.clip(pairs, -32768, 32767).sum(axis=-1) + lone
    return side_by_side(saturated), side_by_side(products.sum(axis=-1))


def side_by_side(sums: np.ndarray) -> np.ndarray:
    """(G, M, N/G) -> (M, N): group g's output channels in columns g*N/G ... (g+1)*N/G - 1."""
    return np.concatenate(list(sums), axis=1)
