"""production.parallel: worker processes start with their share of the CPUs for torch's and
NumPy's thread pools, a user's own setting kept, and the parent's environment untouched."""

from __future__ import annotations

import os
import re

import pytest

from quantspec.production.parallel import (
    THREAD_VARIABLES,
    dask_client,
    ordered_map,
    usable_cpus,
    worker_thread_environment,
)


def test_each_worker_gets_its_share_of_the_cpus_and_passive_waits() -> None:
    # 8 CPUs over 3 jobs: 8 // 3 = 2 threads each; 2 CPUs over 4 jobs: never below 1.
    assert worker_thread_environment(3, 8, {}) == {**{name: "2" for name in THREAD_VARIABLES},
                                                   "OMP_WAIT_POLICY": "PASSIVE"}
    assert worker_thread_environment(4, 2, {}) == {**{name: "1" for name in THREAD_VARIABLES},
                                                   "OMP_WAIT_POLICY": "PASSIVE"}


def test_a_users_setting_is_kept() -> None:
    kept = worker_thread_environment(2, 8, {"OMP_NUM_THREADS": "7", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_NUM_THREADS" not in kept and "OMP_WAIT_POLICY" not in kept


def test_a_users_omp_num_threads_also_governs_numpys_blas() -> None:
    # OpenBLAS and MKL read OMP_NUM_THREADS when their own variable is unset: a worker given
    # OPENBLAS_NUM_THREADS=4 beside the user's OMP_NUM_THREADS=1 would run 4 BLAS threads.
    assert worker_thread_environment(2, 8, {"OMP_NUM_THREADS": "1"}) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_spawned_workers_see_the_variables_and_the_parent_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [*THREAD_VARIABLES, "OMP_WAIT_POLICY"]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    seen = list(ordered_map(os.getenv, names, jobs=2))  # os.getenv runs in the workers
    share = str(max(1, usable_cpus() // 2))
    assert seen == [share, share, "5", "PASSIVE"]
    assert [os.getenv(name) for name in names] == [None, None, "5", None]


@pytest.mark.parametrize(
    ("address", "error", "said"),
    [("foo://x", ValueError, "--scheduler foo://x: unknown address scheme 'foo'"),
     ("tcp://127.0.0.1:1", OSError, "--scheduler tcp://127.0.0.1:1: Timed out trying to connect")],
)
def test_an_unusable_scheduler_address_names_the_flag(address: str, error: type, said: str) -> None:
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(error, match=re.escape(said)):
        dask_client(address)
