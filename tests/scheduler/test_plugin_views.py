"""What scheduler plugins (and ``client.run_on_scheduler`` functions) read of the
scheduler, as dask.distributed offers it: ``scheduler.tasks[key]`` with ``.prefix`` /
``.group`` objects and ``.annotations``, ``scheduler.workers[addr]`` with ``.status`` and
``.memory``, ``scheduler.clients``, ``task_prefixes``/``task_groups`` and ``loop``; and a
clear error for what shoal does not offer. The shell is driven with messages: no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal import SchedulerPlugin
from shoal._status import Status
from shoal.protocol._messages import Heartbeat, MemoryPaused, TaskDone, UpdateGraph

from ._sim import row
from .test_shell import _scheduler


def test_a_tasks_prefix_and_group_are_objects_with_dasks_names() -> None:
    sched, _worker, conns = _scheduler("c")
    rows = [row("inc-1"), row("inc-2"), row(("sum-abc123", 0), ["inc-1"])]
    sched._on_client_message(conns["c"], [UpdateGraph(rows, ["inc-2", ("sum-abc123", 0)], {})])
    ts = sched.tasks["inc-1"]
    assert ts.prefix.name == "inc"
    assert ts.group.name == "inc" and ts.group.prefix.name == "inc"
    part = sched.tasks[("sum-abc123", 0)]
    assert part.prefix.name == "sum" and part.group.name == "sum-abc123"
    assert part.group.prefix.name == "sum"
    assert ts.prefix.states["processing"] == 2 and len(ts.prefix) == 2
    assert part.group.states["waiting"] == 1 and part.group.states["memory"] == 0
    assert not part.group.done
    assert {g.name for g in sched.task_prefixes["inc"].groups} == {"inc"}


def test_task_prefixes_and_groups_are_keyed_by_name() -> None:
    sched, _worker, conns = _scheduler("c")
    rows = [row("inc-1"), row(("sum-abc123", 0)), row(("sum-abc123", 1))]
    sched._on_client_message(conns["c"], [UpdateGraph(rows, [r[0] for r in rows], {})])
    assert set(sched.task_prefixes) == {"inc", "sum"}
    assert set(sched.task_groups) == {"inc", "sum-abc123"}
    group = sched.task_groups["sum-abc123"]
    assert len(group) == 2 and group.states["processing"] + group.states["queued"] == 2
    assert sched.task_prefixes["sum"].name == "sum"
    assert "sum-abc123" in sched.task_groups and "nope" not in sched.task_prefixes


def test_a_prefixs_duration_average_is_minus_one_until_one_ran() -> None:
    sched, worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("inc-1")], ["inc-1"], {})])
    assert sched.tasks["inc-1"].prefix.duration_average == -1
    run = sched.state.tasks["inc-1"].run
    sched._on_worker_message(worker, [TaskDone("inc-1", 8, "int", 1.0, 1.5, 7, None, run)])
    assert sched.task_prefixes["inc"].duration_average == pytest.approx(0.5)


def test_a_tasks_annotations_are_those_it_was_submitted_with() -> None:
    sched, _worker, conns = _scheduler("c")
    rows = [row("a", priority=(-5, 1, 0), retries=2, workers=["w1"]), row("b")]
    sched._on_client_message(conns["c"], [UpdateGraph(
        rows, ["a", "b"], {}, restrictions=[("a", {"GPU": 1}, True)])])
    assert sched.tasks["a"].annotations == {
        "priority": 5, "retries": 2, "workers": ["w1"], "resources": {"GPU": 1},
        "allow_other_workers": True}
    assert sched.tasks["b"].annotations == {}


def test_what_shoal_does_not_keep_of_a_task_raises_an_attribute_error_saying_so() -> None:
    sched, _worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    ts = sched.tasks["a"]
    with pytest.raises(AttributeError, match="shoal's TaskState has no 'run_spec'"):
        ts.run_spec  # noqa: B018
    assert not hasattr(ts, "run_spec")  # (an AttributeError: getattr defaults work)
    with pytest.raises(AttributeError, match="shoal's TaskGroup has no 'nbytes_total'"):
        ts.group.nbytes_total  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ts.nonsense  # noqa: B018


def test_task_records_are_read_only() -> None:
    sched, _worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    with pytest.raises(AttributeError, match="read-only"):
        sched.tasks["a"].state = "memory"
    assert sched.state.tasks["a"].state == "processing"


def test_records_reached_from_other_records_read_the_same() -> None:
    sched, worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph(
        [row("inc-1"), row("dec-1", ["inc-1"])], ["dec-1"], {})])
    ws = sched.workers["w1"]
    (running,) = ws.processing
    assert running.prefix.name == "inc" and running.key == "inc-1"
    assert running in ws.processing and running == sched.tasks["inc-1"]
    (dependent,) = running.dependents
    assert dependent.prefix.name == "dec"
    (dep,) = dependent.dependencies
    assert dep.prefix.name == "inc"
    assert running.processing_on.status == Status.running
    run = sched.state.tasks["inc-1"].run
    sched._on_worker_message(worker, [TaskDone("inc-1", 8, "int", 1.0, 2.0, 7, None, run)])
    (holder,) = sched.tasks["inc-1"].who_has
    assert holder.address == "w1" and holder.memory.process >= 0
    assert {ts.key for ts in sched.workers["w1"].has_what} == {"inc-1"}


def test_a_workers_memory_and_status_read_as_dasks() -> None:
    sched, worker, _conns = _scheduler()
    ws = sched.workers["w1"]
    assert ws.status == Status.running
    sched._on_worker_message(worker, [Heartbeat(1000, 300, 0.5, 0, 40, 25)])
    memory = sched.workers["w1"].memory
    assert memory.process == 1000 and memory.managed == 300
    assert memory.unmanaged == 700 and memory.spilled == 25
    assert memory.managed_total == 325
    assert memory.unmanaged_old + memory.unmanaged_recent == memory.unmanaged
    sched._on_worker_message(worker, [MemoryPaused(True)])
    assert sched.workers["w1"].status == Status.paused
    sched.retiring["w1"] = 1
    assert sched.workers["w1"].status == Status.closing_gracefully


def test_scheduler_clients_are_keyed_by_client_id_and_know_what_they_want() -> None:
    sched, _worker, conns = _scheduler("c")
    sched._apply([])  # (no-op)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    assert "c" in sched.clients
    cs = sched.clients["c"]
    assert cs.client_key == "c" and str(cs) == "c"
    assert {ts.key for ts in cs.wants_what} == {"a"}
    assert sched.tasks["a"].who_wants == {cs}
    assert {c.client_key for c in sched.tasks["a"].who_wants} == {"c"}


def test_scheduler_clients_names_a_client_by_its_id_not_its_session() -> None:
    sched = _scheduler()[0]
    from shoal.scheduler._events import ClientJoined

    sched._apply([ClientJoined("Client-abc-0", "Client-abc")])
    assert "Client-abc" in sched.clients
    assert sched.clients["Client-abc"].client_key == "Client-abc"


def test_the_scheduler_loop_calls_back_later_as_tornados_does() -> None:
    async def main() -> list[Any]:
        sched, _worker, _conns = _scheduler()
        seen: list[Any] = []
        done = asyncio.Event()

        def later(x: int) -> None:
            seen.append(x)
            done.set()

        sched.loop.call_later(0.01, later, 1)
        await asyncio.wait_for(done.wait(), 5)  # ends: the callback, or 5 s
        done.clear()
        sched.loop.add_callback(later, 2)
        await asyncio.wait_for(done.wait(), 5)  # ends: the callback, or 5 s
        assert sched.loop.time() == pytest.approx(asyncio.get_running_loop().time(), abs=1)
        return seen

    assert asyncio.run(main()) == [1, 2]


class StimulusWatcher(SchedulerPlugin):
    def __init__(self) -> None:
        self.graphs: list[tuple[list[Any], str]] = []
        self.moves: dict[Any, set[str]] = {}

    def update_graph(self, scheduler: Any, *, tasks: list[Any], stimulus_id: str,
                     **kwargs: Any) -> None:
        self.graphs.append((tasks, stimulus_id))

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        self.moves.setdefault(key, set()).add(stimulus_id)


def test_a_graphs_first_transitions_carry_its_update_graph_stimulus_id() -> None:
    sched, _worker, conns = _scheduler("c")
    plugin = StimulusWatcher()
    sched.plugin_host.put("stim", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a"), row("b", ["a"])], ["b"], {})])
    ((_tasks, stimulus),) = plugin.graphs
    assert stimulus.startswith("update-graph-")
    assert plugin.moves == {"a": {stimulus}, "b": {stimulus}}
    assert sched.state.stimulus_story(stimulus)  # the story knows it by that id too


def test_two_graphs_of_one_batch_each_carry_their_own_stimulus_id() -> None:
    sched, _worker, conns = _scheduler("c")
    plugin = StimulusWatcher()
    sched.plugin_host.put("stim", plugin, False)
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {}),
                                          UpdateGraph([row("b")], ["b"], {})])
    (ta, sa), (tb, sb) = plugin.graphs
    assert (ta, tb) == (["a"], ["b"]) and sa != sb
    assert plugin.moves == {"a": {sa}, "b": {sb}}


def test_records_do_not_pickle_but_clients_pickle_as_their_key() -> None:
    import pickle

    sched, _worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph([row("a")], ["a"], {})])
    with pytest.raises(TypeError, match="do not pickle: return what you read"):
        pickle.dumps(sched.tasks["a"])
    assert pickle.loads(pickle.dumps(sched.tasks["a"].who_wants)) == {"c"}


def test_a_row_without_a_prefix_gets_dasks_prefix_of_its_key() -> None:
    # (what the client sends for keys the user named: map(key=[...]), submit(key=...))
    sched, _worker, conns = _scheduler("c")
    sched._on_client_message(conns["c"], [UpdateGraph(
        [row("inc-9200", prefix=""), row("load-data-x1-1", prefix="")],
        ["inc-9200", "load-data-x1-1"], {})])
    assert sched.tasks["inc-9200"].prefix.name == "inc"
    assert sched.tasks["load-data-x1-1"].prefix.name == "load-data"
