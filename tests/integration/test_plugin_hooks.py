"""Scheduler plugins' ``update_graph`` on a real cluster, as dask documents it: one call
per ``submit``/``map``/``compute`` call (a large graph arrives in pieces), once its tasks
are in the scheduler, with every key, the priorities and the annotations resolved to
``{name: {key: value}}`` (the client's own ``dask.annotate`` names too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask
import distributed.diagnostics.plugin as dask_plugin
import pytest
from _waiting import wait_for

from shoal import Client, SchedulerPlugin

pytestmark = pytest.mark.integration

NAME = "graph-watch"


class GraphWatch(SchedulerPlugin):
    name = NAME

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def update_graph(self, scheduler: Any, *, client: str, keys: set[Any], tasks: list[Any],
                     annotations: dict[str, dict[Any, Any]], priority: dict[Any, Any],
                     stimulus_id: str, **kwargs: Any) -> None:
        present = scheduler.tasks
        self.calls.append({
            "client": client, "n_tasks": len(tasks), "n_keys": len(keys),
            "all_in": all(k in present for k in tasks),
            "first": (tasks[0], priority[tasks[0]]),
            # per annotation: how many keys, and the distinct values
            "annotations": {name: (len(per_key), _distinct(per_key.values()))
                            for name, per_key in annotations.items()},
            "stimulus_id": stimulus_id,
        })


def _distinct(values: Any) -> list[Any]:
    """The distinct values (dicts too), in the order of their reprs."""
    return [v for _, v in sorted({repr(v): v for v in values}.items())]


def _calls(dask_scheduler: Any) -> list[dict[str, Any]]:
    return list(dask_scheduler.plugins[NAME].calls)


@pytest.fixture
def watched(client: Client) -> Iterator[Client]:
    client.register_plugin(GraphWatch())
    try:
        yield client
    finally:
        client.unregister_scheduler_plugin(NAME)


def _inc(x: int) -> int:
    return x + 1


def _values(call: dict[str, Any]) -> dict[str, Any]:
    """Per annotation name: how many keys it has, and its distinct values."""
    return call["annotations"]


def test_submit_calls_update_graph_once_with_its_options_as_annotations(watched: Client) -> None:
    c = watched
    assert c.submit(_inc, 1, key="ug-submit", retries=2, priority=5).result() == 2
    with dask.annotate(team="x", retries=1):
        assert c.submit(_inc, 2, key="ug-annotated").result() == 3
    first, second = c.run_on_scheduler(_calls)
    assert first["client"] == c.id and first["n_tasks"] == 1 and first["all_in"]
    key, prio = first["first"]
    assert key == "ug-submit" and prio[0] == -5
    assert _values(first) == {"retries": (1, [2]), "priority": (1, [5])}
    assert _values(second) == {"retries": (1, [1]), "team": (1, ["x"])}
    assert first["stimulus_id"].startswith("update-graph-")


def test_a_large_map_and_compute_call_update_graph_once_each(watched: Client) -> None:
    c = watched
    n = 2500  # sent in pieces of 1000 rows
    with dask.annotate(team="y"):
        futures = c.map(_inc, range(n), key=[f"ug-map-{i}" for i in range(n)])
    assert c.submit(sum, futures).result() == sum(range(1, n + 1))
    parts = [dask.delayed(_inc)(i, dask_key_name=f"ug-delayed-{i}") for i in range(1500)]
    with dask.annotate(team="z"):
        (done,) = c.compute([dask.delayed(sum)(parts, dask_key_name="ug-total")])
    assert done.result() == sum(range(1, 1501))
    mapped, summed, computed = c.run_on_scheduler(_calls)
    assert (mapped["n_tasks"], mapped["n_keys"], mapped["all_in"]) == (n, n, True)
    assert _values(mapped) == {"team": (n, ["y"])}
    assert summed["n_tasks"] == 1 and "team" not in summed["annotations"]
    assert (computed["n_tasks"], computed["n_keys"], computed["all_in"]) == (1501, 1, True)
    assert _values(computed) == {"team": (1501, ["z"])}


def test_a_collections_own_annotations_reach_update_graph(watched: Client) -> None:
    c = watched
    with dask.annotate(team="layer", priority=3):
        inner = dask.delayed(_inc)(1, dask_key_name="ug-inner")
    outer = dask.delayed(_inc)(inner, dask_key_name="ug-outer")
    assert c.compute(outer).result() == 3
    (call,) = c.run_on_scheduler(_calls)
    assert call["n_tasks"] == 2
    assert _values(call) == {"team": (1, ["layer"]), "priority": (1, [3])}


def test_tasks_submitted_in_a_span_have_its_span_annotation(watched: Client) -> None:
    from shoal import span

    c = watched
    with span("ug-outer"), span("ug-inner") as inner_id:
        assert c.submit(_inc, 5, key="ug-in-span").result() == 6
    (call,) = c.run_on_scheduler(_calls)
    ((n, (value,)),) = [v for name, v in call["annotations"].items() if name == "span"]
    assert n == 1 and value["name"] == ("ug-outer", "ug-inner") and value["ids"][-1] == inner_id


class DaskStyle(dask_plugin.SchedulerPlugin):
    """Written against dask's base class, the way dask's docs and users write them."""

    name = "dask-style"

    def __init__(self) -> None:
        self.counter = 0
        self.homes: dict[Any, list[str]] = {}
        self.teams: dict[Any, Any] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def update_graph(self, scheduler: Any, *, keys: set[Any], tasks: list[Any],
                     annotations: dict[str, dict[Any, Any]], **kwargs: Any) -> None:
        self.teams.update(annotations.get("team", {}))

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.counter += 1
            ts = self.scheduler.tasks[key]
            self.homes[key] = sorted(ws.address for ws in ts.who_has)
            self.scheduler.log_event("dask-style", {"key": key, "team": self.teams.get(key)})

    def restart(self, scheduler: Any) -> None:
        self.counter = 0


def _dask_style_state(dask_scheduler: Any) -> tuple[int, dict[Any, list[str]]]:
    plugin = dask_scheduler.plugins["dask-style"]
    return plugin.counter, dict(plugin.homes)


def test_a_plugin_written_for_dask_runs_unchanged(client: Client) -> None:
    client.register_plugin(DaskStyle())
    try:
        with dask.annotate(team="blue"):
            assert client.submit(_inc, 10, key="ug-dask-style").result() == 11
        counter, homes = client.run_on_scheduler(_dask_style_state)
        assert counter == 1
        assert homes["ug-dask-style"][0] in client.scheduler_info()["workers"]
        events = [msg for _, msg in client.get_events("dask-style")]
        assert events == [{"key": "ug-dask-style", "team": "blue"}]
    finally:
        client.unregister_scheduler_plugin("dask-style")


# --- what a plugin reads of the scheduler's records (dask's names) ---------------------------


class Records(dask_plugin.SchedulerPlugin):
    """Reads the records the way dask's docs and diagnostics do, once a task is done."""

    name = "records"

    def __init__(self) -> None:
        self.seen: dict[Any, dict[str, Any]] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish != "memory":
            return
        ts = self.scheduler.tasks[key]
        (ws,) = ts.who_has
        self.seen[key] = {
            "prefix": ts.prefix.name, "group": ts.group.name, "nbytes": ts.nbytes,
            "state": ts.state, "annotations": ts.annotations,
            "worker": ws.address, "status": str(ws.status),
            "in_processing": any(t.key == key for t in self.scheduler.workers[ws.address]
                                 .processing),
        }


def _records_seen(dask_scheduler: Any) -> dict[Any, dict[str, Any]]:
    return dict(dask_scheduler.plugins["records"].seen)


def test_a_plugin_reads_tasks_workers_and_clients_as_dasks_records(client: Client) -> None:
    client.register_plugin(Records())
    try:
        assert client.submit(_inc, 1, key="inc-9101", retries=1).result() == 2
        seen = client.run_on_scheduler(_records_seen)["inc-9101"]
        assert seen["prefix"] == "inc" and seen["group"] == "inc"
        assert seen["state"] == "memory" and seen["nbytes"] > 0
        assert seen["annotations"] == {"retries": 1}
        assert seen["worker"] in client.scheduler_info()["workers"]
        assert seen["status"] == "Status.running" and not seen["in_processing"]
    finally:
        client.unregister_scheduler_plugin("records")


def _processes(dask_scheduler: Any) -> list[int]:
    return [ws.memory.process for ws in dask_scheduler.workers.values()]


def test_run_on_scheduler_reads_clients_memory_and_prefixes(client: Client) -> None:
    future = client.submit(_inc, 2, key="inc-9102")
    assert future.result() == 3
    assert client.id in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))
    wants = client.run_on_scheduler(
        lambda dask_scheduler: sorted(str(ts.key) for cs in dask_scheduler.clients.values()
                                      for ts in cs.wants_what))
    assert "inc-9102" in wants
    assert client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.task_prefixes["inc"].states["memory"]) >= 1
    # (a worker's process memory arrives with its first heartbeat)
    wait_for(lambda: all(p > 1_000_000 for p in client.run_on_scheduler(_processes)),
             timeout=30)


def _add_all_progress(dask_scheduler: Any) -> None:
    from distributed.diagnostics.progress import AllProgress

    AllProgress(dask_scheduler)  # (adds itself, as "all-progress")


def _all_progress(dask_scheduler: Any) -> tuple[dict[str, int], dict[str, int]]:
    plugin = dask_scheduler.plugins["all-progress"]
    return {p: len(keys) for p, keys in plugin.all.items()}, dict(plugin.nbytes)


def test_dasks_own_all_progress_plugin_runs_on_shoals_scheduler(client: Client) -> None:
    # (it reads ts.prefix.name, ts.nbytes and ts.state in every transition)
    client.run_on_scheduler(_add_all_progress)
    try:
        # (a prefix of its own: the shared cluster may still move other tests' tasks, which
        # the plugin counts too)
        futures = client.map(_inc, range(10), key=[f"allprogress-{i}" for i in range(10)])
        client.gather(futures)
        counts, nbytes = client.run_on_scheduler(_all_progress)
        assert counts.get("allprogress") == 10 and nbytes["allprogress"] > 0
        del futures
        wait_for(lambda: "allprogress" not in client.run_on_scheduler(_all_progress)[0],
                 timeout=30)
    finally:
        client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.remove_plugin("all-progress"))


def test_keys_the_user_names_get_dasks_prefix_of_the_key(client: Client) -> None:
    one = client.submit(_inc, 1, key="load-data-x1-1")
    many = client.map(_inc, range(2), key=["inc-9300", "inc-9301"])
    client.gather([one, *many])
    prefixes = client.run_on_scheduler(lambda dask_scheduler: {
        k: dask_scheduler.tasks[k].prefix.name for k in ("load-data-x1-1", "inc-9300")})
    assert prefixes == {"load-data-x1-1": "load-data", "inc-9300": "inc"}  # dask's key_split
