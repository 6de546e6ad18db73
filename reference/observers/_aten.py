"""The ATen CPU kernels torch's observers call, as float32 NumPy steps.

torch's observers are Python code over float32 tensors; their qparams are bit-exact only
if each tensor op rounds where ATen rounds and sums in ATen's order. This module spells
out those kernels (torch 2.13 and 2.14 run the same ones):

* `cascade_sum_f32`: `torch.sum` of a contiguous float32 vector (SumKernel.cpp
  `cascade_sum`, AVX2 build: ATen registers `sum_stub` with REGISTER_DISPATCH, so AVX512
  CPUs run the 8-lane AVX2 kernel too).
* `linspace_f32`: `torch.linspace` (RangeFactoriesKernel.cpp, scalar loop, fma-contracted).
* `histc_f32`: `torch.histc` (Histogram.cpp `histogram_histc_cpu`, HistogramKernel.cpp
  LINEAR_INTERPOLATION).
* `div_floor_f32`: `torch.div(a, b, rounding_mode="floor")` with a scalar b
  (BinaryOpsKernel.cpp `div_floor_floating_vec`).
"""

from __future__ import annotations

import math

import numpy as np

from ..numerics import f32, fma32
from ..ops._tensor_iterator import VECTOR_BLOCK_32BIT, vector_body_mask
from ..qtensor import MemoryFormat

# `Vectorized<float>::size()` of the AVX2 build that runs ATen's sum on x86.
SUM_LANES = 8
# multi_row_sum's constants (SumKernel.cpp): 4 interleaved rows, 4 cascade levels,
# chunks of at least 2^4 rows per level.
_ILP = 4
_LEVELS = 4
_MIN_LEVEL_POWER = 4


def cascade_sum_f32(x: np.ndarray) -> np.float32:
    """`torch.sum(x)` of a contiguous float32 vector, in ATen's order of additions.

    `vectorized_inner_sum` (n >= 8): the first `n//8*8` elements are 8-lane vectors; the
    vectors form rows of 4 (`row_sum`, ilp 4) summed by `multi_row_sum`: chunks of
    `2^max(4, ceil(log2 rows)/4)` rows go into level 0, each full chunk is carried into
    level 1 (and up, when the row count hits a multiple of the next level's span), then
    the levels are added 0+1+2+3, the 4 columns are added left to right, the scalar tail
    is summed left to right from 0, and the 8 lanes are added to it one by one.
    n < 8 runs the same `row_sum` on scalars (`scalar_inner_sum`). Every add is a float32
    add (acc_type<float, true> is float).

    Hand-worked, n = 5 (< 8: `row_sum` over scalars): the 4 interleaved partials are
    [1e8, 1, 1, 1]; the tail element -1e8 is added to partial 0 first: 1e8 + -1e8 = 0;
    then 0 + 1 + 1 + 1 = 3. A left-to-right float32 sum gives 0 (1e8 absorbs each 1).

    >>> float(cascade_sum_f32(np.array([1e8, 1, 1, 1, -1e8], np.float32)))
    3.0
    """
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    n = x.size
    lanes = SUM_LANES if n >= SUM_LANES else 1
    vectors = n // lanes
    partial = _row_sum(x[: vectors * lanes].reshape(vectors, lanes))
    total = np.float32(0)
    for value in x[vectors * lanes :]:  # scalar tail, left to right
        total = np.float32(total + value)
    for value in partial:  # then the lanes, one by one
        total = np.float32(total + value)
    return total


def _row_sum(vectors: np.ndarray) -> np.ndarray:
    """SumKernel.cpp `row_sum`: 4 interleaved partial sums over `multi_row_sum`, then tail."""
    rows = vectors.shape[0] // _ILP
    sums = _multi_row_sum(vectors[: rows * _ILP].reshape(rows, _ILP, vectors.shape[1]))
    first = sums[0].copy()
    for vector in vectors[rows * _ILP :]:
        first = first + vector
    for k in range(1, _ILP):
        first = first + sums[k]
    return first


def _multi_row_sum(rows: np.ndarray) -> np.ndarray:
    """SumKernel.cpp `multi_row_sum`: a 4-level cascade over `rows` (shape rows x 4 x lanes)."""
    size = rows.shape[0]
    ceil_log2 = 0 if size <= 1 else math.ceil(math.log2(size))
    level_power = max(_MIN_LEVEL_POWER, ceil_log2 // _LEVELS)
    level_step = 1 << level_power
    level_mask = level_step - 1
    acc = np.zeros((_LEVELS,) + rows.shape[1:], np.float32)
    i = 0
    while i + level_step <= size:
        # Level 0 adds its chunk's rows one after another (a sequential float32 sum).
        for row in rows[i : i + level_step]:
            acc[0] = acc[0] + row
        i += level_step
        for j in range(1, _LEVELS):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = 0
            if i & (level_mask << (j * level_power)):
                break
    for row in rows[i:]:
        acc[0] = acc[0] + row
    for j in range(1, _LEVELS):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """`torch.linspace(start, end, steps)` in float32.

    `start`, `end` become float32; `step = f32(f32(end - start) / float(steps - 1))`;
    index i < steps//2 gives `fma32(step, i, start)`, the others
    `fma32(-step, steps - 1 - i, end)` (the AVX2/AVX512 builds contract
    `start + step*i` and `end - step*(steps-i-1)` into one fma). So the first value is
    `start` and the last `end` exactly, unless `end - start` overflows: then step is inf
    and both ends are `inf * 0 = NaN`.

    >>> linspace_f32(0.0, 1.0, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    start32, end32 = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([start32], np.float32)
    with np.errstate(over="ignore"):  # end - start overflows to inf for huge ranges, as in torch
        step = f32(f32(end32 - start32) / np.float32(steps - 1))
    index = np.arange(steps)
    halfway = steps // 2
    lower = fma32(step, f32(index[:halfway]), start32)
    upper = fma32(-step, f32(steps - 1 - index[halfway:]), end32)
    return np.concatenate([lower, upper]).astype(np.float32)


# Elements per block of `histc_f32`: the block's float32 quotients and int64 bin indices stay in L2.
_HISTC_BLOCK = 1 << 16


def histc_f32(x: np.ndarray, bins: int, low: float, high: float) -> np.ndarray:
    """`torch.histc(x, bins, min=low, max=high)` of a float32 array, as float32 counts.

    Range (Histogram.cpp `histc_select_outer_bin_edges`, in double): if low == high, the
    data's own min/max; if still equal, `bins_edges_correction` widens it to
    `(min(nextafter_f32(v, -inf), v - 1), max(nextafter_f32(v, +inf), v + 1))`, so
    large constants get their float32 neighbours as edges. Non-finite or empty ranges
    raise, as in torch. The edges are `linspace_f32(lo, hi, bins + 1)`; its two ends
    (`fma32(step, 0, lo)`, `fma32(-step, 0, hi)`) bound the data: they are NaN when
    `hi - lo` overflows float32 (inf * 0), and then every element is skipped. Elements
    outside the ends and NaN are skipped; the bin is
    `trunc(f32(f32(f32(x - lo) * bins) / f32(hi - lo)))`, and `x == hi` goes to the last bin.
    When `f32(x - lo) * bins` overflows (ranges near float32's limit) the quotient is inf
    and torch's int64 cast (undefined behaviour, INT64_MIN on x86-64) lands in bin 0.
    Counts are exact (int64); torch's float32 thread-local counts equal them as long as
    no bin gets more than 2^24 values per thread (docs/spec.md, HistogramObserver).

    Hand-worked, 4 bins over [0, 1]: 0.25 -> f32(0.25 * 4) / 1 = 1.0 -> bin 1; 1.0 -> 4 -> last bin 3.

    >>> histc_f32(np.array([0.0, 0.5, 1.0, 0.25], np.float32), 4, 0.0, 1.0).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    values = np.asarray(x, np.float32).ravel()
    left, right = float(low), float(high)
    if left == right and values.size:
        left, right = float(np.min(values)), float(np.max(values))
    if left == right:
        left = min(float(np.nextafter(np.float32(left), np.float32(-np.inf))), left - 1.0)
        right = max(float(np.nextafter(np.float32(right), np.float32(np.inf))), right + 1.0)
    if not (math.isfinite(left) and math.isfinite(right)):
        raise ValueError(f"torch.histc: range of [{left}, {right}] is not finite")
    if not left < right:
        raise ValueError(f"torch.histc: max must be larger than min, got [{left}, {right}]")
    start, end = np.float32(left), np.float32(right)
    with np.errstate(invalid="ignore", over="ignore"):
        step = f32(f32(end - start) / np.float32(bins))
        lo, hi = fma32(step, np.float32(0), start), fma32(-step, np.float32(0), end)
        width = f32(hi - lo)
        inside = values.size == 0 or _within(aminmax_f32(values), lo, hi)
        if not inside:
            values = values[(values >= lo) & (values <= hi)]  # NaN fails both
        # f32(x - lo) <= width, so `f32(x - lo) * bins` can overflow only if width * bins does.
        overflows = not np.isfinite(f32(width * np.float32(bins)))
    counts = np.zeros(bins, np.int64)
    scaled = np.empty(min(values.size, _HISTC_BLOCK), np.float32)
    for first in range(0, values.size, _HISTC_BLOCK):
        block = values[first : first + _HISTC_BLOCK]
        quotient = scaled[: block.size]
        with np.errstate(over="ignore"):  # intended: the overflow case below
            # Each step a float32 operation rounded once (the kernel's scalar code).
            np.subtract(block, lo, out=quotient)
            quotient *= np.float32(bins)
            quotient /= width
        if overflows:
            # `static_cast<int64_t>` of an overflowed (inf) quotient is INT64_MIN on x86-64; the
            # kernel then writes hist[INT64_MIN], whose byte offset INT64_MIN * 4 wraps to 0: bin 0.
            quotient[~np.isfinite(quotient)] = 0
        # Truncation (every quotient is >= 0); x == hi (quotient bins) counts in the last bin.
        block_counts = np.bincount(quotient.astype(np.int64), minlength=bins)
        counts += block_counts[:bins]
        counts[-1] += block_counts[bins:].sum()
    return counts.astype(np.float32)


def _within(extremes: tuple[np.float32, np.float32], lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(extremes[0] >= lo and extremes[1] <= hi)


def div_floor_f32(a: np.ndarray, b: np.float32) -> np.ndarray:
    """`torch.div(a, b, rounding_mode="floor")`, float32 tensor by a scalar
    (BinaryOpsKernel.cpp `div_floor_floating_vec`, Python's floor-division recipe):

    `mod = fmod(a, b)`; `div = f32(f32(a - mod) / b)` (with `a` itself instead of
    `a - mod` when `a/b` overflows); minus 1 when mod and b differ in sign; `floor(div)`,
    plus 1 if `div - floor > 0.5`; a zero quotient keeps the sign of `a/b`; b == 0 gives
    `a/b`. fmod and floor are exact.

    >>> div_floor_f32(np.array([7.0, -7.0, 0.5], np.float32), np.float32(2)).tolist()
    [3.0, -4.0, 0.0]
    """
    a = np.asarray(a, np.float32)
    b = np.float32(b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        basic = f32(a / b)
        mod = np.fmod(a, b).astype(np.float32)
        numerator = np.where((np.abs(basic) == np.inf) & (np.abs(a) != np.inf), a, f32(a - mod))
        div = f32(numerator / b)
        div = np.where((mod != 0) & ((b < 0) != (mod < 0)), f32(div - np.float32(1)), div)
        floor = np.floor(div).astype(np.float32)
        floor = np.where(f32(div - floor) > np.float32(0.5), f32(floor + np.float32(1)), floor)
        floor = np.where(div == 0, np.copysign(np.float32(0), basic), floor)
        floor = np.where(b == 0, basic, floor)
    return floor.astype(np.float32)


# `std::numeric_limits<float>::quiet_NaN()` and the all-ones NaN `_mm256_or_ps(max, unord)` makes.
_SCALAR_NAN = np.array(0x7FC00000, np.uint32).view(np.float32)
_VECTOR_NAN = np.array(0xFFFFFFFF, np.uint32).view(np.float32)


def aten_maximum_f32(a: np.typing.ArrayLike, b: np.typing.ArrayLike) -> np.ndarray:
    """`torch.max(a, b)` / `torch.maximum` of float32 tensors (BinaryOpsKernel.cpp `maximum_kernel`).

    The larger value; any NaN operand gives a canonical NaN whose bits depend on the
    element's position in the 1-d result: the vector body (`vec::maximum`, an
    `or` with the unordered mask) writes all-ones 0xFFFFFFFF, the scalar tail
    (`n % 16` last elements; all of a 0-d result) writes quiet_NaN 0x7FC00000.

    >>> [hex(v) for v in aten_maximum_f32(np.full(17, np.nan, np.float32), np.float32(0)).view(np.uint32)[15:]]
    ['0xffffffff', '0x7fc00000']
    """
    return _canonical_nan(np.maximum(np.asarray(a, np.float32), np.asarray(b, np.float32)))


def aten_minimum_f32(a: np.typing.ArrayLike, b: np.typing.ArrayLike) -> np.ndarray:
    """`torch.min(a, b)` / `torch.minimum` of float32 tensors; NaN as `aten_maximum_f32`."""
    return _canonical_nan(np.minimum(np.asarray(a, np.float32), np.asarray(b, np.float32)))


def _canonical_nan(result: np.ndarray) -> np.ndarray:
    flat = np.atleast_1d(result).astype(np.float32)
    if flat.ndim != 1:
        raise ValueError(f"ATen min/max NaN placement is modelled for 1-d results, got shape {flat.shape}")
    # Binary min/max run `cpu_kernel_vec` in the AVX2 build: blocks of 2 * 8 floats.
    vector = vector_body_mask(flat.shape, MemoryFormat.contiguous, VECTOR_BLOCK_32BIT, 1)
    nan = np.where(vector, _VECTOR_NAN, _SCALAR_NAN)
    return np.where(np.isnan(flat), nan, flat).reshape(np.shape(result)).astype(np.float32)


# Elements per block of `aminmax_f32`: 512 KiB of float32, resident in L2 between its two reductions.
_AMINMAX_BLOCK = 1 << 17


def aminmax_f32(x: np.ndarray) -> tuple[np.float32, np.float32]:
    """`torch.aminmax(x)` of a non-empty float32 array: (min, max), NaN if any element is NaN.

    Exact whatever the order (min/max round nothing); blocked so that large tensors are
    read from memory once, like torch's single-pass kernel.

    >>> aminmax_f32(np.array([3.0, -1.0, 2.0], np.float32))
    (np.float32(-1.0), np.float32(3.0))
    """
    flat = x.reshape(-1)
    if flat.size <= _AMINMAX_BLOCK:
        return flat.min(), flat.max()
    blocks = range(0, flat.size, _AMINMAX_BLOCK)
    mins = np.empty(len(blocks), np.float32)
    maxs = np.empty(len(blocks), np.float32)
    for i, start in enumerate(blocks):
        block = flat[start : start + _AMINMAX_BLOCK]
        mins[i], maxs[i] = block.min(), block.max()
    return mins.min(), maxs.max()
