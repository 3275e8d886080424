"""Published datasets (``client.publish_dataset`` / ``get_dataset`` / ``list_datasets`` /
``unpublish_dataset``) as a pure state machine: ``Datasets.handle(*events) -> commands``.

Owns: name -> (pickled value, keys it refers to). A published dataset keeps its keys alive
on the scheduler after the publishing client lets go of them: each name holds its keys
through a pseudo-client ``published-<name>`` (dask's scheme), which the scheduler shell
turns into ``SchedulerState`` events. Must not know: sockets, task states, pickling.

Answers are ``("ok", value)`` or ``("error", exception type name, message)``; errors are
dask's: ``KeyError`` for an unknown name, or a name already published without override.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

Key = Any

# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetsPublished(Event):
    """``items``: (name, pickled value, keys the value refers to)."""

    client: str
    request_id: int
    items: list[tuple[Any, bytes, list[Key]]]
    override: bool


@dataclass(frozen=True, slots=True)
class DatasetsUnpublished(Event):
    client: str
    request_id: int
    names: list[Any]


@dataclass(frozen=True, slots=True)
class DatasetsAsked(Event):
    client: str
    request_id: int
    names: list[Any]


@dataclass(frozen=True, slots=True)
class DatasetNamesAsked(Event):
    client: str
    request_id: int


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerDatasets(Command):
    client: str
    request_id: int
    value: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class HoldKeys(Command):
    """Have ``holder`` (a pseudo-client) want ``keys``."""

    holder: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class LetGoKeys(Command):
    holder: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class DropHolder(Command):
    """``holder`` is gone: it wants nothing any more."""

    holder: str


def holder_of(name: Any) -> str:
    return f"published-{name!r}"


class Datasets:
    """Named datasets. Feed events to :meth:`handle`; carry out what it returns."""

    def __init__(self) -> None:
        self.published: dict[Any, tuple[bytes, list[Key]]] = {}
        self._out: list[Command] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            DatasetsPublished: self._on_published,
            DatasetsUnpublished: self._on_unpublished,
            DatasetsAsked: self._on_asked,
            DatasetNamesAsked: self._on_names,
        }

    def handle(self, *events: Event) -> list[Command]:
        for event in events:
            self._handlers[type(event)](event)
        out, self._out = self._out, []
        return out

    def _answer(self, ev: Any, value: tuple[Any, ...]) -> None:
        self._out.append(AnswerDatasets(ev.client, ev.request_id, value))

    def _on_published(self, ev: DatasetsPublished) -> None:
        names = [name for name, _, _ in ev.items]
        if len(set(names)) != len(names):
            self._answer(ev, ("error", "ValueError", f"a dataset name appears twice in {names!r}"))
            return
        if not ev.override:
            taken = [name for name in names if name in self.published]
            if taken:
                self._answer(ev, ("error", "KeyError",
                                  f"Dataset {taken[0]!r} already exists; unpublish it first, or "
                                  "pass override=True to replace it"))
                return
        for name, payload, keys in ev.items:
            keys = list(keys)
            holder = holder_of(name)
            self._out.append(HoldKeys(holder, keys))
            old = self.published.get(name)
            if old is not None:
                stale = [k for k in old[1] if k not in set(keys)]
                if stale:
                    self._out.append(LetGoKeys(holder, stale))
            self.published[name] = (payload, keys)
        self._answer(ev, ("ok", None))

    def _on_unpublished(self, ev: DatasetsUnpublished) -> None:
        for name in ev.names:  # an unknown name is ignored, as in dask
            if self.published.pop(name, None) is not None:
                self._out.append(DropHolder(holder_of(name)))
        self._answer(ev, ("ok", None))

    def _on_asked(self, ev: DatasetsAsked) -> None:
        """The pickled values of ``names``, None where a name is unknown (the client
        decides between its ``default`` and KeyError)."""
        found = [self.published.get(name) for name in ev.names]
        self._answer(ev, ("ok", [None if f is None else f[0] for f in found]))

    def _on_names(self, ev: DatasetNamesAsked) -> None:
        self._answer(ev, ("ok", sorted(self.published, key=str)))

    def validate(self) -> None:
        """Check the invariants; raises AssertionError. For tests."""
        for name, (payload, keys) in self.published.items():
            assert isinstance(payload, bytes), name
            assert isinstance(keys, list), name
