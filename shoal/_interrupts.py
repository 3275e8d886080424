"""A Ctrl-C that lands in shoal code run by the interpreter itself reaches the user's code.

Owns: one ``sys.unraisablehook`` wrapper, installed once by the first Client or Scheduler
(``install``), and the table of what to finish when a finalizer was cut short
(``resume_with``). Must not know about clients, futures or the collector.

Why: CPython runs the SIGINT handler at the main thread's next bytecode boundary. When that
boundary is in Python code that the interpreter calls from C and whose errors it cannot pass
on (a ``gc.callbacks`` hook such as ``_gc.GcKeeper``'s, a ``__del__`` such as
``Future.__del__``), the ``KeyboardInterrupt`` is printed as "Exception ignored in ..." and
dropped: the user's Ctrl-C did nothing, and a loop in the main thread ran on. The wrapper
raises such an interrupt again in the main thread (``_thread.interrupt_main`` from a new
thread: the SIGINT handler runs again at a later boundary, outside the hook), and hands every
other unraisable exception to the hook that was there before.

Every blocking call of the API waits through ``blocking_wait``. In the main thread it waits
in steps of ``POLL`` seconds: the kernel hands a process's SIGINT to any thread that does not
block it when the main thread has a signal pending already (a SIGCHLD from a worker process),
and Python's handler then runs only once the main thread is back in bytecode, which an untimed
wait would put off until it ended. A blocking call made from a coroutine (a blocking Client's
``result()`` inside ``asyncio.run(main())``) waits in the same steps and raises
``asyncio.CancelledError`` once its task's cancellation is asked for: since Python 3.11
asyncio's SIGINT handler does not raise ``KeyboardInterrupt`` but cancels the main task, which
nothing would see while its thread waits; ``asyncio.run`` then raises ``KeyboardInterrupt``.
Other threads wait in one step (no signal handler runs in them).

A finalizer cut short did not do its work (``Future.__del__``: give back the future's
reference, else its key stays held on the cluster). A function registered with
``resume_with`` is called with the innermost frame and line the interrupt came at, first,
and finishes what that frame had not done yet.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

logger = logging.getLogger("shoal")

_lock = threading.Lock()
_installed = False
# Seconds between two looks, in a blocked main thread, at a signal taken by another thread
# and at whether a blocked coroutine's task is being cancelled.
POLL = 0.1
_MAIN = threading.main_thread().ident
_resumes: dict[CodeType, Callable[[FrameType, int], None]] = {}


def resume_with(function: Any, resume: Callable[[FrameType, int], None]) -> None:
    """When an interrupt is dropped while ``function``'s frame is the innermost one, call
    ``resume(frame, line)`` (``line``: where the interrupt came) before raising it again."""
    _resumes[function.__code__] = resume


def _resume(traceback: Any) -> None:
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None:
        return
    resume = _resumes.get(traceback.tb_frame.f_code)
    if resume is not None:
        try:
            resume(traceback.tb_frame, traceback.tb_lineno)
        except Exception:  # the interrupt is still raised again; what failed is said
            logger.exception("shoal: finishing %s after an interrupt failed",
                             traceback.tb_frame.f_code.co_qualname)


def _is_shoal(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "shoal" or module.startswith("shoal.")


def _make_hook(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        exc_type = unraisable.exc_type
        if (exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
                and _is_shoal(unraisable.object)):
            _resume(unraisable.exc_traceback)
            # Not ``interrupt_main()`` here: this hook is Python code called from C too, and
            # the interrupt would be due (and dropped) at its next bytecode. A new thread
            # needs the GIL first, which this one gives up only once back in bytecode that
            # can raise; if the interrupt lands in a hook again, it comes back here.
            _thread.start_new_thread(_thread.interrupt_main, ())
            return
        previous(unraisable)

    hook.__shoal_interrupts__ = True  # type: ignore[attr-defined]
    return hook


def install() -> None:
    """Wrap ``sys.unraisablehook`` (once per process; a hook the user sets later wins)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        sys.unraisablehook = _make_hook(sys.unraisablehook)


def blocked_task() -> tuple[Any, int] | None:
    """The task whose coroutine makes a blocking call in this thread, with its count of
    cancellation requests now; None outside a running event loop's task (and before
    Python 3.11, whose ``asyncio.run`` lets SIGINT raise ``KeyboardInterrupt`` itself)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    task = asyncio.current_task(loop)
    if task is None or not hasattr(task, "cancelling"):
        return None
    return task, task.cancelling()


def blocking_wait(wait: Callable[[float | None], bool], timeout: float | None) -> bool:
    """Call ``wait(seconds or None) -> done`` until it is done (True) or ``timeout`` has
    passed (False): in one call outside the main thread and outside a coroutine, else in steps
    of ``POLL`` (the module's docstring says why).

    Raises:
        asyncio.CancelledError: called from a coroutine whose task's cancellation was asked
            for meanwhile (Ctrl-C under ``asyncio.run``): it ends cancelled, as if it awaited.
    """
    blocked = blocked_task()
    if blocked is None and _thread.get_ident() != _MAIN:
        return wait(timeout)
    task, before = blocked if blocked is not None else (None, 0)
    deadline = None if timeout is None else time.monotonic() + timeout
    # With no timeout (the caller's choice, as ``fut.result()``), what it waits for ends it:
    # every shoal future and request is settled by its answer or failed by its connection's
    # loss.
    while True:  # ends: done, the deadline, the task's cancellation (a signal raises)
        step = POLL
        if deadline is not None:
            step = min(step, max(0.0, deadline - time.monotonic()))
        if wait(step):
            return True
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError("cancelled while waiting in a blocking shoal call")
        if deadline is not None and time.monotonic() >= deadline:
            return False
