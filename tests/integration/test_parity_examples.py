"""The usage examples in dask.distributed's own docstrings, run against shoal.

Each test is one documented call (``future.result(timeout="1s")``, ``await Semaphore(...)``,
``client.set_metadata(["x", "y"], 123)``...) that behaved differently in shoal: it raised a
``TypeError`` or gave another result than the installed distributed gives for the same call.
They share the session's cluster.
"""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest

import shoal
from shoal import Client, as_completed, wait

from ._helpers import gated

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


# --- timeouts as strings ("1s"), as dask's parse_timedelta takes them -------------------------


def test_timeouts_given_as_strings_wait_and_raise_timeout_error(client: Client, gate) -> None:
    fut = client.submit(gated, gate.path, 1, pure=False)
    for call in (lambda: fut.result(timeout="50ms"),
                 lambda: fut.exception(timeout="50ms"),
                 lambda: fut.traceback(timeout="50ms"),
                 lambda: wait([fut], timeout="50ms"),
                 lambda: list(as_completed([fut], timeout="50ms"))):
        with pytest.raises(TimeoutError):
            call()
    gate.open()
    assert fut.result(timeout="30s") == 1
    assert fut.executor is client  # dask's other name for it
    assert client.scatter(5, timeout="30s").result() == 5


# --- the primitives' asynchronous constructors and ``client`` ----------------------------------


def test_await_primitive_gives_it_back_and_client_property(client: Client) -> None:
    async def main() -> None:
        async with Client(client.scheduler_address, asynchronous=True,
                          set_as_default=False) as c:
            sem = await shoal.Semaphore(2, "parity-ex-sem", client=c)
            lock = await shoal.Lock("parity-ex-lock", client=c)
            assert isinstance(sem, shoal.Semaphore) and isinstance(lock, shoal.Lock)
            assert await sem.acquire() and await sem.release()
            queue = await shoal.Queue("parity-ex-q", client=c)
            event = await shoal.Event("parity-ex-e", client=c)
            assert (queue.client, event.client) == (c, c)
            assert shoal.Variable("parity-ex-v", client=c).client is c

    asyncio.run(main())
    assert shoal.Variable("parity-ex-v2").client is client  # the default client, as dask's


# --- Scheduler.add_plugin: SchedulerPlugin's docstring example and preloads -------------------


class Counter(shoal.SchedulerPlugin):
    """SchedulerPlugin's docstring example (plus a record of ``start``)."""

    def __init__(self) -> None:
        self.counter = 0
        self.started = 0

    async def start(self, scheduler: Any) -> None:
        self.started += 1

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.counter += 1


def _add_counter(dask_scheduler: Any) -> None:
    dask_scheduler.add_plugin(Counter(), name="parity-counter")
    dask_scheduler.add_plugin(Counter(), name="parity-counter", idempotent=True)  # kept


def _counted(dask_scheduler: Any) -> tuple[int, int]:
    plugin = dask_scheduler.plugins["parity-counter"]
    return plugin.counter, plugin.started


def _remove_counter(dask_scheduler: Any) -> bool:
    dask_scheduler.remove_plugin(name="parity-counter")
    return "parity-counter" in dask_scheduler.plugins


def test_scheduler_add_plugin_and_remove_plugin_as_dask_documents(client: Client) -> None:
    client.run_on_scheduler(_add_counter)
    client.gather(client.map(inc, range(3), pure=False))
    # A running scheduler does not start what is added to it (dask calls start only for
    # plugins added before it started, a preload's).
    assert client.run_on_scheduler(_counted) == (3, 0)
    assert client.run_on_scheduler(_remove_counter) is False
    with pytest.raises(ValueError, match="parity-counter"):
        client.run_on_scheduler(_remove_counter)


def test_a_preload_adds_a_scheduler_plugin_that_starts_with_the_scheduler(tmp_path) -> None:
    preload = tmp_path / "parity_add_plugin.py"
    preload.write_text(textwrap.dedent("""
        class Started:
            name = "parity-started"
            started = 0

            async def start(self, scheduler):
                self.started += 1

        def dask_setup(scheduler):
            scheduler.add_plugin(Started())
    """))

    async def main() -> int:
        s = shoal.Scheduler(preload=[str(preload)], dashboard_address=None)
        assert await s.start() is s  # dask's Server.start, what awaiting it does
        try:
            return s.plugins["parity-started"].started  # type: ignore[no-any-return]
        finally:
            await s.close()

    assert asyncio.run(main()) == 1


# --- workers named, not addressed -------------------------------------------------------------


def test_processing_and_has_what_take_worker_names(client: Client) -> None:
    names = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
    name, address = sorted(names.items())[0]
    fut = client.submit(inc, 1, workers=[address], pure=False)
    fut.result()
    assert list(client.processing(workers=[name])) == [address]
    assert fut.key in client.has_what(workers=[name])[address]


def test_cancel_reason_and_msg_reach_the_error_as_in_dask(client: Client, gate) -> None:
    fut = client.submit(gated, gate.path, 1, pure=False)
    fut.cancel(reason="parity-stop", msg="not needed any more")
    with pytest.raises(shoal.CancelledError) as info:
        fut.result(timeout=30)
    assert "cancelled for reason: parity-stop." in str(info.value)
    assert "not needed any more" in str(info.value)
    assert (info.value.key, info.value.reason, info.value.msg) == (  # type: ignore[attr-defined]
        fut.key, "parity-stop", "not needed any more")


# --- WorkerPlugin's docstring example: worker.tasks[key] in a transition hook -----------------


def boom(x: int) -> int:
    raise ValueError(f"parity boom {x}")


class ErrorRecorder(shoal.WorkerPlugin):
    """WorkerPlugin's docstring example (``ErrorLogger``), recording instead of logging."""

    name = "parity-error-recorder"

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.seen: list[Any] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "error":
            ts = self.worker.tasks[key]
            exc_info = (type(ts.exception), ts.exception, ts.traceback)
            self.seen.append((ts.key, ts.state, repr(exc_info[1]), exc_info[2] is not None,
                              "parity boom" in ts.traceback_text + ts.exception_text))


def _seen(dask_worker: Any) -> list[Any]:
    return dask_worker.plugins["parity-error-recorder"].seen  # type: ignore[no-any-return]


def test_worker_plugin_reads_the_failed_task_from_worker_tasks(client: Client) -> None:
    client.register_plugin(ErrorRecorder())
    try:
        fut = client.submit(boom, 1, pure=False)
        with pytest.raises(ValueError):
            fut.result(timeout=30)
        seen = [row for rows in client.run(_seen).values() for row in rows]
        assert seen == [(fut.key, "error", "ValueError('parity boom 1')", True, True)]
    finally:
        client.unregister_worker_plugin("parity-error-recorder")


def test_run_on_nannies_of_a_cluster_without_any_gives_an_empty_dict() -> None:
    # dask: a processes=False LocalCluster has no nannies, so run(nanny=True) reaches none.
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as c:
        assert c.run(inc, 1, nanny=True) == {}
        assert c.get_worker_logs(nanny=True) == {}


def test_retire_workers_takes_dasks_scheduler_keywords(client: Client) -> None:
    assert client.retire_workers(workers=[], remove=True, stimulus_id="parity") == {}
    with pytest.raises(TypeError, match="remove=False"):
        client.retire_workers(workers=[], remove=False)


def test_wait_for_workers_raises_dasks_worker_start_timeout_error(client: Client) -> None:
    from shoal.client import WorkerStartTimeoutError

    with pytest.raises(WorkerStartTimeoutError) as info:
        client.wait_for_workers(99, timeout="50ms")
    assert isinstance(info.value, TimeoutError)
    assert (info.value.available_workers, info.value.expected_workers) == (2, 99)
    assert str(info.value) == "Only 2/99 workers arrived after 0.05"
