"""``shoal.print`` and ``shoal.warn``: print or warn from inside a task and have every
client connected to the scheduler show it too (dask.distributed's ``print`` / ``warn``).

Owns: turning the call into an event on topic "print" or "warn" sent over the worker's
connection to the scheduler (no client needed in the worker). Outside a task they are the
built-in ``print`` and ``warnings.warn``.
"""

from __future__ import annotations

import builtins
import pickle
import sys
import warnings
from typing import Any, TextIO

from shoal.worker._context import current_executor


def print(*args: Any, sep: str | None = " ", end: str | None = "\n",
          file: TextIO | None = None, flush: bool = False) -> None:
    """The built-in ``print``; inside a task, also printed by every connected client.

    Raises:
        TypeError: inside a task, ``file`` is neither None, ``sys.stdout`` nor
            ``sys.stderr`` (clients cannot print to another file).
    """
    executor = current_executor()
    if executor is not None and executor.worker is not None:
        if file not in (None, sys.stdout, sys.stderr):
            raise TypeError(
                "shoal.print in a task only prints to sys.stdout or sys.stderr (clients print "
                f"it there too); got file={file!r}. Write to the file with builtins.print."
            )
        msg = {
            "args": tuple(str(a) for a in args),
            "sep": sep,
            "end": end,
            "file": 2 if file is sys.stderr else 1,
            "flush": flush,
        }
        executor.worker.log_event("print", msg)
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


def warn(message: str | Warning, category: type[Warning] | None = UserWarning,
         stacklevel: int = 1, source: Any = None) -> None:
    """``warnings.warn``; inside a task, every connected client issues the warning too
    (``stacklevel`` and ``source`` only apply to the local warning)."""
    warnings.warn(message, category=category, stacklevel=stacklevel + 1, source=source)
    executor = current_executor()
    if executor is not None and executor.worker is not None:
        msg = {"message": pickle.dumps(message)}
        if category is not None:
            msg["category"] = pickle.dumps(category)
        executor.worker.log_event("warn", msg)
