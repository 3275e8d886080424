"""Whether the Futures unpickled in this thread are a worker's task data: a task's
arguments, a fetched or unspilled value. There a pickled Future is the bare ``TaskRef`` of
its key, which the task's graph resolves to the key's value; elsewhere (``pickle.loads`` in
the user's code) ``shoal.client._returned.rebuild`` makes a Future bound to no client.

Owns: the per-thread mark. Imports nothing of dask: a worker process loads it before its
background import of dask is over.
"""

from __future__ import annotations

import threading
from typing import Any

_here = threading.local()


def loading_task_data() -> bool:
    """Whether this thread is inside :func:`task_refs`."""
    return getattr(_here, "on", False)


def task_refs(load: Any, *args: Any) -> Any:
    """``load(*args)`` with the Futures it unpickles as bare ``TaskRef``s of their keys."""
    before = getattr(_here, "on", False)
    _here.on = True
    try:
        return load(*args)
    finally:
        _here.on = before
