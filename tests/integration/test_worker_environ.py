"""The environment worker processes start with: dask's ``distributed.nanny.environ`` and
``distributed.nanny.pre-spawn-environ`` config, and allocator settings that keep chunk-sized
allocations fast while freed memory still leaves the process."""

from __future__ import annotations

import os
from collections.abc import Callable

import dask
import pytest

from shoal import Client

pytestmark = pytest.mark.integration


def _environ(names: list[str]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def test_workers_start_with_dask_nanny_environ_config(make_client: Callable[..., Client]) -> None:
    with dask.config.set({
        "distributed.nanny.environ": {"SHOAL_TEST_ENVIRON": "from-environ"},
        "distributed.nanny.pre-spawn-environ": {"SHOAL_TEST_PRE_SPAWN": 7},
    }):
        client = make_client(n_workers=1)
    seen = client.run(_environ, ["SHOAL_TEST_ENVIRON", "SHOAL_TEST_PRE_SPAWN"])
    assert list(seen.values()) == [
        {"SHOAL_TEST_ENVIRON": "from-environ", "SHOAL_TEST_PRE_SPAWN": "7"}
    ]


def test_workers_keep_chunk_sized_allocations_off_mmap(make_client: Callable[..., Client]) -> None:
    # dask's MALLOC_TRIM_THRESHOLD_=65536 freezes glibc's mmap threshold at 128 KiB and
    # makes task threads' arenas give every freed chunk back: each 4 MB chunk was then
    # page-faulted in afresh, and summing an HDF5 array ran 3x slower than before. Blocks
    # of 4 MiB and more are mapped (freed, they leave the process).
    client = make_client(n_workers=1)
    (seen,) = client.run(_environ, ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"]).values()
    assert int(seen["MALLOC_TRIM_THRESHOLD_"] or 0) >= 16 * 2**20
    assert 4_000_000 < int(seen["MALLOC_MMAP_THRESHOLD_"] or 0) <= 4 * 2**20


def test_dask_config_overrides_the_allocator_defaults(make_client: Callable[..., Client]) -> None:
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 131072}}):
        client = make_client(n_workers=1)
    (seen,) = client.run(_environ, ["MALLOC_TRIM_THRESHOLD_"]).values()
    assert seen == {"MALLOC_TRIM_THRESHOLD_": "131072"}


def test_distributeds_shipped_defaults_do_not_replace_shoals(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Importing distributed (other libraries do) loads its defaults into dask's config,
    # MALLOC_TRIM_THRESHOLD_=65536 among them; that is not a setting of the user's.
    shipped = {"distributed": {"nanny": {"pre-spawn-environ": {
        "MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1}}}}
    monkeypatch.setattr(dask.config, "defaults", [*dask.config.defaults, shipped])
    with dask.config.set(shipped):
        client = make_client(n_workers=1, threads_per_worker=2)
    (seen,) = client.run(_environ, ["MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"]).values()
    assert seen == {"MALLOC_TRIM_THRESHOLD_": str(16 * 2**20), "OMP_NUM_THREADS": "1"}


def test_blas_libraries_get_one_thread_per_task_thread(make_client: Callable[..., Client]) -> None:
    # dask's ``pre-spawn-environ`` default: each task thread runs its own BLAS call, so a
    # BLAS pool per call (OMP_NUM_THREADS = the worker's thread count) oversubscribed the
    # cores: a chunked ``da.linalg.svd`` on 2 workers x 2 threads ran 5-80x slower.
    client = make_client(n_workers=1, threads_per_worker=2)
    names = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]
    (seen,) = client.run(_environ, names).values()
    assert seen == dict.fromkeys(names, "1")


def test_an_exported_blas_thread_count_is_kept(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    client = make_client(n_workers=1)
    (seen,) = client.run(_environ, ["OMP_NUM_THREADS"]).values()
    assert seen == {"OMP_NUM_THREADS": "3"}


def _hash_of(text: str) -> tuple[str | None, int]:
    return os.environ.get("PYTHONHASHSEED"), hash(text)


def test_workers_hash_strings_alike(make_client: Callable[..., Client]) -> None:
    # As dask's nanny does: one PYTHONHASHSEED for every worker, so a task that partitions
    # by ``hash()`` sends a key to the same place whichever worker runs it.
    client = make_client(n_workers=2)
    seen = set(client.run(_hash_of, "shoal").values())
    (only,) = seen  # both workers: the same seed and the same hash
    assert only[0] == "6640"


def test_a_configured_hash_seed_is_used(make_client: Callable[..., Client],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A seed exported here would win over the config (dask's precedence); this is the config's.
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"PYTHONHASHSEED": 12}}):
        client = make_client(n_workers=1)
    (seen,) = client.run(_environ, ["PYTHONHASHSEED"]).values()
    assert seen == {"PYTHONHASHSEED": "12"}
