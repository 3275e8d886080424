"""How a LocalCluster shares out this machine, by dask's ``LocalCluster`` rules: workers x
threads (``local_shape``) and the "auto" memory limit (``local_memory_limit``)."""

from __future__ import annotations

import psutil
import pytest

from shoal.cluster._sizing import local_memory_limit, local_shape


@pytest.mark.parametrize(("n_workers", "threads", "processes", "cores", "expected"), [
    (None, None, True, 2, (2, 1)),    # up to 4 cores: a single-threaded worker per core
    (None, None, True, 8, (4, 2)),    # more: the smallest factor >= sqrt(cores) workers
    (None, None, False, 8, (1, 8)),   # threads only: one worker with every core
    (None, 2, False, 8, (1, 2)),
    (None, 2, True, 8, (4, 2)),
    (3, None, True, 4, (3, 2)),       # a number of workers: cores shared out, rounded up
    (3, None, False, 2, (3, 1)),
    (2, 3, True, 8, (2, 3)),
    (0, None, True, 8, (0, 8)),
])
def test_workers_and_threads_follow_dasks_local_cluster(n_workers, threads, processes, cores,
                                                         expected):
    assert local_shape(n_workers, threads, processes, cores) == expected


def test_auto_memory_limit_shares_the_machine_between_the_workers():
    total = psutil.virtual_memory().total
    assert local_memory_limit("auto", 1, 1) == total  # one worker: all of it, as dask
    assert local_memory_limit("auto", 4, 1) == int(total / 4)
    assert local_memory_limit("1GiB", 4, 1) == 2**30
    assert local_memory_limit(None, 4, 1) == 0
