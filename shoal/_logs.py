"""The recent log records a process keeps for ``client.get_scheduler_logs()``,
``client.get_worker_logs()`` and ``LocalCluster.get_logs()`` (dask's in-memory node logs).

Owns: :class:`LogRing`, a logging handler holding the last records of one logger in a
bounded deque (dask's ``distributed.admin.log-length``, 10,000 by default), one per logger
name per process (``ring``), and their rendering, newest first, with dask's
``distributed.admin.log-format``. Imports nothing of dask at import time (workers start
without it).

A ring sees INFO and above, as dask's rings do (its ``distributed`` logger is at INFO): when
the user has not set its logger's level, ``ring`` sets it to INFO and hands records on to the
handlers above (the user's, on the root logger) through :class:`_Onward` only when they pass
the level the logger had before (the parent's: WARNING unless configured), so nothing new
reaches stderr. A level the user set is kept, and what passes it is handed on. Where no
handler is configured anywhere, WARNING and above go to Python's last-resort handler
(stderr), as they would without the ring and as dask's warnings do.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

DEFAULT_LENGTH = 10_000
DEFAULT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"

_TRACEBACKS = logging.Formatter()
_rings: dict[str, LogRing] = {}
_rings_lock = threading.Lock()


class LogRing(logging.Handler):
    """The last ``maxlen`` records handled by the logger it is attached to."""

    def __init__(self, maxlen: int = DEFAULT_LENGTH) -> None:
        super().__init__(logging.NOTSET)
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=maxlen)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep a light copy: the message made now, the traceback as text, so the ring
        holds no arguments nor frames (a task's data) alive."""
        try:
            fields = dict(record.__dict__, msg=record.getMessage(), args=None, exc_info=None)
            if record.exc_info and not record.exc_text:
                fields["exc_text"] = _TRACEBACKS.formatException(record.exc_info)
        except Exception:  # reported by logging's own handleError (to stderr)
            self.handleError(record)
            return
        self.records.append(logging.makeLogRecord(fields))  # atomic: any thread may log

    def resize(self, maxlen: int) -> None:
        """Keep at most ``maxlen`` records from now on (the newest ones)."""
        if maxlen != self.records.maxlen:
            self.records = collections.deque(self.records, maxlen=maxlen)

    def newest(self, n: int | None = None, fmt: str | None = None) -> list[tuple[str, str]]:
        """``(level name, formatted line)`` of the last ``n`` records (all kept if None),
        newest first, as dask's ``get_logs``."""
        return render(reversed(list(self.records)), n, fmt)


def render(records: Any, n: int | None = None, fmt: str | None = None) -> list[tuple[str, str]]:
    """``(level name, formatted line)`` of the first ``n`` of ``records``."""
    formatter = logging.Formatter(fmt or DEFAULT_FORMAT)
    out: list[tuple[str, str]] = []
    for record in records:
        if n is not None and len(out) >= n:
            break
        try:
            line = formatter.format(record)
        except Exception as exc:  # a record whose arguments do not fit its message
            line = f"<record of {record.name} could not be formatted: {exc!r}>"
        out.append((record.levelname, line))
    return out


def merged_newest(rings: list[LogRing], n: int | None = None,
                  fmt: str | None = None) -> list[tuple[str, str]]:
    """The records of several rings together, newest first."""
    records = sorted((r for ring in rings for r in list(ring.records)),
                     key=lambda r: r.created, reverse=True)
    return render(records, n, fmt)


RING_LEVEL = logging.INFO  # dask's default level for its ``distributed`` logger


class _Onward(logging.Handler):
    """On a ring's logger whose level ``ring`` lowered to INFO (and whose propagation it
    turned off): hands each record to the handlers above, as propagation would have, if it
    passes the level the logger would have had (its parent's), or the level the user has
    set on it since."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.NOTSET)
        self.logger = logger

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        logger = self.logger
        above = logger.parent
        if above is None:
            return False
        threshold = above.getEffectiveLevel() if logger.level == RING_LEVEL else logger.level
        if record.levelno < threshold:
            return False
        found = 0
        current: logging.Logger | None = above
        while current is not None:
            for handler in current.handlers:
                found += 1
                if record.levelno >= handler.level:
                    handler.handle(record)
            current = current.parent if current.propagate else None
        last = logging.lastResort
        if not found and last is not None and record.levelno >= last.level:
            last.handle(record)  # nobody configured logging: stderr, as without the ring
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle does it
        self.handle(record)


def ring(logger_name: str, maxlen: int | None = None) -> LogRing:
    """The ring attached to logger ``logger_name`` in this process, made on first use
    (with ``maxlen``, else the default length); a later ``maxlen`` resizes it. Its logger is
    set to INFO unless the user set its level (see the module's docstring)."""
    with _rings_lock:
        found = _rings.get(logger_name)
        if found is None:
            found = _rings[logger_name] = LogRing(maxlen or DEFAULT_LENGTH)
            logger = logging.getLogger(logger_name)
            if logger.level == logging.NOTSET and logger.propagate:
                logger.setLevel(RING_LEVEL)
                logger.propagate = False
                logger.addHandler(_Onward(logger))
            logger.addHandler(found)
        elif maxlen is not None:
            found.resize(maxlen)
        return found


def configured_length() -> int:
    """dask's ``distributed.admin.log-length`` (imports dask: not for a worker's start)."""
    import dask

    value: Any = dask.config.get("distributed.admin.log-length", DEFAULT_LENGTH)
    return int(value) if value else DEFAULT_LENGTH


# dask's older names for distributed.admin.low-level-log-length, which distributed renames
# to it when it is imported (distributed/config.py): a value under one of them is one
# distributed would have used.
LOW_LEVEL_ALIASES = (
    "distributed.scheduler.events-log-length",
    "distributed.scheduler.transition-log-length",
    "distributed.comm.recent-messages-log-length",
    "transition-log-length",
    "recent-messages-log-length",
)


def low_level_log_length(default: int = 1000) -> int | None:
    """dask's ``distributed.admin.low-level-log-length``: rows kept by the event logs,
    the transition and story logs (None: all), or an older name of it when set (while
    distributed is not imported; once it is, dask's config holds the new name only).

    Raises:
        ValueError: the value is not a whole number or None.
    """
    import dask

    key = "distributed.admin.low-level-log-length"
    missing = object()
    value: Any = missing
    for alias in LOW_LEVEL_ALIASES:
        if alias not in dask.config.deprecations:
            value = dask.config.get(alias, missing)
            if value is not missing:
                key = alias
                break
    if value is missing:
        value = dask.config.get(key, default)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"dask config {key} must be a whole number of rows or None (no "
                         f"bound), got {value!r}") from None


def configured_format() -> str:
    """dask's ``distributed.admin.log-format``."""
    import dask

    value: Any = dask.config.get("distributed.admin.log-format", DEFAULT_FORMAT)
    return str(value) if value else DEFAULT_FORMAT


def check_count(n: Any) -> int | None:
    """``n`` for a logs request: None (all) or a positive integer.

    Raises:
        ValueError: anything else.
    """
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive number of log records or None (all kept), "
                         f"got {n!r}")
    return n
