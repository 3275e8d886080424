"""A scriptable :class:`DashboardSource` for tests: no scheduler, data changes on demand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from shoal.dashboard._source import (
    STATES,
    PrefixCounts,
    Snapshot,
    TaskStreamRecord,
    WorkerInfo,
)

GiB = 2**30


class _FakeTask:
    """What the graph view reads of a scheduler task (hashed by identity, like one)."""

    def __init__(self, key: str, prefix: str, state: str, prio: int) -> None:
        self.key, self.prefix, self.state, self.prio = key, prefix, state, prio
        self.dependencies: tuple[_FakeTask, ...] = ()


def make_worker(
    i: int, *, nthreads: int = 2, processing: int = 0, now: float = 1000.0
) -> WorkerInfo:
    return {
        "address": f"tcp://127.0.0.1:{40000 + i}",
        "name": f"worker-{i}",
        "nthreads": nthreads,
        "memory_limit": 4 * GiB,
        "memory_managed": (i + 1) * 100 * 2**20,
        "memory_process": (i + 1) * 300 * 2**20,
        "memory_spilled": i * 50 * 2**20,
        "status": "paused" if i == 1 else "running",
        "cpu": 50.0 + i,
        "processing": processing,
        "in_memory": 10 * i,
        "last_seen": now - 0.5,
    }


def counts(**kw: int) -> PrefixCounts:
    c: PrefixCounts = dict.fromkeys(STATES, 0)  # type: ignore[assignment]
    c.update(kw)  # type: ignore[typeddict-item]
    return c


class FakeSource:
    """Holds a snapshot and an append-only task stream that tests mutate between requests."""

    def __init__(self, n_workers: int = 2, now: float = 1000.0) -> None:
        self.now = now
        self.workers: list[WorkerInfo] = [make_worker(i, now=now) for i in range(n_workers)]
        self.prefixes: dict[str, PrefixCounts] = {}
        self.records: list[TaskStreamRecord] = []
        self.tasks_per_second = 0.0
        self.snapshot_calls = 0
        self.graph: dict[str, tuple[str, list[str]]] = {}  # key -> (state, dependencies)
        self.graph_calls: list[tuple[int, str | None]] = []
        self.groups: dict[str, PrefixCounts] = {}  # name -> counts, oldest first
        self.exceptions: list[dict[str, Any]] = []  # newest first

    def snapshot(self) -> Snapshot:
        self.snapshot_calls += 1
        ws = self.workers
        return {
            "scheduler": {
                "address": "tcp://127.0.0.1:8786",
                "started": self.now - 75.0,
                "now": self.now,
            },
            "workers": [dict(w) for w in ws],  # type: ignore[misc]
            "prefixes": {k: dict(v) for k, v in self.prefixes.items()},  # type: ignore[misc]
            "totals": {
                "tasks": sum(sum(c.values()) for c in self.prefixes.values()),
                "workers": len(ws),
                "nthreads": sum(w["nthreads"] for w in ws),
                "memory_limit": sum(w["memory_limit"] for w in ws),
                "memory_managed": sum(w["memory_managed"] for w in ws),
                "memory_process": sum(w["memory_process"] for w in ws),
                "memory_spilled": sum(w["memory_spilled"] for w in ws),
                "paused": sum(w["status"] == "paused" for w in ws),
            },
            "tasks_per_second": self.tasks_per_second,
        }

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[TaskStreamRecord]]:
        if cursor < 0:
            return len(self.records), []
        page = self.records[cursor:] if limit is None else self.records[cursor : cursor + limit]
        self.largest_page = max(getattr(self, "largest_page", 0), len(page))
        return cursor + len(page), page

    def add_record(
        self, key: str, worker: int, thread: int, start: float, stop: float, kind: str = "compute"
    ) -> None:
        prefix = key.rsplit("-", 1)[0]
        self.records.append(
            {
                "key": key,
                "prefix": prefix,
                "worker": self.workers[worker]["address"],
                "thread": thread,
                "start": start,
                "stop": stop,
                "kind": kind,  # type: ignore[typeddict-item]
            }
        )

    def task_graph(self, limit: int, known: str | None = None) -> Any:
        """The real view (``shoal.scheduler._graph_view``) over stand-ins for tasks."""
        from shoal.scheduler._graph_view import task_graph

        self.graph_calls.append((limit, known))
        tasks: dict[str, Any] = {}
        for i, (key, (state, _)) in enumerate(self.graph.items()):
            tasks[key] = _FakeTask(key, key.rsplit("-", 1)[0], state, i)
        for key, (_, deps) in self.graph.items():
            tasks[key].dependencies = tuple(tasks[d] for d in deps)
        counts: dict[str, dict[str, int]] = {}
        for ts in tasks.values():
            c = counts.setdefault(ts.prefix, {})
            c[ts.state] = c.get(ts.state, 0) + 1
        return task_graph(SimpleNamespace(tasks=tasks, group_counts=counts), limit, known)

    def task_group_rows(self, limit: int) -> dict[str, Any]:
        rows = [{"name": name, "prefix": name.rsplit("-", 1)[0], **counts}
                for name, counts in reversed(self.groups.items())][:limit]
        return {"groups": len(self.groups), "limit": limit, "rows": rows}

    def erred_tasks(self, limit: int) -> dict[str, Any]:
        return {"count": len(self.exceptions), "kept": 100, "limit": limit,
                "rows": self.exceptions[:limit]}
