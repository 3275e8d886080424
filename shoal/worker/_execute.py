"""Running tasks on a pool of threads and handing the outcomes back to the event loop.

Owns: the ready queue (by priority), task execution, measuring results, and pickling small
results in the executing thread (so the event loop never pays for it). Completed tasks are
handed back in batches: one loop wake-up however many tasks finished meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import Any

from shoal.protocol._errors import exception_to_error
from shoal.protocol._serialize import INLINE_LIMIT, FunctionTable, Serialized, dumps, loads
from shoal.protocol._sizeof import nbytes as measure
from shoal.worker._state import Execute, ExecuteDone

_STOP = (float("-inf"), -1, None)


# Unpickling imports modules. Two threads importing a package with circular imports at
# once (numpy is one) can each get the other's half-initialized module (CPython breaks
# the import deadlock that way), and a correct task fails with ImportError. A worker
# unpickles in its loop (fetched and scattered data, client.run functions) and in its
# task threads (task payloads): one at a time.
_UNPICKLE = threading.Lock()


def unpickle(ser: Serialized, functions: FunctionTable | None = None) -> Any:
    """:func:`loads` for worker code: never in two threads at once."""
    with _UNPICKLE:
        return loads(ser, functions)
_thread_state = threading.local()


def current_task_key() -> Any:
    """The key of the task running in this thread, or None."""
    return getattr(_thread_state, "key", None)


class Executor:
    def __init__(
        self,
        nthreads: int,
        data: MutableMapping[Any, Any],
        functions: FunctionTable,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[list[ExecuteDone]], None],
        worker_address: str,
    ) -> None:
        self._data = data
        self._functions = functions
        self._loop = loop
        self._on_done = on_done
        self._address = worker_address
        self._queue: queue.PriorityQueue[tuple[Any, int, Execute | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._done: list[ExecuteDone] = []
        self._lock = threading.Lock()
        self._wakeup_pending = False
        self.executing = 0
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"shoal-task-{i}", daemon=True)
            for i in range(nthreads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, cmd: Execute) -> None:
        self._queue.put((cmd.priority, next(self._seq), cmd))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)

    def _run(self, index: int) -> None:
        get = self._queue.get
        while True:
            _, _, cmd = get()
            if cmd is None:
                return
            self.executing += 1
            try:
                done = self._execute(cmd, index)
            finally:
                self.executing -= 1
            with self._lock:
                self._done.append(done)
                wake = not self._wakeup_pending
                self._wakeup_pending = True
            if wake:
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # loop closed during shutdown
                    return

    def _drain(self) -> None:
        with self._lock:
            batch, self._done = self._done, []
            self._wakeup_pending = False
        if batch:
            self._on_done(batch)

    def _execute(self, cmd: Execute, thread: int) -> ExecuteDone:
        start = time.time()
        _thread_state.key = cmd.key
        try:
            task = unpickle(cmd.payload, self._functions)
            data = self._data
            values = {k: data[k] for k in cmd.deps}
            result = task(values)
        except BaseException as exc:
            stop = time.time()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            error = exception_to_error(exc, _user_frames(exc.__traceback__), cmd.key,
                                       self._address, stop)
            error["inputs"] = _inputs_summary(cmd, self._data)
            return ExecuteDone(cmd.key, 0, "", start, stop, thread, None, error)
        finally:
            _thread_state.key = None
        stop = time.time()
        inline: Serialized | None = None
        if cmd.send_inline:
            try:
                ser = dumps(result)
            except Exception as exc:
                error = exception_to_error(exc, sys.exc_info()[2], cmd.key, self._address, stop)
                error["message"] = (
                    f"task {cmd.key!r} returned a {type(result).__name__} that cannot be "
                    f"sent to the client: {error['message']}"
                )
                return ExecuteDone(cmd.key, 0, "", start, stop, thread, None, error)
            if ser.nbytes <= INLINE_LIMIT:
                inline = ser
        nbytes = measure(result)
        self._data[cmd.key] = result
        return ExecuteDone(cmd.key, nbytes, type(result).__name__, start, stop, thread, inline, None)


_INTERNAL = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),)


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without its leading shoal and dask task-spec frames: users debug
    their function, not the executor that called it."""
    first = tb
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not (name.startswith(_INTERNAL) or name.endswith(os.path.join("dask", "_task_spec.py"))):
            return tb
        tb = tb.tb_next
    return first


def _inputs_summary(cmd: Execute, data: MutableMapping[Any, Any]) -> list[str]:
    from shoal.protocol._errors import describe_value

    out = []
    for k in cmd.deps[:8]:
        try:
            out.append(f"{k!r}: {describe_value(data[k])}")
        except Exception:
            out.append(f"{k!r}: <unavailable>")
    if len(cmd.deps) > 8:
        out.append(f"... and {len(cmd.deps) - 8} more")
    return out
