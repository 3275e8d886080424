"""The scheduler's records of ``span`` blocks (dask's ``SpansSchedulerExtension`` and its
``Span`` objects), read as dask's are: ``scheduler.extensions["spans"].spans[span_id]``,
in the process or through ``client.run_on_scheduler``.

Owns: the span tree (a span per id, its parent and children, found by name or tag), the
keys submitted in each span (the client says them with each graph: ``SpanSubmitted``),
and what their completions add up to (earliest start, latest stop, compute seconds by
prefix, bytes produced). Must not know: messages, sockets, the wall clock (the times come
in the calls; ``clock`` is set by the shell, for ``stop`` of a span still running, as
dask's reads ``time()``), or task logic (the task states are read from the scheduler's
task table, ``tasks_of``).

Memory: a span keeps the keys of its tasks the scheduler still knows; a task forgotten is
only counted (``forgotten``), so the records of a long-lived scheduler grow with its spans,
not with the tasks that ran in them.

Differences from dask: no ``"default"`` span for tasks outside any block; a key counts once
per span however often it runs (dask's task groups count each run); durations are the
workers' compute seconds (``"compute"``), the one activity shoal's workers report per task.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.scheduler._task_shards import Tasks

# Task states in which a task is done, for ``Span.done`` (dask's TaskGroup.done).
_DONE = frozenset(("memory", "erred", "released", "forgotten"))


class Span:
    """One ``span`` block's record (dask's ``distributed.spans.Span``): ``name`` (its tags,
    from the outermost block in), ``id``, ``parent`` and ``children``, ``enqueued`` (when
    the scheduler first heard of it), and the properties below, each over this span and
    every span nested in it."""

    __slots__ = ("_book", "_compute", "_forgotten", "_nbytes", "_parent", "_start", "_stop",
                 "children", "enqueued", "id", "keys", "name")

    def __init__(self, book: SpansBook, name: tuple[str, ...], id: str,
                 parent: Span | None, enqueued: float) -> None:
        self._book = book
        self.name = name
        self.id = id
        self._parent = parent
        self.children: list[Span] = []
        self.enqueued = enqueued
        self.keys: dict[Any, None] = {}  # its tasks the scheduler knows, in submission order
        self._forgotten = 0  # its tasks the scheduler has forgotten (their keys are not kept)
        self._start = 0.0
        self._stop = 0.0
        self._compute: dict[str, float] = {}  # task prefix -> seconds its tasks computed
        self._nbytes = 0

    def __repr__(self) -> str:
        return f"Span<name={self.name}, id={self.id}>"

    @property
    def parent(self) -> Span | None:
        return self._parent

    @property
    def annotation(self) -> dict[str, tuple[str, ...]]:
        """The ``dask.annotate(span=...)`` annotation of this span: every id from the root."""
        ids: list[str] = []
        node: Span | None = self
        while node is not None:
            ids.append(node.id)
            node = node._parent
        return {"name": self.name, "ids": tuple(reversed(ids))}

    def traverse_spans(self) -> Iterator[Span]:
        """This span and every span nested in it, top-down."""
        yield self
        for child in self.children:
            yield from child.traverse_spans()

    def _keys(self) -> Iterator[Any]:
        for span in self.traverse_spans():
            yield from span.keys

    @property
    def start(self) -> float:
        """When the first of its tasks started computing (of those finished; 0 if none has
        finished yet), no earlier than ``enqueued``."""
        out = min((s._start for s in self.traverse_spans() if s._start), default=0.0)
        return max(out, self.enqueued) if out else 0.0

    @property
    def stop(self) -> float:
        """When its last task finished, once all are ``done``; until then, now."""
        if self.done:
            out = max((s._stop for s in self.traverse_spans()), default=0.0)
        else:
            out = self._book.clock()
        return max(out, self.enqueued)

    @property
    def states(self) -> dict[str, int]:
        """How many of its tasks are in each state now (``"forgotten"``: no longer known)."""
        tasks = self._book.tasks_of()
        out: dict[str, int] = defaultdict(int)
        for key in self._keys():
            ts = tasks.get(key)
            out[ts.state if ts is not None else "forgotten"] += 1
        forgotten = sum(s._forgotten for s in self.traverse_spans())
        if forgotten:
            out["forgotten"] += forgotten
        return dict(out)

    @property
    def done(self) -> bool:
        """Whether every one of its tasks is done (in memory, erred, released, forgotten)."""
        return all(state in _DONE for state in self.states)

    @property
    def all_durations(self) -> dict[str, float]:
        """Seconds its finished tasks spent, by activity (``"compute"``)."""
        return {"compute": sum(sum(s._compute.values()) for s in self.traverse_spans())}

    @property
    def duration(self) -> float:
        """Seconds its finished tasks spent, in all."""
        return sum(self.all_durations.values())

    @property
    def nbytes_total(self) -> int:
        """Bytes of the results its tasks produced."""
        return sum(s._nbytes for s in self.traverse_spans())

    @property
    def cumulative_worker_metrics(self) -> dict[tuple[Hashable, ...], float]:
        """Worker time by ``("execute", <task prefix>, <activity>, <unit>)``, as dask's
        keys are (its activity here: ``"compute"``)."""
        out: dict[tuple[Hashable, ...], float] = defaultdict(float)
        for span in self.traverse_spans():
            for prefix, seconds in span._compute.items():
                out["execute", prefix, "compute", "seconds"] += seconds
        return dict(out)


class SpansBook:
    """Every span the scheduler heard of (dask's ``scheduler.extensions["spans"]``):
    ``spans`` by id, ``root_spans`` (the outermost, in order), ``spans_search_by_name``
    and ``spans_search_by_tag``."""

    def __init__(self, tasks_of: Callable[[], Tasks]) -> None:
        self.tasks_of = tasks_of
        self.clock: Callable[[], float] = lambda: 0.0  # the shell's wall clock (see header)
        self.spans: dict[str, Span] = {}
        self.root_spans: list[Span] = []
        self.spans_search_by_name: defaultdict[tuple[str, ...], list[Span]] = defaultdict(list)
        self.spans_search_by_tag: defaultdict[str, list[Span]] = defaultdict(list)
        # The innermost span of each key submitted in one (a key submitted again in another
        # span belongs to the later one from then on).
        self.by_key: dict[Any, Span] = {}

    def observe(self, name: tuple[str, ...], ids: tuple[str, ...], keys: list[Any],
                now: float) -> None:
        """``keys`` were submitted in the span ``ids[-1]`` (nested in ``ids[:-1]``)."""
        if not ids or len(name) != len(ids):
            return  # not a span annotation shoal's client makes: nothing to record
        span = self._ensure(tuple(name), tuple(ids), now)
        by_key = self.by_key
        for key in keys:
            before = by_key.get(key)
            if before is not None and before is not span:
                del before.keys[key]
            span.keys[key] = None
            by_key[key] = span

    def forgotten(self, key: Any) -> None:
        """The scheduler forgot ``key``: its span counts it, and keeps the key no more."""
        span = self.by_key.pop(key, None)
        if span is not None:
            span.keys.pop(key, None)
            span._forgotten += 1

    def _ensure(self, name: tuple[str, ...], ids: tuple[str, ...], now: float) -> Span:
        found = self.spans.get(ids[-1])
        if found is not None:
            return found
        parent = self._ensure(name[:-1], ids[:-1], now) if len(ids) > 1 else None
        span = Span(self, name, ids[-1], parent, now)
        self.spans[span.id] = span
        self.spans_search_by_name[name].append(span)
        for tag in dict.fromkeys(name):
            self.spans_search_by_tag[tag].append(span)
        if parent is None:
            self.root_spans.append(span)
        else:
            parent.children.append(span)
        return span

    def finished(self, key: Any, prefix: str, start: float, stop: float, nbytes: int) -> None:
        """A task finished (its result accepted): add it to its span, if it has one."""
        span = self.by_key.get(key)
        if span is None:
            return
        if not span._start or start < span._start:
            span._start = start
        if stop > span._stop:
            span._stop = stop
        span._compute[prefix] = span._compute.get(prefix, 0.0) + max(stop - start, 0.0)
        span._nbytes += max(nbytes, 0)

    def find_by_tags(self, *tags: str) -> Iterator[Span]:
        """Every span with any of ``tags``, outermost first (a span nested in one already
        found is not repeated)."""
        seen: set[str] = set()
        for tag in tags:
            for span in self.spans_search_by_tag.get(tag, ()):
                if span.id in seen:
                    continue
                for nested in span.traverse_spans():
                    seen.add(nested.id)
                yield span
