"""Scheduler plugin hooks as dask.distributed documents them (``SchedulerPlugin`` in
``distributed/diagnostics/plugin.py``): when each is called, how often, and with what.
The scheduler shell is driven with messages on recording connections: no sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from shoal import SchedulerPlugin
from shoal.protocol._messages import (
    GraphAnnotations,
    Register,
    ReleaseKeys,
    TaskDone,
    TaskErred,
    UpdateGraph,
)
from shoal.protocol._serialize import dumps
from shoal.scheduler._server import Scheduler

from ._sim import error_for, row
from .test_shell import Recorder, _kinds, _scheduler


class GraphWatcher(SchedulerPlugin):
    """Records each update_graph call, with what the scheduler held at that moment, and
    every transition."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.order: list[Any] = []

    def update_graph(self, scheduler: Any, *, client: str, keys: set[Any], tasks: list[Any],
                     annotations: dict[str, dict[Any, Any]], priority: dict[Any, Any],
                     stimulus_id: str, **kwargs: Any) -> None:
        known = {k: scheduler.tasks[k].state for k in tasks if k in scheduler.tasks}
        self.calls.append({"client": client, "keys": keys, "tasks": tasks,
                           "annotations": annotations, "priority": priority,
                           "stimulus_id": stimulus_id, "known": known})
        self.order.append("update_graph")

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        self.order.append((key, start, finish))


def _watched(*clients: str) -> tuple[Scheduler, Recorder, dict[str, Recorder], GraphWatcher]:
    sched, worker, conns = _scheduler(*clients)
    plugin = GraphWatcher()
    sched.plugin_host.put("watch", plugin, False)
    return sched, worker, conns, plugin


def test_update_graph_is_called_once_per_graph_sent_in_pieces_with_every_key() -> None:
    sched, _worker, conns, plugin = _watched("c")
    first = [row("a"), row("b", ["a"])]
    last = [row("c", ["b"]), row("d", ["c"])]
    sched._on_client_message(conns["c"], [UpdateGraph(first, [], {}, more=True, stream=1)])
    assert plugin.calls == []  # not before the graph is all in
    sched._on_client_message(conns["c"], [UpdateGraph(last, ["d"], {}, stream=1)])
    (call,) = plugin.calls
    assert call["tasks"] == ["a", "b", "c", "d"]
    assert call["keys"] == {"d"}
    assert set(call["known"]) == {"a", "b", "c", "d"}  # the tasks are in the scheduler
    assert call["stimulus_id"].startswith("update-graph-")
    sched.state.validate()


def test_update_graph_is_called_once_per_whole_graph_even_two_in_one_batch() -> None:
    sched, _worker, conns, plugin = _watched("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {}),
                                          UpdateGraph([row("b", ["a"])], ["b"], {})])
    assert [(c["tasks"], c["keys"]) for c in plugin.calls] == [(["a"], {"a"}), (["b"], {"b"})]
    assert set(plugin.calls[1]["known"]) == {"b"}
    assert plugin.calls[0]["stimulus_id"] != plugin.calls[1]["stimulus_id"]


def test_update_graph_comes_before_the_transitions_of_its_tasks() -> None:
    sched, _worker, conns, plugin = _watched("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    assert plugin.order[0] == "update_graph"
    assert ("a", "released", "waiting") in plugin.order


def test_update_graph_gets_priorities_and_the_annotations_the_rows_carry() -> None:
    sched, _worker, conns, plugin = _watched("c")
    rows = [row("a", priority=(-5, 1, 0), retries=2),
            row("b", ["a"], priority=(0, 1, 1), workers=["w1"]),
            row("c", priority=(0, 1, 2))]
    sched._on_client_message(conns["c"], [UpdateGraph(
        rows, ["b", "c"], {}, restrictions=[("b", {"GPU": 1}, True)])])
    (call,) = plugin.calls
    assert call["priority"] == {"a": (-5, 1, 0), "b": (0, 1, 1), "c": (0, 1, 2)}
    assert call["annotations"] == {
        "priority": {"a": 5},
        "retries": {"a": 2},
        "workers": {"b": ["w1"]},
        "resources": {"b": {"GPU": 1}},
        "allow_other_workers": {"b": True},
    }


def test_update_graph_gets_the_clients_own_annotations_of_new_tasks_only() -> None:
    sched, _worker, conns, plugin = _watched("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    custom = dumps({"team": {"a": "x", "b": "y"}, "note": {"b": [1, 2]}})
    sched._on_client_message(conns["c"], [GraphAnnotations(0, custom), UpdateGraph(
        [row("a"), row("b", ["a"])], ["b"], {})])
    # ("a" was known already: its annotations stay what they were, as dask's do)
    assert plugin.calls[1]["annotations"] == {"team": {"b": "y"}, "note": {"b": [1, 2]}}


def test_update_graph_of_a_piecewise_graph_gets_the_annotations_of_every_piece() -> None:
    sched, _worker, conns, plugin = _watched("c")
    sched._on_client_message(conns["c"], [UpdateGraph(
        [row("a", retries=1)], [], {}, more=True, stream=3)])
    sched._on_client_message(conns["c"], [
        GraphAnnotations(3, dumps({"team": {"a": "x", "b": "y"}})),
        UpdateGraph([row("b", ["a"], retries=3)], ["b"], {}, stream=3)])
    (call,) = plugin.calls
    assert call["annotations"] == {"retries": {"a": 1, "b": 3}, "team": {"a": "x", "b": "y"}}


def test_update_graph_names_the_client_by_its_client_id() -> None:
    sched, _worker, conns, plugin = _watched("c")
    conns["c"].info["client_id"] = "Client-123"
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    assert plugin.calls[0]["client"] == "Client-123"


def test_an_update_graph_hook_that_raises_is_logged_and_the_graph_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SchedulerPlugin):
        def update_graph(self, scheduler: Any, **kwargs: Any) -> None:
            raise RuntimeError("plugin bug")

    sched, _worker, conns = _scheduler("c")
    sched.plugin_host.put("broken", Broken(), False)
    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    assert "plugin bug" in caplog.text
    assert sched.state.tasks["a"].state == "processing"
    assert not conns["c"].closed


class KeywordsOnly(SchedulerPlugin):
    """Reads every argument by name, as dask passes them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def add_worker(self, **kwargs: Any) -> None:  # type: ignore[override]
        self.seen.append(("add_worker", kwargs))

    def remove_worker(self, **kwargs: Any) -> None:  # type: ignore[override]
        self.seen.append(("remove_worker", kwargs))

    def add_client(self, **kwargs: Any) -> None:  # type: ignore[override]
        self.seen.append(("add_client", kwargs))

    def remove_client(self, **kwargs: Any) -> None:  # type: ignore[override]
        self.seen.append(("remove_client", kwargs))


def test_membership_hooks_get_their_arguments_by_name_as_in_dask() -> None:
    sched = Scheduler()
    plugin = KeywordsOnly()
    sched.plugin_host.put("kw", plugin, False)
    worker = Recorder("w1")
    sched._on_worker_message(worker, [Register("w1", "w1", 2, 2**30, 1, "host")])
    sched.connect_local_client("c")
    sched._client_gone("c")
    sched._on_worker_message(worker, None)
    assert [(hook, sorted(kw)) for hook, kw in plugin.seen] == [
        ("add_worker", ["scheduler", "worker"]),
        ("add_client", ["client", "scheduler"]),
        ("remove_client", ["client", "scheduler"]),
        ("remove_worker", ["scheduler", "stimulus_id", "worker"]),
    ]
    assert all(kw["scheduler"] is sched for _, kw in plugin.seen)


class Closing(SchedulerPlugin):
    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail

    async def before_close(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"{self.name}.before_close")
        if self.fail:
            raise RuntimeError("before_close bug")

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"{self.name}.close")
        if self.fail:
            raise RuntimeError("close bug")


def test_async_before_close_is_awaited_for_every_plugin_before_any_close() -> None:
    log: list[str] = []

    async def scenario() -> None:
        sched = Scheduler()
        sched.plugin_host.put("a", Closing(log, "a", fail=True), False)
        sched.plugin_host.put("b", Closing(log, "b"), False)
        await sched.close()

    asyncio.run(scenario())
    assert log == ["a.before_close", "b.before_close", "a.close", "b.close"]


class Starts(SchedulerPlugin):
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def start(self, scheduler: Any) -> None:
        if self.fail:
            raise KeyError("cannot start")


def test_registering_a_plugin_whose_start_fails_keeps_the_one_of_that_name() -> None:
    async def scenario() -> None:
        sched = Scheduler()
        good = Starts(fail=False)
        await sched.plugin_host.add(sched, "p", dumps(good))
        kept = sched.plugins["p"]
        with pytest.raises(KeyError, match="cannot start"):
            await sched.plugin_host.add(sched, "p", dumps(Starts(fail=True)))
        assert sched.plugins["p"] is kept

    asyncio.run(scenario())


class Moves(SchedulerPlugin):
    def __init__(self) -> None:
        self.moves: list[tuple[Any, str, str, dict[str, Any]]] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        self.moves.append((key, start, finish, {"stimulus_id": stimulus_id, **kwargs}))


def test_a_failed_tasks_transition_carries_dasks_error_fields() -> None:
    sched, worker, conns = _scheduler("c")
    plugin = Moves()
    sched.plugin_host.put("moves", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    run = sched.state.tasks["a"].run
    error = error_for("a", ZeroDivisionError("nope"))
    sched._on_worker_message(worker, [TaskErred("a", error, 1.0, 2.0, 7, run)])
    (kw,) = [kw for key, start, finish, kw in plugin.moves if (start, finish) == ("processing", "erred")]
    assert kw["worker"] == "w1" and kw["thread"] == 7
    assert kw["startstops"] == [{"action": "compute", "start": 1.0, "stop": 2.0}]
    assert "nope" in kw["exception_text"]
    assert "ZeroDivisionError" in kw["traceback_text"]
    assert isinstance(kw["exception"], ZeroDivisionError)
    assert kw["run_id"] == run


def test_a_finished_tasks_transition_carries_dasks_result_fields() -> None:
    sched, worker, conns = _scheduler("c")
    plugin = Moves()
    sched.plugin_host.put("moves", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    run = sched.state.tasks["a"].run
    sched._on_worker_message(worker, [TaskDone("a", 8, "int", 1.0, 2.0, 7, None, run)])
    (kw,) = [kw for key, start, finish, kw in plugin.moves if (start, finish) == ("processing", "memory")]
    assert {k: kw[k] for k in ("worker", "thread", "nbytes", "typename", "run_id")} == {
        "worker": "w1", "thread": 7, "nbytes": 8, "typename": "int", "run_id": run}
    assert kw["startstops"] == [{"action": "compute", "start": 1.0, "stop": 2.0}]


def test_scheduler_tasks_is_a_live_view_safe_to_iterate_while_the_table_changes() -> None:
    # A plugin looks tasks up in every hook (dask hands out its dict): a lookup must not
    # copy the table, and a view kept from start() must stay current.
    sched, _worker, conns = _scheduler("c")
    view = sched.tasks
    sched._on_client_message(conns["c"], [UpdateGraph([row("a"), row("b")], ["a", "b"], {})])
    assert "a" in view and view["a"].state == "processing" and len(view) == 2
    assert view.get("nope") is None and sorted(view) == ["a", "b"]
    seen = []
    for key in view:  # the scheduler forgets keys meanwhile: no RuntimeError
        seen.append(key)
        sched._on_client_message(conns["c"], [ReleaseKeys([key])])
    assert seen == ["a", "b"] and len(view) == 0
    assert dict(view.items()) == {} and view == {}
    sched._on_client_message(conns["c"], [UpdateGraph([row("c")], ["c"], {})])
    assert list(view.keys()) == ["c"] and [ts.key for ts in view.values()] == ["c"]


class Restarts(SchedulerPlugin):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def restart(self, scheduler: Any) -> None:
        self.seen.append(("restart", len(scheduler.tasks)))

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.seen.append(("remove_worker", worker))


def test_the_restart_hook_comes_once_the_tasks_are_forgotten_before_the_workers_go() -> None:
    from shoal.scheduler._membership import restart

    sched, _worker, conns = _scheduler("c")
    plugin = Restarts()
    sched.plugin_host.put("restarts", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    asyncio.run(restart(sched, 0.01, True))  # (no worker comes back here: it times out)
    assert plugin.seen == [("restart", 0), ("remove_worker", "w1")]


def test_an_async_hook_that_raises_is_logged_naming_hook_and_plugin(
        caplog: pytest.LogCaptureFixture) -> None:
    class AsyncBroken(SchedulerPlugin):
        async def add_client(self, scheduler: Any, client: str) -> None:
            raise RuntimeError("async plugin bug")

    async def scenario() -> None:
        sched = Scheduler()
        sched.plugin_host.put("async-broken", AsyncBroken(), False)
        sched.connect_local_client("c")
        for _ in range(3):
            await asyncio.sleep(0)
        await sched.close()

    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        asyncio.run(scenario())
    records = [r for r in caplog.records if "async plugin bug" in str(r.exc_info)]
    assert records and all(r.name == "shoal.scheduler" for r in records)
    assert "add_client" in records[0].getMessage() and "async-broken" in records[0].getMessage()


class KeepsW2(SchedulerPlugin):
    """dask's valid_workers_downscaling: never let w2 go."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        self.asked.append(sorted(ws.address for ws in workers))
        return [ws for ws in workers if ws.address != "w2"]


def test_retiring_n_workers_chooses_among_those_plugins_let_go() -> None:
    from shoal.scheduler._membership import retire_workers

    sched, _w1, _conns = _scheduler()
    w2 = Recorder("w2")
    sched._on_worker_message(w2, [Register("w2", "w2", 2, 2**30, 1, "host")])
    plugin = KeepsW2()
    sched.plugin_host.put("keeps", plugin, False)
    sched.state.workers["w1"].nbytes = 10**6  # (alone, w1 would be kept: more data)
    retired = asyncio.run(retire_workers(sched, None, 1, False, 1.0))
    assert list(retired) == ["w1"]
    assert plugin.asked == [["w1", "w2"]]


class ReadsTheTask(SchedulerPlugin):
    """dask's pattern: look the task up in the hook (dask's record is in ``finish`` then,
    and a forgotten task is put back for the hook's time)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, str, str, str]] = []

    def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        self.seen.append((key, start, finish, self.scheduler.tasks[key].state))


def test_a_transition_hook_reads_the_task_in_its_new_state_even_once_forgotten() -> None:
    sched, worker, conns = _scheduler("c")
    plugin = ReadsTheTask()
    plugin.start(sched)
    sched.plugin_host.put("reads", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    run = sched.state.tasks["a"].run
    sched._on_worker_message(worker, [TaskDone("a", 8, "int", 1.0, 2.0, 7, None, run)])
    sched._on_client_message(conns["c"], [ReleaseKeys(["a"])])
    assert plugin.seen and all(now == finish for _, _, finish, now in plugin.seen), plugin.seen
    assert plugin.seen[-1][2] == "forgotten"
    assert "a" not in sched.state.tasks
    sched.state.validate()


class Publishes(SchedulerPlugin):
    """dask's pattern: a plugin publishing events with ``scheduler.log_event``."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    def add_worker(self, scheduler: Any, worker: str) -> None:
        scheduler.log_event(["my-plugin", "all-mine"], {"joined": worker})
        scheduler.log_event("my-plugin", "second")

    def log_event(self, topic: str, msg: Any) -> None:
        self.heard.append((topic, msg))


def test_scheduler_log_event_logs_under_each_topic_and_calls_the_log_event_hooks() -> None:
    sched = Scheduler()
    plugin = Publishes()
    sched.plugin_host.put("publishes", plugin, False)
    sched._on_worker_message(Recorder("w1"), [Register("w1", "w1", 2, 2**30, 1, "host")])
    assert ("my-plugin", {"joined": "w1"}) in plugin.heard
    assert ("all-mine", {"joined": "w1"}) in plugin.heard
    assert ("my-plugin", "second") in plugin.heard
    logged = [msg for _, msg in sched.topics.logs["my-plugin"]]
    assert logged == [{"joined": "w1"}, "second"]
    assert sched.total_nthreads == 2


def test_wanting_known_keys_without_a_graph_is_no_update_graph() -> None:
    # (a dataset fetched, a future returned by a task: dask's client-desires-keys, no graph)
    sched, _worker, conns, plugin = _watched("c", "d")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    sched._on_client_message(conns["d"], [UpdateGraph([], ["a"], {})])
    assert len(plugin.calls) == 1
    assert sched.state.tasks["a"].who_wants == {"c", "d"}


def test_graphs_of_one_batch_still_reach_a_worker_together_while_plugins_watch() -> None:
    sched, worker, conns, plugin = _watched("c")
    worker.sent.clear()
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {}),
                                          UpdateGraph([row("b")], ["b"], {})])
    assert len(plugin.calls) == 2
    assert _kinds(worker.sent) == [("computes", ["a", "b"])]


def test_graph_annotations_go_with_the_next_graph_of_their_stream_only() -> None:
    sched, _worker, conns, plugin = _watched("c", "d")
    sched._on_client_message(conns["c"], [
        GraphAnnotations(0, dumps({"team": {"a": "x"}})),
        UpdateGraph([row("a")], ["a"], {}),
        UpdateGraph([row("b")], ["b"], {})])
    sched._on_client_message(conns["d"], [UpdateGraph([row("z")], ["z"], {})])
    assert [c["annotations"] for c in plugin.calls] == [{"team": {"a": "x"}}, {}, {}]


def test_graph_annotations_cost_nothing_while_no_plugin_is_registered() -> None:
    sched, _worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [GraphAnnotations(0, dumps({"team": {"a": "x"}})),
                                          UpdateGraph([row("a")], ["a"], {})])
    assert not conns["c"].closed and sched.state.tasks["a"].state == "processing"
    assert sched.plugin_host.graphs.pending() == 0  # nothing kept for later


def test_a_graph_arriving_when_the_last_plugin_goes_leaves_nothing_behind() -> None:
    sched, _worker, conns, _plugin = _watched("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], [], {}, more=True, stream=1)])
    assert sched.plugin_host.graphs.pending() == 1
    sched.remove_plugin("watch")
    sched._on_client_message(conns["c"], [UpdateGraph([row("b", ["a"])], ["b"], {}, stream=1)])
    assert sched.plugin_host.graphs.pending() == 0


class Stuck(SchedulerPlugin):
    async def before_close(self) -> None:
        await asyncio.Event().wait()  # never returns


def test_a_close_hook_that_never_returns_does_not_keep_the_scheduler_open(
        monkeypatch: Any) -> None:
    from shoal.scheduler import _plugins

    monkeypatch.setattr(_plugins, "CLOSE_HOOK_TIMEOUT", 0.05)
    log: list[str] = []

    async def scenario() -> None:
        sched = Scheduler()
        sched.plugin_host.put("stuck", Stuck(), False)
        sched.plugin_host.put("b", Closing(log, "b"), False)
        await asyncio.wait_for(sched.close(), 10)

    asyncio.run(scenario())
    assert log == ["b.before_close", "b.close"]
