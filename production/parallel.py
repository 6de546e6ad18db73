"""Run independent work items serially, in N local processes, or on a Dask cluster.

`ordered_map(function, items, jobs, scheduler)` yields `function(item)` for each item in the
items' order whatever ran where, so a merged report does not depend on how the work was
spread. `function` must be a module-level function (pickled by reference) and each item
picklable: a worker loads what it needs itself (e.g. a model, cached per process).

Local processes are started with "spawn", not "fork": torch's thread pools do not survive a
fork. Each is spawned with its share of the CPUs for its thread pools (`worker_thread_environment`:
OMP_NUM_THREADS for torch, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS for NumPy's BLAS), as Dask's
nanny does for its workers, and with OMP_WAIT_POLICY=PASSIVE: N processes each starting a pool
as wide as the machine would oversubscribe the cores, and OpenMP threads spin while they wait.

Dask (`scheduler`, an address such as tcp://host:8786) needs the optional extra
`pip install 'quantspec[dask]'`; its workers must have quantspec installed too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# The variables torch (OpenMP) and NumPy's BLAS read once, when each loads in the worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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
        with _environment(worker_thread_environment(jobs, usable_cpus(), os.environ)):
            results = executor.map(function, items)  # submits every item: the workers start here
        yield from results
    finally:  # on Ctrl-C or an error: drop the queued items instead of waiting for them
        executor.shutdown(wait=True, cancel_futures=True)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_thread_environment(jobs: int, cpus: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables each of `jobs` workers starts with: `cpus // jobs` threads (at least 1)
    for every variable in `THREAD_VARIABLES`, and OMP_WAIT_POLICY=PASSIVE, so that an OpenMP
    thread waiting at a barrier sleeps instead of spinning on a core another worker needs
    (a check that asks torch for more threads than its share, to cover thread splits, then
    costs its neighbour little). A variable `environ` sets already is kept, and a user's
    OMP_NUM_THREADS stands for the BLAS variables too: OpenBLAS and MKL fall back to it when
    their own is unset, so setting theirs would override the user's choice.

    >>> worker_thread_environment(2, 8, {"OPENBLAS_NUM_THREADS": "3"})
    {'OMP_NUM_THREADS': '4', 'MKL_NUM_THREADS': '4', 'OMP_WAIT_POLICY': 'PASSIVE'}
    >>> worker_thread_environment(2, 8, {"OMP_NUM_THREADS": "1"})
    {'OMP_WAIT_POLICY': 'PASSIVE'}
    """
    share = str(max(1, cpus // jobs))
    threads = () if "OMP_NUM_THREADS" in environ else THREAD_VARIABLES
    wanted = {**{name: share for name in threads}, "OMP_WAIT_POLICY": "PASSIVE"}
    return {name: value for name, value in wanted.items() if name not in environ}


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `variables` added inside the block (processes started there inherit them).
    The environment is the process's: two maps started at once from different threads would
    see each other's variables, so callers run one at a time (the CLI does)."""
    os.environ.update(variables)
    try:
        yield
    finally:
        for name in variables:
            os.environ.pop(name, None)


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
    """A `distributed.Client` connected to `scheduler`; ImportError naming the extra without Dask,
    and Dask's own OSError (no answer) or ValueError (a malformed address) naming the flag."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ImportError("--scheduler needs Dask: pip install 'quantspec[dask]'") from error
    try:
        return Client(scheduler)
    except OSError as error:
        raise OSError(f"--scheduler {scheduler}: {error}") from error
    except ValueError as error:
        raise ValueError(f"--scheduler {scheduler}: {error}") from error
