"""Operations and observability programs, as people at work write them against
dask.distributed (each was run there first): progress bars over a computed collection,
the task stream saved to a file, stories and events, waiting for workers with a deadline,
dask's own built-in plugins, several clients on one cluster sharing data, tasks that
submit and wait for their own work, the futures API's waiting and callbacks, and a
cluster scaled, adapted and closed before its client."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from shoal import (
    Client,
    LocalCluster,
    Queue,
    SchedulerPlugin,
    Variable,
    WorkerPlugin,
    as_completed,
    fire_and_forget,
    get_client,
    get_task_stream,
    get_worker,
    performance_report,
    progress,
    rejoin,
    secede,
    wait,
    worker_client,
)

from .._helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _let_go_of_futures():
    """The session cluster is shared: futures a test leaves in reference cycles (a failed
    future's traceback holds the frame that holds it) are collected after it, so their
    keys do not stay on the cluster for tests that count its tasks."""
    yield
    import gc

    gc.collect()


def inc(x: int) -> int:
    return x + 1


def slow_block(b: np.ndarray) -> np.ndarray:
    time.sleep(0.02)
    return b


def test_progress_of_a_computed_collection_counts_the_graph_behind_it(client):
    # dask's bar over client.compute(x.sum()) drains the whole graph; counting only the
    # one future showed 0/1 until the very end.
    x = da.ones((80, 80), chunks=10).map_blocks(slow_block)
    total = client.compute(x.sum())
    out = io.StringIO()
    progress(total, file=out)
    text = out.getvalue()
    assert "sum-partial" in text and "64/64" in text, text  # the 64 fused blocks
    assert total.result(timeout=30) == 6400
    # The plugin that counted is gone once the bars are done.
    names = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
    assert not [n for n in names if n.startswith("shoal-progress")]
    flat = io.StringIO()
    progress(client.compute(x.sum() + 1), multi=False, file=flat)
    assert "all tasks" in flat.getvalue()


def test_task_stream_saved_to_a_file_and_its_records(client, tmp_path):
    path = tmp_path / "stream.html"
    with get_task_stream(plot="save", filename=str(path)) as ts:
        client.gather(client.map(inc, range(5), key=[f"ops-ts-{i}" for i in range(5)]))
    assert ts.figure is None  # dask's bokeh figure: shoal makes none
    assert {f"ops-ts-{i}" for i in range(5)} <= {r["key"] for r in ts.data}
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "ops-ts" in page
    data, figure = client.get_task_stream(count=2, plot="save", filename=str(tmp_path / "b.html"))
    assert len(data) == 2 and figure is None and (tmp_path / "b.html").exists()
    with pytest.raises(NotImplementedError, match="plot='save'"):
        client.get_task_stream(plot=True)
    report = tmp_path / "report.html"
    with performance_report(filename=str(report)):
        da.ones(100, chunks=10).sum().compute()
    assert "Task stream" in report.read_text()


def emit(i: int) -> int:
    get_worker().log_event("ops-work", {"i": i})
    return i


def test_story_of_several_keys_and_events_logged_by_tasks(client):
    a = client.submit(inc, 1, key="ops-story-a")
    b = client.submit(inc, a, key="ops-story-b")
    b.result(timeout=30)
    rows = client.story("ops-story-a", b)
    # As dask: the scheduler's rows, then the workers' own (the first field says whose).
    workers = set(client.scheduler_info()["workers"])
    assert "scheduler" in {r[0] for r in rows} and {r[0] for r in rows} - {"scheduler"} <= workers
    assert any(r[0] in workers and r[1] == "ops-story-b" for r in rows)
    assert {r[1] for r in rows} == {"ops-story-a", "ops-story-b"}
    assert ("ops-story-b", "processing", "memory") in [r[1:4] for r in rows]
    got: list = []
    client.subscribe_topic("ops-work", got.append)
    try:
        client.gather(client.map(emit, range(3)))
        wait_for(lambda: len(got) == 3, timeout=30)
    finally:
        client.unsubscribe_topic("ops-work")
    assert sorted(m["i"] for _, m in got) == [0, 1, 2]
    assert {m["worker"] for _, m in got} <= workers  # dask says which worker logged it
    client.log_event(["ops-t1", "ops-t2"], "both")
    assert [m for _, m in client.get_events("ops-t2")] == ["both"]
    logs = client.get_worker_logs(n=1)
    assert set(logs) == workers and all(len(v) == 1 for v in logs.values())
    assert len(client.get_scheduler_logs(n=2)) == 2


def test_wait_for_workers_past_its_deadline_raises_timeout_error(client):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="Only 2/5 workers arrived"):  # dask's message
        client.wait_for_workers(5, timeout=0.3)
    assert time.monotonic() - started < 10
    client.wait_for_workers(2, timeout="10s")  # dask's durations


def test_dask_builtin_plugins_fail_fast_and_shoal_ones_work(client, tmp_path):
    import distributed.diagnostics.plugin as dask_plugins

    from shoal import UploadDirectory

    (tmp_path / "ops_dir_mod.py").write_text("V = 7\n")
    with pytest.raises(TypeError, match=r"use shoal\.UploadDirectory"):
        client.register_plugin(dask_plugins.UploadDirectory(str(tmp_path), update_path=True))
    with pytest.raises(TypeError, match=r"use shoal\.PipInstall"):
        client.register_plugin(dask_plugins.PipInstall(["toolz"]))
    answers = client.register_plugin(UploadDirectory(str(tmp_path), update_path=True))
    assert {v["status"] for v in answers.values()} == {"OK"}
    assert set(client.run(lambda: __import__("ops_dir_mod").V).values()) == {7}


class Tag(WorkerPlugin):
    name = "ops-tag"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def setup(self, worker) -> None:
        worker.ops_tag = self.tag

    def teardown(self, worker) -> None:
        worker.ops_tag = None


class Finished(SchedulerPlugin):
    name = "ops-finished"

    def __init__(self) -> None:
        self.n = 0

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "memory":
            self.n += 1


async def worker_address(dask_worker) -> str:
    return dask_worker.address


def test_plugins_registered_and_removed_and_async_run(client):
    assert client.register_plugin(Finished()) is None
    try:
        client.gather(client.map(inc, range(5), pure=False))
        assert client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins["ops-finished"].n) >= 5
    finally:
        client.unregister_scheduler_plugin("ops-finished")
    client.register_plugin(Tag("blue"))
    assert set(client.run(lambda dask_worker: dask_worker.ops_tag).values()) == {"blue"}
    client.unregister_worker_plugin("ops-tag")
    assert set(client.run(lambda dask_worker: dask_worker.ops_tag).values()) == {None}
    with pytest.raises(ValueError, match="ops-nope"):
        client.unregister_worker_plugin("ops-nope")
    runs = client.run(worker_address)
    assert runs == {w: w for w in client.scheduler_info()["workers"]}


def gather_own(n: int) -> int:
    c = get_client()
    futs = c.map(inc, range(n), pure=False)
    secede()
    total = sum(c.gather(futs))
    rejoin()
    return total


def through_worker_client(n: int) -> int:
    with worker_client() as c:
        return sum(c.gather(c.map(inc, range(n))))


def produce(name: str, n: int) -> None:
    q = Queue(name)
    for i in range(n):
        q.put(i)
    Variable(f"{name}-done").set("yes")


def test_several_clients_on_one_cluster_share_data(client):
    address = client.scheduler.address
    with Client(address, set_as_default=False) as a, Client(address, set_as_default=False) as b:
        x = a.submit(inc, 1, key="ops-shared-x")
        a.publish_dataset(ops_x=x)
        try:
            assert b.get_dataset("ops_x").result(timeout=30) == 2
            Variable("ops-var", client=a).set(x)
            assert Variable("ops-var", client=b).get(timeout=10).result(timeout=30) == 2
            Variable("ops-var", client=a).delete()  # lets go of x: the cluster forgets it
            q = Queue("ops-q", client=a)
            q.put(5)
            q.put(x)
            qb = Queue("ops-q", client=b)
            assert qb.get(timeout=10) == 5 and qb.get(timeout=10).result(timeout=30) == 2
            with pytest.raises(TimeoutError):
                qb.get(timeout=0.1)
        finally:
            a.unpublish_dataset("ops_x")
        assert a.submit(gather_own, 10).result(timeout=30) == 55
        assert a.submit(through_worker_client, 10).result(timeout=30) == 55
        fire_and_forget(a.submit(produce, "ops-q2", 3, pure=False))
        q2 = Queue("ops-q2", client=b)
        assert [q2.get(timeout=10) for _ in range(3)] == [0, 1, 2]
        assert Variable("ops-q2-done", client=b).get(timeout=10) == "yes"
        left = b.submit(inc, 5)
        b.close()
        assert a.submit(inc, 10).result(timeout=30) == 11 and left.status == "cancelled"


def odd_fails(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


def test_waiting_and_callbacks_of_the_futures_api(client, gate):
    from .._helpers import gated

    held = client.submit(gated, gate.path, 1, pure=False)
    with pytest.raises(TimeoutError):
        held.result(timeout=0.05)
    fast = client.submit(inc, 1)
    done, not_done = wait([held, fast], timeout=30, return_when="FIRST_COMPLETED")
    assert done == {fast} and not_done == {held}
    with pytest.raises(TimeoutError):
        wait([held], timeout=0.05)
    gate.open()
    assert held.result(timeout=30) == 1
    futs = client.map(odd_fails, range(6))
    seen = sorted((f.status, type(r).__name__)
                  for f, r in as_completed(futs, with_results=True, raise_errors=False))
    assert seen == [("error", "tuple")] * 3 + [("finished", "int")] * 3
    stream = as_completed(client.map(inc, range(20)), with_results=True)
    assert sum(len(batch) for batch in stream.batches()) == 20
    called = threading.Event()
    statuses = []
    fut = client.submit(inc, 41, key="ops-answer")
    fut.add_done_callback(lambda f: (statuses.append((f.status, f.key)), called.set()))
    assert called.wait(30) and statuses == [("finished", "ops-answer")]
    bad = client.submit(odd_fails, 3, key=("ops-bad", 3))
    assert isinstance(bad.exception(timeout=30), ValueError) and bad.traceback() is not None
    assert bad.key == ("ops-bad", 3)


class Membership(SchedulerPlugin):
    name = "ops-members"

    def __init__(self) -> None:
        self.log: list[str] = []

    def add_worker(self, scheduler, worker) -> None:
        self.log.append("add")

    def remove_worker(self, scheduler, worker, **kwargs) -> None:
        self.log.append("remove")

    def restart(self, scheduler) -> None:
        self.log.append("restart")


def membership_log(dask_scheduler) -> list[str]:
    return list(dask_scheduler.plugins["ops-members"].log)


def test_a_cluster_scaled_adapted_and_closed_before_its_client():
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                           timeout=180)
    client = Client(cluster, timeout="60s")
    try:
        assert client.get_versions(check=True)["client"]["packages"]["dask"]
        port = client.dashboard_link.rsplit(":", 1)[1].split("/")[0]
        with dask.config.set({"distributed.dashboard.link": "/user/me/proxy/{port}/status"}):
            # JupyterHub's template, as dask reads it at each call
            assert client.dashboard_link == f"/user/me/proxy/{port}/status"
            assert cluster.dashboard_link == client.dashboard_link
            assert f"/user/me/proxy/{port}/status" in client._repr_html_()
            with Client(cluster.scheduler_address, set_as_default=False) as remote:
                assert remote.dashboard_link == client.dashboard_link
        client.register_plugin(Membership())
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        futs = client.map(inc, range(10))
        wait(futs, timeout=30)
        cluster.scale(1)
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=30)
        assert client.gather(futs) == list(range(1, 11))
        # A plugin hears of a worker retired by scale-down, as of one that joined.
        assert client.run_on_scheduler(membership_log) == ["add", "remove"]
        assert type(cluster.adapt(minimum=1, maximum=2, interval="100ms")).__name__ == "Adaptive"
        client.restart(wait_for_workers=False)
        assert [f.status for f in futs] == ["cancelled"] * 10
        assert client.submit(inc, 1, pure=False).result(timeout=60) == 2
        log = client.run_on_scheduler(membership_log)
        assert log[2:4] == ["restart", "remove"] and log.count("add") >= 2, log  # as dask
    finally:
        cluster.close()
    assert client.status == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        client.submit(inc, 2)
    client.close()  # closing again after its cluster is fine


def test_the_report_path_is_a_pathlib_path(client, tmp_path: Path):
    with performance_report(filename=tmp_path / "p.html"):
        client.submit(inc, 1, pure=False).result(timeout=30)
    assert (tmp_path / "p.html").read_text().startswith("<!DOCTYPE html>")


def test_coordination_primitives_are_awaitable_on_an_asynchronous_client(client):
    # dask: with an asynchronous client every primitive's call returns an awaitable; shoal
    # returned the plain value (or None), so `await v.set(5)` raised TypeError.
    import asyncio

    from shoal import Event, Lock, MultiLock, Semaphore

    async def main(address: str) -> dict:
        async with Client(address, asynchronous=True, set_as_default=False) as c:
            got = {}
            v = Variable("ops-async-var", client=c)
            await v.set(5)
            got["var"] = await v.get(timeout=10)
            await v.delete()
            q = Queue("ops-async-q", client=c)
            await q.put(1)
            got["qsize"] = await q.qsize()
            got["queue"] = await q.get(timeout=10)
            e = Event("ops-async-ev", client=c)
            await e.set()
            got["event"] = (await e.wait(timeout=10), await e.is_set())
            await e.clear()
            lock = Lock("ops-async-lock", client=c)
            async with lock:
                got["locked"] = await lock.locked()
            got["acquired"] = await lock.acquire(timeout=10)
            await lock.release()
            sem = Semaphore(2, name="ops-async-sem", client=c)
            async with sem:
                got["sem"] = await sem.get_value()
            multi = MultiLock(["ops-async-m1", "ops-async-m2"], client=c)
            async with multi:
                got["multi"] = multi.locked()
            return got

    got = asyncio.run(asyncio.wait_for(main(client.scheduler.address), 60))
    assert got == {"var": 5, "qsize": 1, "queue": 1, "event": (True, True), "locked": True,
                   "acquired": True, "sem": 1, "multi": True}


def test_cancelled_futures_in_as_completed_and_wait(client, gate):
    import concurrent.futures

    from .._helpers import gated

    held = client.submit(gated, gate.path, 1, pure=False)
    quick = client.submit(inc, 1)
    stream = as_completed([held, quick], with_results=True)
    held.cancel()
    seen = {f.status: r for f, r in stream}  # dask yields a cancelled one with its error
    assert seen["finished"] == 2
    assert isinstance(seen["cancelled"], concurrent.futures.CancelledError)
    with pytest.raises(concurrent.futures.CancelledError, match="1 future"):
        wait([held, quick], timeout=30)
    with pytest.raises(concurrent.futures.CancelledError):
        wait([held, quick], timeout=30, return_when="FIRST_COMPLETED")


def test_the_programs_leave_no_task_behind(client):
    # The session cluster is shared: nothing above may keep a key alive (a Variable or a
    # dataset holding a future) or leave a progress plugin registered. Futures caught in
    # reference cycles (a failed future's traceback holds the frame that holds it) go
    # with a collection, as with dask.
    import gc

    gc.collect()
    count = lambda: client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))  # noqa: E731
    left = lambda: client.run_on_scheduler(lambda dask_scheduler: {k: (v.state, sorted(v.who_wants)) for k, v in dask_scheduler.tasks.items()})  # noqa: E731
    try:
        wait_for(lambda: count() == 0, timeout=5)
    except AssertionError:
        raise AssertionError(left()) from None
    assert not [n for n in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
                if n.startswith("shoal-progress")]


def test_progress_of_a_client_closed_while_its_bars_run_ends_and_cleans_up(client, gate):
    from .._helpers import gated

    other = Client(client.scheduler.address, set_as_default=False)
    futs = other.map(gated, [gate.path] * 3, range(3), pure=False)
    closer = threading.Timer(0.3, other.close)
    closer.start()
    started = time.monotonic()
    progress(futs, file=io.StringIO())  # ends: its futures are cancelled by the close
    assert time.monotonic() - started < 20
    closer.join()
    # The scheduler removed the display's plugin with the client that registered it.
    wait_for(lambda: not [n for n in client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.plugins)) if n.startswith("shoal-progress")],
        timeout=30)


def test_every_future_of_a_closed_client_is_cancelled(client):
    # dask cancels finished futures too; shoal kept them "finished", and result() of a
    # large one waited for a fetch that a closed client cannot make.
    import concurrent.futures

    other = Client(client.scheduler.address, set_as_default=False)
    small = other.submit(inc, 1)
    large = other.submit(np.ones, 100_000)
    wait([small, large], timeout=30)
    other.close()
    assert (small.status, large.status) == ("cancelled", "cancelled")
    for fut in (small, large):
        with pytest.raises(concurrent.futures.CancelledError, match="client was closed"):
            fut.result(timeout=10)


def test_story_with_on_error_ignore_leaves_out_whoever_cannot_answer(client, monkeypatch, caplog):
    done = client.submit(inc, 1, key="ops-story-ignore")
    done.result(timeout=30)
    workers = set(client.scheduler_info()["workers"])

    async def refused(*args, **kwargs):
        raise OSError("the scheduler is unreachable")

    monkeypatch.setattr(client, "_request_within", refused)
    with pytest.raises(OSError, match="unreachable"):
        client.story(done)
    with caplog.at_level("WARNING", logger="shoal"):
        rows = client.story(done, on_error="ignore")
    # the scheduler's rows are left out (logged); the workers' still come
    assert rows and {r[0] for r in rows} <= workers
    assert "the scheduler gave no story" in caplog.text
    with pytest.raises(ValueError, match="on_error"):
        client.story(done, on_error="skip")
