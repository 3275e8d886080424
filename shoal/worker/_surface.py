"""What dask's ``Worker`` offers the code of a task, on shoal's worker: ``get_worker().id``,
``.ip``, ``.port``, ``.scheduler.address``, ``.memory_manager.memory_limit``, ``.status``,
``.keys()``, ``.client``, ``.identity()``... with dask's types and meanings; and, for the
dask names it does not have (``executor``, ``loop``, ``nanny``...), an AttributeError that
says what to use instead.

Owns: the names and meanings of that surface (a mixin of the ``Worker`` shell, so
``get_worker()`` costs nothing more). Must not know: task logic, the wire protocol.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from shoal._status import Status as Status
from shoal.worker._worker_base import WorkerBase


class SchedulerAddress:
    """``get_worker().scheduler``: where the scheduler is (``.address``), as dask's
    ``PooledRPCCall`` says. shoal's tasks make no remote calls to the scheduler through
    it: any other attribute raises, naming the client method to use."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"get_worker().scheduler has no {name!r}: shoal's worker makes no remote calls "
            "to the scheduler for tasks; use get_client() in the task and its methods "
            f"(get_client().{name}(...) where the Client has it, e.g. who_has, "
            "scheduler_info)")

    def __repr__(self) -> str:
        return f"<scheduler {self.address}>"


class MemoryManager:
    """``get_worker().memory_manager``, as dask's ``WorkerMemoryManager`` reads:
    ``memory_limit`` (bytes, None for no limit), the ``memory_*_fraction`` thresholds
    (a fraction of the limit, or False: off) and ``data`` (the worker's values)."""

    __slots__ = ("data", "memory_limit", "memory_pause_fraction", "memory_spill_fraction",
                 "memory_target_fraction")

    def __init__(self, memory_limit: int | None, fractions: tuple[Any, Any, Any],
                 data: MutableMapping[Any, Any]) -> None:
        self.memory_limit = memory_limit
        (self.memory_target_fraction, self.memory_spill_fraction,
         self.memory_pause_fraction) = fractions
        self.data = data

    def __repr__(self) -> str:
        return f"<MemoryManager memory_limit={self.memory_limit}>"


# dask Worker attributes shoal's worker does not have, and what to use instead.
_NOT_HERE = {
    "executor": "shoal's task threads are not a concurrent.futures.Executor: for their "
                "number use get_worker().nthreads; to run more work use "
                "get_client().submit(...), or a ThreadPoolExecutor of your own",
    "executors": "shoal's worker has one pool of task threads (get_worker().nthreads), "
                 "not named executors; use get_client().submit(...) to run more work",
    "loop": "shoal's worker runs an asyncio loop, not a tornado IOLoop, and tasks do not "
            "use it; use get_client() for cluster operations",
    "io_loop": "shoal's worker runs an asyncio loop, not a tornado IOLoop, and tasks do not "
               "use it; use get_client() for cluster operations",
    "nanny": "shoal's nanny serves no address of its own; use "
             "get_client().restart_workers([get_worker().address]) to restart this worker",
    "rpc": "shoal's workers speak their own protocol; use get_client() for cluster "
           "operations",
    "batched_stream": "shoal's worker has no batched stream for tasks; use "
                      "get_worker().log_event(topic, msg) to send the scheduler a message",
    "active_keys": "use get_worker().get_current_task() for the calling task's key, or "
                   "get_client().processing() for what every worker runs",
    "scheduler_delay": "shoal does not estimate the scheduler's clock offset; use "
                       "time.time() (the worker's clock)",
    "metrics": "use get_client().scheduler_info()['workers'][get_worker().address]['metrics']",
    "monitor": "use get_client().scheduler_info()['workers'][get_worker().address]['metrics']",
}


class TaskFacingMixin(WorkerBase):
    """dask's Worker attributes for task code (see the module's header)."""

    @functools.cached_property
    def id(self) -> str:
        """A name unique to this worker object, ``"Worker-<uuid>"``, as dask's."""
        return f"Worker-{uuid.uuid4()}"

    @property
    def _host_port(self) -> tuple[str, int | None]:
        if not self.address:
            return self.contact_host, None
        from shoal.comm._addresses import split_host_port

        return split_host_port(self.address, "worker address")

    @property
    def ip(self) -> str:
        """The host part of its address (dask's name, a hostname or an IP)."""
        return self._host_port[0]

    @property
    def port(self) -> int | None:
        """The port of its address (None before it listens)."""
        return self._host_port[1]

    @property
    def listen_address(self) -> str:
        """Its address, ``tcp://host:port`` (what peers and clients reach)."""
        return self.address

    @property
    def worker_address(self) -> str:
        """Its address, ``tcp://host:port``."""
        return self.address

    @property
    def contact_address(self) -> str:
        """The address it advertises: its address (``contact_address=`` when given)."""
        return self.address

    @property
    def scheduler(self) -> SchedulerAddress:
        """The scheduler, for ``get_worker().scheduler.address``."""
        return SchedulerAddress(self.scheduler_address)

    @property
    def memory_manager(self) -> MemoryManager:
        """Its memory limit and thresholds, as dask's ``WorkerMemoryManager``."""
        fractions = self._memory_fractions[:3]
        if None in fractions:
            import dask.config

            from shoal.worker._memory_settings import MEMORY_FRACTIONS

            fractions = tuple(
                dask.config.get(f"distributed.worker.memory.{name}", MEMORY_FRACTIONS[name])
                if given is None else given
                for name, given in zip(("target", "spill", "pause"), fractions, strict=True))
        target, spill, pause = fractions
        return MemoryManager(self.memory_limit or None, (target, spill, pause), self.data)

    @property
    def status(self) -> Status:
        """``Status.running`` once registered (``paused`` under memory pressure),
        ``closing`` / ``closed`` as it leaves, ``init`` before."""
        closing = self._closing
        if closing is not None and closing.done():
            return Status.closed
        if self._closed.is_set():
            return Status.closing
        if self.state is None:
            return Status.init
        return Status.paused if self.paused else Status.running

    @property
    def tasks(self) -> Mapping[Any, Any]:
        """dask's ``Worker.tasks``: key → the task's record as plugins read it (``.state``,
        ``.dependencies``; ``.exception``, ``.traceback`` and their ``_text`` when it
        failed, inside a plugin's ``transition`` hook; the values it holds in
        ``"memory"``, with ``.nbytes``), read-only; see ``_task_view``."""
        from shoal.worker._task_view import TasksView

        state: Any = self.state
        host: Any = getattr(self, "plugin_host", None)
        return TasksView({} if state is None else state.tasks,
                         None if host is None else host.moving,
                         None if state is None else state.held)

    def keys(self) -> list[Any]:
        """The keys of the values it holds."""
        return list(self.data)

    @property
    def client(self) -> Any:
        """The worker's own Client (made on first use; what ``get_client()`` returns in a
        task), as dask's ``Worker.client``."""
        from shoal.client._worker_client import _async_face_of, _client_of
        from shoal.worker._execute import async_task_executor

        worker: Any = self
        executor = async_task_executor.get()
        if executor is not None and executor.worker is not None and (
                executor.worker is worker or executor.worker.face is worker):
            return _async_face_of(executor.worker)  # an async def task's: asynchronous
        return _client_of(worker, 10.0)

    def identity(self) -> dict[str, Any]:
        """What it is, as dask's ``Worker.identity()``."""
        return {"type": "Worker", "id": self.id, "scheduler": self.scheduler_address,
                "nthreads": self.nthreads, "memory_limit": self.memory_limit or None}

    if not TYPE_CHECKING:  # (for the type checker, a Worker's attributes stay checked)

        def __getattr__(self, name: str) -> Any:
            # Only for names ordinary lookup did not find: costs nothing on the task path.
            hint = _NOT_HERE.get(name)
            if hint is None:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}")
            raise AttributeError(f"shoal's Worker has no {name!r} (dask's Worker has): {hint}")
