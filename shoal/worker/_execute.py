"""Running tasks on a pool of threads and handing the outcomes back to the event loop.

Owns: the ready queue (by priority), task execution, measuring results, and pickling small
results in the executing thread (so the event loop never pays for it). Completed tasks are
handed back in batches: one loop wake-up however many tasks finished meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import heapq
import importlib
import itertools
import logging
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, MutableMapping
from types import CoroutineType, TracebackType
from typing import Any

from shoal._task_refs import task_refs
from shoal.protocol._errors import exception_to_error, is_reschedule, reschedule_error
from shoal.protocol._serialize import INLINE_LIMIT, FunctionTable, Serialized, dumps, loads
from shoal.protocol._sizeof import nbytes as measure
from shoal.protocol._typenames import pickled_class, type_name
from shoal.worker._state import Execute, ExecuteDone

# Task priorities are tuples; this one sorts before all of them (a bare float would not
# compare with a tuple, and put() would raise TypeError with tasks still queued).
_FIRST = (float("-inf"),)
_STOP = (_FIRST, -1, None)


# Unpickling imports modules. Two threads importing a package with circular imports at
# once (numpy is one) can each get the other's half-initialized module (CPython breaks
# the import deadlock that way), and a correct task fails with ImportError. A worker
# unpickles in its loop (fetched and scattered data, client.run functions) and in its
# task threads (task payloads): one at a time. (Big scattered data, loaded in the
# serializing thread, does not take the lock: tasks must keep starting meanwhile.)
_UNPICKLE = threading.Lock()


def unpickle(ser: Serialized, functions: FunctionTable | None = None) -> Any:
    """:func:`loads` for worker code: never in two threads at once, and never while the
    worker process is still importing dask in the background (:data:`imports_done`; not
    ``imports_ready``, which waits for a notice sent through the loop that may be the
    caller)."""
    if not imports_done.is_set():
        imports_done.wait()  # ends: the import thread sets it in a finally
    with _UNPICKLE:
        return task_refs(loads, ser, functions)


def import_in_background(*modules: str, then: Callable[[], None] | None = None
                         ) -> threading.Thread:
    """Import ``modules`` in a daemon thread, holding :func:`unpickle`'s lock: unpickling
    waits for it (:data:`imports_done`) rather than import the same modules from a second
    thread at once, and task threads start no task meanwhile. Nothing the import waits for
    needs the event loop, so a loop that unpickles meanwhile is delayed by the import (a
    fraction of a second), never stuck. ``then`` runs in that thread once the imports are
    over (unpickling may go on meanwhile: ``then`` may wait for the loop), before tasks may
    start (:data:`imports_ready`; it must return: it bounds its own waits)."""

    def run() -> None:
        try:
            with _UNPICKLE:
                for name in modules:
                    importlib.import_module(name)
        finally:
            imports_done.set()
            try:
                if then is not None:
                    then()
            finally:
                imports_ready.set()

    imports_done.clear()
    imports_ready.clear()
    thread = threading.Thread(target=run, name="shoal-warm-imports", daemon=True)
    thread.start()
    return thread


def loads_when_ready(ser: Serialized) -> Any:
    """:func:`loads` once the worker's background import of dask is over, without
    :func:`unpickle`'s lock (for big values unpickled beside running tasks)."""
    if not imports_done.is_set():
        imports_done.wait()  # ends: the import thread sets it in a finally
    return task_refs(loads, ser)


# The collections' modules this process has imported, which its workers then import in the
# background once registered (``shoal.worker.__main__``, by ``import_in_background``): a
# LocalCluster's nanny runs in the user's program, whose first array compute would otherwise
# wait for each worker to import dask.array (about a second; a notebook's next cell comes
# later than that). dask's workers get them as multiprocessing's spawn runs the imports of
# the user's script again in each worker, before the worker starts.
WARM_IMPORTS_ENV = "SHOAL_WARM_IMPORTS"
WARM_CANDIDATES = ("numpy", "pandas", "dask.array", "dask.bag", "dask.dataframe", "xarray")
# ... but not on a worker whose memory limit is below this: they weigh about 100 MB (dask.array
# imports pandas, pyarrow and xarray here), which a small worker may never need and cannot spare.
WARM_IMPORTS_MIN_MEMORY = 2 * 2**30

_thread_state = threading.local()
# Cleared while a worker process imports dask in the background (``__main__``): a task
# unpickled meanwhile would import dask from a second thread, and two threads importing
# dask's interdependent modules at once can see a partly initialized module.
imports_ready = threading.Event()
imports_ready.set()
# Set once those imports are over, before the worker's ready notice (``then``): what
# unpickles on the worker's loop waits for this one, since the notice itself needs the loop
# (waiting for ``imports_ready`` there held both for the notice's 5 s timeout).
imports_done = threading.Event()
imports_done.set()
logger = logging.getLogger("shoal.worker")
# A queue item asking a pool thread to hand its slot to a rejoining thread; queued with
# priority _FIRST, so the next thread to look takes it.
_HANDOFF = object()


# The executor whose task's coroutine runs in this asyncio task (an async function's task
# runs on the worker's loop, not in a task thread): for get_worker() there.
async_task_executor: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "shoal_async_task_executor", default=None)


async def _as_task_of(executor: Any, coro: CoroutineType[Any, Any, Any]) -> Any:
    async_task_executor.set(executor)  # this asyncio task's own context: no reset needed
    return await coro


def current_task_key() -> Any:
    """The key of the task running in this thread, or None."""
    return getattr(_thread_state, "key", None)


def current_worker_address() -> str | None:
    """The address of the worker whose task thread this is, or None."""
    return getattr(_thread_state, "worker_address", None)


class _TaskQueue:
    """The executor's queue: smallest entry first, as ``queue.PriorityQueue``, at about
    half its cost per task. The heap is guarded by a plain lock; a taker waits for one of
    ``SimpleQueue``'s tokens (one put per entry, after the push, so a token always finds an
    entry), which blocks in C instead of through ``threading.Condition``."""

    __slots__ = ("_heap", "_lock", "_tokens")

    def __init__(self) -> None:
        self._heap: list[tuple[Any, int, Any]] = []
        self._lock = threading.Lock()
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()

    def put(self, entry: tuple[Any, int, Any]) -> None:
        with self._lock:
            heapq.heappush(self._heap, entry)
        self._tokens.put(None)

    def put_many(self, entries: list[tuple[Any, int, Any]]) -> None:
        """:meth:`put` of each entry, with the lock taken once."""
        heap, push = self._heap, heapq.heappush
        with self._lock:
            for entry in entries:
                push(heap, entry)
        token = self._tokens.put
        for _ in entries:
            token(None)

    def get(self) -> tuple[Any, int, Any]:
        self._tokens.get()  # ends: a put, or close()'s stop entries (one per thread)
        with self._lock:
            return heapq.heappop(self._heap)

    def get_nowait(self) -> tuple[Any, int, Any] | None:
        """The smallest entry if one is there for this taker now, else None."""
        if not self._heap:  # a racy peek, only to skip the exception when empty
            return None
        try:
            self._tokens.get_nowait()
        except queue.Empty:  # another thread took the entry's token
            return None
        with self._lock:
            return heapq.heappop(self._heap)


class Executor:
    def __init__(
        self,
        nthreads: int,
        data: MutableMapping[Any, Any],
        functions: FunctionTable,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[list[ExecuteDone]], None],
        worker_address: str,
        on_started: Callable[[list[Any]], None] | None = None,
        on_skipped: Callable[[list[Execute]], None] | None = None,
    ) -> None:
        self._data = data
        # A store that knows sizes (the spilling one) takes the size measured here.
        self._put: Callable[[Any, Any, int], None] | None = getattr(data, "put", None)
        self._functions = functions
        self._loop = loop
        self._on_done = on_done
        self._on_started = on_started or (lambda keys: None)
        self._on_skipped = on_skipped or (lambda cmds: None)
        self._address = worker_address
        self._queue = _TaskQueue()
        self._seq = itertools.count()
        self._done: list[ExecuteDone] = []
        # Keys begun since the last hand-back whose results have not come yet: a result
        # takes its key out (it says the task started), so a hand-back filters nothing.
        self._started: dict[Any, None] = {}
        self._revoked: set[Any] = set()  # queued keys not to start (freed by the scheduler)
        self._skipped: list[Execute] = []
        # What tasks told the loop while running (events they logged, secedes): run by the
        # hand-back ahead of its results, so none arrives after the result of its task.
        self._calls: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._wakeup_pending = False
        self.executing = 0
        self.seceded = 0  # tasks running out of the pool (secede) until they end or rejoin
        self.worker: Any = None  # the Worker shell, for get_worker() inside tasks
        self.on_secede: Callable[[Any, float], None] | None = None  # called on the loop
        # Called on the loop when a task raises SystemExit/KeyboardInterrupt, which then ends
        # the worker (a process under a nanny, as in dask); None: the task's error instead.
        self.on_task_exit: Callable[[Any, BaseException], None] | None = None
        self._rejoining: collections.deque[threading.Event] = collections.deque()
        self._closed = False
        # Cleared while the worker is paused (memory past its pause threshold): threads
        # start no new task until it is set again (resume, or close).
        self._gate = threading.Event()
        self._gate.set()
        self._thread_ids = itertools.count(nthreads)
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"shoal-task-{i}", daemon=True)
            for i in range(nthreads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, cmd: Execute) -> None:
        # (1, priority): _FIRST sorts before every task whatever its priority's type.
        self._queue.put(((1, cmd.priority), next(self._seq), cmd))

    def submit_many(self, cmds: list[Execute]) -> None:
        """:meth:`submit` of each, in order (one queue lock for all)."""
        seq = self._seq
        self._queue.put_many([((1, cmd.priority), next(seq), cmd) for cmd in cmds])

    def revoke(self, keys: list[Any]) -> None:
        """Do not start these queued tasks (a task already running is not stopped); each
        one skipped is handed back through ``on_skipped``."""
        with self._lock:
            self._revoked.update(keys)

    def unrevoke(self, key: Any) -> None:
        """``key`` is wanted again: start it after all if it has not been skipped yet."""
        if self._revoked:  # only the loop thread adds, so empty means nothing to undo
            with self._lock:
                self._revoked.discard(key)

    def unrevoke_many(self, keys: list[Any]) -> None:
        """:meth:`unrevoke` of each of ``keys`` (a ``Computes``): nothing to do, and no call
        per key, while no key is revoked."""
        if self._revoked:  # only the loop thread adds, so empty means nothing to undo
            with self._lock:
                self._revoked.difference_update(keys)

    def pause(self) -> None:
        """Start no new task (those running finish) until :meth:`resume`."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    @property
    def paused(self) -> bool:
        return not self._gate.is_set()

    def close(self) -> None:
        """Stop the threads: each finishes the task it runs; queued tasks never start."""
        for _ in self._threads:
            self._queue.put(_STOP)
        with self._lock:  # a rejoining thread waits for a slot that will never come
            self._closed = True
            self._gate.set()  # a paused thread wakes, sees the pool closed, and stops
            while self._rejoining:
                self._rejoining.popleft().set()

    # --- secede / rejoin (a task waiting on other tasks gives its slot back) ----------------

    def secede(self) -> None:
        """Take the calling task's thread out of the pool; another thread takes its slot.
        The scheduler is told (``on_secede``) so that it stops counting the task as busy."""
        if _thread_state.seceded:
            return
        _thread_state.seceded = True
        self.executing -= 1
        self.seceded += 1
        with self._lock:
            closed = self._closed
        if not closed:  # a closed pool takes no more tasks: no thread to replace this one
            index = next(self._thread_ids)
            threading.Thread(target=self._run, args=(index,), name=f"shoal-task-{index}",
                             daemon=True).start()
        if self.on_secede is not None:
            duration = time.time() - _thread_state.start
            self.call_in_order(self.on_secede, _thread_state.key, duration)

    def rejoin(self) -> None:
        """Wait until a pool thread hands over its slot (the next one to finish a task, or
        an idle one at once), then carry on as a pool thread."""
        if not _thread_state.seceded:
            return
        slot = threading.Event()
        with self._lock:
            if self._closed:
                return  # no pool left to rejoin: carry on
            self._rejoining.append(slot)
        self._queue.put((_FIRST, next(self._seq), _HANDOFF))  # type: ignore[arg-type]
        slot.wait()  # ends: a pool thread hands over its slot, or close() sets every slot
        _thread_state.seceded = False
        self.seceded -= 1
        self.executing += 1

    def _hand_over(self) -> None:
        with self._lock:
            if self._rejoining:
                self._rejoining.popleft().set()

    def _run(self, index: int) -> None:
        _thread_state.worker_address = self._address
        _thread_state.executor = self
        _thread_state.seceded = False
        get, get_nowait = self._queue.get, self._queue.get_nowait
        imported = imports_ready.is_set
        # The outcome of the task just run, not handed back yet: when the next task is
        # queued already, it is handed back together with that task's start (one lock,
        # and at most one loop wake-up, for both); else at once, alone.
        finished: ExecuteDone | None = None
        while True:
            entry = get_nowait() if finished is not None else None
            if entry is None:
                if finished is not None:
                    if not self._hand_back(finished):
                        return
                    finished = None
                entry = get()
            cmd = entry[2]
            if cmd is None or cmd is _HANDOFF or not self._gate.is_set():
                if finished is not None:  # handed back before stopping or pausing
                    if not self._hand_back(finished):
                        return
                    finished = None
                if cmd is None:
                    return
                if cmd is _HANDOFF:
                    self._hand_over()
                    return  # the rejoined thread has this slot now
                self._gate.wait()  # paused: hold the task; ends: resume, or close() sets the gate
                if self._closed:
                    return
            if not imported():
                # The worker's background import of dask: the task waits, not started (the
                # scheduler blames no task of a worker that dies now, see its _suspects).
                if finished is not None:
                    if not self._hand_back(finished):
                        return
                    finished = None
                imports_ready.wait()  # ends: the import thread sets it in a finally
            # Reported with the next hand-back (the scheduler blames only tasks that ran
            # for a worker's death); a wake-up only when none is pending already.
            with self._lock:
                if finished is not None:
                    if self._started:  # not handed back yet: its result tells the start
                        self._started.pop(finished.key, None)
                    self._done.append(finished)
                    finished = None
                skip = bool(self._revoked) and cmd.key in self._revoked
                if skip:
                    self._revoked.discard(cmd.key)
                    self._skipped.append(cmd)
                else:
                    self._started[cmd.key] = None
                wake = not self._wakeup_pending
                self._wakeup_pending = True
            if wake and not self._call_drain():
                return
            if skip:
                continue
            self.executing += 1
            try:
                done = self._execute(cmd, index)
            except _TaskExit as end:  # the worker ends: no report (its start is reported)
                if self.on_task_exit is not None:
                    self._loop.call_soon_threadsafe(self.on_task_exit, cmd.key, end.exc)
                return
            except BaseException as exc:  # never lose the thread, nor the task's report
                logger.exception("executor failed to run task %r", cmd.key)
                now = time.time()
                error = exception_to_error(exc, exc.__traceback__, cmd.key, self._address, now)
                done = ExecuteDone(cmd.key, 0, "", now, now, index, None, error)
            finally:
                if not _thread_state.seceded:
                    self.executing -= 1
            if _thread_state.seceded:
                self.seceded -= 1
                self._hand_back(done)
                return  # its slot went to another thread when the task seceded
            finished = done

    def _hand_back(self, done: ExecuteDone) -> bool:
        """Queue ``done`` for the loop, waking it unless a wake-up is pending; False when
        the loop is closed (shutdown)."""
        with self._lock:
            if self._started:  # not handed back yet: its result tells the start
                self._started.pop(done.key, None)
            self._done.append(done)
            wake = not self._wakeup_pending
            self._wakeup_pending = True
        return self._call_drain() if wake else True

    def call_in_order(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, ahead of the results of tasks that end after this
        call (from any thread). A task's messages sent this way (the events it logs) reach
        the scheduler before its result, even when the loop wakes only after the task ended
        and one hand-back carries both."""
        with self._lock:
            self._calls.append((fn, args))
            wake = not self._wakeup_pending
            self._wakeup_pending = True
        if wake:
            self._call_drain()

    def _call_drain(self) -> bool:
        """Ask the loop to run :meth:`_drain`; False when the loop is closed (shutdown)."""
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed during shutdown
            return False
        return True

    def _drain(self) -> None:
        with self._lock:
            batch, self._done = self._done, []
            started, self._started = self._started, {}
            skipped, self._skipped = self._skipped, []
            calls = self._calls
            if calls:
                self._calls = []
            self._wakeup_pending = False
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:  # the batch's results must still be handed back
                logger.exception("a task's call to the worker's loop, %r, failed", fn)
        if skipped:
            self._on_skipped(skipped)
        if started:  # tasks whose results are in this batch were taken out as they ended
            self._on_started(list(started))
        if batch:
            self._on_done(batch)

    def _await_on_loop(self, coro: CoroutineType[Any, Any, Any]) -> Any:
        """Await a task's coroutine on the worker's event loop (dask runs an async
        function's task there), this task thread waiting for it: the task holds its
        thread until it ends, as any running task does.

        Raises:
            The coroutine's exception; RuntimeError if the worker closes meanwhile.
        """
        if self.worker is not None:  # its get_client() cannot connect from the loop
            from shoal.client._worker_client import prepare_async_task

            prepare_async_task(self.worker, coro.cr_code)
        fut = asyncio.run_coroutine_threadsafe(_as_task_of(self, coro), self._loop)
        # ends: the coroutine ends, or the worker closes (checked every second)
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=1.0)  # ends: 1 s, checked below
            if done:
                return fut.result()  # ends at once: done
            if self._closed or self._loop.is_closed():
                fut.cancel()
                raise RuntimeError(f"worker {self._address} closed while the task's async "
                                   "function was still running")

    def _execute(self, cmd: Execute, thread: int) -> ExecuteDone:
        start = time.time()
        _thread_state.key = cmd.key
        _thread_state.start = start
        try:
            task = unpickle(cmd.payload, self._functions)
            deps = cmd.deps
            if deps:
                data = self._data
                values = {k: data[k] for k in deps}
            else:  # most tasks of a map: no comprehension to run
                values = {}
            # The task's duration is its run, as dask's compute start/stop: not the loading
            # of its function (a module's import on a worker's first task of it, seconds),
            # which would make the scheduler expect every task of the prefix to last that.
            start = _thread_state.start = time.time()
            result = task(values)
            if type(result) is CoroutineType:  # an async function's task, as dask runs it
                result = self._await_on_loop(result)
        except BaseException as exc:
            stop = time.time()
            if is_reschedule(exc):
                return ExecuteDone(cmd.key, 0, "", start, stop, thread, None,
                                   reschedule_error(cmd.key, self._address, stop))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                if self.on_task_exit is not None:
                    raise _TaskExit(exc) from None
                exc = _as_task_error(exc, cmd.key)
            error = exception_to_error(exc, _user_frames(exc.__traceback__), cmd.key,
                                       self._address, stop)
            error["inputs"] = _inputs_summary(cmd, self._data)
            return ExecuteDone(cmd.key, 0, "", start, stop, thread, None, error)
        finally:
            _thread_state.key = None
        stop = time.time()
        nbytes = measure(result)
        inline: Serialized | None = None
        # Only results sizeof calls small are pickled here, to ride with the completion
        # message; a big one is never copied just to find out it is big. One that cannot
        # be pickled is still a result (later tasks here may use it): only a fetch of its
        # bytes fails, with the worker's "cannot be sent" error.
        if cmd.send_inline and result is None:
            inline = _NONE
        elif cmd.send_inline and nbytes <= INLINE_LIMIT:
            try:
                ser = dumps(result)
            except Exception as exc:  # still a result; a fetch of it names the error
                logger.debug("result of %r is not picklable, kept here: %r", cmd.key, exc)
                ser = None
            if ser is not None and ser.nbytes <= INLINE_LIMIT:
                inline = ser
                head = ser.frames[0]
                if type(head) is bytes and _FUTURE_MARK in head:  # Futures: client/_returned
                    _submissions_read(self.worker)
        if self._put is None:
            self._data[cmd.key] = result
        else:
            self._put(cmd.key, result, nbytes)
        cls = type(result)
        return ExecuteDone(cmd.key, nbytes, type_name(cls), start, stop, thread, inline, None,
                           pickled_class(cls) if cmd.send_inline and inline is None else None)


# ``None`` is the most common result (side-effect tasks, no-op benchmarks): pickled once,
# shared read-only by every completion message (nothing mutates a Serialized's frames).
_NONE = Serialized([pickle.dumps(None, protocol=5)])
# What a pickled Future names (``shoal.client._returned.rebuild``; checked by its tests).
_FUTURE_MARK = b"shoal.client._returned"


def _submissions_read(worker: Any) -> None:
    """Before a result holding Futures leaves (inline, with the task's completion): wait
    until the scheduler has read what the worker's client sent, so the tasks of those
    Futures are known there before the reader asks for their keys (another connection,
    which could otherwise overtake it). A failure only leaves that race open: logged."""
    client = getattr(worker, "_client", None)
    if client is None or client.status != "running":
        return
    from shoal.client._returned import settle_submissions

    try:
        settle_submissions(client)
    except Exception as exc:  # the completion goes on; the reader may see the key cancelled
        logger.warning("the worker's client could not confirm its submissions (%r); a "
                       "Future returned by a task may come back cancelled", exc)


class _TaskExit(BaseException):
    """A task raised ``exc`` (SystemExit, KeyboardInterrupt) in a worker that ends on it."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


def _as_task_error(exc: BaseException, key: Any) -> RuntimeError:
    """A ``SystemExit``/``KeyboardInterrupt`` raised by a task (argparse, click, sys.exit)
    in an in-process worker ends that task only: it becomes the task's error, an
    ``Exception`` the client can catch, instead of ending the worker's thread or, re-raised
    on the client, its event loop (dask's in-process workers then hang)."""
    name = type(exc).__name__
    what = f"{name}({exc})" if str(exc) else name
    cause = ("sys.exit, argparse or a CLI framework's main()" if isinstance(exc, SystemExit)
             else "a KeyboardInterrupt raised in the task")
    err = RuntimeError(
        f"task {key!r} raised {what} ({cause}); in a worker of your own process shoal "
        "reports it as the task's error and the worker keeps running"
    )
    return err.with_traceback(exc.__traceback__)


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
        except Exception as exc:  # listed with the reason (the task's own error is raised)
            reason = f"{type(exc).__name__}: {exc}"
            out.append(f"{k!r}: <unavailable: {reason[:200]}>")
    if len(cmd.deps) > 8:
        out.append(f"... and {len(cmd.deps) - 8} more")
    return out
