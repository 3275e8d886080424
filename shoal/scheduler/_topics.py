"""Structured event logs by topic (``client.log_event`` / ``get_events`` /
``subscribe_topic``, and what ``shoal.print`` / ``shoal.warn`` in tasks send), as a pure
state machine: ``Topics.handle(*events) -> commands``.

Owns: the bounded log of ``(time, msg)`` per topic and who is subscribed to what. Every
client is subscribed to "print" and "warn" when it joins, like dask's clients, which print
what tasks print. Must not know: sockets, clocks (time arrives in events), tasks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

DEFAULT_TOPICS = ("print", "warn")
# dask's distributed.admin.low-level-log-length: events kept per topic (None: all).
DEFAULT_MAXLEN = 1000


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberJoined(Event):
    client: str


@dataclass(frozen=True, slots=True)
class SubscriberLeft(Event):
    client: str


@dataclass(frozen=True, slots=True)
class EventLogged(Event):
    topics: list[str]
    msg: Any
    now: float


@dataclass(frozen=True, slots=True)
class TopicSubscribed(Event):
    client: str
    topic: str


@dataclass(frozen=True, slots=True)
class TopicUnsubscribed(Event):
    client: str
    topic: str


@dataclass(frozen=True, slots=True)
class EventsAsked(Event):
    """``topic=None``: every topic that has events."""

    client: str
    request_id: int
    topic: str | None


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverEvent(Command):
    client: str
    topic: str
    time: float
    msg: Any


@dataclass(frozen=True, slots=True)
class AnswerEvents(Command):
    """``value``: a list of ``[time, msg]`` for one topic, or ``{topic: [...]}`` for all."""

    client: str
    request_id: int
    value: Any


class Topics:
    """Event logs and subscriptions. Feed events to :meth:`handle`; carry out the result."""

    def __init__(self, maxlen: int | None = DEFAULT_MAXLEN) -> None:
        """``maxlen``: events kept per topic, the newest; None keeps every event and 0
        none (subscribers still get each one), as dask's deques do.

        Raises:
            ValueError: ``maxlen`` is negative.
        """
        if maxlen is not None and maxlen < 0:
            raise ValueError(
                f"the event log length (distributed.admin.low-level-log-length) must be "
                f"at least 0, or None for no bound; got {maxlen}")
        self.maxlen = maxlen
        self.logs: dict[str, deque[tuple[float, Any]]] = {}
        self.subscribers: dict[str, set[str]] = {}
        self.clients: set[str] = set()
        self._out: list[Command] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            SubscriberJoined: self._on_joined,
            SubscriberLeft: self._on_left,
            EventLogged: self._on_logged,
            TopicSubscribed: self._on_subscribed,
            TopicUnsubscribed: self._on_unsubscribed,
            EventsAsked: self._on_asked,
        }

    def handle(self, *events: Event) -> list[Command]:
        for event in events:
            self._handlers[type(event)](event)
        out, self._out = self._out, []
        return out

    def _on_joined(self, ev: SubscriberJoined) -> None:
        self.clients.add(ev.client)
        for topic in DEFAULT_TOPICS:
            self.subscribers.setdefault(topic, set()).add(ev.client)

    def _on_left(self, ev: SubscriberLeft) -> None:
        self.clients.discard(ev.client)
        for topic, subs in list(self.subscribers.items()):
            subs.discard(ev.client)
            if not subs:
                del self.subscribers[topic]

    def _on_logged(self, ev: EventLogged) -> None:
        for topic in ev.topics:
            log = self.logs.get(topic)
            if log is None:
                log = self.logs[topic] = deque(maxlen=self.maxlen)
            log.append((ev.now, ev.msg))
            for client in sorted(self.subscribers.get(topic, ())):
                self._out.append(DeliverEvent(client, topic, ev.now, ev.msg))

    def _on_subscribed(self, ev: TopicSubscribed) -> None:
        if ev.client in self.clients:
            self.subscribers.setdefault(ev.topic, set()).add(ev.client)

    def _on_unsubscribed(self, ev: TopicUnsubscribed) -> None:
        subs = self.subscribers.get(ev.topic)
        if subs is not None:
            subs.discard(ev.client)
            if not subs:
                del self.subscribers[ev.topic]

    def _on_asked(self, ev: EventsAsked) -> None:
        value: Any
        if ev.topic is None:
            value = {t: [list(e) for e in log] for t, log in self.logs.items() if log}
        else:
            value = [list(e) for e in self.logs.get(ev.topic, ())]
        self._out.append(AnswerEvents(ev.client, ev.request_id, value))

    def validate(self) -> None:
        """Check the invariants; raises AssertionError. For tests."""
        for topic, log in self.logs.items():
            assert self.maxlen is None or len(log) <= self.maxlen, topic
        for topic, subs in self.subscribers.items():
            assert subs, topic
            assert subs <= self.clients, (topic, subs - self.clients)
