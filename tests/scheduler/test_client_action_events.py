"""dask's events of client actions (``client.get_events(client.id)``, ``"scheduler"``,
``"all"``): the state says them as ``LogEvent`` commands, in dask's shapes, when a client
submits a graph, scatters, cancels or retries. (Gathers are not said: shoal's clients fetch
from workers directly, as dask's ``gather(direct=True)``, which logs nothing either.)"""

from __future__ import annotations

from shoal.scheduler._events import (
    DataScattered,
    GraphSubmitted,
    KeysCancelled,
    KeysRetried,
    LogEvent,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


def test_a_graph_is_said_on_scheduler_and_the_client_topic_with_its_counts() -> None:
    sim = Sim(SchedulerState())
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    rows = [row("a"), row("b", ["a"]), row("c", ["b"])]
    (said,) = of(sim.state.handle(GraphSubmitted(sim.client, rows, ["c"])), LogEvent)
    assert said.topics == ["scheduler", sim.client]
    assert said.msg["action"] == "update-graph" and said.msg["status"] == "OK"
    assert said.msg["stimulus_id"].startswith("update-graph-")
    # "a" was known (in memory): a collision, kept as it was, as dask's key_collisions
    assert said.msg["metrics"] == {"tasks": 3, "new_tasks": 2, "key_collisions": 1}


def test_scatter_is_said_on_the_client_topic_and_all() -> None:
    sim = Sim(SchedulerState())
    sim.join("w1")
    items = [("x", 8, "int"), ("y", 8, "int")]
    said = of(sim.state.handle(DataScattered(sim.client, items, None, False)), LogEvent)
    assert said == [LogEvent([sim.client, "all"],
                             {"action": "scatter", "client": sim.client, "count": 2})]


def test_cancel_and_retry_are_said_on_the_client_topic() -> None:
    sim = Sim(SchedulerState())
    sim.join("w1", nthreads=2)
    sim.submit([row("a"), row("b")])
    sim.fail("a")
    said = of(sim.state.handle(KeysRetried(sim.client, ["a"])), LogEvent)
    assert said == [LogEvent([sim.client], {"action": "retry", "count": 1})]
    said = of(sim.state.handle(KeysCancelled(sim.client, ["a", "b"], True)), LogEvent)
    assert said == [LogEvent([sim.client], {"action": "cancel", "count": 2, "force": True})]
