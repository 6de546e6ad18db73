"""`numerics.dot_u8i8acc32_ref` for whole matrices, fast: one float32 BLAS GEMM, exact by a bound.

The plain definition's accumulator is `wrap_int32(sum_k (a - a_zp)(w - w_zp))` plus, where
`vpmaddubsw` pairs saturate, `sum_p saturate_int16(P_p) - P_p`. Here the first term is one
float32 GEMM of the centered operands, exact while the bound of `exact_matmul` holds (else
the GEMM runs in K chunks that each satisfy it); the second is `pair_saturation_correction`,
evaluated only where a pair can leave int16.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, Callable, Hashable, TypeVar

import numpy as np

from .._arguments import ArgumentError
from ..numerics import INT16_MAX, saturate_int16, wrap_int32
from ..qtensor import QTensor
from .requantize import RequantParams, requant_params
from .threads import bands, parallel_for

# float32 represents every integer of magnitude <= 2^24 exactly.
_F32_EXACT = 2**24

# Entries each cache of a `PreparedWeights` keeps (`PreparedWeights._kept`).
KEPT_ENTRIES = 64

T = TypeVar("T")


@dataclass(frozen=True)
class GemmWeights:
    """The weight operand of FBGEMM's u8 x s8 GEMM, ready for the exact float32 product.

    FBGEMM packs a weight once, at `*_prepack` (`PackBMatrix`); likewise a loaded model
    forms this once per weight (`prepare_weights`), not once per run.

    Attributes:
        centered: float32 (G, N/G, K): `w[j, k] - w_zp[j]` per output channel j of each
            group, K in the kernel's order (exact integers, |value| <= 255). Stored K-major
            (a transposed view of a (G, K, N/G) buffer): BLAS reads the right operand of a
            row-major `a @ w.T` faster in that layout when M is small (docs/speed.md).
        max_abs: max |w - w_zp| over all entries (an int).
        max_square_norm: max over output channels j of `sum_k (w[j, k] - w_zp[j])^2` (an int).
    """

    centered: np.ndarray
    max_abs: int
    max_square_norm: int

    @property
    def out_channels(self) -> int:
        return self.centered.shape[0] * self.centered.shape[1]

    def channel_band(self, channels: slice) -> GemmWeights:
        """The output channels `channels` of every group (a view), with the bounds of the
        whole weight (still bounds of the band)."""
        return GemmWeights(self.centered[:, channels], self.max_abs, self.max_square_norm)


def prepare_weights(weight: np.ndarray, zero_point: np.typing.ArrayLike) -> GemmWeights:
    """`GemmWeights` of int8 weights (G, N/G, K) with a scalar or per-output-channel (N,) zero point.

    >>> w = prepare_weights(np.int8([[[3, -4], [1, 0]]]), [1, 0])
    >>> w.centered.tolist(), w.max_abs, w.max_square_norm   # rows [2, -5], [1, 0]: 4 + 25 = 29
    ([[[2.0, -5.0], [1.0, 0.0]]], 5, 29)
    """
    groups, per_group, depth = weight.shape
    zp = np.broadcast_to(np.asarray(zero_point, np.float32), (groups * per_group,)).reshape(groups, per_group, 1)
    centered = np.empty((groups, depth, per_group), np.float32).transpose(0, 2, 1)  # K-major storage
    np.subtract(weight, zp, out=centered)  # exact: int8 and the zp (0..255) are float32 integers
    if centered.size == 0:
        return GemmWeights(centered, 0, 0)
    squares = np.square(centered, dtype=np.float64).sum(axis=2)  # exact: <= K * 255^2 < 2^53
    return GemmWeights(centered, int(np.abs(centered).max()), int(squares.max()))


def centered_f32(values: np.ndarray, zero_point: np.typing.ArrayLike) -> np.ndarray:
    """`values - zero_point` as float32 in one pass (exact: |difference| <= 255 + 128)."""
    out = np.empty(values.shape, dtype=np.float32)
    np.subtract(values, np.asarray(zero_point, dtype=np.float32), out=out, casting="unsafe")
    return out


def exact_matmul(
    a: np.ndarray,
    w: GemmWeights,
    a_max_abs: int,
    a_max_square_norm: int | None = None,
    correction: np.ndarray | None = None,
    workers: int = 1,
) -> np.ndarray:
    """FBGEMM's int32 accumulators as requantization converts them: `f32(wrap_int32(S))`.

    `S[i, g*N/G + j] = sum_k a[g, i, k] * w.centered[g, j, k]` (+ `correction`), the int32
    sum FBGEMM forms when no pair saturates (its adds wrap); `cvtepi32_ps` rounds it to
    float32 (exactly itself whenever |S| <= 2^24, the common case).

    Args:
        a: centered activations `a - a_zp` as float32, (G, M, K) (one GEMM per group).
        w: the prepared weights, (G, N/G, K).
        a_max_abs: an upper bound of |a| (from the raw uint8 tensor: cheaper than a scan).
        a_max_square_norm: an upper bound of `sum_k a[g, i, k]^2` over all rows, or None.
        correction: int64 (M, N) added to S before the wrap (FBGEMM's pair saturation,
            pytorch_qnnpack's int32 bias), or None.
        workers: threads for the single-GEMM case, each taking a band of rows (or of
            output channels); every output element is the same exact sum either way.

    Returns float32 (M, N), output channels of group g in columns g*N/G ... (g+1)*N/G - 1.

    Exactness: every term is an integer and BLAS sums in float32 in any order, maybe with
    fused multiply-adds, so each partial sum it forms for (i, j) is a sum of a subset of
    the terms: |partial| <= T = sum_k |a_ik| |w_jk|. While T <= 2^24 float32 holds every
    such integer, so no product, fma or add ever rounds. Two bounds of T, both for every
    (i, j):  T <= K * max|a| * max|w|  and, by Cauchy-Schwarz,
    T^2 <= (sum_k a_ik^2)(sum_k w_jk^2) <= a_max_square_norm * w.max_square_norm,
    compared in exact integers. If either holds, one float32 GEMM is the exact S (and
    |S| <= 2^24 < 2^31: no wrap). Otherwise K is cut into chunks of
    `c = floor((2^24 - 1) / (max|a| max|w|))` terms (each chunk's T < 2^24, exact), added
    in int64 (|total| <= K * 255 * 255 < 2^63) and wrapped.
    """
    groups, rows, depth = a.shape
    per_group = w.centered.shape[1]
    if a_max_abs == 0 or w.max_abs == 0 or depth == 0:
        total = np.zeros((rows, groups * per_group), dtype=np.float32)
        return total if correction is None else _wrapped_f32(correction)
    if one_gemm_is_exact(depth, a_max_abs, a_max_square_norm, w):
        total = _grouped_matmul(a, w.centered, workers)
        return total if correction is None else _wrapped_f32(total.astype(np.int64) + correction)
    chunk = max(1, (_F32_EXACT - 1) // (a_max_abs * w.max_abs))
    total = np.zeros((rows, groups * per_group), dtype=np.int64) if correction is None else correction.copy()
    for start in range(0, depth, chunk):
        part = slice(start, start + chunk)
        total += _grouped_matmul(a[:, :, part], w.centered[:, :, part]).astype(np.int64)
    return _wrapped_f32(total)


def one_gemm_is_exact(depth: int, a_max_abs: int, a_max_square_norm: int | None, w: GemmWeights) -> bool:
    """Whether one float32 GEMM forms every partial sum exactly (see `exact_matmul`):
    `K * max|a| * max|w| <= 2^24`, or `a_max_square_norm * w.max_square_norm <= 2^48`.

    Hand-worked, K = 600, |a| <= 255, |w| <= 128: 600 * 255 * 128 = 19,584,000 > 2^24 =
    16,777,216, so the first bound fails. If each row of `a` has one nonzero (255) and `w`
    is all 128: 65,025 * (600 * 16,384) = 639,221,760,000 <= 2^48 = 281,474,976,710,656.

    >>> w = GemmWeights(np.zeros((1, 1, 600), np.float32), 128, 600 * 128 * 128)
    >>> one_gemm_is_exact(600, 255, None, w), one_gemm_is_exact(600, 255, 255 * 255, w)
    (False, True)
    """
    if depth * a_max_abs * w.max_abs <= _F32_EXACT:
        return True
    return a_max_square_norm is not None and a_max_square_norm * w.max_square_norm <= _F32_EXACT**2


def _grouped_matmul(a: np.ndarray, w: np.ndarray, workers: int = 1) -> np.ndarray:
    """`a[g] @ w[g].T` side by side: (M, G * N/G) float32; BLAS sgemm with a transposed
    operand, written in place, no copies. With several workers, each group's product is cut
    into `workers` bands along its longer output side, run on a thread pool (NumPy releases
    the GIL inside BLAS): coarse, independent pieces, unlike a multithreaded BLAS's
    fine-grained barriers, which stall whenever another process holds a core."""
    groups, rows, per_group = w.shape[0], a.shape[1], w.shape[1]
    out = np.empty((rows, groups * per_group), dtype=np.float32)

    def product(g: int, band_rows: slice, band_cols: slice) -> None:
        columns = slice(g * per_group + band_cols.start, g * per_group + band_cols.stop)
        np.matmul(a[g, band_rows], w[g, band_cols].T, out=out[band_rows, columns])

    tasks = []
    for g in range(groups):
        if rows >= per_group:
            tasks += [(g, band, slice(0, per_group)) for band in bands(rows, workers)]
        else:
            tasks += [(g, slice(0, rows), band) for band in bands(per_group, workers)]
    parallel_for(lambda task: product(*task), tasks, workers)
    return out


def _wrapped_f32(total: np.ndarray) -> np.ndarray:
    """`cvtepi32_ps(wrap_int32(total))`: one float32 rounding beyond 2^24."""
    return wrap_int32(total).astype(np.float32)


@dataclass(frozen=True)
class PairWeights:
    """The raw int8 weight operand of `vpmaddubsw` pairs, formed once per weight.

    Attributes:
        raw: int8 (G, N/G, K), K in the kernel's order.
        starts: int64 (P,): the first k of each pair (FBGEMM: 0, 2, 4, ...; oneDNN's K
            blocks and taps start pairs elsewhere); every other product stands alone.
        max_pair_abs: max over channels and pairs of `|w[k]| + |w[k+1]|` (a lone product
            counts alone): `pairs_can_saturate` compares it with the activations.
        candidate: bool (G, N/G, P): pair p of channel j can leave int16 for some uint8
            activations, i.e. `|w[k]| + |w[k+1]| >= 129` (255 * 128 = 32,640 fits).
    """

    raw: np.ndarray
    starts: np.ndarray
    max_pair_abs: int
    candidate: np.ndarray
    _bands: dict[tuple[int, int, int], PairWeights] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def live_pairs(self) -> np.ndarray:
        """bool (G, P): pair p is a candidate for some channel of group g (the pairs
        `pair_saturation_correction` looks at); it depends on the weights only, so it is
        formed once, on first use."""
        return self.candidate.any(axis=1)

    def channel_band(self, channels: slice) -> PairWeights:
        """The output channels `channels` of every group (views), formed once per band: a
        conv cuts the same bands on every call, and each keeps its own `live_pairs`.

        >>> p = prepare_pair_weights(np.int8([[[100, -29], [64, 64]]]))   # 129: a candidate; 128 not
        >>> band = p.channel_band(slice(1, 2))
        >>> p.live_pairs.tolist(), band.live_pairs.tolist(), band is p.channel_band(slice(1, 2))
        ([[True]], [[False]], True)
        """
        key = channels.indices(self.raw.shape[1])
        if key == (0, self.raw.shape[1], 1):
            return self
        if key not in self._bands:  # threads racing here form equal bands: either may stay
            band = PairWeights(self.raw[:, channels], self.starts, self.max_pair_abs, self.candidate[:, channels])
            self._bands[key] = band
        return self._bands[key]


def prepare_pair_weights(raw: np.ndarray, starts: np.ndarray | None = None) -> PairWeights:
    """`PairWeights` of int8 weights (G, N/G, K) whose pairs start at `starts` (default
    FBGEMM's: 0, 2, 4, ... within every group's K).

    >>> p = prepare_pair_weights(np.int8([[[100, -29, 5], [64, 64, 0]]]))
    >>> p.max_pair_abs, p.candidate.tolist()   # |100| + |-29| = 129; 64 + 64 = 128
    (129, [[[True], [False]]])
    """
    if starts is None:
        starts = np.arange(0, raw.shape[2] - 1, 2)
    starts = np.asarray(starts, np.int64)
    magnitudes = np.abs(raw.astype(np.int16))
    pair_abs = magnitudes[:, :, starts] + magnitudes[:, :, starts + 1]
    max_pair_abs = max(int(pair_abs.max(initial=0)), int(magnitudes.max(initial=0)))
    return PairWeights(raw, starts, max_pair_abs, pair_abs >= 129)


def pairs_can_saturate(a_max: int, weights: PairWeights) -> bool:
    """Whether any `vpmaddubsw` pair of uint8 activations <= `a_max` with these weights can
    leave int16: |P| <= a_max * (|w0| + |w1|), and saturation needs |P| >= 32,768.

    >>> w = prepare_pair_weights(np.int8([[[127, 127]]]))
    >>> pairs_can_saturate(129, w), pairs_can_saturate(128, w)   # 129 * 254 = 32,766 fits; 128 too
    (False, False)
    >>> pairs_can_saturate(130, w)                               # 130 * 254 = 33,020
    True
    """
    return a_max * weights.max_pair_abs > INT16_MAX


@dataclass(frozen=True)
class PreparedWeights:
    """A conv or linear weight formed once for the GEMM, as FBGEMM's prepack forms its packed
    weight once: the centered float32 operand, the raw int8 one (for the pair saturation,
    formed on first use), the requantization constants per (input scale, output scale,
    library) a loaded model runs it with (these Python steps would stall the other worker
    on every call), and the operands other libraries' kernels derive from it (`derived`).

    Attributes:
        gemm: the centered operand (`prepare_weights`), (G, N/G, K).
        raw: the int8 weight in the same layout.
        source: the weight it was formed from (its scales; `check_formed_from`).
    """

    gemm: GemmWeights
    raw: np.ndarray
    source: QTensor = field(kw_only=True, compare=False, repr=False)
    _requant: dict[tuple[float, float, str], RequantParams] = field(default_factory=dict, compare=False, repr=False)
    _derived: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def requant_params(self, act_scale: float, out_scale: float, library: str = "fbgemm") -> RequantParams:
        """`requantize.requant_params` of this weight, formed once per (act_scale, out_scale, library)."""
        form = partial(requant_params, act_scale, self.source.scale, out_scale, self.gemm.out_channels, library)
        return self._kept(self._requant, (act_scale, out_scale, library), form)

    def check_formed_from(self, weight: QTensor) -> None:
        """Refuse (ArgumentError) a call's `weight` unless this was formed from it: the same
        tensor, or one of equal shape, integers, scales and zero points. The kernels compute
        with the prepared operands alone, as torch's ops with a packed weight do, so another
        weight's would silently win."""
        source = self.source
        if weight is source:
            return
        if source.shape != weight.shape:
            differs = f"of shape {source.shape}, not {weight.shape}"
        elif not np.array_equal(source.int_repr, weight.int_repr):
            differs = "with other integer values"
        elif (source.axis, source.dtype) != (weight.axis, weight.dtype) or not (
            np.array_equal(source.scale, weight.scale) and np.array_equal(source.zero_point, weight.zero_point)
        ):
            differs = "with other qparams"
        else:
            return
        raise ArgumentError(f"prepared was formed from another weight, {differs}")

    @cached_property
    def pairs(self) -> PairWeights:
        """The weight of FBGEMM's `vpmaddubsw` pairs (`prepare_pair_weights`), formed on first use."""
        return prepare_pair_weights(self.raw)

    def derived(self, name: Hashable, form: Callable[[], T]) -> T:
        """`form()`, formed on first use and kept under `name`: the operands another library's
        kernels derive from this weight (`onednn.OnednnWeights`), formed once per weight as
        FBGEMM's are."""
        return self._kept(self._derived, name, form)

    def _kept(self, cache: dict[Any, T], key: Hashable, form: Callable[[], T]) -> T:
        """`cache[key]`, formed by `form()` on first use. A model node asks for one entry per
        qparams (a few per width for depthwise); a caller that varies its scales on every call
        would grow the cache without end, so past `KEPT_ENTRIES` the oldest entry goes. The
        lock keeps that eviction safe when threads share one prepared weight."""
        with self._lock:
            if key in cache:
                return cache[key]
        value = form()
        with self._lock:
            if key not in cache and len(cache) >= KEPT_ENTRIES:
                del cache[next(iter(cache))]
            cache[key] = value
        return value


def pair_saturation_correction(a: np.ndarray, weights: PairWeights) -> np.ndarray | None:
    """`sum_p sat16(P_p) - P_p` for the `vpmaddubsw` pairs `P_p = a[2p] w[2p] + a[2p+1] w[2p+1]`.

    Without VNNI, FBGEMM's GEMM kernels (`genU8I8S32FMA`: `vpmaddubsw`, then `vpmaddwd`
    with ones, then `vpaddd`) add each adjacent pair of raw u8 x s8 products and saturate
    the pair to int16 before the exact int32 accumulation. Pairs start at k = 0 of every
    group's K (K is padded with zeros to a multiple of 4), or where `weights.starts` says
    (oneDNN); a lone product cannot saturate (|255 * -128| = 32640).

    Args:
        a: uint8 activations as the kernel reads them (padding taps hold a_zp), (G, M, K).
        weights: `prepare_pair_weights` of the int8 weights (G, N, K), K in the kernel's order,
            and the pairs' first k.

    Returns the int64 correction to add to the exact sum, (M, G * N), groups side by side
    (the layout of `exact_matmul`), or None where no pair saturates (a zero correction).

    Only candidate pairs are evaluated: |P| <= 128 (a0 + a1), so P > 32767 needs
    a0 + a1 >= 259 and P < -32768 needs a0 + a1 >= 257; and |P| <= 255 (|w0| + |w1|)
    needs |w0| + |w1| >= 129 (`PairWeights.candidate`). Activations <= 127 (reduce_range)
    never saturate.
    """
    groups, rows, _ = a.shape
    cols = weights.raw.shape[1]
    correction = None
    for g in range(groups):
        live = np.flatnonzero(weights.live_pairs[g])
        first = weights.starts[live]
        # a0 + a1 in uint16 (<= 510), for the live pairs only: (M, live) row candidates.
        rows_g = a[g]  # (M, K); a[g, :, idx] would put the indexed axis first
        hot = np.add(rows_g[:, first], rows_g[:, first + 1], dtype=np.uint16) >= 257
        for index in np.flatnonzero(hot.any(axis=0)):
            p, k, r = live[index], first[index], np.flatnonzero(hot[:, index])
            c = np.flatnonzero(weights.candidate[g, :, p])
            a0, a1 = (rows_g[r, i, None].astype(np.int32) for i in (k, k + 1))
            pair = a0 * weights.raw[g, c, k].astype(np.int32) + a1 * weights.raw[g, c, k + 1].astype(np.int32)
            excess = saturate_int16(pair) - pair
            if excess.any():
                if correction is None:
                    correction = np.zeros((groups, rows, cols), dtype=np.int64)
                correction[g][np.ix_(r, c)] += excess
    return None if correction is None else correction.transpose(1, 0, 2).reshape(rows, groups * cols)
