"""Structured event logs by topic (``client.log_event`` / ``get_events`` /
``subscribe_topic``, and what ``shoal.print`` / ``shoal.warn`` in tasks send), as a pure
state machine: ``Topics.handle(*events) -> commands``.

Owns: the bounded log of ``(time, msg)`` per topic and who is subscribed to what. Every
client is subscribed to "print" and "warn" when it joins, like dask's clients, which print
what tasks print. The topic named after a worker or client that left is cleared once it
has been gone for ``cleanup_delay`` (dask's ``distributed.scheduler.events-cleanup-delay``).
Must not know: sockets, clocks (time arrives in events), config, tasks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

DEFAULT_TOPICS = ("print", "warn")
# dask's distributed.admin.low-level-log-length: events kept per topic (None: all).
DEFAULT_MAXLEN = 1000
# dask's distributed.scheduler.events-cleanup-delay ("1h"), in seconds.
DEFAULT_CLEANUP_DELAY = 3600.0


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


@dataclass(frozen=True, slots=True)
class OwnerLeft(Event):
    """The worker or client whose name is ``topic`` left the scheduler at ``now`` (a
    monotonic time): its topic's events go once it has been gone ``cleanup_delay``."""

    topic: str
    now: float


@dataclass(frozen=True, slots=True)
class OwnerJoined(Event):
    """The worker or client whose name is ``topic`` is (back) on the scheduler."""

    topic: str


@dataclass(frozen=True, slots=True)
class CleanupDue(Event):
    """A tick of the shell at ``now`` (the clock of :class:`OwnerLeft`)."""

    now: float


def membership(msg: Mapping[str, Any], now: float) -> list[Event]:
    """The owner events a scheduler's membership event stands for: dask's
    ``{"action": "add-worker" | "remove-worker", "worker": address}`` and
    ``{"action": "add-client" | "remove-client", "client": name}`` (as the scheduler logs
    them on ``"all"``); nothing for any other message."""
    action = msg.get("action")
    if action in ("add-worker", "remove-worker"):
        owner = msg.get("worker")
    elif action in ("add-client", "remove-client"):
        owner = msg.get("client")
    else:
        return []
    if not isinstance(owner, str):
        return []
    return [OwnerJoined(owner) if action.startswith("add-") else OwnerLeft(owner, now)]


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

    def __init__(self, maxlen: int | None = DEFAULT_MAXLEN,
                 cleanup_delay: float | None = DEFAULT_CLEANUP_DELAY) -> None:
        """``maxlen``: events kept per topic, the newest; None keeps every event and 0
        none (subscribers still get each one), as dask's deques do. ``cleanup_delay``:
        seconds after which the topic of a worker or client that left (and has not come
        back) loses its events; None never.

        Raises:
            ValueError: ``maxlen`` is negative.
        """
        if maxlen is not None and maxlen < 0:
            raise ValueError(
                f"the event log length (distributed.admin.low-level-log-length) must be "
                f"at least 0, or None for no bound; got {maxlen}")
        self.maxlen = maxlen
        self.cleanup_delay = cleanup_delay
        # Owners gone, and since when; ``_due`` holds them in the order they left (an entry
        # whose time no longer matches ``departed`` is stale: the owner came back).
        self.departed: dict[str, float] = {}
        self._due: deque[tuple[float, str]] = deque()
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
            OwnerLeft: self._on_owner_left,
            OwnerJoined: self._on_owner_joined,
            CleanupDue: self._on_cleanup_due,
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
        self._out.extend(self.log(ev.topics, ev.msg, ev.now))

    def log(self, topics: list[str], msg: Any, now: float) -> list[DeliverEvent]:
        """``EventLogged`` without the event object (``handle`` of it is the same): for the
        scheduler's own events that stand for no owner (``membership`` says none), one per
        submitted graph, where building the event and dispatching it cost as much."""
        out: list[DeliverEvent] = []
        for topic in topics:
            log = self.logs.get(topic)
            if log is None:
                log = self.logs[topic] = deque(maxlen=self.maxlen)
            log.append((now, msg))
            subscribers = self.subscribers.get(topic)
            if subscribers:
                for client in sorted(subscribers):
                    out.append(DeliverEvent(client, topic, now, msg))
        return out

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

    def _on_owner_left(self, ev: OwnerLeft) -> None:
        if self.cleanup_delay is None:
            return
        self.departed[ev.topic] = ev.now
        self._due.append((ev.now, ev.topic))

    def _on_owner_joined(self, ev: OwnerJoined) -> None:
        self.departed.pop(ev.topic, None)
        if not self.departed:
            self._due.clear()

    def _on_cleanup_due(self, ev: CleanupDue) -> None:
        if self.cleanup_delay is None:
            return
        due = self._due
        while due and ev.now - due[0][0] >= self.cleanup_delay:  # ends: pops one each turn
            since, topic = due.popleft()
            if self.departed.get(topic) == since:
                del self.departed[topic]
                self.logs.pop(topic, None)  # dask truncates; its subscribers stay

    def validate(self) -> None:
        """Check the invariants; raises AssertionError. For tests."""
        for topic, log in self.logs.items():
            assert self.maxlen is None or len(log) <= self.maxlen, topic
        for topic, subs in self.subscribers.items():
            assert subs, topic
            assert subs <= self.clients, (topic, subs - self.clients)
        queued = {(since, topic) for since, topic in self._due}
        for topic, since in self.departed.items():
            assert (since, topic) in queued, topic
