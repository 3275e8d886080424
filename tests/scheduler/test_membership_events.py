"""dask's membership events (``client.get_events("all")``, a worker's or client's own
topic): the state says them as ``LogEvent`` commands when workers and clients come and go."""

from __future__ import annotations

from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    KeysCancelled,
    LogEvent,
    WorkerJoined,
    WorkerLeft,
    WorkerRetiring,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


def _join(state: SchedulerState, address: str) -> list[LogEvent]:
    return of(state.handle(WorkerJoined(address, address, 1, 2**30, 1, "host", 0.0)), LogEvent)


def test_a_joining_worker_is_said_on_its_topic_and_on_all() -> None:
    state = SchedulerState()
    assert _join(state, "w1") == [LogEvent(["w1"], {"action": "add-worker"}),
                                  LogEvent(["all"], {"action": "add-worker", "worker": "w1"})]
    assert _join(state, "w1") == []  # joining twice: nothing new


def test_a_worker_leaving_says_what_it_was_running_and_what_was_lost() -> None:
    state = SchedulerState()
    sim = Sim(state)
    sim.join("w1")
    sim.scatter([("x", 100)])
    sim.submit([row("s")])
    sim.finish("s")
    sim.submit([row("a")])
    out = of(state.handle(WorkerLeft("w1", "gone", 1.0), now=5.0), LogEvent)
    mine, everyone = out
    assert mine.topics == ["w1"] and everyone.topics == ["all"]
    msg = mine.msg
    assert msg["action"] == "remove-worker" and msg["expected"] is False
    assert sorted(msg["processing-tasks"]) == ["a"]
    assert msg["lost-computed-tasks"] == ["s"]
    assert msg["lost-scattered-tasks"] == ["x"]
    assert msg["stimulus_id"] == "worker-left-5.0"
    assert everyone.msg == {**msg, "worker": "w1"}
    assert of(state.handle(WorkerLeft("w1", "gone", 1.0)), LogEvent) == []  # gone already


def test_a_retiring_worker_was_expected_to_leave() -> None:
    state = SchedulerState()
    _join(state, "w1")
    (mine, _) = of(state.handle(WorkerRetiring("w1", "closing")), LogEvent)
    assert mine.msg["expected"] is True


def test_clients_coming_and_going_are_said_on_all_and_their_topic() -> None:
    state = SchedulerState()
    assert of(state.handle(ClientJoined("c1")), LogEvent) == [
        LogEvent(["all", "c1"], {"action": "add-client", "client": "c1"})]
    assert of(state.handle(ClientLeft("c1")), LogEvent) == [
        LogEvent(["all", "c1"], {"action": "remove-client", "client": "c1"})]
    # a holder that never joined as a client (a published dataset's) leaves unsaid
    assert of(state.handle(ClientLeft("published-x")), LogEvent) == []


def test_a_client_is_said_by_its_id_not_its_session_name() -> None:
    # dask's users read ``client.get_events(client.id)``; the scheduler knows the
    # connection as a session of that id ("<id>-<n>", a new one per reconnect)
    state = SchedulerState()
    assert of(state.handle(ClientJoined("Client-1-7", "Client-1")), LogEvent) == [
        LogEvent(["all", "Client-1"], {"action": "add-client", "client": "Client-1"})]
    (said,) = of(state.handle(KeysCancelled("Client-1-7", ["a"])), LogEvent)
    assert said.topics == ["Client-1"]
    assert of(state.handle(ClientLeft("Client-1-7")), LogEvent) == [
        LogEvent(["all", "Client-1"], {"action": "remove-client", "client": "Client-1"})]
