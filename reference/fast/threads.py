"""Worker threads for the fast kernels: bands of rows or channels, run on a shared pool.

NumPy releases the GIL inside BLAS and in large element-wise calls, so coarse, independent
bands scale on threads; the cost is Python glue that the workers hand the GIL back and forth
for. Every band computes its output elements exactly as one band would, so the results never
depend on the worker count.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from functools import lru_cache
from typing import Any, Callable, Sequence

# Multiply-adds per extra worker below which splitting a conv or linear over threads costs
# more than it gains (thread hand-off and GIL contention exceed the work; docs/speed.md).
MIN_MACS_PER_WORKER = 16_000_000


def useful_workers(macs: int, workers: int) -> int:
    """`workers`, fewer if some would get less than `MIN_MACS_PER_WORKER` multiply-adds; at least 1.

    >>> useful_workers(58_000_000, 2), useful_workers(6_400_000, 2)
    (2, 1)
    """
    return max(1, min(workers, macs // MIN_MACS_PER_WORKER))


def bands(length: int, count: int) -> list[slice]:
    """`length` cut into at most `count` near-equal non-empty slices (one empty slice for 0).

    >>> bands(7, 2)
    [slice(0, 3, None), slice(3, 7, None)]
    """
    pieces = min(count, max(length, 1))
    edges = [length * i // pieces for i in range(pieces + 1)]
    return [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def parallel_for(function: Callable[[Any], None], items: Sequence[Any], workers: int) -> None:
    """`function(item)` for every item, on `workers` threads when there are several of both.

    The calling thread is one of them: it and `workers - 1` pool threads take items in order
    from one queue (uneven items balance), then the first error, if any, is raised once all
    have stopped. Working on the caller rather than waiting on it leaves one thread fewer to
    wake and to share the GIL with.
    The items must not themselves use the pool (its threads would wait on each other).
    """
    if workers == 1 or len(items) <= 1:
        for item in items:
            function(item)
        return
    queue = iter(items)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                item = next(queue, _NO_ITEM)
            if item is _NO_ITEM:
                return
            function(item)

    helpers = [_thread_pool(workers - 1).submit(drain) for _ in range(min(workers, len(items)) - 1)]
    try:
        drain()
    finally:
        wait(helpers)
    for helper in helpers:
        helper.result()  # re-raises a helper's error


_NO_ITEM = object()


@lru_cache(maxsize=None)
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """One pool per worker count, kept for the process (thread start-up costs per call otherwise)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quantspec-gemm")
