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

A finalizer cut short did not do its work (``Future.__del__``: give back the future's
reference, else its key stays held on the cluster). A function registered with
``resume_with`` is called with the innermost frame and line the interrupt came at, first,
and finishes what that frame had not done yet.
"""

from __future__ import annotations

import _thread
import logging
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

logger = logging.getLogger("shoal")

_lock = threading.Lock()
_installed = False
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
