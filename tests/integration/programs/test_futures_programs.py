"""Futures programs on shoal, as people write them against dask.distributed: retries,
priorities, resources, worker restrictions, odd key names, annotations, published datasets,
who-holds-what and copies, run / run_on_scheduler, uploaded modules, as_completed fed while
it runs, tasks that submit tasks, failures with their tracebacks, and big and many results."""

from __future__ import annotations

import concurrent.futures
import time
import traceback
import zipfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from shoal import as_completed, get_client, rejoin, secede, wait, worker_client

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def flaky(path: str) -> int:
    """Fails on its first two calls (counted in a file), then returns the call number."""
    counter = Path(path)
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n < 2:
        raise ValueError(f"attempt {n}")
    return n


def test_retries_from_submit_and_from_annotate(client, tmp_path):
    assert client.submit(flaky, str(tmp_path / "a"), retries=3, pure=False).result(timeout=30) == 2
    with pytest.raises(ValueError, match="attempt 1"):
        client.submit(flaky, str(tmp_path / "b"), retries=1, pure=False).result(timeout=30)
    with dask.annotate(retries=3):
        fut = client.submit(flaky, str(tmp_path / "c"), pure=False)
    assert fut.result(timeout=30) == 2


def test_restrictions_priorities_and_odd_keys(client):
    workers = sorted(client.scheduler_info()["workers"])
    pinned = client.map(inc, range(10), workers=[workers[0]], key=[f"pinned-{i}" for i in range(10)])
    assert client.gather(pinned) == list(range(1, 11))
    assert all(list(v) == [workers[0]] for v in client.who_has(pinned).values())
    elsewhere = client.submit(inc, 1, workers="tcp://127.0.0.1:1", allow_other_workers=True)
    assert elsewhere.result(timeout=30) == 2
    assert client.submit(inc, 3, priority=10).result(timeout=30) == 4
    odd = ["x-(1, 2)", "a/b\\c", "ключ", "sp ace", "('tuple', 1)", "x'y\"z", "🙂"]
    futs = [client.submit(inc, i, key=k) for i, k in enumerate(odd)]
    assert [f.key for f in futs] == odd
    assert client.gather(futs) == list(range(1, len(odd) + 1))
    first = client.submit(inc, 1, key=("mytuple", 0))
    second = client.submit(inc, first, key=("mytuple", 1))
    assert (first.key, second.result(timeout=30)) == (("mytuple", 0), 3)
    x = client.persist(da.ones((40, 40), chunks=10) + 1, workers=[workers[1]])
    wait(x, timeout=30)
    assert {w for holders in client.who_has(x).values() for w in holders} == {workers[1]}


def test_datasets_and_the_cluster_as_clients_see_it(client):
    answer = client.submit(inc, 41)
    client.publish_dataset(answer=answer)
    client.datasets["other"] = 7
    try:
        assert set(client.list_datasets()) >= {"answer", "other"}
        assert client.get_dataset("answer").result(timeout=30) == 42
        assert client.get_dataset("other") == 7
    finally:
        client.unpublish_dataset("answer")
        del client.datasets["other"]
    with pytest.raises(KeyError):
        client.get_dataset("answer")
    assert client.get_dataset("answer", default=None) is None

    workers = sorted(client.scheduler_info()["workers"])
    data = client.submit(lambda: list(range(1000)))
    data.result(timeout=30)
    client.replicate([data])
    assert len(client.who_has([data])[data.key]) == 2
    client.rebalance()
    assert sorted(client.has_what()) == workers
    assert list(client.nthreads().values()) == [1, 1]
    info = client.scheduler_info()
    assert info["address"] == client.scheduler.address
    for w in info["workers"].values():
        assert w["nthreads"] == 1
        assert {"memory_limit", "host", "id", "name", "metrics", "last_seen", "resources"} <= set(w)
    assert client.run(lambda dask_worker: dask_worker.address) == {w: w for w in workers}
    assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.workers)) == 2


def test_uploaded_module_and_zip_package(client, tmp_path):
    mod = tmp_path / "soak_uploaded.py"
    mod.write_text("def triple(x):\n    return 3 * x\n")
    client.upload_file(str(mod))
    assert client.submit(_use_uploaded, 5, pure=False).result(timeout=30) == 15
    mod.write_text("def triple(x):\n    return 300 * x\n")
    client.upload_file(str(mod))  # uploading again reloads it
    assert client.submit(_use_uploaded, 5, pure=False).result(timeout=30) == 1500
    pkg = tmp_path / "soakpkg.zip"
    with zipfile.ZipFile(pkg, "w") as z:
        z.writestr("soakpkg/__init__.py", "VALUE = 'zipped'\n")
    client.upload_file(str(pkg))
    assert client.submit(_zipped_value, pure=False).result(timeout=30) == "zipped"


def _use_uploaded(x: int) -> int:
    import soak_uploaded

    return soak_uploaded.triple(x)


def _zipped_value() -> str:
    import soakpkg

    return soakpkg.VALUE


def sleepy(x: int) -> int:
    time.sleep(0.01 * (x % 3))
    return x


def fib(n: int) -> int:
    if n < 2:
        return n
    with worker_client() as c:
        a, b = c.submit(fib, n - 1), c.submit(fib, n - 2)
        return a.result() + b.result()


def seceding(x: int) -> int:
    secede()
    value = get_client().submit(sleepy, x).result()
    rejoin()
    return value * 10


def test_as_completed_fed_while_it_runs_and_tasks_that_submit_tasks(client):
    results = []
    stream = as_completed(client.map(sleepy, range(10)), with_results=True)
    for _, value in stream:
        results.append(value)
        if value == 0:
            stream.add(client.submit(sleepy, 100))
    assert sorted(results) == [*range(10), 100]
    stream = as_completed()
    stream.update(client.map(sleepy, range(30, 33)))
    assert sum(len(batch) for batch in stream.batches()) == 3
    assert client.gather(client.map(seceding, range(4))) == [0, 10, 20, 30]
    assert client.submit(fib, 7).result(timeout=60) == 13


class CodedError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code


def raise_coded(x: int) -> int:
    if x == 3:
        raise CodedError(42, "bad x")
    return x


def inner(x: float) -> float:
    return 1 / x


def outer(x: float) -> float:
    return inner(x) + 1


def test_failures_keep_their_exception_and_traceback(client):
    futs = client.map(raise_coded, range(5))
    with pytest.raises(CodedError) as info:
        client.gather(futs)
    assert info.value.code == 42 and info.value.args == (42, "bad x")
    assert client.gather(futs, errors="skip") == [0, 1, 2, 4]
    fut = client.submit(outer, 0)
    assert isinstance(fut.exception(timeout=30), ZeroDivisionError)
    names = [frame.name for frame in traceback.extract_tb(fut.traceback())]
    assert "outer" in names and "inner" in names
    with pytest.raises(ZeroDivisionError) as local:
        client.recreate_error_locally(fut)  # runs outer(0) here, where a debugger can go
    assert "inner" in [frame.name for frame in traceback.extract_tb(local.tb)]


def test_a_100_mb_result_and_5000_small_ones(client):
    big = client.submit(np.arange, 100 * 2**20 // 8, dtype="f8").result(timeout=60)
    assert big.nbytes == 100 * 2**20 and big[-1] == 100 * 2**20 // 8 - 1
    del big
    assert sum(client.gather(client.map(inc, range(5000)))) == sum(range(1, 5001))
    with pytest.raises(concurrent.futures.TimeoutError):
        client.submit(time.sleep, 1, pure=False).result(timeout=0.05)


def score(data: np.ndarray, alpha: float) -> float:
    return float(((data * alpha) ** 2).mean())


def test_a_parameter_search_over_broadcast_data(client):
    # The shape of many work programs: data scattered to every worker once, a map over
    # parameters (some repeated), results taken as they finish while more are added.
    data = np.linspace(0, 1, 200_000)
    [shared] = client.scatter([data], broadcast=True)
    params = [i / 10 for i in range(20)] + [0.5, 0.5]
    futs = client.map(score, [shared] * len(params), params)
    stream = as_completed(futs, with_results=True)
    seen = []
    for _, value in stream:
        seen.append(value)
        if len(seen) == 1:
            stream.update(client.map(score, [shared] * 3, [5.0, 6.0, 7.0]))
    assert len(seen) == len(params) + 3  # one per future, repeated parameters included
    want = sorted([score(data, a) for a in params] + [score(data, a) for a in (5.0, 6.0, 7.0)])
    np.testing.assert_allclose(sorted(seen), want)
