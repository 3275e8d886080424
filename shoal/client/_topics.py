"""Structured events for the Client: ``log_event``, ``get_events``, ``subscribe_topic``,
``unsubscribe_topic`` (methods attached to Client), and how a client shows what tasks
print or warn (``shoal.print`` / ``shoal.warn``: events on topics "print" and "warn").

Owns: the client's handler per topic and running it when an event arrives (on shoal's loop
thread, like done-callbacks). The scheduler subscribes every client to "print" and "warn"
when it joins; the matching handlers here print to this process's stdout or stderr (so in
Jupyter, to the notebook) and re-issue the warning.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import inspect
import logging
import pickle
import sys
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import msgpack

from shoal.protocol._messages import TopicEvent, TopicGet, TopicLog, TopicSubscribe

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

logger = logging.getLogger("shoal.client")


def _show_print(event: tuple[float, Any]) -> None:
    _, msg = event
    if not isinstance(msg, dict):
        builtins.print(msg)
        return
    file = {1: sys.stdout, 2: sys.stderr}.get(msg.get("file") or 1, sys.stdout)
    builtins.print(*msg.get("args", ()), sep=msg.get("sep", " "), end=msg.get("end", "\n"),
                   file=file, flush=bool(msg.get("flush")))


def _show_warning(event: tuple[float, Any]) -> None:
    _, msg = event
    if not isinstance(msg, dict) or "message" not in msg:
        warnings.warn(str(msg), stacklevel=1)
        return
    message = pickle.loads(msg["message"])
    category = pickle.loads(msg["category"]) if msg.get("category") else None
    warnings.warn(message, category=category, stacklevel=1)


DEFAULT_HANDLERS: dict[str, Callable[[Any], Any]] = {"print": _show_print, "warn": _show_warning}


def handlers(client: Client) -> dict[str, Callable[[Any], Any]]:
    table: dict[str, Callable[[Any], Any]] | None = client.__dict__.get("_topic_handlers")
    if table is None:
        table = client.__dict__["_topic_handlers"] = dict(DEFAULT_HANDLERS)
    return table


def drop_default_handlers(client: Client) -> None:
    """This client shows nothing tasks print or warn (the worker's own client)."""
    table = handlers(client)
    for topic in DEFAULT_HANDLERS:
        table.pop(topic, None)
        client._send(TopicSubscribe(topic, False))


def on_event(client: Client, msg: TopicEvent) -> None:
    """On the loop thread: an event arrived on a topic this client subscribed to.

    The handler runs in an empty ``contextvars`` context. The loop's callbacks carry the
    context of whatever user call started them (such as the notebook cell that created the
    Client), and Jupyter's kernel sends output to the cell named in that context; with none,
    it goes to the cell running now, which is where a user waits for the task.
    """
    handler = handlers(client).get(msg.topic)
    if handler is None:
        return
    contextvars.Context().run(_run_handler, handler, msg)


def _run_handler(handler: Callable[[Any], Any], msg: TopicEvent) -> None:
    try:
        result = handler((msg.time, msg.msg))
        if inspect.isawaitable(result):
            asyncio.ensure_future(result).add_done_callback(_log_failure(msg.topic))
    except Exception:
        logger.exception("the handler of topic %r raised", msg.topic)


def _log_failure(topic: str) -> Callable[[Any], None]:
    def done(task: Any) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the handler of topic %r raised", topic, exc_info=task.exception())

    return done


def _topics_of(topic: Any) -> list[str]:
    topics = [topic] if isinstance(topic, str) else list(topic) if isinstance(topic, Collection) else None
    if not topics or not all(isinstance(t, str) for t in topics):
        raise TypeError(f"topic must be a string or a list of strings, got {topic!r}")
    return topics


def check_loggable(msg: Any) -> None:
    """Event messages travel as msgpack, as in dask."""
    try:
        msgpack.packb(msg)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"Message must be msgpack serializable (numbers, strings, bytes, lists, dicts); "
            f"got {type(msg).__name__}: {exc}"
        ) from None


def log_event(self: Client, topic: str | Collection[str], msg: Any) -> None:
    """Log ``msg`` under ``topic`` (or each of a list of topics) on the scheduler; every
    client subscribed to the topic has its handler called with ``(time, msg)``.

    Raises:
        TypeError: ``msg`` is not msgpack serializable, or ``topic`` is not a string or
            a list of strings.
    """
    topics = _topics_of(topic)
    check_loggable(msg)
    self._check_open()
    self._send(TopicLog(topics, msg))


async def get_events(self: Client, topic: str | None = None) -> Any:
    """The stored events of ``topic`` as a tuple of ``(time, msg)`` (the scheduler keeps
    the last ``distributed.admin.low-level-log-length`` per topic); with no topic, a dict
    of every topic that has events."""
    if topic is not None and not isinstance(topic, str):
        raise TypeError(f"topic must be a string or None, got {topic!r}")
    self._check_open()
    value = await asyncio.wait_for(ask(self, lambda rid: TopicGet(rid, topic)), self._timeout)
    if topic is not None:
        return tuple((t, m) for t, m in value)
    return {name: tuple((t, m) for t, m in events) for name, events in value.items()}


def subscribe_topic(self: Client, topic: str, handler: Callable[[Any], Any]) -> None:
    """Call ``handler((time, msg))`` for every new event on ``topic`` (on shoal's
    event-loop thread; a coroutine function's result is awaited there). Replaces an
    earlier handler of the topic.

    Raises:
        TypeError: ``handler`` is not callable.
    """
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a string, got {topic!r}")
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {handler!r}")
    self._check_open()
    table = handlers(self)
    if topic in table and topic not in DEFAULT_HANDLERS:
        logger.info("Handler for %s already set. Overwriting.", topic)
    table[topic] = handler
    self._send(TopicSubscribe(topic, True))


def unsubscribe_topic(self: Client, topic: str) -> None:
    """Stop calling the handler of ``topic``.

    Raises:
        ValueError: no handler is known for ``topic``.
    """
    table = handlers(self)
    if topic not in table:
        raise ValueError(f"No event handler known for topic {topic}.")
    del table[topic]
    self._send(TopicSubscribe(topic, False))


async def ask(client: Client, build: Callable[[int], Any]) -> Any:
    """Send the request ``build(request_id)`` in order with everything sent before it
    (submissions included) and wait for its Response, or for the connection's loss."""
    rid = next(client._request_ids)
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client._requests[rid] = fut
    client._send(build(rid))
    return await fut
