"""Where ATen's `cpu_kernel_vec` runs the vector lambda and where the scalar one.

Unary and same-shape binary quantized kernels (qhardswish, qhardsigmoid, qmul, ...) go
through `TensorIterator`, which coalesces a tensor that is dense in its memory format
into one run of `numel` elements in MEMORY order. `TensorIteratorBase::for_each` runs it
serially when `numel < GRAIN_SIZE` or one thread is used, else `at::parallel_for`
splits it into `T' = min(T, ceil(numel / GRAIN_SIZE))` ranges of `ceil(numel / T')`
(ParallelOpenMP.h). Each range's `vectorized_loop` (cpu/Loops.h) takes blocks of
`2 * Vectorized<scalar_t>::size()` elements and hands the remainder to `basic_loop`.
"""

from __future__ import annotations

import numpy as np

from ..qtensor import MemoryFormat, QTensor

# at::internal::GRAIN_SIZE
GRAIN_SIZE = 32768
# Elements per iteration of `vectorized_loop` (`2 * Vectorized<scalar_t>::size()`) in ATen's
# AVX2 build, which the kernels mirrored here run on every x86 CPU (each module says why):
VECTOR_BLOCK_8BIT = 64  # quint8 / qint8: two vectors of 32 lanes
VECTOR_BLOCK_32BIT = 16  # qint32 / float32: two vectors of 8 lanes


def thread_ranges(numel: int, num_threads: int) -> list[tuple[int, int]]:
    """The [begin, end) ranges `TensorIteratorBase::for_each` gives each thread."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if numel < GRAIN_SIZE or num_threads == 1:
        return [(0, numel)]
    used = min(num_threads, -(-numel // GRAIN_SIZE))
    chunk = -(-numel // used)
    return [(begin, min(numel, begin + chunk)) for begin in range(0, numel, chunk)]


def vector_body_mask(
    shape: tuple[int, ...], memory_format: MemoryFormat, block: int, num_threads: int, row: int | None = None
) -> np.ndarray:
    """Boolean array (logical order, `shape`): True where the vector lambda computes the element.

    `block` is `2 * Vectorized<scalar_t>::size()`: `VECTOR_BLOCK_8BIT` for 8-bit types.
    `row` is the length of the inner loop run in memory order (default: all `numel`, one
    coalesced run). When an operand broadcasts, TensorIterator cannot coalesce across the
    dims where its stride turns 0, so `loop_2d` calls `vectorized_loop` once per row and
    each row (cut further at thread-range ends) has its own vector body and scalar tail.

    >>> vector_body_mask((70,), MemoryFormat.contiguous, 64, 1).sum()
    np.int64(64)
    >>> vector_body_mask((2, 70), MemoryFormat.contiguous, 64, 1, row=70).sum()  # 64 + 64
    np.int64(128)
    """
    numel = int(np.prod(shape, dtype=np.int64))
    row = max(numel if row is None else row, 1)
    in_memory_order = np.empty(numel, dtype=bool)
    # Rows that no thread range cuts all share one pattern; set them in one broadcast...
    whole_rows = in_memory_order[: numel - numel % row].reshape(-1, row)
    whole_rows[:, : row // block * block] = True
    whole_rows[:, row // block * block :] = False
    _set_run(in_memory_order, numel - numel % row, numel, block)  # a last, shorter row
    # ...then redo the runs at each range's two ends, where a range boundary may cut a row.
    for begin, end in thread_ranges(numel, num_threads):
        first_end = min(end, (begin // row + 1) * row)
        _set_run(in_memory_order, begin, first_end, block)
        _set_run(in_memory_order, max(first_end, (end - 1) // row * row), end, block)
    return from_memory_order(in_memory_order, shape, memory_format)


def scalar_tail_spans(numel: int, block: int, num_threads: int) -> list[tuple[int, int]]:
    """The [begin, end) memory-order spans the scalar lambda computes when the whole tensor
    is one coalesced run: the last `len % block` elements of each thread range (empty spans
    left out). `vector_body_mask` is False exactly on these.

    >>> scalar_tail_spans(70, 64, 1)
    [(64, 70)]
    >>> scalar_tail_spans(65600, 64, 2)  # ranges of 32800 = 512 * 64 + 32
    [(32768, 32800), (65568, 65600)]
    """
    spans = []
    for begin, end in thread_ranges(numel, num_threads):
        tail = begin + (end - begin) // block * block
        if tail < end:
            spans.append((tail, end))
    return spans


def _set_run(mask: np.ndarray, begin: int, end: int, block: int) -> None:
    """One `vectorized_loop` call over [begin, end): whole blocks vector, the rest scalar."""
    body_end = begin + max(end - begin, 0) // block * block
    mask[begin:body_end] = True
    mask[body_end:end] = False


def orders_coincide(shape: tuple[int, ...]) -> bool:
    """Whether a 4-d tensor's NCHW and NHWC memory orders are the same walk: C == 1 or
    H*W == 1. Then ATen's `is_contiguous()` and `is_contiguous(ChannelsLast)` both hold
    (kernels that route on either take the same branch for both layouts)."""
    _, c, h, w = shape
    return c == 1 or h * w == 1


def layouts_differ(a: QTensor, b: QTensor) -> bool:
    """Whether two same-shape operands sit in memory in different orders. TensorIterator
    then cannot give b unit stride along the output's innermost dim, so `VectorizedLoop2d`
    falls back to `basic_loop`: every element takes the scalar lambda."""
    if a.memory_format is b.memory_format or a.int_repr.ndim != 4:
        return False
    return not orders_coincide(a.shape)


def to_memory_order(values: np.ndarray, memory_format: MemoryFormat) -> np.ndarray:
    """Logical (NCHW) `values` as the flat array of their memory order (NHWC for channels_last)."""
    if memory_format is MemoryFormat.channels_last:
        return values.transpose(0, 2, 3, 1).ravel()
    return values.ravel()


def from_memory_order(flat: np.ndarray, shape: tuple[int, ...], memory_format: MemoryFormat) -> np.ndarray:
    """A flat array in memory order as a logical (NCHW) array."""
    if memory_format is MemoryFormat.channels_last:
        n, c, h, w = shape
        return flat.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return flat.reshape(shape)
