"""The static order of a graph's tasks (the last part of their priority): dask's
``dask.order.order``, computed in linear time for the graphs that are trees.

Owns: recognising an in-forest (every key is an input of at most one task: reductions,
``da`` sums, independent chains of a ``persist``) and ordering it as ``dask.order`` does,
for about a tenth of the cost. Every other graph goes to ``dask.order``. Knows graphs of
dask ``GraphNode``s only; nothing of the client or the wire.

What ``dask.order`` does on such a graph (read from its source; ``runnable`` stays empty,
since a finished task unlocks at most one other): it takes the outputs ("sinks") largest
first by its sort key, and walks each one's tree depth first, inputs with the largest sort
key first; a task comes right after its last input (its subtree is contiguous in the order,
so each reduction finishes before the next subtree's leaves start). The sort key is
``(subtree size, number of inputs, number of roots in the subtree, -max dependents of
those roots, str(key))``. The one freedom dask leaves is the order of the inputs (other
than the largest) of tasks on its first path down from each output, which follows set
iteration and so the string hash seed; here those go largest first too.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dask.order import order as dask_order


def task_order(graph: Mapping[Any, Any]) -> dict[Any, int]:
    """The priority of each key of ``graph`` (a dict of dask ``GraphNode``s; lower runs
    first): ``tree_order`` when the graph is an in-forest, else ``dask.order.order``."""
    if len(graph) <= 1:
        for key, node in graph.items():
            if key in node.dependencies:
                return dask_order(graph)  # raises dask's "Cycle detected" naming it
        return dict.fromkeys(graph, 0)
    ordered = tree_order(graph)
    return ordered if ordered is not None else dask_order(graph)


def ordered(graph: Mapping[Any, Any]) -> Iterator[tuple[Any, int]]:
    """The keys of ``graph`` with their ``task_order`` rank, each key after its inputs in
    ``graph`` (the order in which a graph's pieces go out: the scheduler gets first the
    tasks it will run first). For an in-forest the keys come as ``tree_order`` walks them,
    lazily: the first ones are ready before the walk has seen the whole graph (at a
    million tasks the walk is seconds the cluster would otherwise wait)."""
    return ordered_with_users(graph)[0]


def ordered_with_users(
    graph: Mapping[Any, Any],
) -> tuple[Iterator[tuple[Any, int]], Callable[[Any], int]]:
    """``ordered(graph)``, and how many tasks of ``graph`` use each key as an input (what
    tells which keys of a piece the graph's later pieces still need), from the pass over
    the graph the order makes anyway (an in-forest's: 1 or 0)."""
    if len(graph) <= 1:  # (a task that is its own input: a cycle)
        return iter(task_order(graph).items()), _no_users
    tree = _tree(graph)
    if tree is not None:  # made in order, each right after its last input
        walk, used = tree
        return zip(walk, itertools.count()), lambda k: 1 if k in used else 0
    ranks = dask_order(graph)
    keys = inputs_before(graph, sorted(graph, key=ranks.__getitem__))
    users: collections.Counter[Any] = collections.Counter()
    for node in graph.values():
        users.update(node.dependencies)
    return ((k, ranks[k]) for k in keys), users.__getitem__


def _no_users(key: Any) -> int:
    return 0


def inputs_before(graph: Mapping[Any, Any], keys: list[Any]) -> list[Any]:
    """``keys`` (those of ``graph``), reordered only if needed so that each comes after
    its inputs in ``graph``: the earliest key whose inputs are all placed goes next.
    Keys in a cycle keep their place at the end (the scheduler reports them)."""
    place = {k: i for i, k in enumerate(keys)}
    if all(place[d] < i for i, k in enumerate(keys)
           for d in graph[k].dependencies if d in place):
        return keys
    import heapq

    waiting = {k: sum(1 for d in set(graph[k].dependencies) if d in place) for k in keys}
    users: dict[Any, list[Any]] = {}
    for k in keys:
        for d in set(graph[k].dependencies):
            if d in place:
                users.setdefault(d, []).append(k)
    ready = [place[k] for k in keys if not waiting[k]]
    heapq.heapify(ready)
    out: list[Any] = []
    while ready:
        k = keys[heapq.heappop(ready)]
        out.append(k)
        for u in users.get(k, ()):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, place[u])
    if len(out) < len(keys):
        placed = set(out)
        out.extend(k for k in keys if k not in placed)
    return out


def tree_order(graph: Mapping[Any, Any]) -> dict[Any, int] | None:
    """``dask.order.order(graph)`` in O(n) when every key (in ``graph`` or an input from
    outside it) is an input of at most one task, else None. Keys from outside the graph
    (held futures) take part as roots, as in dask, and get no priority."""
    walk = tree_walk(graph)
    return None if walk is None else {k: i for i, k in enumerate(walk)}


def tree_walk(graph: Mapping[Any, Any]) -> Iterator[Any] | None:
    """The keys of ``graph`` in ``tree_order``'s order (a key's rank is its position),
    made as they are walked, or None if ``graph`` is not an in-forest. The sizes of the
    subtrees are computed before the first key (over the tasks with inputs only)."""
    tree = _tree(graph)
    return None if tree is None else tree[0]


def _tree(graph: Mapping[Any, Any]) -> tuple[Iterator[Any], set[Any]] | None:
    """``tree_walk``'s walk, and the keys that are some task's input, or None."""
    inputs: dict[Any, Any] = {}  # key -> its tasks's inputs (only keys with some)
    used: set[Any] = set()  # keys that are some task's input
    seen = 0
    for key, node in graph.items():
        deps = node.dependencies
        if deps:
            used.update(deps)
            seen += len(deps)
            if len(used) != seen:
                return None  # an input of two tasks: not a tree
            inputs[key] = deps
    sinks = [k for k in graph if k not in used]
    # Breadth first from the outputs over the tasks with inputs: each after the task it
    # feeds, so the reverse visits inputs before their task. Keys without inputs (most
    # of a tree) are only counted: each has size 1 and 1 root, read as the default.
    has_inputs = inputs.keys()
    inner = [k for k in sinks if k in has_inputs]
    extend = inner.extend
    reached = len(sinks)
    for k in inner:
        deps = inputs[k]
        reached += len(deps)
        extend(filter(has_inputs.__contains__, deps))
    # Every key reached once: the graph's and the outside inputs, len(used) - (len(graph)
    # - len(sinks)) of them (the used keys of the graph are all but its sinks). Counted, not
    # ``used.difference(graph)``: one C call of 0.6 s at 1.3M keys, holding the GIL, which
    # the scheduler's loop thread then waits for.
    if reached != len(used) + len(sinks):
        return None  # a cycle nothing outside it uses: dask.order names it
    size: dict[Any, int] = {}
    roots: dict[Any, int] = {}
    size_of = size.get
    for k in reversed(inner):
        s = r = 0
        for d in inputs[k]:
            n = size_of(d)
            if n is None:
                s += 1
                r += 1
            else:
                s += n
                r += roots[d]
        size[k] = s + 1
        roots[k] = r

    def rank(k: Any) -> tuple[int, int, int, str]:
        # dask's sort key: a task without inputs counts no roots under it; "-max
        # dependents of the roots" is left out, as it is -1 for any two inputs of one task
        deps = inputs.get(k)
        if not deps:
            return (1, 0, 0, str(k))
        return (size[k], len(deps), roots[k], str(k))

    def sink_rank(k: Any) -> tuple[int, int, int, int, str]:
        # among outputs that term matters: 0 for a task with no inputs, -1 otherwise
        deps = inputs.get(k)
        if not deps:
            return (1, 0, 0, 0, str(k))
        return (size[k], len(deps), roots[k], -1, str(k))

    # dask takes the largest output first, unless the graph is "asymmetric": about as many
    # roots as outputs, and roots reaching different numbers of outputs (here: tasks with
    # neither inputs nor users, beside trees). It then takes the smallest first. (Strictly,
    # dask sees the asymmetry only if such a task comes after another root in set order.)
    n_roots = reached - len(inputs)
    isolated = sum(1 for k in sinks if k not in inputs)
    smallest_first = 0 < isolated < n_roots and abs(n_roots - len(sinks)) / n_roots < 0.8
    order = sorted(sinks, key=sink_rank, reverse=not smallest_first)
    return _walk(graph, order, inputs, rank), used


def _walk(graph: Mapping[Any, Any], sinks: list[Any], inputs: dict[Any, Any],
          rank: Callable[[Any], Any]) -> Iterator[Any]:
    """Each of ``sinks``' trees depth first, inputs largest ``rank`` first; a task right
    after its last input. Yields the keys of ``graph`` only (outside keys are roots here,
    not tasks of this graph)."""
    has_inputs = inputs.keys()
    for sink in sinks:
        stack: list[tuple[Any, bool]] = [(sink, False)]
        while stack:
            k, expanded = stack.pop()
            deps = None if expanded else inputs.get(k)
            if deps:
                stack.append((k, True))
                if len(deps) == 1:
                    (d,) = deps
                    stack.append((d, False))
                elif not has_inputs.isdisjoint(deps):  # (any input with inputs)
                    stack.extend([(d, False) for d in sorted(deps, key=rank)])
                else:  # inputs without inputs (most of a tree): rank is str(key) alone,
                    # and each is placed at once, largest first (as popped off the stack)
                    for d in reversed(sorted(deps, key=str)):
                        if d in graph:
                            yield d
            elif k in graph:
                yield k
