"""What code running inside a task can ask of the worker running it: ``get_worker``,
``secede`` and ``rejoin`` (dask.distributed's names and semantics).

Owns: finding the calling task's worker and executor through the task thread's state.
Must not know: the scheduler's protocol or clients (``get_client`` lives in
``shoal/client/_worker_client.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shoal.worker import _execute

if TYPE_CHECKING:
    from shoal.worker._execute import Executor
    from shoal.worker._server import Worker


def current_executor() -> Executor | None:
    """The executor whose task is running in this thread, or None outside a task."""
    state = _execute._thread_state
    if getattr(state, "key", None) is None:
        return None
    executor: Executor | None = getattr(state, "executor", None)
    return executor


def get_worker() -> Worker:
    """The worker running the calling task, with what dask's ``Worker`` offers task code:
    ``.address``, ``.id``, ``.name``, ``.ip`` / ``.host``, ``.port``, ``.nthreads``,
    ``.get_current_task()`` (the running key), ``.data`` (the values it holds, by key) and
    ``.keys()``, ``.log_event(topic, msg)``, ``.scheduler.address`` (also
    ``.scheduler_address``), ``.memory_manager.memory_limit`` (and its thresholds),
    ``.status``, ``.client`` (as ``get_client()``), ``.local_directory``, ``.plugins``,
    ``.identity()``. dask names it lacks (``executor``, ``loop``, ``nanny``...) raise
    AttributeError saying what to use (``shoal/worker/_surface.py``). A ``shoal.Worker``
    started by hand in this process is returned as that very object.

    Raises:
        ValueError: called outside a task (there is no worker to return).
    """
    executor = current_executor() or _execute.async_task_executor.get()
    if executor is None or executor.worker is None:
        raise ValueError(
            "get_worker() was called outside a task: there is no worker here. Call it from "
            "inside a function that runs on the cluster (client.submit(f))."
        )
    worker: Worker = executor.worker
    face: Worker | None = worker.face  # a shoal.Worker started by hand: that object
    return worker if face is None else face


def _executor_for(what: str) -> Executor:
    executor = current_executor()
    if executor is None:
        raise ValueError(
            f"{what}() was called outside a task: only a task running on a worker can "
            "leave or rejoin the worker's thread pool."
        )
    return executor


def secede() -> None:
    """Have the calling task leave its worker's thread pool.

    The worker starts another thread, so it keeps running as many tasks as it has threads,
    and the scheduler stops counting this task as busy and sends more work. The task keeps
    its key and its result flows as usual. Use it before waiting on tasks the task
    submitted (``get_client().gather(...)``); call :func:`rejoin` to take a slot again.
    Seceding twice is the same as once.

    Raises:
        ValueError: called outside a task.
    """
    _executor_for("secede").secede()


def rejoin() -> None:
    """Have a seceded task take a slot in its worker's thread pool again.

    Blocks until a slot is free: an idle thread gives its slot at once, otherwise the next
    thread to finish a task does. Does nothing if the task has not seceded.

    Raises:
        ValueError: called outside a task.
    """
    _executor_for("rejoin").rejoin()


@contextlib.contextmanager
def seceded_while_waiting() -> Iterator[None]:
    """In a task that holds a slot of its worker's pool: leave the pool for the block and
    take a slot again after it, as dask's ``Client.get`` does around its wait. The tasks
    waited for may need that very slot: on a worker of one thread (or with every thread
    held by such a wait) they would never start. Outside a task, or in a task that seceded
    already (``worker_client()``), nothing changes."""
    executor = current_executor()
    if executor is None or getattr(_execute._thread_state, "seceded", False):
        yield
        return
    executor.secede()
    try:
        yield
    finally:
        executor.rejoin()  # ends: a pool thread hands over its slot, or the pool closes


def in_task() -> bool:
    return current_executor() is not None


__all__ = ["get_worker", "rejoin", "secede"]


