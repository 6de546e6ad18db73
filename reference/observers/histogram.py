"""HistogramObserver: a running histogram, and an L2 search for the clipping range."""

from __future__ import annotations

import bisect
import functools
from typing import Optional, Union

import numpy as np

from .._arguments import ArgumentError, describe, integer
from ..numerics import f32
from ..qtensor import QDtype
from ._aten import aminmax_f32, cascade_sum_f32, div_floor_f32, histc_f32, linspace_f32
from ._base import DEFAULT_EPS, UniformObserver
from ._qparams import QScheme, default_qparams

# HistogramObserver.upsample_rate: each old bin is split into 16 before re-binning.
UPSAMPLE_RATE = 16
# _non_linear_param_search's quantile step.
SEARCH_STEP = 1e-5


class HistogramObserver(UniformObserver):
    """torch.ao.quantization.HistogramObserver (observer.py), per-tensor.

    observe (`forward`): empty inputs are ignored; +-inf elements are dropped (torch
    warns); NaN is refused (torch's histc raises after corrupting its state). The first
    batch sets (min, max) = (amin, amax) and `histogram = histc_f32(x, bins, min, max)`.
    Later batches: `new = (minimum(min, amin), maximum(max, amax))`,
    `update = histc_f32(x, bins, *new)`; if the range did not change, `hist + update`;
    if the old range was one point, `histc_f32([old_min], bins, *new) * sum(hist) + update`;
    otherwise the old histogram is re-binned (`_upscale_histogram`): each bin split into
    16 parts of `f32(count / 16)` whose midpoints
    `f32(linspace_f32(old_min, old_max, 16*bins + 1)[:-1] + f32(0.5 * f32(f32(old_max - old_min) / (16*bins))))`
    go to bucket `searchsorted(linspace_f32(*new, bins + 1), mid, right) - 1` (clamped),
    accumulated in index order in float32 (`torch.bincount` with weights), then
    `update + rebinned`.

    calculate_qparams: the L2 search `_non_linear_param_search` (see `_search`) picks
    bins [start, end]; then `new_min = f32(min + f32(w * start))`,
    `new_max = f32(min + f32(w * (end + 1)))` with `w = f32(f32(max - min) / bins)`, and
    the MinMaxObserver formula on (new_min, new_max).

    Defaults as torch: 2048 bins, quint8, per_tensor_affine, reduce_range False.

    Hand-worked, 4 bins, quint8, data [0, 1, 2, 3]: histc bins of width 0.75 hold one
    value each; csum = [1, 2, 3, 4], total 4. First step: l = 0 (csum[0] >= 4e-5),
    r = 2 (csum[2] = 3 <= 3.99996): the start side did not advance more, so the end
    moves to bin 2 and that candidate's error (< inf) is kept. The end moves again only
    once beta < 0.75 (bins 0..1), and that error is larger: stop at bins 0..2.
    new_min 0, new_max = 0 + f32(0.75 * 3) = 2.25; scale = f32(2.25 / 255), zp 0.

    >>> obs = HistogramObserver(bins=4)
    >>> obs.observe(np.array([0.0, 1.0, 2.0, 3.0], np.float32))
    >>> obs.histogram.tolist()
    [1.0, 1.0, 1.0, 1.0]
    >>> scale, zp = obs.calculate_qparams()
    >>> float(scale[0]) == float(np.float32(2.25) / np.float32(255)), zp.tolist()
    (True, [0])
    """

    def __init__(
        self,
        bins: int = 2048,
        dtype: Union[QDtype, str] = QDtype.quint8,
        qscheme: Union[QScheme, str] = QScheme.per_tensor_affine,
        reduce_range: bool = False,
        quant_min: Optional[int] = None,
        quant_max: Optional[int] = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self._check_qscheme(per_channel=False)
        self.bins = integer(bins, "bins", minimum=1)
        self.histogram = np.zeros(self.bins, np.float32)
        self.min_val = np.float32(np.inf)
        self.max_val = np.float32(-np.inf)
        # `2 ** torch.iinfo(dtype).bits`: 256 for the 8-bit types, whatever the quant range.
        self.dst_nbins = 2 ** (self.dtype.storage.itemsize * 8)

    # --- observe ------------------------------------------------------------------------

    def observe(self, x: np.typing.ArrayLike) -> None:
        """Fold one float32 batch into the running histogram."""
        try:
            values = np.asarray(x)
        except ValueError:  # ragged nested sequences
            values = np.asarray(None)
        if values.dtype != np.float32:
            raise ArgumentError(
                f"HistogramObserver.observe: x must be a float32 array, got {describe(x)} of dtype {values.dtype} "
                "(torch bins other dtypes in their own precision; convert explicitly)"
            )
        if values.size == 0:
            return
        x_min, x_max = aminmax_f32(values)  # NaN propagates into both
        if not (np.isfinite(x_min) and np.isfinite(x_max)):
            if np.isnan(x_min) or np.isnan(x_max):
                raise ValueError("HistogramObserver got NaN; torch.histc raises 'range of [nan, nan] is not finite'")
            values = values[np.abs(values) != np.inf]  # torch drops +-inf (with a warning)
            if values.size == 0:
                return
            x_min, x_max = aminmax_f32(values)
        if self.min_val == np.inf or self.max_val == -np.inf:
            self.histogram = histc_f32(values, self.bins, x_min, x_max)
            self.min_val, self.max_val = x_min, x_max
            return
        new_min, new_max = np.minimum(self.min_val, x_min), np.maximum(self.max_val, x_max)
        update = histc_f32(values, self.bins, new_min, new_max)
        if new_min == self.min_val and new_max == self.max_val:
            self.histogram = f32(self.histogram + update)
            return
        self.histogram = self._combine(update, new_min, new_max)
        self.min_val, self.max_val = new_min, new_max

    def _combine(self, update: np.ndarray, new_min: np.float32, new_max: np.float32) -> np.ndarray:
        """`_combine_histograms`: the old histogram moved into [new_min, new_max], plus `update`."""
        if self.min_val == self.max_val:
            point = histc_f32(np.array([self.min_val], np.float32), self.bins, new_min, new_max)
            return f32(f32(point * cascade_sum_f32(self.histogram)) + update)
        return f32(update + self._upscale(new_min, new_max))

    def _upscale(self, new_min: np.float32, new_max: np.float32) -> np.ndarray:
        """`_upscale_histogram`: split each bin in 16, move the parts by their midpoints."""
        parts = self.bins * UPSAMPLE_RATE
        weights = f32(np.repeat(self.histogram, UPSAMPLE_RATE) / np.float32(UPSAMPLE_RATE))
        # A range beyond float32 overflows to an inf width and inf - inf = NaN midpoints,
        # as torch's float32 tensors do (they land in the last bucket below).
        with np.errstate(over="ignore", invalid="ignore"):
            part_width = f32(f32(self.max_val - self.min_val) / np.float32(parts))
            midpoints = f32(
                linspace_f32(self.min_val, self.max_val, parts + 1)[:-1] + f32(np.float32(0.5) * part_width)
            )
        boundaries = linspace_f32(new_min, new_max, self.bins + 1)
        buckets = np.clip(np.searchsorted(boundaries, midpoints, side="right") - 1, 0, self.bins - 1)
        rebinned = np.zeros(self.bins, np.float32)
        np.add.at(rebinned, buckets, weights)  # in index order, float32: torch.bincount's loop
        return rebinned

    # --- calculate_qparams --------------------------------------------------------------

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale float32 [1], zero point int64 [1]) as torch's `calculate_qparams` gives them."""
        if self.min_val == np.inf and self.max_val == -np.inf:
            return default_qparams("must run observer before calling calculate_qparams")
        start_bin, end_bin = self._search()
        # A range beyond float32 gives an inf width (overflow) and inf * 0 = NaN for
        # start_bin 0, as torch's float32 `bin_width * start_bin` does.
        with np.errstate(over="ignore", invalid="ignore"):
            width = f32(f32(self.max_val - self.min_val) / np.float32(self.bins))
            new_min = f32(self.min_val + f32(width * np.float32(start_bin)))
            new_max = f32(self.min_val + f32(width * np.float32(end_bin + 1)))
        return self._qparams(new_min, new_max)

    def _search(self) -> tuple[int, int]:
        """`_non_linear_param_search`: shrink [start_bin, end_bin] while the L2 error falls.

        torch's loop, one step per iteration: `next_alpha = alpha + 1e-5`,
        `next_beta = beta - 1e-5` (Python doubles); `l`/`r` walk from start_bin/end_bin
        while `csum[l] < next_alpha * total` / `csum[r] > next_beta * total`
        (`total = float(sum(hist))`, cascade_sum_f32; `csum` is `torch.cumsum`, double
        accumulator, float32 stores; a Python float against a float32 tensor compares in
        float32); the side that advanced more moves (the end on ties) and takes its
        alpha/beta; unchanged candidates `continue`; the first candidate whose error
        exceeds the best so far stops the search (`while alpha < beta`).

        Event-driven, same result: alpha and beta only ever take the values of two fixed
        sequences (`_quantile_steps`), so the iteration is the pair of their indices. An
        unchanged candidate means `l == start_bin` and `r == end_bin`: only beta advanced,
        and `l` (which depends on alpha, start_bin, end_bin) stays put, so the loop keeps
        skipping until `r` first drops below end_bin or alpha >= beta; both are searches
        in the precomputed float32 thresholds. Only the candidates torch evaluates are run.
        """
        total = float(cascade_sum_f32(self.histogram))
        # Python floats holding float32 values: bisect on a list is the fast scalar search.
        csum = np.cumsum(self.histogram, dtype=np.float64).astype(np.float32).tolist()
        alphas, betas, descending_betas = _quantile_steps()
        i = j = 0  # alpha = alphas[i], beta = betas[j]
        start_bin, end_bin = 0, self.bins - 1
        norm_min = float("inf")
        while alphas[i] < betas[j]:
            # `while l < end_bin and csum[l] < a*total: l += 1` over a non-decreasing csum.
            first_at_least = bisect.bisect_left(csum, _times_f32(alphas[i + 1], total))
            left = min(max(first_at_least, start_bin), end_bin)
            last_at_most = bisect.bisect_right(csum, _times_f32(betas[j + 1], total)) - 1
            right = max(min(last_at_most, end_bin), start_bin)
            next_start, next_end = start_bin, end_bin
            if left - start_bin > end_bin - right:
                next_start, i = left, i + 1
            else:
                next_end, j = right, j + 1
            if next_start == start_bin and next_end == end_bin:
                # The `continue` run: the loop ends at the first k >= j with betas[k] <= alpha,
                # unless before that r drops below end_bin (never when end_bin == start_bin):
                # at the first k with `f32(betas[k + 1] * total) < csum[end_bin]`, a
                # predicate that turns true once, as beta only falls.
                stop = j + int(np.searchsorted(descending_betas[j:], -alphas[i], side="left"))
                if end_bin > start_bin:
                    end_sum = csum[end_bin]
                    steps = range(j, stop)
                    stop = j + bisect.bisect_left(steps, True, key=lambda k: _times_f32(betas[k + 1], total) < end_sum)
                j = stop
                continue
            norm = self._quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min, start_bin, end_bin = norm, next_start, next_end
        return start_bin, end_bin

    def _quantization_error(self, start_bin: int, end_bin: int) -> float:
        """`_compute_quantization_error`: L2 error of quantizing bins [start, end] to 256 levels.

        Widths are Python doubles: `w = (max - min) / bins`, `d = w * (end - start + 1) / 256`
        (0 gives error 0). Everything else is float32 tensor arithmetic, each op rounded
        (doubles narrowed to float32 where they meet a tensor):
        `begin = f32(f32(i - start) * w)`, `stop = f32(begin + w)`,
        `b = clamp(floor_div(begin, d), 0, 255)`, `e = clamp(floor_div(stop, d), 0, 255)`,
        `density = f32(hist / w)`, `norm(lo, hi) = f32(density * f32(f32(hi^3 - lo^3) / 3))`
        (cubes as two float32 multiplies), summed as
        `norm(f32(begin - f32(f32(b + 0.5) * d)), d/2)`
        `+ f32(f32(e - b) - 1) * norm(-d/2, d/2)`
        `+ norm(-d/2, f32(stop - f32(f32(e * d) + d/2)))`, then `cascade_sum_f32`.
        """
        bin_width = (float(self.max_val) - float(self.min_val)) / self.bins
        dst_width = bin_width * (end_bin - start_bin + 1) / self.dst_nbins
        if dst_width == 0.0:
            return 0.0
        w, d = np.float32(bin_width), np.float32(dst_width)
        half = np.float32(dst_width / 2)
        neg_half = np.float32(-dst_width / 2)
        top = np.float32(self.dst_nbins - 1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            begin = f32(f32(np.arange(self.bins) - start_bin) * w)
            stop = f32(begin + w)
            dst_begin = np.clip(div_floor_f32(begin, d), np.float32(0), top)
            dst_end = np.clip(div_floor_f32(stop, d), np.float32(0), top)
            density = f32(self.histogram / w)
            first = _norm(f32(begin - f32(f32(dst_begin + np.float32(0.5)) * d)), np.full(self.bins, half), density)
            middle = f32(f32(f32(dst_end - dst_begin) - np.float32(1)) * _norm(neg_half, half, density))
            last = _norm(neg_half, f32(stop - f32(f32(dst_end * d) + half)), density)
            norm = f32(f32(f32(np.float32(0) + first) + middle) + last)
        return float(cascade_sum_f32(norm))


def _norm(delta_begin: np.ndarray, delta_end: np.ndarray, density: np.ndarray) -> np.ndarray:
    """`_get_norm`: `density * (end^3 - begin^3) / 3`, every product rounded to float32."""
    cube_end = f32(f32(delta_end * delta_end) * delta_end)
    cube_begin = f32(f32(delta_begin * delta_begin) * delta_begin)
    return f32(density * f32(f32(cube_end - cube_begin) / np.float32(3)))


def _times_f32(quantile: float, total: float) -> float:
    """`next_alpha * total` in double, narrowed to float32 where it meets the float32 csum."""
    with np.errstate(over="ignore"):  # a product just above FLT_MAX rounds to inf, as torch's cast does
        return float(np.float32(quantile * total))


@functools.lru_cache(maxsize=1)
def _quantile_steps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every value `_non_linear_param_search`'s alpha and beta take, in order, and -beta
    (ascending, for searchsorted); read-only.

    alpha: 0.0, then `alpha + 1e-5` again and again; beta: 1.0, then `beta - 1e-5`; each
    a Python double addition rounded once. `np.add.accumulate` over a 1-d float64 array
    is the same sequential left-to-right sum (tests/test_observers.py checks it against
    the Python loop). The loop runs while alpha < beta <= 1, so alpha stays below 1 and
    beta above 0: one step past each bound is the furthest index read.
    """
    count = int(1 / SEARCH_STEP) + 3
    alphas = np.add.accumulate(np.concatenate([[0.0], np.full(count - 1, SEARCH_STEP)]))
    betas = np.add.accumulate(np.concatenate([[1.0], np.full(count - 1, -SEARCH_STEP)]))
    steps = (alphas, betas, -betas)
    for array in steps:
        array.flags.writeable = False
    return steps
