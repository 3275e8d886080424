"""``span(*tags)``: dask's context manager that tags the tasks submitted or computed in it
(``distributed.span``), and carrying the tag into the tasks themselves.

Owns: the ``"span"`` annotation (``{"name": tags, "ids": ids}``, nested spans extend
both) and wrapping the function of each task submitted under one, so that code running in
the task reads it with ``dask.get_annotations()["span"]`` and what it submits is in the
same span, as in dask. Must not know: how tasks travel or run (the wrapper is an ordinary
picklable callable), and telling the scheduler which keys were submitted in which span
(``span_tasks``: ``SpanTasks`` messages, ahead of their graph), for its span records
(``scheduler/_spans.py``, dask's ``SpansSchedulerExtension``).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import dask
from dask._task_spec import Task

from shoal.protocol._messages import SpanTasks


@contextmanager
def span(*tags: str) -> Generator[str, None, None]:
    """Tag the tasks submitted or computed in this block as part of a span, as dask's
    ``distributed.span``; yields the span's id (a new uuid each time the block is
    entered). Nested blocks make sub-spans: the annotation's ``"name"`` is every tag from
    the outermost in, ``"ids"`` every id. Inside the block, and inside the tasks,
    ``dask.get_annotations()["span"]`` is ``{"name": (...), "ids": (...)}``.

    Raises:
        ValueError: no tag given.
    """
    if not tags:
        raise ValueError("Must specify at least one span tag")
    outer = dask.get_annotations().get("span")
    names = tuple(outer["name"]) if outer else ()
    ids_before = tuple(outer["ids"]) if outer else ()
    ids = tuple(str(uuid.uuid4()) for _ in tags)
    with dask.annotate(span={"name": names + tuple(tags), "ids": ids_before + ids}):
        yield ids[-1]


class InSpan:
    """A task's function, run with its span annotated (``dask.get_annotations()``)."""

    __slots__ = ("func", "span")

    def __init__(self, span: dict[str, Any], func: Any) -> None:
        self.span = span
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with dask.annotate(span=self.span):
            return self.func(*args, **kwargs)

    def __reduce__(self) -> Any:
        return InSpan, (self.span, self.func)

    def __repr__(self) -> str:
        return f"InSpan({self.span['name']!r}, {self.func!r})"


def active_span() -> dict[str, Any] | None:
    """The span annotation of the enclosing ``span`` block, if any."""
    found = dask.get_annotations().get("span")
    return found if isinstance(found, dict) else None


def in_span(func: Any, span: dict[str, Any] | None) -> Any:
    """``func``, wrapped to run in ``span`` (as it is when there is none)."""
    return func if span is None else InSpan(span, func)


def graph_in_span(graph: dict[Any, Any], span: dict[str, Any] | None,
                  per_key: Any = None) -> dict[Any, Any]:
    """The graph with each task's function run in its span: the collection's own per-key
    span annotation (``per_key``), else ``span``. One wrapper per (span, function), so a
    layer's function still travels once."""
    if span is None and not per_key:
        return graph
    wrappers: dict[tuple[int, int], InSpan] = {}
    out = {}
    for key, node in graph.items():
        chosen = per_key.get(key, span) if isinstance(per_key, dict) else span
        if chosen is None or not isinstance(node, Task) or isinstance(node.func, InSpan):
            out[key] = node
            continue
        wrapper = wrappers.get((id(chosen), id(node.func)))
        if wrapper is None:
            wrapper = wrappers[(id(chosen), id(node.func))] = InSpan(chosen, node.func)
        out[key] = Task(node.key, wrapper, *node.args, _data_producer=node._data_producer,
                        **node.kwargs)
    return out


def span_tasks(pairs: Any) -> list[SpanTasks]:
    """``(key, span annotation)`` pairs as one ``SpanTasks`` per span, keys in order."""
    by_span: dict[tuple[Any, ...], tuple[dict[str, Any], list[Any]]] = {}
    for key, annotation in pairs:
        ids = tuple(annotation["ids"])
        found = by_span.get(ids)
        if found is None:
            found = by_span[ids] = (annotation, [])
        found[1].append(key)
    return [SpanTasks(list(a["name"]), list(a["ids"]), keys) for a, keys in by_span.values()]


def spans_of_graph(graph: dict[Any, Any]) -> list[SpanTasks]:
    """The ``SpanTasks`` of a graph ``graph_in_span`` made (its tasks' ``InSpan``)."""
    return span_tasks((key, node.func.span) for key, node in graph.items()
                      if isinstance(node, Task) and isinstance(node.func, InSpan))
