"""The task graph as the dashboard's ``/graph`` draws it: a read-only view of the
scheduler's tasks, computed on its event loop when a page asks.

Cost is bounded by ``limit``: past that many tasks (or edges) the view says so in O(task
prefixes) and lists nothing, as dask's ``/graph`` does past ``graph-max-items``. Under it,
one O(tasks + edges) pass reads each task's state; the structure (keys, prefixes,
dependencies, priority order) is shipped only when it changed since the caller's ``known``
token, so a page that polls pays for the structure once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.scheduler._state_base import STATES

if TYPE_CHECKING:
    from shoal.scheduler._state import SchedulerState
    from shoal.scheduler._tasks import TaskState

GRAPH_STATES: tuple[str, ...] = STATES
"""What a node's state code indexes (``states[i]`` is ``GRAPH_STATES[code]``)."""
_CODE = {name: i for i, name in enumerate(GRAPH_STATES)}

EDGES_PER_TASK = 8
"""A graph with more than ``limit * EDGES_PER_TASK`` edges counts as too big to draw too."""


def _too_many(state: SchedulerState, limit: int, edges: int | None) -> dict[str, Any]:
    by_state = dict.fromkeys(GRAPH_STATES, 0)
    for counts in state.group_counts.values():
        for name, n in counts.items():
            if name in by_state:
                by_state[name] += n
    return {
        "tasks": len(state.tasks), "limit": limit, "too_many": True, "edge_count": edges,
        "states": list(GRAPH_STATES), "by_state": by_state,
    }


def task_graph(state: SchedulerState, limit: int, known: str | None = None) -> dict[str, Any]:
    """The ``/api/graph`` document for ``state``.

    Returns ``{"tasks", "limit", "too_many", "states", "layout", "state"}`` and, when the
    structure differs from the one named by ``known``, also ``"nodes"`` (keys as strings),
    ``"prefix"`` (an index into ``"prefixes"`` per node), ``"edges"`` (flat pairs
    ``dependency, dependent`` of node indices) and ``"rank"`` (each node's place in
    priority order). ``"state"`` is one code per node, an index into ``"states"``.
    Past ``limit`` tasks only the counts are given (``"too_many": True, "by_state"``).
    """
    tasks = state.tasks
    if len(tasks) > limit:  # O(1): a million-task graph costs nothing here
        return _too_many(state, limit, None)
    index: dict[TaskState, int] = {}
    codes: list[int] = []
    edges = 0
    code = _CODE.get
    for i, ts in enumerate(tasks.values()):
        index[ts] = i
        codes.append(code(ts.state, 0))
        edges += len(ts.dependencies)
    if edges > limit * EDGES_PER_TASK:
        return _too_many(state, limit, edges)
    # Keys in order and the edge count name the structure: dependencies are fixed once a
    # task's definition is in, and a task forgotten and made again moves to the end.
    layout = f"{len(tasks)}-{edges}-{hash(tuple(tasks)) & 0xFFFFFFFFFFFF:x}"
    doc: dict[str, Any] = {
        "tasks": len(tasks), "limit": limit, "too_many": False, "states": list(GRAPH_STATES),
        "edge_count": edges, "layout": layout, "state": codes,
    }
    if known == layout:
        return doc
    prefixes: dict[str, int] = {}
    nodes: list[str] = []
    prefix_of: list[int] = []
    pairs: list[int] = []
    for i, ts in enumerate(tasks.values()):
        nodes.append(str(ts.key))
        prefix_of.append(prefixes.setdefault(ts.prefix, len(prefixes)))
        for dep in ts.dependencies:
            j = index.get(dep)
            if j is not None:
                pairs += (j, i)
    order = list(range(len(nodes)))
    try:
        prios = [ts.prio for ts in tasks.values()]
        order.sort(key=prios.__getitem__)
    except TypeError:  # packed ints beside tuples: compare the tuples they stand for
        prios = [ts.priority for ts in tasks.values()]
        order.sort(key=prios.__getitem__)
    rank = [0] * len(order)
    for r, i in enumerate(order):
        rank[i] = r
    doc.update(nodes=nodes, prefix=prefix_of, prefixes=list(prefixes), edges=pairs, rank=rank)
    return doc
