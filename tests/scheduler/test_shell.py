"""The scheduler's I/O shell carrying out commands: message order per worker, bad input from
one client, and failures inside a batch. No sockets and no event loop: connections record
what they are asked to send."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from shoal.comm._connection import Connection
from shoal.protocol._columns import tasks_done
from shoal.protocol._messages import (
    Compute,
    Computes,
    FreeKeys,
    KeyDone,
    KeyErred,
    KeysDone,
    Message,
    Register,
    ReleaseKeys,
    TaskDone,
    TasksDone,
    UpdateGraph,
)
from shoal.protocol._serialize import function_id
from shoal.scheduler._events import (
    ClientJoined,
    KeysReleased,
    ReportDone,
    ReportErred,
    SendCompute,
    SendFree,
)
from shoal.scheduler._server import Scheduler

from ._sim import PAYLOAD, row


class Recorder(Connection):
    """A connection that keeps what is sent to it."""

    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer
        self.sent: list[Message] = []

    def send(self, msg: Message) -> None:
        if not self.closed:
            self.sent.append(msg)

    def send_many(self, msgs: list[Message]) -> None:
        for m in msgs:
            self.send(m)

    def _close(self) -> None:
        pass


def _scheduler(*clients: str) -> tuple[Scheduler, Recorder, dict[str, Recorder]]:
    sched = Scheduler()
    worker = Recorder("w1")
    sched._on_worker_message(worker, [Register("w1", "w1", 2, 2**30, 1, "host")])
    conns = {}
    for name in clients:
        conn = conns[name] = Recorder(name)
        conn.info["name"] = name
        sched._clients[name] = conn
        sched._apply([ClientJoined(name)])
    return sched, worker, conns


def _kinds(msgs: list[Message]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for m in msgs:
        if isinstance(m, Compute):
            out.append(("compute", m.key))
        elif isinstance(m, Computes):
            out.append(("computes", list(m.keys)))
        elif isinstance(m, FreeKeys):
            out.append(("free", list(m.keys)))
    return out


def test_release_then_resubmit_in_one_batch_frees_before_computing() -> None:
    sched, worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    assert _kinds(worker.sent) == [("compute", "a")]
    worker.sent.clear()
    sched._on_client_message(
        conns["c"], [ReleaseKeys(["a"]), UpdateGraph([row("a")], ["a"], {})]
    )
    assert _kinds(worker.sent) == [("free", ["a"]), ("compute", "a")]
    sched.state.validate()


def test_frees_of_one_batch_still_travel_together() -> None:
    sched, worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a"), row("b")], ["a", "b"], {})])
    worker.sent.clear()
    sched._on_client_message(conns["c"], [ReleaseKeys(["a"]), ReleaseKeys(["b"])])
    assert _kinds(worker.sent) == [("free", ["a", "b"])]


def test_computes_of_one_step_leave_as_one_message_with_their_function_once() -> None:
    sched, worker, conns = _scheduler("c")
    fid = function_id(b"F")
    sched._on_client_message(conns["c"], [UpdateGraph(
        [row("a", fids=[fid]), row("b", fids=[fid])], ["a", "b"], {fid: b"F"})])
    (msg,) = [m for m in worker.sent if isinstance(m, (Compute, Computes))]
    assert isinstance(msg, Computes) and sorted(msg.keys) == ["a", "b"]
    assert msg.functions == {fid: b"F"}
    assert list(msg.runs) == [sched.state.tasks[k].run for k in msg.keys]
    sched.state.validate()


def test_a_workers_computes_and_frees_keep_their_order_each_run_in_one_message() -> None:
    sched, worker, _conns = _scheduler()

    def compute(key: str) -> SendCompute:
        return SendCompute("w1", key, PAYLOAD, [], (), (0,), True, "p", 1)

    sched._carry_out_all([compute("a"), compute("b"), SendFree("w1", ["a"]),
                          SendFree("w1", ["x"]), compute("c"), SendFree("nobody", ["y"])])
    assert _kinds(worker.sent) == [("computes", ["a", "b"]), ("free", ["a", "x"]),
                                   ("compute", "c")]


def test_a_clients_results_of_one_step_leave_as_one_message_before_its_other_news() -> None:
    sched, _worker, conns = _scheduler("c", "d")

    def done(client: str, key: str) -> ReportDone:
        return ReportDone(client, key, 8, "int", None)

    sched._carry_out_all([done("c", "a"), done("d", "a"), done("c", "b"),
                          ReportErred("c", "e", {"message": "boom"}), done("c", "f")])
    first, erred, last = conns["c"].sent
    assert isinstance(first, KeysDone) and list(first.keys) == ["a", "b"]
    assert isinstance(erred, KeyErred) and erred.key == "e"
    assert last == KeyDone("f", 8, "int", None)
    assert conns["d"].sent == [KeyDone("a", 8, "int", None)]


def test_task_whose_function_never_arrived_errs_for_its_client_only() -> None:
    sched, worker, conns = _scheduler("c", "d")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a", fids=["nope"])], ["a"], {})])
    fid = function_id(b"F")  # blobs are checked against their content id
    sched._on_client_message(conns["d"], [UpdateGraph([row("b", fids=[fid])], ["b"], {fid: b"F"})])
    (err,) = [m for m in conns["c"].sent if isinstance(m, KeyErred)]
    assert err.key == "a" and "nope" in err.error["message"]
    assert not conns["c"].closed
    assert _kinds(worker.sent) == [("compute", "b")]
    assert "a" not in sched.state.tasks
    sched.state.validate()


def test_every_row_sharing_a_function_that_never_arrived_errs() -> None:
    """The rows of one call share one fids tuple, looked at once: each of them errs."""
    sched, worker, conns = _scheduler("c")
    fids = ("nope",)
    rows = [row(k) for k in ("a", "b", "c")]
    rows = [(*r[:3], fids, *r[4:]) for r in rows[:2]] + rows[2:]
    sched._on_client_message(conns["c"], [UpdateGraph(rows, ["a", "b", "c"], {})])
    assert sorted(m.key for m in conns["c"].sent if isinstance(m, KeyErred)) == ["a", "b"]
    assert _kinds(worker.sent) == [("compute", "c")]
    sched.state.validate()


def test_failing_event_keeps_the_commands_already_decided(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sched, worker, conns = _scheduler("c")

    def broken(ev: Any) -> None:
        raise RuntimeError("boom in a handler")

    monkeypatch.setitem(sched.state._handlers, KeysReleased, broken)
    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        sched._on_client_message(
            conns["c"], [UpdateGraph([row("a")], ["a"], {}), ReleaseKeys(["zzz"])]
        )
    assert _kinds(worker.sent) == [("compute", "a")]
    assert "boom in a handler" in caplog.text
    assert not conns["c"].closed
    # nothing of the failed batch lingers for the next one
    sched._on_worker_message(worker, [TaskDone("a", 8, "int", 0.0, 1.0, 0, None, sched.state.tasks["a"].run)])
    assert [type(m) for m in conns["c"].sent] == [KeyDone]
    sched.state.validate()


def test_failure_sending_one_command_does_not_drop_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sched, worker, conns = _scheduler("c", "d")
    real = conns["c"].send

    def broken(msg: Message) -> None:
        raise OSError("socket exploded")

    monkeypatch.setattr(conns["c"], "send", broken)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    sched._on_client_message(conns["d"], [UpdateGraph([row("a")], ["a"], {})])
    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        sched._on_worker_message(worker, [TaskDone("a", 8, "int", 0.0, 1.0, 0, None, sched.state.tasks["a"].run)])
    assert "socket exploded" in caplog.text
    assert [type(m) for m in conns["d"].sent] == [KeyDone]
    monkeypatch.setattr(conns["c"], "send", real)


def test_a_failing_tick_does_not_end_the_tick_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One exception used to end the tick loop silently, and worker-TTL checks with it."""
    import asyncio

    from shoal.scheduler import _server
    from shoal.scheduler._events import Tick

    sched, _worker, _conns = _scheduler()
    monkeypatch.setattr(_server, "TICK_INTERVAL", 0.001)
    ticks: list[float] = []
    apply = sched._apply

    def flaky(events: list[Any]) -> None:
        if events and isinstance(events[0], Tick):
            ticks.append(events[0].now)
            if len(ticks) <= 2:
                raise RuntimeError("boom in a tick")
        apply(events)

    monkeypatch.setattr(sched, "_apply", flaky)

    async def main() -> None:
        loop_task = asyncio.ensure_future(sched._tick_loop())
        deadline = asyncio.get_running_loop().time() + 10
        while len(ticks) < 4 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)

    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        asyncio.run(main())
    assert len(ticks) >= 4, ticks  # it ticked on after two failures
    assert "tick failed" in caplog.text


def test_a_large_worker_batch_is_handled_in_bounded_steps_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of TaskDone in one batch (a fast map) are not handled in one loop step;
    the worker's next batch waits behind the rest of the first, and the outcome is the
    same as handling it whole."""
    from shoal.scheduler import _server_messages

    monkeypatch.setattr(_server_messages, "WORKER_STEP", 10)
    sched, worker, conns = _scheduler("c")
    keys = [f"k{i}" for i in range(25)]
    sched._on_client_message(conns["c"], [UpdateGraph([row(k) for k in keys], keys, {})])
    steps: list[list[Any]] = []
    handle = sched._on_worker_message

    def counted(conn: Connection, batch: list[Message] | None) -> None:
        steps.append([getattr(m, "key", None) for m in batch or ()])
        handle(conn, batch)

    monkeypatch.setattr(sched, "_on_worker_message", counted)

    def done(on: Any, k: str) -> TaskDone:  # the report of k's current run
        return TaskDone(k, 8, "int", 0.0, 0.1, 1, None, on.state.tasks[k].run)

    async def main() -> None:
        sched._on_worker_batch(worker, [done(sched, k) for k in keys[:22]])
        sched._on_worker_batch(worker, [done(sched, k) for k in keys[22:]])
        assert [len(s) for s in steps] == [10]  # one bounded step now, the rest later
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert [len(s) for s in steps] == [10, 10, 2, 3]
    assert [k for s in steps for k in s] == keys
    assert "backlog" not in worker.info
    whole, whole_worker, whole_conns = _scheduler("c")  # the same reports in one step
    whole._on_client_message(whole_conns["c"], [UpdateGraph([row(k) for k in keys], keys, {})])
    whole._on_worker_message(whole_worker, [done(whole, k) for k in keys])
    assert ({k: ts.state for k, ts in sched.state.tasks.items()}
            == {k: ts.state for k, ts in whole.state.tasks.items()})
    assert ({m.key for m in conns["c"].sent if isinstance(m, KeyDone)}
            == {m.key for m in whole_conns["c"].sent if isinstance(m, KeyDone)})
    sched.state.validate()


def test_a_columnar_batch_of_results_is_cut_between_its_rows_into_bounded_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TasksDone counts one report per row against the step bound: one of 22 rows is
    handled as 10, 10, then 2 with the next batch's message behind them, in order."""
    from shoal.scheduler import _server_messages

    monkeypatch.setattr(_server_messages, "WORKER_STEP", 10)
    sched, worker, conns = _scheduler("c")
    keys = [f"k{i}" for i in range(25)]
    sched._on_client_message(conns["c"], [UpdateGraph([row(k) for k in keys], keys, {})])
    steps: list[list[Any]] = []
    handle = sched._on_worker_message

    def counted(conn: Connection, batch: list[Message] | None) -> None:
        steps.append([k for m in batch or () for k in
                      (m.keys if isinstance(m, TasksDone) else [getattr(m, "key", None)])])
        handle(conn, batch)

    monkeypatch.setattr(sched, "_on_worker_message", counted)

    def done(on: Any, k: str) -> TaskDone:
        return TaskDone(k, 8, "int", 0.0, 0.1, 1, None, on.state.tasks[k].run)

    async def main() -> None:
        sched._on_worker_batch(worker, [tasks_done([done(sched, k) for k in keys[:22]])])
        sched._on_worker_batch(worker, [done(sched, keys[22]),
                                        tasks_done([done(sched, k) for k in keys[23:]])])
        assert [len(s) for s in steps] == [10]
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert [len(s) for s in steps] == [10, 10, 2, 3]
    assert [k for s in steps for k in s] == keys
    assert "backlog" not in worker.info
    whole, whole_worker, whole_conns = _scheduler("c")  # the same reports in one step
    whole._on_client_message(whole_conns["c"], [UpdateGraph([row(k) for k in keys], keys, {})])
    whole._on_worker_message(whole_worker, [done(whole, k) for k in keys])
    assert ({k: ts.state for k, ts in sched.state.tasks.items()}
            == {k: ts.state for k, ts in whole.state.tasks.items()})
    assert ([m.key for m in conns["c"].sent if isinstance(m, KeyDone)]
            == [m.key for m in whole_conns["c"].sent if isinstance(m, KeyDone)])
    sched.state.validate()


class Writer(Connection):
    """A connection with the real batching, keeping the batches it writes."""

    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer
        self.batches: list[list[Message]] = []

    def _write_batch(self, batch: list[Message]) -> None:
        self.batches.append(batch)

    def _close(self) -> None:
        pass


def _joined_writers() -> tuple[Scheduler, Writer, Writer]:
    """A scheduler (on the running loop) with worker "w1" registered and client "c" joined,
    both connections recording what is written to them."""
    sched = Scheduler()
    worker = Writer("w1")
    sched._on_worker_message(worker, [Register("w1", "w1", 2, 2**30, 1, "host")])
    client = Writer("c")
    client.info["name"] = "c"
    sched._clients["c"] = client
    sched._apply([ClientJoined("c")])
    return sched, worker, client


def test_compute_and_result_are_written_when_their_batch_is_carried_out() -> None:
    async def scenario() -> None:
        sched, worker, client = _joined_writers()
        await asyncio.sleep(0)  # what registering sent goes out with the loop's flush
        worker.batches.clear()
        client.batches.clear()
        # No loop turn in between: both are written before the handler returns.
        sched._on_client_message(client, [UpdateGraph([row("a")], ["a"], {})])
        assert [_kinds(b) for b in worker.batches] == [[("compute", "a")]]
        run = sched.state.tasks["a"].run
        sched._on_worker_message(worker, [TaskDone("a", 8, "int", 0.0, 1.0, 0, None, run)])
        assert [[type(m) for m in b] for b in client.batches] == [[KeyDone]]
        await asyncio.sleep(0)  # and nothing is written a second time by a loop flush
        assert len(worker.batches) == 1 and len(client.batches) == 1
        sched.state.validate()

    asyncio.run(scenario())


def test_a_release_riding_a_submission_is_written_with_its_compute() -> None:
    # The client's release timer sends the previous key's release with the next submission:
    # the free and the compute leave in one write before the handler returns, not the
    # compute a loop turn after the free.
    async def scenario() -> None:
        sched, worker, client = _joined_writers()
        sched._on_client_message(client, [UpdateGraph([row("a")], ["a"], {})])
        run = sched.state.tasks["a"].run
        sched._on_worker_message(worker, [TaskDone("a", 8, "int", 0.0, 1.0, 0, None, run)])
        await asyncio.sleep(0)
        worker.batches.clear()
        sched._on_client_message(client, [ReleaseKeys(["a"]), UpdateGraph([row("b")], ["b"], {})])
        assert [_kinds(b) for b in worker.batches] == [[("free", ["a"]), ("compute", "b")]]
        await asyncio.sleep(0)
        assert len(worker.batches) == 1
        sched.state.validate()

    asyncio.run(scenario())


class _Transitions:
    """A scheduler plugin with a transition hook, recording every call."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, str, str]] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        self.seen.append((key, start, finish))


def test_transition_log_length_is_dasks_low_level_log_length() -> None:
    import dask

    with dask.config.set({"distributed.admin.low-level-log-length": 7}):
        assert Scheduler().state._log.maxlen == 7
    with dask.config.set({"distributed.admin.low-level-log-length": None}):
        assert Scheduler().state._log.maxlen is None  # dask: None keeps every row
    assert Scheduler().state._log.maxlen == 1000  # dask's default
    # An older name of it (distributed renames it on import)
    with dask.config.set({"distributed.scheduler.transition-log-length": 9}):
        assert Scheduler().state._log.maxlen == 9


def test_a_transition_plugin_sees_every_move_of_a_batch_longer_than_the_log() -> None:
    import dask

    with dask.config.set({"distributed.admin.low-level-log-length": 5}):
        sched, _worker, conns = _scheduler("c")
    plugin = _Transitions()
    sched.plugin_host.plugins["watch"] = plugin
    sched.plugin_host.watching = True
    keys = [f"k{i}" for i in range(20)]
    sched._on_client_message(conns["c"], [UpdateGraph([row(k) for k in keys], keys, {})])
    moved = {k for k, start, finish in plugin.seen if (start, finish) == ("released", "waiting")}
    assert moved == set(keys)
    # in the order the state made them, and the log keeps the newest 5 of them
    assert [r[:3] for r in sched.state._log] == plugin.seen[-5:]


def test_a_departed_workers_and_clients_events_go_on_a_tick_after_events_cleanup_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dask's distributed.scheduler.events-cleanup-delay: the topic of a worker or client
    that left is truncated once the delay has passed; "all" and those still here stay."""
    import dask

    from shoal.scheduler import _server

    with dask.config.set({"distributed.scheduler.events-cleanup-delay": "0s"}):
        sched, _worker, conns = _scheduler("c", "d")
    assert {"w1", "c", "d", "all"} <= set(sched.topics.logs)
    sched._worker_gone("w1", "test")
    sched._on_client_message(conns["d"], None)
    assert set(sched.topics.departed) == {"w1", "d"}
    monkeypatch.setattr(_server, "TICK_INTERVAL", 0.001)

    async def main() -> None:
        loop_task = asyncio.ensure_future(sched._tick_loop())
        deadline = asyncio.get_running_loop().time() + 10
        # ends: the first ticks clean up, or the deadline
        while sched.topics.departed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(main())
    assert not sched.topics.departed
    assert "w1" not in sched.topics.logs and "d" not in sched.topics.logs
    assert {"c", "all"} <= set(sched.topics.logs)
    sched.topics.validate()


def test_a_workers_spilled_bytes_on_disk_are_its_files_not_its_values() -> None:
    """dask's metrics["spilled_bytes"]: "memory" is the spilled values' size, "disk" the
    bytes their (compressed) files take, both as the worker's heartbeat says."""
    from shoal.protocol._messages import Heartbeat
    from shoal.scheduler._views import worker_info

    sched, worker, _conns = _scheduler()
    sched._on_worker_message(worker, [Heartbeat(10**9, 10**8, 5.0, 1, 8 * 10**6, 2 * 10**6)])
    [info] = worker_info(sched)
    assert info["metrics"]["spilled_bytes"] == {"memory": 8 * 10**6, "disk": 2 * 10**6}
    assert info["memory_spilled"] == 8 * 10**6


def test_a_workers_last_words_for_memory_reach_its_state() -> None:
    from shoal.protocol._messages import MemoryTerminated

    sched, worker, _conns = _scheduler()
    sched._on_worker_message(worker, [MemoryTerminated(600, 630, 0.95)])
    assert sched.state.workers["w1"].memory_killed == (600, 630, 0.95)


def test_a_request_listed_in_blocked_handlers_is_refused_by_dasks_or_shoals_name() -> None:
    """dask's distributed.scheduler.blocked-handlers: the scheduler refuses those handlers
    (dask's names, e.g. "broadcast" for client.run, or shoal's request ops), saying which
    handler and which config key; the others are answered."""
    import dask

    from shoal.protocol._messages import Request, Response

    with dask.config.set({"distributed.scheduler.blocked-handlers": ["broadcast", "who_has"]}):
        sched, _worker, conns = _scheduler("c")
    assert sched.blocked_handlers == ["broadcast", "who_has"]  # dask's attribute
    conn = conns["c"]

    async def ask(op: str, args: dict[str, Any]) -> Response:
        conn.sent.clear()
        await sched._answer(conn, Request(1, op, args))
        (reply,) = conn.sent
        assert isinstance(reply, Response)
        return reply

    for op, args, named in [("run", {"function": None, "workers": None}, "broadcast"),
                            ("who_has", {"keys": None}, "who_has")]:
        reply = asyncio.run(ask(op, args))
        assert not reply.ok
        kind, text = reply.value
        assert kind == "ValueError"
        assert text.startswith(f"The '{named}' handler has been explicitly disallowed in "
                               "Scheduler, possibly due to security concerns")
        assert "distributed.scheduler.blocked-handlers" in text
    assert asyncio.run(ask("has_what", {})).ok


def test_blocked_handlers_must_be_a_list_of_names() -> None:
    import dask

    with (dask.config.set({"distributed.scheduler.blocked-handlers": "broadcast"}),
          pytest.raises(ValueError, match="blocked-handlers")):
        Scheduler()


# --- the loop turn's budget for workers' reports (_turns) ------------------------------------


def _two_workers(monkeypatch: pytest.MonkeyPatch, step_seconds: float) -> tuple[
        Scheduler, Recorder, Recorder, list[str], list[tuple[str, int]]]:
    """A scheduler with workers w1 and w2 running 60 tasks (k0..k59, w1 runs the even
    ones), ``WORKER_STEP`` 10, and a clock that each step of reports moves on by
    ``step_seconds``; the steps handled are recorded as (worker, reports)."""
    from shoal.scheduler import _server_messages, _turns

    monkeypatch.setattr(_server_messages, "WORKER_STEP", 10)
    sched = Scheduler()
    w1, w2, client = Recorder("w1"), Recorder("w2"), Recorder("c")
    for i, w in enumerate((w1, w2)):  # threads enough to run every task at once
        sched._on_worker_message(w, [Register(w.peer, w.peer, 100, 2**30, i, "host")])
    client.info["name"] = "c"
    sched._clients["c"] = client
    sched._apply([ClientJoined("c")])
    now = [0.0]
    sched._turn = _turns.Turn(clock=lambda: now[0])  # (each step is over SMALL_STEP)
    keys = [f"k{i}" for i in range(60)]
    sched._on_client_message(client, [UpdateGraph([row(k) for k in keys], keys, {})])
    steps: list[tuple[str, int]] = []
    handle = sched._on_worker_message

    def counted(conn: Connection, batch: list[Message] | None) -> None:
        steps.append((conn.peer, len(batch or ())))
        now[0] += step_seconds
        handle(conn, batch)

    monkeypatch.setattr(sched, "_on_worker_message", counted)
    return sched, w1, w2, keys, steps


def _on(sched: Scheduler, k: str) -> str:
    ws = sched.state.tasks[k].processing_on
    return ws if ws is None or isinstance(ws, str) else ws.address


def _done(sched: Scheduler, k: str) -> TaskDone:
    return TaskDone(k, 8, "int", 0.0, 0.1, 1, None, sched.state.tasks[k].run)


def test_reports_arriving_after_the_turns_budget_wait_for_the_next_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers' reads in one loop turn: the first one's step spends the turn's budget,
    so the second worker's reports wait for the next turn instead of lengthening this one."""
    from shoal.scheduler._turns import TURN_BUDGET

    sched, w1, w2, keys, steps = _two_workers(monkeypatch, TURN_BUDGET * 1.5)
    where = {k: _on(sched, k) for k in keys}
    on1 = [k for k in keys if where[k] == "w1"][:5]
    on2 = [k for k in keys if where[k] == "w2"][:5]
    assert on1 and on2

    async def main() -> None:
        sched._on_worker_batch(w1, [_done(sched, k) for k in on1])
        sched._on_worker_batch(w2, [_done(sched, k) for k in on2])
        assert steps == [("w1", len(on1))]  # w2's read waits: the turn's share is taken
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert steps == [("w1", len(on1)), ("w2", len(on2))]
    assert all(sched.state.tasks[k].state == "memory" for k in on1 + on2)
    assert "backlog" not in w2.info
    sched.state.validate()


def test_waiting_workers_take_steps_in_turn_and_each_keeps_its_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker with a long backlog does not hold back another: the waiting workers take a
    step each in turn (two steps fit in a turn here), each worker's reports in order."""
    from shoal.scheduler._turns import TURN_BUDGET

    sched, w1, w2, keys, steps = _two_workers(monkeypatch, TURN_BUDGET * 0.6)
    where = {k: _on(sched, k) for k in keys}
    on1 = [k for k in keys if where[k] == "w1"]
    on2 = [k for k in keys if where[k] == "w2"][:10]
    assert len(on1) >= 30
    order: list[str] = []
    real = sched._apply

    def seen(events: list[Any]) -> Any:
        order.extend(getattr(e, "key", "") for e in events)
        return real(events)

    monkeypatch.setattr(sched, "_apply", seen)

    async def main() -> None:
        sched._on_worker_batch(w1, [_done(sched, k) for k in on1[:30]])  # a step now, 2 wait
        sched._on_worker_batch(w2, [_done(sched, k) for k in on2])  # a step: budget left
        sched._on_worker_batch(w1, [_done(sched, k) for k in on1[30:]])  # behind w1's rest
        assert steps == [("w1", 10), ("w2", 10)]  # this turn: w1's step, then w2's
        for _ in range(20):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert steps[:2] == [("w1", 10), ("w2", 10)]
    assert [s[0] for s in steps[2:]] == ["w1"] * len(steps[2:])
    assert sum(n for _, n in steps) == len(on1) + len(on2)
    handled = [k for k in order if k]
    assert [k for k in handled if k in on1] == on1  # each worker's reports in order
    assert [k for k in handled if k in on2] == on2
    assert "backlog" not in w1.info and "backlog" not in w2.info and not sched._waiting
    sched.state.validate()


def test_a_lone_report_does_not_start_counting_the_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round trip's single report is a small step: no turn is counted (no callback is
    queued to end it), and the next worker's report is handled at once too."""
    from shoal.scheduler._turns import SMALL_STEP

    sched, w1, w2, keys, steps = _two_workers(monkeypatch, SMALL_STEP / 2)
    on1 = [k for k in keys if _on(sched, k) == "w1"][:1]
    on2 = [k for k in keys if _on(sched, k) == "w2"][:1]
    queued: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.call_soon

        def call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            queued.append(callback)
            return real(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon", call_soon)
        sched._on_worker_batch(w1, [_done(sched, k) for k in on1])
        sched._on_worker_batch(w2, [_done(sched, k) for k in on2])
        assert not sched._turn.over()

    asyncio.run(main())
    assert steps == [("w1", 1), ("w2", 1)]
    assert not [c for c in queued if getattr(c, "__name__", "") == "_close"]


def test_a_nannys_word_that_it_kills_its_worker_for_memory_reaches_its_state() -> None:
    """The nanny says it itself (it measured the memory to decide the kill), on its own
    connection, and is answered once it is noted: its worker may be too busy to say it
    before the kill, and then KilledWorker said nothing of memory."""
    from shoal.protocol._messages import PROTOCOL_VERSION, Hello, NannyMemoryTerminated, Response

    sched, _worker, _conns = _scheduler()
    nanny = Recorder("nanny")
    sched._on_first_message(nanny, [Hello("nanny", PROTOCOL_VERSION, "n0"),
                                     NannyMemoryTerminated(3, "w1", 600, 630, 0.95),
                                     NannyMemoryTerminated(4, "gone", 1, 2, 0.95)])
    assert sched.state.workers["w1"].memory_killed == (600, 630, 0.95)
    assert nanny.sent == [Response(3, True, None), Response(4, True, None)]
    assert not nanny.closed


class Wire(Connection):
    """A connection that batches like a real one (its writes wait for a flush) and logs each
    write, with its peer, in a log shared with the other connections."""

    def __init__(self, peer: str, log: list[tuple[str, list[Message]]]) -> None:
        super().__init__()
        self.peer = peer
        self.log = log

    def _write_batch(self, batch: list[Message]) -> None:
        self.log.append((self.peer, batch))

    def _close(self) -> None:
        pass


def test_a_step_writes_its_computes_before_its_results() -> None:
    # An in-process client handles its results inside the write (and wakes the user's
    # thread): a worker's queued task must not wait for that to leave.
    log: list[tuple[str, list[Message]]] = []
    sched, _worker, _conns = _scheduler()
    sched._workers["w1"] = Wire("w1", log)  # registered; from now on its writes are logged
    client = sched._clients["c"] = Wire("c", log)
    client.info["name"] = "c"
    sched._apply([ClientJoined("c")])
    sched._carry_out_all([ReportDone("c", "a", 8, "int", None),
                          SendCompute("w1", "b", PAYLOAD, [], (), (0,), True, "p", 1)])
    assert [peer for peer, _ in log] == ["w1", "c"]
    assert _kinds(log[0][1]) == [("compute", "b")]
    assert log[1][1] == [KeyDone("a", 8, "int", None)]


def test_a_nanny_whose_worker_exited_unasked_learns_whether_it_was_retired() -> None:
    """dask's retire_workers tells the nanny first; shoal's nanny asks when its worker's
    process exits unasked. The scheduler removes the worker if it had not yet (so that a
    later retire_workers does not report it retired), then answers."""
    from shoal.protocol._messages import PROTOCOL_VERSION, Hello, NannyWorkerExited, Response
    from shoal.scheduler._membership import retire_workers

    sched, _w1, _conns = _scheduler()
    for address in ("w2", "w3"):
        sched._on_worker_message(Recorder(address),
                                 [Register(address, address, 1, 2**30, 1, "host")])
    nanny = Recorder("nanny")
    sched._on_first_message(nanny, [Hello("nanny", PROTOCOL_VERSION, "n1"),
                                    NannyWorkerExited(1, "w1", 1)])
    assert "w1" not in sched._workers and "w1" not in sched.state.workers
    assert asyncio.run(retire_workers(sched, ["w1"], None, True, 5.0)) == {}
    assert list(asyncio.run(retire_workers(sched, ["w2"], None, True, 5.0))) == ["w2"]
    assert list(asyncio.run(retire_workers(sched, ["w3"], None, False, 5.0))) == ["w3"]
    sched._on_nanny_message(nanny, [NannyWorkerExited(2, "w2", 1), NannyWorkerExited(3, "w3", 1)])
    assert nanny.sent == [Response(1, True, False), Response(2, True, True),
                          Response(3, True, False)]  # w3 was not closed: its own business
    # A new worker at a retired one's address is not retired.
    sched._on_worker_message(Recorder("w2"), [Register("w2", "w2b", 1, 2**30, 2, "host")])
    sched._on_nanny_message(nanny, [NannyWorkerExited(4, "w2", 1)])
    assert nanny.sent[-1] == Response(4, True, False)
    assert "w2" in sched._workers  # the old process's word does not remove the new one
    assert not nanny.closed
