"""A remote client (``Client("tcp://...")``) whose scheduler connection drops behaves as
dask's: every future is cancelled at once ("scheduler-connection-lost"), the client is
``connecting`` and retries until its ``timeout``; when the scheduler answers again (the
link restored, or a scheduler process restarted at the same port) it is ``running`` with
a fresh session, and what was submitted or asked meanwhile runs then; when it gives up it
is ``closed`` and says why. The link is a relay the tests cut (``_proxy.Relay``).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import dask
import pytest
from integration._helpers import Gate, gated, wait_for

import shoal
from shoal import Client, LocalCluster, Lock, Queue
from shoal.client import ClosedClientError

from ._proxy import Relay

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=4,
                      dashboard_address=None, timeout=180) as c:
        yield c


@pytest.fixture
def relay(cluster: LocalCluster) -> Iterator[Relay]:
    r = Relay(cluster.scheduler_address)
    yield r
    r.close()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.open()  # no worker thread stays blocked


def _still_waiting(client: Client, thread: threading.Thread) -> str:
    """What a failed assertion needs to tell why a thread still waits: the client's state
    and where the thread is."""
    frame = sys._current_frames().get(thread.ident or -1)
    where = "".join(traceback.format_stack(frame)) if frame is not None else "(ended)"
    return (f"client {client.status}, pending requests {list(client._coord_pending)}, "
            f"outage {client._outage!r}; the thread waits at:\n{where}")


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.timeout(120)
def test_lost_connection_cancels_every_future_then_the_client_reconnects_and_runs_what_waited(
    cluster: LocalCluster, relay: Relay, gate: Gate,
) -> None:
    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        big = client.submit(bytes, 200_000, pure=False)  # finished, its value on a worker
        assert len(big.result(timeout=30)) == 200_000
        slow = client.submit(gated, gate.path, 1, pure=False)
        state = cluster.scheduler.state
        wait_for(lambda: slow.key in state.tasks, timeout=30)
        waiter, outcome = _in_thread(lambda: client.gather([slow]))

        relay.cut()
        waiter.join(timeout=30)
        assert not waiter.is_alive(), "gather still waits after the connection was lost"
        assert isinstance(outcome["error"], CancelledError), outcome
        assert "scheduler-connection-lost" in str(outcome["error"])
        assert client.status == "connecting"
        assert [slow.status, big.status] == ["cancelled", "cancelled"]
        with pytest.raises(CancelledError, match="scheduler-connection-lost"):
            big.result(timeout=5)
        # The scheduler let go of the departed session's work.
        wait_for(lambda: slow.key not in state.tasks, timeout=30)

        # During the outage: a submission waits in the outbox and a request for the new
        # session; attempts that are refused (the relay closes them) fail neither.
        late = client.submit(inc, 10, pure=False)
        asking, answer = _in_thread(lambda: client.scheduler_info()["type"])
        wait_for(lambda: relay.refused >= 2, timeout=30)
        assert late.status == "pending" and asking.is_alive() and client.status == "connecting"

        relay.restore()
        wait_for(lambda: client.status == "running", timeout=30)
        assert late.result(timeout=30) == 11
        asking.join(timeout=30)
        assert answer == {"value": "Scheduler"}
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_a_reconnect_over_a_half_open_link_drops_the_old_session_at_once(
    cluster: LocalCluster, relay: Relay, gate: Gate,
) -> None:
    """The client's side of the link drops, the scheduler's stays open (it would hear of
    the loss only from TCP keepalive, ~30 s): the client's new session names the old one,
    which the scheduler drops at once, with its keys, its running work and its lock."""
    scheduler = cluster.scheduler
    state = scheduler.state
    other = Client(cluster.scheduler_address, set_as_default=False)
    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        kept = client.submit(inc, 1, pure=False)
        assert kept.result(timeout=30) == 2
        slow = client.submit(gated, gate.path, 1, pure=False)
        lock = Lock("half-open-lock", client=client)
        assert lock.acquire(timeout=10)
        wait_for(lambda: slow.key in state.tasks, timeout=30)
        (old,) = [n for n in scheduler._clients if n.startswith(client.id)]

        relay.half_cut()
        wait_for(lambda: client.status == "running" and client._conn is not None
                 and not client._conn.closed, timeout=30)
        # Well within keepalive: the new session's Hello dropped the old one.
        wait_for(lambda: old not in state.clients, timeout=5)
        assert old not in scheduler._clients
        assert not {kept.key, slow.key} & set(state.tasks)
        assert Lock("half-open-lock", client=other).acquire(timeout=5)
        assert client.submit(inc, 10, pure=False).result(timeout=30) == 11
        assert [n for n in state.clients if n.startswith(client.id)] != [old]
    finally:
        client.close()
        other.close()


@pytest.mark.timeout(120)
def test_a_client_that_cannot_reconnect_within_its_timeout_closes_and_holds_nothing(
    cluster: LocalCluster, relay: Relay,
) -> None:
    client = Client(relay.address, timeout=1.5, set_as_default=False)
    try:
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
        relay.cut()
        wait_for(lambda: client.status == "connecting", timeout=30)
        # A graph queued while the connection is down, and a request waiting for it.
        queued = client.map(inc, range(5), pure=False)
        asking, answer = _in_thread(lambda: client.wait_for_workers(1, timeout=60))
        wait_for(lambda: client.status == "closed", timeout=30)
        asking.join(timeout=10)
        assert isinstance(answer.get("error"), ClosedClientError), answer
        assert [f.status for f in queued] == ["cancelled"] * 5
        with pytest.raises(CancelledError, match=r"could not reconnect within 1\.5 s"):
            queued[0].result(timeout=5)
        assert client._held_keys() == [] and not client._outbox  # nothing left to release
        with pytest.raises(ClosedClientError, match="could not reconnect"):
            client.submit(inc, 2)
        # A submission that passed its check a moment before the client gave up is refused
        # as it queues, its futures cancelled: no key stays held.
        client._check_open = lambda: None  # type: ignore[method-assign]
        with pytest.raises(ClosedClientError, match="could not reconnect"):
            client.map(inc, range(3), pure=False)
        del client._check_open
        assert client._held_keys() == [] and not client._outbox
        relay.restore()
        keys = {f.key for f in queued}
        assert not keys & set(cluster.scheduler.state.tasks)
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_coordination_requests_failed_by_the_loss_are_not_sent_again(
    cluster: LocalCluster, relay: Relay,
) -> None:
    other = Client(cluster.scheduler_address, set_as_default=False)
    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        held = Lock("reconnect-lock", client=other)
        assert held.acquire(timeout=10)
        # Made here: a Queue's creation is a request of its own, which the count below took
        # for the get's; a thread slow to go on to its get (a loaded machine) then asked
        # during the outage, and such a request rightly waits for the new session.
        queue = Queue("reconnect-queue", client=client)
        acquiring, acquired = _in_thread(lambda: Lock("reconnect-lock", client=client).acquire())
        getting, got = _in_thread(queue.get)
        wait_for(lambda: len(client._coord_pending) == 2, timeout=30)
        client.get_events("x")  # answered after both requests: the scheduler has them
        assert acquiring.is_alive() and getting.is_alive()

        relay.cut()
        acquiring.join(timeout=30)
        getting.join(timeout=30)
        for thread, outcome in ((acquiring, acquired), (getting, got)):
            assert isinstance(outcome.get("error"), ConnectionError), (
                outcome, _still_waiting(client, thread))
            assert "will not be sent again" in str(outcome["error"])
        relay.restore()
        wait_for(lambda: client.status == "running", timeout=30)

        # Neither request reached the new session: the lock and the item go to `other`.
        held.release()
        assert held.acquire(timeout=5)
        held.release()
        Queue("reconnect-queue", client=other).put(7)
        assert Queue("reconnect-queue", client=other).get(timeout=5) == 7
        # And the reconnected client's own requests work.
        mine = Lock("reconnect-lock", client=client)
        assert mine.acquire(timeout=5)
        mine.release()
    finally:
        client.close()
        other.close()


@pytest.mark.timeout(120)
def test_close_fails_pending_requests_at_once(cluster: LocalCluster, relay: Relay) -> None:
    client = Client(relay.address, timeout=60, set_as_default=False)
    # The scheduler would answer in 60 s.
    waiting, outcome = _in_thread(lambda: client.wait_for_workers(99, timeout=60))
    wait_for(lambda: client._requests, timeout=30)
    started = time.monotonic()
    client.close()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and time.monotonic() - started < 10
    assert isinstance(outcome.get("error"), ClosedClientError), outcome

    # The same during an outage: a request waiting for the new session fails at once.
    client = Client(relay.address, timeout=60, set_as_default=False)
    relay.cut()
    wait_for(lambda: client.status == "connecting", timeout=30)
    waiting, outcome = _in_thread(lambda: client.scheduler_info())
    wait_for(lambda: relay.refused >= 1, timeout=30)
    client.close()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert isinstance(outcome.get("error"), ClosedClientError), outcome


@pytest.mark.timeout(120)
def test_an_asynchronous_client_reconnects_too(cluster: LocalCluster, relay: Relay,
                                               gate: Gate) -> None:
    async def main() -> None:
        async with Client(relay.address, timeout=60, asynchronous=True,
                          set_as_default=False) as client:
            slow = client.submit(gated, gate.path, 1, pure=False)
            relay.cut()
            with pytest.raises(CancelledError, match="scheduler-connection-lost"):
                await asyncio.wait_for(slow, 30)
            assert client.status == "connecting"
            late = client.submit(inc, 1, pure=False)
            relay.restore()
            assert await asyncio.wait_for(late, 30) == 2
            assert client.status == "running"

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scheduler(port: int, log: Path) -> subprocess.Popen[bytes]:
    marks = log.read_text().count("Scheduler at:") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "scheduler", "--host", "127.0.0.1", "--port",
             str(port), "--no-dashboard"], stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: log.read_text().count("Scheduler at:") > marks or proc.poll() is not None,
             timeout=120)
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.timeout(180)
def test_a_scheduler_restarted_at_the_same_port_takes_the_client_back(tmp_path: Path) -> None:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = tmp_path / "scheduler.log"
    sched = _scheduler(port, log)
    worker: Any = None
    client: Client | None = None
    try:
        worker = asyncio.run(_start_worker(address))
        client = Client(address, timeout=60, set_as_default=False)
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
        pending = client.submit(time.sleep, 30, pure=False)
        wait_for(lambda: client.processing() != {} and any(client.processing().values()),
                 timeout=30)
        sched.kill()
        sched.wait(timeout=30)
        with pytest.raises(CancelledError, match="scheduler-connection-lost"):
            pending.result(timeout=30)
        assert client.status == "connecting"
        waiting = client.submit(inc, 41, pure=False)  # runs once the scheduler is back

        sched = _scheduler(port, log)
        wait_for(lambda: client.status == "running", timeout=60)
        assert waiting.result(timeout=60) == 42  # the worker re-registered too
        assert client.gather(client.map(inc, range(3), pure=False)) == [1, 2, 3]
    finally:
        if client is not None:
            client.close()
        if worker is not None:
            asyncio.run(_close(worker))
        sched.kill()
        sched.wait(timeout=30)


async def _start_worker(address: str) -> Any:
    return await shoal.Worker(address, nthreads=1, death_timeout=60)


async def _close(worker: Any) -> None:
    await worker.close()


def _lose_and_regain(client: Client, relay: Relay) -> None:
    """The connection drops and the client reconnects, all while the caller (a submission
    half made) waits: its message is queued only after the new session is open."""
    relay.cut()
    wait_for(lambda: client.status == "connecting", timeout=30)
    relay.restore()
    wait_for(lambda: client.status == "running", timeout=30)


def _held_by(cluster: LocalCluster, client: Client) -> list[Any]:
    """The scheduler's keys wanted by any session of ``client`` (but a probe's), once what
    the client queued before has been taken in (the probe, submitted after it, has run)."""
    probe = client.submit(inc, 0, pure=False)
    assert probe.result(timeout=30) == 1
    state = cluster.scheduler.state
    return [k for k, ts in state.tasks.items()
            if k != probe.key and any(c.startswith(client.id) for c in ts.who_wants)]


@pytest.mark.timeout(120)
def test_a_submission_racing_the_loss_is_cancelled_and_leaves_nothing_held(
    cluster: LocalCluster, relay: Relay,
) -> None:
    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        queue_rows = client._submit_rows

        def racing(*args: Any, **kwargs: Any) -> Any:  # the future made, then the loss
            _lose_and_regain(client, relay)
            return queue_rows(*args, **kwargs)

        client._submit_rows = racing  # type: ignore[method-assign]
        raced = client.submit(inc, 1, pure=False)
        mapped = client.map(inc, range(3), pure=False)
        graph = client.compute(dask.delayed(inc)(dask.delayed(inc)(1)))
        del client._submit_rows
        # A graph whose futures are made after the session it began in was lost.
        pin = client._pin

        def pin_then_lose(keys: Any) -> Any:
            pinned = pin(keys)
            _lose_and_regain(client, relay)
            return pinned

        client._pin = pin_then_lose  # type: ignore[method-assign]
        late = client.compute(dask.delayed(inc)(dask.delayed(inc)(2)))
        del client._pin
        for fut in (raced, *mapped, graph, late):
            with pytest.raises(CancelledError, match="scheduler-connection-lost"):
                fut.result(timeout=10)
        assert _held_by(cluster, client) == []
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_a_scatter_racing_the_loss_is_made_in_the_new_session(
    cluster: LocalCluster, relay: Relay,
) -> None:
    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        sync = client.sync

        def racing(func: Any, *args: Any, **kwargs: Any) -> Any:  # pickled, then the loss
            if getattr(func, "__name__", "") == "_scatter":
                _lose_and_regain(client, relay)
            return sync(func, *args, **kwargs)

        client.sync = racing  # type: ignore[method-assign]
        [x] = client.scatter([b"scattered"], hash=False)
        del client.sync
        assert x.status == "finished" and x.result(timeout=10) == b"scattered"
        assert _held_by(cluster, client) == [x.key]
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_a_graph_sent_in_pieces_across_the_loss_is_cancelled_as_dask_does(
    cluster: LocalCluster, relay: Relay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shoal.client import _submit

    client = Client(relay.address, timeout=60, set_as_default=False)
    try:
        queue_piece = _submit.GraphPieces._queue
        calls = itertools.count()

        def racing(self: Any, more: bool, rest: Any = None, **kwargs: Any) -> None:
            if next(calls) == 1:  # the first piece is out: the loss comes before the next
                _lose_and_regain(client, relay)
            queue_piece(self, more, rest, **kwargs)

        monkeypatch.setattr(_submit.GraphPieces, "_queue", racing)
        # Keys named by their content: running it again after the loss asks for the same.
        parts = [dask.delayed(inc, pure=True)(i) for i in range(_submit.PIECE_ROWS + 10)]
        total = client.compute(dask.delayed(sum, pure=True)(parts))
        with pytest.raises(CancelledError, match="scheduler-connection-lost"):
            total.result(timeout=30)
        monkeypatch.undo()
        assert _held_by(cluster, client) == []
        again = client.compute(dask.delayed(sum, pure=True)(parts))
        assert again.key == total.key
        assert again.result(timeout=30) == sum(range(1, _submit.PIECE_ROWS + 11))
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_close_during_an_outage_ends_the_reconnect_task_before_returning(
    cluster: LocalCluster, relay: Relay, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from shoal import _loop
    from shoal.client import _reconnect

    attempting = threading.Event()

    async def slow_to_end(client: Any, conn: Any, within: float) -> Any:
        # An attempt that takes a few loop turns to end once cancelled (as one closing
        # its connection does).
        attempting.set()
        try:
            await asyncio.sleep(60)
        finally:
            conn.close()
            await asyncio.sleep(0.2)

    client = Client(relay.address, timeout=60, set_as_default=False)
    monkeypatch.setattr(_reconnect, "open_session", slow_to_end)
    relay.cut()
    relay.restore()  # the attempt connects, and waits for a welcome
    assert attempting.wait(30)
    assert client._outage is not None and client._outage.task is not None
    task = client._outage.task
    with caplog.at_level("ERROR", logger="asyncio"):
        client.close()
        assert task.done(), "close() returned while its reconnect task still ran"

        async def reconnecting() -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if client.id in t.get_name()]

        assert _loop.run_sync(reconnecting(), 10) == []
        del task
        gc.collect()
    assert "Task was destroyed" not in caplog.text
    assert client.status == "closed"
