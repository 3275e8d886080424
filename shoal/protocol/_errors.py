"""Errors that cross process boundaries: how a task's exception travels and comes back.

Owns: the ``error`` dict carried by task-erred messages and its rebuilding into an
exception on the client, with the remote traceback attached (tblib). When the exception's
class cannot be unpickled where it lands, the text is used instead: never a hang or crash.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import logging
import pickle
import traceback as _traceback
from types import TracebackType
from typing import Any

from shoal.protocol._serialize import Serialized, describe, dumps

logger = logging.getLogger("shoal.protocol")

MAX_MESSAGE = 4_000
MAX_TRACEBACK = 20_000


# dask.distributed's names for the errors a wait raises: a cancelled future's ``result()``
# raises a subclass of ``CancelledError`` (shoal's ``FutureCancelledError``, as dask's), and a
# wait past its deadline the built-in ``TimeoutError``.
CancelledError = concurrent.futures.CancelledError
TimeoutError = builtins.TimeoutError


class ClosedClientError(RuntimeError):
    """An operation needed a Client that is closed (or closing): make a new ``Client()``.

    dask.distributed's name (``distributed.client.ClosedClientError``), importable as
    ``shoal.client.ClosedClientError``. A ``RuntimeError`` too, which is what shoal raised
    before, so handlers written for that keep working.
    """


class WorkerStartTimeoutError(TimeoutError):
    """Fewer workers than expected arrived in time (``client.wait_for_workers``). dask's
    name and arguments (``distributed.client.WorkerStartTimeoutError``), importable as
    ``shoal.client.WorkerStartTimeoutError``; a ``TimeoutError``, as shoal raised before.
    Start more workers, or wait longer."""

    def __init__(self, available_workers: int, expected_workers: int, timeout: float) -> None:
        super().__init__(available_workers, expected_workers, timeout)
        self.available_workers = available_workers
        self.expected_workers = expected_workers
        self.timeout = timeout

    def __str__(self) -> str:
        return (f"Only {self.available_workers}/{self.expected_workers} workers arrived after "
                f"{self.timeout}")


class RemoteError(Exception):
    """A task failed with an exception that could not be rebuilt here; holds its text."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class CommClosedError(ConnectionError):
    """A connection closed under a request: the worker running ``client.run`` died, or a
    closed client's futures lost their scheduler. An ``OSError``, as dask's
    ``distributed.comm.CommClosedError``, so ``except OSError`` catches it as it does
    dask's. What to do: run it again on the workers now alive (or a new client)."""


class KilledWorker(Exception):
    """A task was running on workers that died too many times; shoal gave up on it.

    As dask's: ``KilledWorker(task, last_worker, allowed_failures)``, with those three as
    attributes (``args`` too). shoal's ``last_worker`` is the worker's address (dask's is
    the scheduler's ``WorkerState`` of it). Keyword-only, shoal's own: ``workers``, every
    worker that died running it (default ``[last_worker]``), and ``reason``, the whole
    message when the scheduler knows better than a task's (scattered data that killed the
    workers storing it, a worker killed for memory).
    """

    def __init__(self, task: Any, last_worker: Any, allowed_failures: int, *,
                 workers: list[str] | None = None, reason: str | None = None) -> None:
        super().__init__(task, last_worker, allowed_failures)
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures
        if workers is None:
            workers = [] if last_worker is None else [str(last_worker)]
        self.workers = workers  # (pickled with __dict__, as is reason)
        self.reason = reason

    def __str__(self) -> str:
        if self.reason is not None:
            return self.reason
        return (
            f"{_killed_start(self.task, self.workers)} shoal stopped retrying it: the task "
            "probably crashes its worker (segfault, os._exit, out of memory). Inspect the "
            "worker logs, run it locally with client.recreate_error_locally(future), or "
            "raise 'distributed.scheduler.allowed-failures'. For more information see "
            "https://distributed.dask.org/en/stable/killed.html."
        )


def _killed_start(task: Any, workers: list[str]) -> str:
    """dask's KilledWorker message start (users and tools search for it), then every
    worker that died running the task."""
    last = workers[-1] if workers else "unknown"
    start = (f"Attempted to run task {task!r} on {len(workers)} different workers, but all "
             "those workers died while running it. The last worker that attempt to run the "
             f"task was {last}.")
    if len(workers) > 1:
        start += f" Workers that died running it: {', '.join(workers)}."
    return start


def killed_for_memory_message(task: Any, workers: list[str], process: int, limit: int,
                              fraction: float) -> str:
    """The KilledWorker message when the last of ``workers`` was killed by its nanny for
    memory: its process took ``process`` bytes, past ``fraction`` of its ``limit``."""

    def mib(n: int) -> str:
        return f"{n / 2**20:.0f} MiB"

    return (
        f"{_killed_start(task, workers)} That worker was killed by its nanny for exceeding "
        f"its memory limit: its process used {mib(process)}, past {fraction:.0%} "
        f"(distributed.worker.memory.terminate) of its {mib(limit)} memory_limit, while "
        f"running {task!r}. Give the workers more memory (a larger memory_limit, or fewer "
        "threads per worker), make the task need less (smaller chunks or partitions), or "
        "raise distributed.worker.memory.terminate (False: never kill a worker for memory)."
    )


class FutureCancelledError(concurrent.futures.CancelledError):
    """A cancelled future's result was asked for (dask's name,
    ``distributed.client.FutureCancelledError``). A subclass, so that it crosses asyncio's
    future chaining as is (which turns the base class into asyncio's)."""


class LostDataError(FutureCancelledError):
    """Data held only by a worker that died cannot be recomputed (it was scattered), or a
    graph needs a key the cluster no longer holds (released, cancelled, or taken by a
    restart).

    A ``FutureCancelledError``, as dask raises one ("lost dependencies", "already
    forgotten") in these cases: a program's ``except FutureCancelledError`` (or
    ``except CancelledError``) catches it."""


class NoValidWorkerError(Exception):
    """A task waited longer than ``distributed.scheduler.no-workers-timeout`` for a worker
    able to run it: workers there were, but none met its restrictions (``workers=``,
    ``resources=``). dask.distributed's name (``distributed.scheduler.NoValidWorkerError``),
    importable as ``shoal.scheduler.NoValidWorkerError``; its arguments and attributes are
    dask's."""

    def __init__(self, task: Any, host_restrictions: set[Any], worker_restrictions: set[Any],
                 resource_restrictions: dict[str, float], timeout: float) -> None:
        super().__init__(task, host_restrictions, worker_restrictions, resource_restrictions,
                         timeout)
        self.task = task
        self.host_restrictions = host_restrictions
        self.worker_restrictions = worker_restrictions
        self.resource_restrictions = resource_restrictions
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"Task {self.task!r} waited {self.timeout:g} s (distributed.scheduler."
            "no-workers-timeout) for a worker meeting its restrictions, and none of the "
            f"workers did: host_restrictions={self.host_restrictions!s}, "
            f"worker_restrictions={self.worker_restrictions!s}, "
            f"resource_restrictions={self.resource_restrictions!s}. Start a worker that "
            "meets them (e.g. shoal worker --resources \"GPU=1\"), submit the task without "
            "them, or raise the timeout."
        )


class NoWorkerError(Exception):
    """A task waited longer than ``distributed.scheduler.no-workers-timeout`` while the
    cluster had no running worker at all. dask.distributed's name
    (``distributed.scheduler.NoWorkerError``), importable as
    ``shoal.scheduler.NoWorkerError``."""

    def __init__(self, task: Any, timeout: float) -> None:
        super().__init__(task, timeout)
        self.task = task
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"Task {self.task!r} waited {self.timeout:g} s (distributed.scheduler."
            "no-workers-timeout) with no running worker in the cluster (none joined, or "
            "all left or are paused). Start workers (or check why they fail to start or "
            "to connect), or raise the timeout."
        )


class Reschedule(Exception):
    """Raise this inside a task to give the task back to the scheduler: it is not an error,
    the task is placed again (perhaps on another worker) and run from the start, without
    using up a retry (dask's ``distributed.Reschedule``)."""


def is_reschedule(exc: BaseException) -> bool:
    """Whether ``exc`` asks for the task to be placed again: shoal's :class:`Reschedule`, or
    dask's (a task written for dask.distributed that raises ``distributed.Reschedule``)."""
    return any(cls.__name__ == "Reschedule" and cls.__module__.split(".")[0] in
               ("shoal", "distributed") for cls in type(exc).__mro__)


def reschedule_error(key: Any, worker: str, when: float) -> dict[str, Any]:
    """The ``error`` a worker's executor hands back for a task that raised
    :class:`Reschedule` (kind ``"reschedule"``): the worker reports it as
    ``task-rescheduled``, never as a failure."""
    return {"kind": "reschedule", "type": "shoal.Reschedule", "message": "", "exception": None,
            "traceback": None, "tb_text": "", "key": key, "worker": worker, "time": when}


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 2
    return f"{text[:head]}\n... [{len(text) - limit} characters truncated by shoal] ...\n{text[-head:]}"


def exception_to_error(
    exc: BaseException, tb: TracebackType | None, key: Any, worker: str, when: float
) -> dict[str, Any]:
    """Describe an exception for the wire. Never raises."""
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = str(exc)
    except Exception:  # a broken __str__: the message says so instead
        message = f"<str() of the {type(exc).__name__} failed>"
    message = _truncate(message, MAX_MESSAGE)
    tb_text = _truncate("".join(_traceback.format_exception(type(exc), exc, tb)), MAX_TRACEBACK)
    exc_ser = _pickled_exception(exc, message)
    tb_ser: Serialized | None
    try:
        from tblib import Traceback

        tb_ser = dumps(Traceback(tb).to_dict()) if tb is not None else None
    except BaseException as exc2:
        logger.debug("traceback of %s not sent (tb_text still is): %r", type_name, exc2)
        tb_ser = None
    return {
        "kind": "exception",
        "type": type_name,
        "message": message,
        "exception": exc_ser,
        "traceback": tb_ser,
        "tb_text": tb_text,
        "key": key,
        "worker": worker,
        "time": when,
    }


def _pickled_exception(exc: BaseException, short_message: str) -> Serialized | None:
    """The exception pickled, if it round-trips and is not huge; a huge one is replaced by
    the same type carrying the truncated message. None when neither works."""
    candidates: list[Any] = [exc, _Uninitialised(exc)]
    try:
        candidates.append(type(exc)(short_message))
    except BaseException as failure:  # no short copy: the exception itself is tried
        logger.debug("no short copy of %s: %r", type(exc).__name__, failure)
    for candidate in candidates:
        try:
            ser = dumps(candidate)
            if sum(len(memoryview(f)) for f in ser.frames) > 4 * MAX_MESSAGE + 100_000:
                continue
            pickle.loads(ser.frames[0], buffers=ser.frames[1:])  # must round-trip here
            return ser
        except BaseException as failure:
            logger.debug("%s does not round-trip through pickle: %r", type(candidate).__name__,
                         failure)
            continue
    return None


class _Uninitialised:
    """Pickles as a copy of ``exc`` made without calling its ``__init__``: its args, its
    attributes and its chain set on a bare instance. For exceptions whose ``__init__``
    takes arguments of its own and passes a message up (``cls(*exc.args)`` then fails to
    unpickle), so that the caller can still catch them by type, as with dask."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        e = self.exc
        chain = (e.__cause__, e.__context__, e.__suppress_context__)
        return _bare_exception, (type(e), e.args, dict(getattr(e, "__dict__", {})), chain)


def _bare_exception(cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any],
                    chain: tuple[Any, Any, bool]) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    for name, value in attrs.items():
        setattr(exc, name, value)
    exc.__cause__, exc.__context__, exc.__suppress_context__ = chain
    return exc


def scheduler_error(kind: str, type_name: str, message: str, key: Any, **extra: Any) -> dict[str, Any]:
    """An error the scheduler itself raises for a task (killed worker, lost data...)."""
    return {
        "kind": kind,
        "type": type_name,
        "message": message,
        "exception": None,
        "traceback": None,
        "tb_text": "",
        "key": key,
        "worker": extra.pop("worker", ""),
        "time": extra.pop("time", 0.0),
        **extra,
    }


def error_to_exception(error: dict[str, Any]) -> BaseException:
    """Rebuild the exception (with its remote traceback) from an error dict. Never raises."""
    kind = error.get("kind")
    if kind == "killed":
        workers = list(error.get("workers", []))
        return KilledWorker(error.get("key"), workers[-1] if workers else None,
                            error.get("allowed_failures", max(len(workers) - 1, 0)),
                            workers=workers, reason=error.get("reason"))
    if kind == "lost-data":
        return LostDataError(error.get("message", ""))
    if kind == "cancelled":
        from concurrent.futures import CancelledError

        return CancelledError(error.get("message", ""))
    if kind == "lost":
        return CommClosedError(error.get("message", ""))
    exc: BaseException | None = None
    ser = error.get("exception")
    if isinstance(ser, Serialized):
        try:
            exc = pickle.loads(ser.frames[0], buffers=ser.frames[1:])
        except BaseException as failure:  # a RemoteError with the text stands for it
            logger.debug("remote %s cannot be unpickled here: %r", error.get("type"), failure)
            exc = None
        if exc is not None and not isinstance(exc, BaseException):
            exc = None
    if exc is None:
        exc = RemoteError(
            str(error.get("type", "Exception")),
            str(error.get("message", "")),
            str(error.get("tb_text", "")),
        )
    tb = error_traceback(error)
    try:
        if tb is not None:
            try:
                exc = exc.with_traceback(tb)
            except Exception as failure:  # raised without the remote frames; tb_text keeps them
                logger.debug("remote traceback not attached: %r", failure)
        return exc
    finally:
        # tblib's frames have this call's stack as f_back: a local left holding the
        # exception would make a cycle that keeps the caller's frames (and their data)
        # alive until a full garbage collection.
        del exc, tb


def error_traceback(error: dict[str, Any]) -> TracebackType | None:
    ser = error.get("traceback")
    if not isinstance(ser, Serialized):
        return None
    try:
        from tblib import Traceback

        data = pickle.loads(ser.frames[0], buffers=ser.frames[1:])
        tb = Traceback.from_dict(data).as_traceback()
        try:
            return tb if isinstance(tb, TracebackType) else None
        finally:
            del tb  # its frames' f_back is this frame: no cycle (see error_to_exception)
    except BaseException as failure:
        logger.debug("remote traceback cannot be rebuilt: %r", failure)
        return None


def summarize_inputs(values: dict[Any, Any], limit: int = 8) -> list[str]:
    """Short descriptions (type, shape, dtype, small repr) of a task's inputs."""
    out = []
    for i, (key, value) in enumerate(values.items()):
        if i >= limit:
            out.append(f"... and {len(values) - limit} more")
            break
        out.append(f"{key!r}: {describe_value(value)}")
    return out


def describe_value(value: Any) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    kind = type(value).__name__
    if shape is not None and dtype is not None:
        return f"{kind} shape={tuple(shape)} dtype={dtype}"
    try:
        n = len(value)
    except TypeError:  # no length is an answer: described without it
        n = None
    except Exception as exc:  # a broken __len__: described without it, and said
        logger.debug("len() of a %s raised %r; described without a length", kind, exc)
        n = None
    text = describe(value)
    if n is not None and len(text) > 60:
        return f"{kind} of length {n}"
    return f"{kind} {text}"


def request_failed(value: Any) -> Exception:
    """The exception for a failed request's Response ``value``: ``["ValueError", text]``
    (a refusal dask raises as ValueError: a blocked handler) as that, an error dict
    (``exception_to_error``: a request or reply that could not be encoded) as its
    exception, or the scheduler's text as RuntimeError."""
    if isinstance(value, dict) and "kind" in value:
        exc = error_to_exception(value)
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
    if (isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == "ValueError"
            and isinstance(value[1], str)):
        return ValueError(value[1])
    return RuntimeError(str(value))
