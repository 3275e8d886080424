"""A Ctrl-C that lands in shoal code run by the interpreter itself reaches the user's code.

Owns: one ``sys.unraisablehook`` wrapper, installed once by the first Client or Scheduler
(``install``). Must not know about clients, futures or the collector.

Why: CPython runs the SIGINT handler at the main thread's next bytecode boundary. When that
boundary is in Python code that the interpreter calls from C and whose errors it cannot pass
on (a ``gc.callbacks`` hook such as ``_gc.GcKeeper``'s, a ``__del__`` such as
``Future.__del__``), the ``KeyboardInterrupt`` is printed as "Exception ignored in ..." and
dropped: the user's Ctrl-C did nothing, and a loop in the main thread ran on. The wrapper
raises such an interrupt again in the main thread (``_thread.interrupt_main`` from a new
thread: the SIGINT handler runs again at a later boundary, outside the hook), and hands every
other unraisable exception to the hook that was there before.
"""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Any

_lock = threading.Lock()
_installed = False


def _is_shoal(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "shoal" or module.startswith("shoal.")


def _make_hook(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        exc_type = unraisable.exc_type
        if (exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
                and _is_shoal(unraisable.object)):
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
