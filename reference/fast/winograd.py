"""FBGEMM's exact conv sums for stride-1 3x3 convolutions, computed by Winograd F(2x2, 3x3).

Only a faster way to the same integers as the im2col GEMM (`gemm.exact_matmul`): for
every 4x4 input tile d and 3x3 filter g, the 2x2 outputs are (Lavin & Gray, 2016)

    Y = A^T [ (G g G^T) (*) (B^T d B) ] A        (* elementwise, summed over channels)

an identity over the rationals. With G' = 2G (integer) the filter side U' = G' g G'^T =
4 G g G^T is an integer matrix and Y' = A^T [sum_c U' (*) V] A = 4Y, V = B^T d B. Each
of the 16 tile positions is one GEMM over the channels, with 4/9 of im2col's multiplies
(16 per 4 outputs instead of 36).

Exactness: V entries are integers with |V| <= 4 max|a - a_zp| (each a signed sum of at
most 4 inputs), U' entries integers with |U'| <= 9 max|w - w_zp|, all exact in float32.
Each position's GEMM sums `V[c] U'[c]` over the channels; BLAS forms only subset sums,
each bounded by sum_c |V_c| |U'_c| <= sqrt(sum_c V_c^2) sqrt(sum_c U'_c^2) (Cauchy-
Schwarz), so the GEMM is exact when max sum_c V^2 * max sum_c U'^2 <= 2^48. Since V at a
position is a signed sum of 4 inputs d_k, V^2 <= 4 sum_k d_k^2, so max sum_c V^2 <= 4 *
max over tiles of the tile's sum of squares. When that bound fails the caller uses im2col.
The output transform then adds at most 9 of these exact integers (<= 2^24 each) in int32,
and Y' / 4 = S, the direct sum, exactly (|S| <= 9 C 255 128 < 2^31: no int32 wrap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# F(2x2, 3x3)'s filter transform G' = 2G. (B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
# [0, 1, 0, -1]] and A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] are applied as adds in
# `_input_transform` and `_output_transform`.)
_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.int64)

_F32_EXACT_SQUARED = 2**48


@dataclass(frozen=True)
class WinogradWeights:
    """Transformed filters U' = G' (w - w_zp) G'^T, float32 (16, C, OC) (position = 4 i + j),
    and max over positions and output channels of sum_c U'^2 (an int)."""

    transformed: np.ndarray
    max_square_norm: int


def prepare_winograd(centered: np.ndarray) -> WinogradWeights:
    """`WinogradWeights` of centered integer weights (OC, 3, 3, C).

    Hand-worked, one channel, g = all ones: G' g G'^T = (G' 1)(G' 1)^T, and the row sums
    of G' are (2, 3, 1, 2), so U'[i, j] = r_i r_j: U'[0, 0] = 4, U'[1, 1] = 9, U'[2, 2] = 1.

    >>> w = prepare_winograd(np.ones((1, 3, 3, 1)))
    >>> w.transformed[:, 0, 0].reshape(4, 4).astype(int).tolist()
    [[4, 6, 2, 4], [6, 9, 3, 6], [2, 3, 1, 2], [4, 6, 2, 4]]
    """
    out_channels, _, _, channels = centered.shape
    filters = np.asarray(centered, dtype=np.int64)
    transformed = np.einsum("ij,ojkc,lk->ilco", _G2, filters, _G2).reshape(16, channels, out_channels)
    squares = np.square(transformed).sum(axis=1)  # exact int64
    return WinogradWeights(transformed.astype(np.float32), int(squares.max(initial=0)))


def winograd_is_exact(padded: np.ndarray, weights: WinogradWeights, out_hw: tuple[int, int], a_max_abs: int) -> bool:
    """Whether every tile position's float32 GEMM is exact (the Cauchy-Schwarz bound of the
    module docstring): 4 * max tile sum of squares * max sum_c U'^2 <= 2^48.

    `padded`: the centered activations `a - a_zp`, float32 NHWC, padded with 0 so that it
    holds 2 * ceil(OH / 2) + 2 rows and 2 * ceil(OW / 2) + 2 columns (extra rows only feed
    outputs that are cut off).
    """
    tiles_h, tiles_w = tile_counts(out_hw)
    tile_norm = _max_tile_square_norm(padded, tiles_h, tiles_w, a_max_abs)
    return 4 * tile_norm * weights.max_square_norm <= _F32_EXACT_SQUARED


def winograd_inputs(padded: np.ndarray, out_hw: tuple[int, int], tile_rows: slice) -> np.ndarray:
    """V = B^T d B of every 4x4 tile in `tile_rows` (the outputs 2 * tile_rows.start ...
    2 * tile_rows.stop - 1): (16, N * tiles, C) float32 (exact). Bands of tile rows are
    independent: a caller may form them on threads (each reads its rows of `padded` plus
    the two below)."""
    count = tile_rows.stop - tile_rows.start
    band = padded[:, 2 * tile_rows.start : 2 * tile_rows.stop + 2]
    return _input_transform(band, count, tile_counts(out_hw)[1])


def winograd_sums(
    inputs: np.ndarray, weights: WinogradWeights, out_hw: tuple[int, int], tile_rows: slice, channels: slice
) -> np.ndarray:
    """The exact int32 sums (N, rows, OW, len(channels)) of the output channels `channels` in
    the output rows of `tile_rows` (cut at OH), from their `winograd_inputs`; valid when
    `winograd_is_exact` holds. Bands of output channels are independent too."""
    tiles_w = tile_counts(out_hw)[1]
    count = tile_rows.stop - tile_rows.start
    products = np.matmul(inputs, weights.transformed[:, :, channels])  # one exact float32 GEMM per tile position
    sums = _output_transform(products.astype(np.int32), inputs.shape[1] // (count * tiles_w), count, tiles_w)
    return sums[:, : out_hw[0] - 2 * tile_rows.start, : out_hw[1]]


def tile_counts(out_hw: tuple[int, int]) -> tuple[int, int]:
    """2x2 output tiles per column and per row: ceil(OH / 2), ceil(OW / 2)."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


def _max_tile_square_norm(padded: np.ndarray, tiles_h: int, tiles_w: int, a_max_abs: int) -> int:
    """max over 4x4 tiles (stride 2) of the tile's sum of squares, exactly (float32 per pixel
    when C * max|a|^2 <= 2^24, the 16-pixel sums in float64)."""
    if padded.shape[3] * a_max_abs**2 <= 2**24:
        per_pixel = np.einsum("nhwc,nhwc->nhw", padded, padded).astype(np.float64)
    else:
        per_pixel = np.square(padded, dtype=np.float64).sum(axis=3)
    tiles = sliding_window_view(per_pixel, (4, 4), axis=(1, 2))[:, ::2, ::2][:, :tiles_h, :tiles_w]
    return int(tiles.sum(axis=(3, 4)).max(initial=0))


def _input_transform(padded: np.ndarray, tiles_h: int, tiles_w: int) -> np.ndarray:
    """V = B^T d B for every 4x4 tile d (stride 2): (16, N * tiles, C), float32 (exact).

    B^T d has rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 (d_k: row k of the tile, row 2t + k
    of `padded` for tile row t). Rows 0 and 3 are one difference, `padded[k] - padded[k + 2]`,
    at even and odd k, so one subtraction over all rows forms both; then the same for the
    columns of all four mixed rows at once. Six NumPy calls on large arrays: with several
    threads, many short calls would spend their time handing over the GIL.
    """
    n, _, width, channels = padded.shape
    rows, cols = 2 * tiles_h, 2 * tiles_w
    mixed = np.empty((4, n, tiles_h, width, channels), dtype=np.float32)  # B^T d, all columns
    both_rows = mixed[::3].transpose(1, 2, 0, 3, 4)  # (N, tile row, row 0 | row 3, W, C)
    upper, lower = (padded[:, k : rows + k].reshape(both_rows.shape) for k in (0, 2))
    np.subtract(upper, lower, out=both_rows)
    np.add(padded[:, 1:rows:2], padded[:, 2 : rows + 1 : 2], out=mixed[1])
    np.subtract(padded[:, 2 : rows + 1 : 2], padded[:, 1:rows:2], out=mixed[2])
    out = np.empty((4, 4, n, tiles_h, tiles_w, channels), dtype=np.float32)  # (B^T d) B
    both_cols = out[:, ::3].transpose(0, 2, 3, 4, 1, 5)  # (row, N, tile row, tile col, col 0 | col 3, C)
    left, right = (mixed[:, :, :, k : cols + k].reshape(both_cols.shape) for k in (0, 2))
    np.subtract(left, right, out=both_cols)
    np.add(mixed[:, :, :, 1:cols:2], mixed[:, :, :, 2 : cols + 1 : 2], out=out[:, 1])
    np.subtract(mixed[:, :, :, 2 : cols + 1 : 2], mixed[:, :, :, 1:cols:2], out=out[:, 2])
    return out.reshape(16, -1, channels)


def _output_transform(products: np.ndarray, batch: int, tiles_h: int, tiles_w: int) -> np.ndarray:
    """S = A^T M A / 4 per tile, int32 (N, 2 tiles_h, 2 tiles_w, OC); A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].

    Both stages in place on whole arrays (eight NumPy calls; see `_input_transform`); the
    int32 sums are exact (module docstring), so the order of the additions is free.
    """
    m = products.reshape(4, 4, batch, tiles_h, tiles_w, -1)
    mixed = np.empty((2,) + m.shape[1:], dtype=np.int32)  # A^T M: m0 + m1 + m2, m1 - m2 - m3
    np.add(np.add(m[0], m[1], out=mixed[0]), m[2], out=mixed[0])
    np.subtract(np.subtract(m[1], m[2], out=mixed[1]), m[3], out=mixed[1])
    out = np.empty((batch, tiles_h, 2, tiles_w, 2, m.shape[-1]), dtype=np.int32)
    left, right = (out[:, :, :, :, j].transpose(2, 0, 1, 3, 4) for j in range(2))  # (A^T M) A, both rows at once
    np.add(np.add(mixed[:, 0], mixed[:, 1], out=left), mixed[:, 2], out=left)
    np.subtract(np.subtract(mixed[:, 1], mixed[:, 2], out=right), mixed[:, 3], out=right)
    out >>= 2  # Y' = 4 S exactly: the shift divides exactly
    return out.reshape(batch, 2 * tiles_h, 2 * tiles_w, -1)
