"""A fused dask task's subgraph, ordered once where the graph is built.

Owns: running what dask's ``_execute_subgraph(inner, outkey, inkeys, *values)`` runs (the
tasks dask's fusion put in one task), with the order dask's ``execute_graph`` would compute
at every call (``dask.order`` of the subgraph, about half of a small fused task's run time)
computed once per distinct subgraph by the client. A blockwise layer's tasks share one
subgraph object, so a million fused tasks cost one ordering. Knows dask's task nodes; nothing
of the client, the worker or the wire.
"""

from __future__ import annotations

from typing import Any

from dask._task_spec import DataNode, GraphNode, _execute_subgraph


def ordered_subgraph(func: Any, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]] | None:
    """``(run_subgraph, args)`` equivalent to calling ``func(*args)`` when ``func`` is
    dask's ``_execute_subgraph`` over a dict of task nodes; else None. ``args`` may hold
    None where the caller fills in values later (from the fourth on: the inputs)."""
    if func is not _execute_subgraph or len(args) < 3:
        return None
    inner, outkey, inkeys = args[0], args[1], args[2]
    if type(inner) is not dict or type(inkeys) is not tuple or outkey not in inner:
        return None
    if not all(isinstance(node, GraphNode) for node in inner.values()):
        return None
    from dask.order import order

    final = dict(inner)
    for k in inkeys:
        final[k] = DataNode(None, None)  # as _execute_subgraph adds them (values: later)
    priorities = order(final)
    given = set(inkeys)  # their values come with the call
    steps = [k for k in sorted(final, key=priorities.__getitem__) if k not in given]
    # execute_graph drops a value once its last user has run (the outputs it returns kept)
    left: dict[Any, int] = {}
    for k in steps:
        for d in final[k].dependencies:
            left[d] = left.get(d, 0) + 1
    plan = []
    for k in steps:
        node = final[k]
        drops = []
        for d in node.dependencies:
            left[d] -= 1
            if not left[d] and d != outkey:
                drops.append(d)
        plan.append((k, node, tuple(drops)))
    return run_subgraph, (tuple(plan), outkey, inkeys, *args[3:])


def run_subgraph(plan: tuple[tuple[Any, Any, tuple[Any, ...]], ...], outkey: Any,
                 inkeys: tuple[Any, ...], *values: Any) -> Any:
    """Run the steps of :func:`ordered_subgraph`'s plan: ``(key, node, keys to drop)``."""
    cache: dict[Any, Any] = dict(zip(inkeys, values, strict=False))
    for key, node, drops in plan:
        cache[key] = node(cache)
        for d in drops:
            cache.pop(d, None)
    return cache[outkey]
