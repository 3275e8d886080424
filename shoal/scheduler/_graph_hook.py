"""What scheduler plugins' ``update_graph`` hook gets: one call per graph a client submits
(a ``compute``, ``persist``, ``submit`` or ``map`` call), made once its tasks are in the
scheduler's task table and before the transition hooks of their first moves, as dask's.

Owns: noting each ``UpdateGraph`` while scheduler plugins are registered (a graph sent in
pieces is gathered until its last piece), and the hook's arguments: ``tasks`` (every key of
the update), ``keys`` (those the client wants), ``annotations`` (``{name: {key: value}}``,
of the tasks new to the scheduler, as dask resolves them: the options the rows carry,
``retries``, ``priority`` (the user's number), ``workers``, ``resources`` and
``allow_other_workers``; the client's other ``dask.annotate`` names, from the
``GraphAnnotations`` message before the graph's last piece; the ``span`` of the
tasks submitted in a ``shoal.span`` block) and ``priority`` (``{key: priority tuple}``).
Reads the task table and the span records; changes nothing. Must not know connections.

A plugin registered while a graph is arriving in pieces hears of the pieces from then on.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from shoal.protocol._messages import UpdateGraph
from shoal.protocol._serialize import Serialized, loads
from shoal.scheduler._state_base import stimulus_id

if TYPE_CHECKING:
    from shoal.scheduler._state import SchedulerState
    from shoal.scheduler._task_shards import Tasks

logger = logging.getLogger("shoal.scheduler")


class GraphNote:
    """One submission as the hook will describe it, gathered piece by piece."""

    __slots__ = ("annotations", "client", "custom", "event", "new", "tasks", "wanted")

    def __init__(self, client: str) -> None:
        self.client = client  # the Client.id (dask names clients so)
        # The event of its last piece: the hook's stimulus id is the one of that event's
        # step, which the moves it makes carry too.
        self.event: Any = None
        self.tasks: list[Any] = []  # every row's key, in order
        self.wanted: list[Any] = []
        self.new: set[Any] = set()  # the rows' keys the scheduler did not have yet
        self.annotations: dict[str, dict[Any, Any]] = {}  # what the rows say, new keys only
        self.custom: list[Serialized] = []  # the client's other annotations (pickled)


class GraphNotes:
    """The submissions being noted for ``update_graph``, by (session, stream)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], GraphNote] = {}
        # Submissions complete in events not yet applied: their hook comes after the step.
        self._ready: list[GraphNote] = []
        # (session, stream) -> the annotations of that stream's next last piece
        self._annotations: dict[tuple[str, int], Serialized] = {}
        self._last = 0.0  # the last stimulus time given: each call's id is its own

    def annotate(self, session: str, stream: int, annotations: Serialized) -> None:
        """``GraphAnnotations``: the client's other annotations of the graph whose last
        piece (of ``stream``; 0: a whole graph) comes next from ``session``."""
        self._annotations[(session, stream)] = annotations

    def pending(self) -> int:
        """How many submissions are noted and not yet hooked, with annotations waiting."""
        return len(self._open) + len(self._ready) + len(self._annotations)

    def take_ready(self) -> list[GraphNote]:
        """The submissions completed since the last call (the shell calls their hooks once
        the events carrying them are applied)."""
        ready, self._ready = self._ready, []
        return ready

    def piece(self, session: str, client: str, msg: UpdateGraph,
              tasks: Tasks, event: Any = None) -> GraphNote | None:
        """Note ``msg`` from client session ``session`` as it becomes ``event`` (its tasks
        are told from those the scheduler had, in ``tasks``: the table as the message's
        batch arrived). Returns the submission's note when ``msg`` is its last piece (a
        whole graph is its own) and it has tasks, and keeps it for ``take_ready``; else
        None."""
        slot = (session, msg.stream)
        note = self._open.pop(slot, None) if msg.stream else None
        if note is None:
            note = GraphNote(client)
        annotations = note.annotations
        for row in msg.tasks:
            key, _payload, _deps, _fids, prio, retries, workers, _prefix = row
            note.tasks.append(key)
            ts = tasks.get(key)
            if ts is not None and (ts.state != "released" or ts.payload is not None):
                continue  # (the state keeps what it had: so do its annotations, as dask's)
            note.new.add(key)
            if retries:
                annotations.setdefault("retries", {})[key] = retries
            if prio and prio[0]:  # (-priority, generation, order)
                annotations.setdefault("priority", {})[key] = -prio[0]
            if workers:
                annotations.setdefault("workers", {})[key] = list(workers)
        for key, need, loose in msg.restrictions or ():
            if key in note.new:
                if need:
                    annotations.setdefault("resources", {})[key] = dict(need)
                if loose:
                    annotations.setdefault("allow_other_workers", {})[key] = True
        note.wanted.extend(msg.wanted)
        if msg.more and msg.stream:
            self._open[slot] = note
            return None
        if self._annotations:
            custom = self._annotations.pop(slot, None)
            if custom is not None:
                note.custom.append(custom)
        # No task at all: keys wanted again (a dataset fetched, a future a task returned),
        # dask's client-desires-keys, which is no graph update.
        if not note.tasks:
            return None
        note.event = event
        self._ready.append(note)
        return note

    def forget(self, session: str) -> None:
        """Client session ``session`` ended: drop what it left unfinished."""
        for slot in [s for s in self._open if s[0] == session]:
            del self._open[slot]
        for slot in [s for s in self._annotations if s[0] == session]:
            del self._annotations[slot]

    def stamp(self) -> float:
        """The time of a step that takes a graph's last piece: now, but later than the
        last one given, so that each graph's stimulus id is its own."""
        now = max(time.time(), math.nextafter(self._last, math.inf))
        self._last = now
        return now

    def arguments(self, note: GraphNote, state: SchedulerState,
                  now: float | None = None) -> dict[str, Any]:
        """The keyword arguments of ``update_graph(scheduler, **arguments)`` for ``note``,
        once the state has taken its last piece in a step at ``now`` (its stimulus id is
        that step's, which the graph's moves carry)."""
        keys = list(dict.fromkeys(note.tasks))
        in_rows = set(keys)
        keys += [k for k in dict.fromkeys(note.wanted) if k not in in_rows]
        table = state.tasks
        priority = {k: table[k].priority for k in keys if k in table}
        annotations = {name: dict(per_key) for name, per_key in note.annotations.items()}
        for blob in note.custom:
            try:
                custom = loads(blob)
            except Exception:
                logger.exception("the annotations of a graph from client %s could not be "
                                 "unpickled here; update_graph hooks get the others",
                                 note.client)
                continue
            for name, per_key in custom.items():
                mine = {k: v for k, v in per_key.items() if k in note.new}
                if mine:
                    annotations.setdefault(name, {}).update(mine)
        by_key = state.spans.by_key
        if by_key:
            spans = {k: by_key[k].annotation for k in note.new if k in by_key}
            if spans:
                annotations["span"] = spans
        if now is None:
            now = self.stamp()
        return {"client": note.client, "keys": set(note.wanted), "tasks": keys,
                "annotations": annotations, "priority": priority,
                "stimulus_id": stimulus_id("GraphSubmitted", now)}
