"""Locks that libraries put into tasks, as they look to another process.

Owns: what a task's lock becomes when the task is sent to the cluster. dask (``lock=True``
in ``da.store``, ``to_hdf``) and xarray (its netCDF writers) choose a lock by asking which
scheduler is active, and they recognize only dask.distributed's Client: with shoal, dask
picks a ``dask.utils.SerializableLock`` (one lock per process) and xarray a
``threading.Lock`` (which cannot pickle). So:

- a ``dask.utils.SerializableLock`` in a task becomes a shoal ``Lock`` named after its token
  (the lock dask picks for dask.distributed is a cluster-wide one too): tasks in worker
  processes that share it exclude each other, not only threads of one process;
- a task holding a ``threading.Lock`` / ``RLock`` cannot leave this process: pickling it
  raises :class:`ProcessLockError`, and dask's scheduler entry point (``Client.get``) runs
  such tasks here, where the lock means what its owner meant.

Must not know: sockets, task states, how the client runs a task.
"""

from __future__ import annotations

import _thread
import io
import logging
import threading
from typing import Any

import cloudpickle

logger = logging.getLogger("shoal.protocol")

# The names of the cluster locks that stand in for dask's SerializableLocks.
LOCK_PREFIX = "dask-serializable-lock-"

_THREAD_LOCKS = (_thread.LockType, type(threading.RLock()))


class ProcessLockError(TypeError):
    """A task holds a lock of this process (``threading.Lock``/``RLock``), which means
    nothing in another process."""


def cluster_lock(token: Any) -> Any:
    """The shoal Lock standing in for the SerializableLock of ``token`` (in any process)."""
    from shoal.client._locks import Lock  # (the client's class: imported when first used)

    return Lock(name=f"{LOCK_PREFIX}{token}")


def reduce_serializable_lock(lock: Any) -> tuple[Any, tuple[Any]]:
    """``pickle`` reduction of a ``dask.utils.SerializableLock`` sent in a task."""
    return cluster_lock, (lock.token,)


class _LockFinder(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _THREAD_LOCKS):
            raise ProcessLockError(
                "threading.Lock" if isinstance(obj, _thread.LockType) else "threading.RLock")
        return super().reducer_override(obj)


def process_lock_in(obj: Any) -> str | None:
    """The name of a thread lock's type that ``obj`` holds (found by pickling it), or None
    if it holds none (or fails to pickle for another reason first). Slow: for the path
    where pickling has already failed."""
    try:
        _LockFinder(io.BytesIO(), protocol=5).dump(obj)
    except ProcessLockError as exc:
        return str(exc)
    except Exception as exc:  # another reason it cannot pickle: the caller reports its error
        logger.debug("no thread lock found; pickling failed with %r", exc)
        return None
    return None
