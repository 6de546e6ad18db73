"""Run independent work items serially, in N local processes, or on a Dask cluster.

`ordered_map(function, items, jobs, scheduler)` yields `function(item)` for each item in the
items' order whatever ran where, so a merged report does not depend on how the work was
spread. `function` must be a module-level function (pickled by reference) and each item
picklable: a worker loads what it needs itself (e.g. a model, cached per process).

Local processes are started with "spawn", not "fork": torch's thread pools do not survive a
fork. Dask (`scheduler`, an address such as tcp://host:8786) needs the optional extra
`pip install 'quantspec[dask]'`; its workers must have quantspec installed too.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(
    function: Callable[[Item], Result], items: Sequence[Item], jobs: int = 1, scheduler: Optional[str] = None
) -> Iterator[Result]:
    """`function(item)` for each of `items`, in order: on the Dask scheduler at `scheduler` if
    given, else in `jobs` spawned processes (in this process when `jobs` is 1)."""
    if jobs <= 0:
        raise ValueError(f"jobs={jobs}: expected a positive count")
    if scheduler:
        yield from _dask_map(function, items, scheduler)
    elif jobs == 1 or len(items) <= 1:
        yield from map(function, items)
    else:
        yield from _process_map(function, items, min(jobs, len(items)))


def _process_map(function: Callable[[Item], Result], items: Sequence[Item], jobs: int) -> Iterator[Result]:
    executor = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from executor.map(function, items)
    finally:  # on Ctrl-C or an error: drop the queued items instead of waiting for them
        executor.shutdown(wait=True, cancel_futures=True)


def _dask_map(function: Callable[[Item], Result], items: Sequence[Item], scheduler: str) -> Iterator[Result]:
    client = dask_client(scheduler)
    futures: list[Any] = []
    try:
        futures = client.map(function, items, pure=False)  # pure=False: never served from a cache
        for future in futures:
            yield future.result()
    finally:
        client.cancel(futures)
        client.close()


def dask_client(scheduler: str) -> Any:
    """A `distributed.Client` connected to `scheduler`; ImportError naming the extra without Dask."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ImportError("--scheduler needs Dask: pip install 'quantspec[dask]'") from error
    return Client(scheduler)
