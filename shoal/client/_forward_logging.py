"""``client.forward_logging()`` / ``unforward_logging()``: log records that tasks make on
workers are handled by the same-named logger in the client's process (dask's behaviour).

Owns: the worker plugin that hooks a handler onto a logger in each worker (records go out
as events on the ``forwarded-log-record`` topic through the worker's scheduler connection),
and the client's topic handler that rebuilds each record and hands it to its logger. A
record whose logger's level stops it on the worker is never made, so never forwarded.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from shoal._plugin import WorkerPlugin

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client

TOPIC = "forwarded-log-record"

# Per client: the logger names it forwards (the topic is unsubscribed with the last).
_forwarded: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _plugin_name(logger_name: str | None) -> str:
    return f"forward-logging-{logger_name or '<root>'}"


class ForwardLogging(WorkerPlugin):
    """On each worker: a handler on ``logger_name`` that sends the records it sees (at
    ``level`` or above) to the scheduler as events on ``topic``."""

    def __init__(self, logger_name: str | None, level: int | str, topic: str = TOPIC) -> None:
        self.logger_name = logger_name
        self.level = level
        self.topic = topic
        self.handler: logging.Handler | None = None

    def setup(self, worker: Any) -> None:
        self.handler = _Forwarder(worker, self.topic, self.level)
        logging.getLogger(self.logger_name).addHandler(self.handler)

    def teardown(self, worker: Any) -> None:
        if self.handler is not None:
            logging.getLogger(self.logger_name).removeHandler(self.handler)
            self.handler = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "handler": None}


class _Forwarder(logging.Handler):
    def __init__(self, worker: Any, topic: str, level: int | str) -> None:
        super().__init__(level)
        self.worker = worker
        self.topic = topic

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.worker.log_event(self.topic, record_fields(record, self))
        except Exception:  # reported by logging's own handleError (to stderr)
            self.handleError(record)


def record_fields(record: logging.LogRecord, handler: logging.Handler) -> dict[str, Any]:
    """The record as plain values msgpack carries: the message made, a traceback as text."""
    out: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if value is None or isinstance(value, (str, int, float, bool)):
            out[name] = value
    out["msg"] = record.getMessage()
    out["args"] = None
    out["exc_info"] = None
    if record.exc_info and not record.exc_text:
        out["exc_text"] = logging.Formatter().formatException(record.exc_info)
    return out


def _handle(event: Any) -> None:
    """The client's topic handler: the record, rebuilt, goes to its logger here."""
    _when, fields = event
    record = logging.makeLogRecord(dict(fields))
    logging.getLogger(record.name).handle(record)


def forward_logging(self: Client, logger_name: str | None = None, level: int | str = logging.NOTSET
                    ) -> Any:
    """Handle here, by the logger of the same name, every record that logger ``logger_name``
    (the root logger by default) handles on any worker, at ``level`` or above. The records
    must pass the worker-side logger's own level to be made at all.

    Raises:
        TypeError: ``logger_name`` is not a string; ``level`` is not a logging level.
    """
    if logger_name is not None and not isinstance(logger_name, str):
        raise TypeError(f"logger_name must be a logger's name or None (root), got {logger_name!r}")
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        raise TypeError(f"level must be a logging level (an int or a name like 'INFO'), got {level!r}")
    if isinstance(level, str) and not isinstance(logging.getLevelName(level.upper()), int):
        raise ValueError(f"unknown logging level {level!r}; use DEBUG, INFO, WARNING, ERROR...")
    level = level.upper() if isinstance(level, str) else level
    self._check_open()
    self.subscribe_topic(TOPIC, _handle)  # type: ignore[attr-defined]
    _forwarded.setdefault(self, set()).add(logger_name or "")
    return self.register_plugin(  # type: ignore[attr-defined]
        ForwardLogging(logger_name, level), name=_plugin_name(logger_name))


def unforward_logging(self: Client, logger_name: str | None = None) -> Any:
    """Stop forwarding what ``forward_logging(logger_name)`` forwards.

    Raises:
        ValueError: that logger is not being forwarded.
    """
    names = _forwarded.get(self, set())
    if (logger_name or "") not in names:
        raise ValueError(f"logger {logger_name or '<root>'!r} is not forwarded; "
                         "call client.forward_logging first")
    names.discard(logger_name or "")
    if not names:
        self.unsubscribe_topic(TOPIC)  # type: ignore[attr-defined]
    return self.unregister_worker_plugin(_plugin_name(logger_name))  # type: ignore[attr-defined]
