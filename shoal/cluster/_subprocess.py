"""``SubprocessCluster``: a ``SpecCluster`` whose scheduler and each worker run in a
process of their own (dask's ``distributed.deploy.subprocess``), started as
``python -m shoal.cluster._spec_main``.

Owns: the two process classes (start, find the scheduler's address in its scheduler file,
stop: SIGTERM, then SIGKILL past a bound) and dask's defaults for the cluster's shape.
Must not know: what runs inside the processes (``_spec_main`` and the servers do).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import uuid
from typing import Any

from shoal._status import Status

logger = logging.getLogger("shoal.cluster")

# How long a process is given to exit after SIGTERM before it is killed.
_STOP_TIMEOUT = 10.0


class Subprocess:
    """A server in a process of its own, dask's ``ProcessInterface`` shape: ``await``
    starts it, ``close()`` stops it, ``finished()`` waits for the process to end."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.address: str | None = None
        self.status = Status.created
        self._lock: asyncio.Lock | None = None

    def __await__(self) -> Any:
        async def started() -> Subprocess:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # ends: the start's own bound
                if self.status == Status.created:
                    await self.start()
            return self

        return started().__await__()

    async def start(self) -> None:
        await self._start()
        self.status = Status.running

    async def _start(self) -> None:
        raise NotImplementedError

    async def _spawn(self, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "shoal.cluster._spec_main", *args]
        logger.info("starting %s", " ".join(cmd))
        from shoal.worker.__main__ import PARENT_PID_ENV

        # Its parent's sys.path, as a nanny's worker gets; and it dies with this process.
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                   PARENT_PID_ENV: str(os.getpid())}
        self.process = await asyncio.create_subprocess_exec(*cmd, env={**environ, **(env or {})})

    async def close(self) -> None:
        """Stop the process: SIGTERM (its server closes), then SIGKILL past 10 s."""
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()  # ends: SIGKILL cannot be ignored
        self.status = Status.closed

    async def finished(self) -> None:
        if self.process is not None:
            await self.process.wait()  # ends: when the process does (close() ends it)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: status={self.status.name}>"


class SubprocessScheduler(Subprocess):
    """shoal's ``Scheduler`` in a process of its own (``scheduler_kwargs``: its arguments);
    its address is read from the scheduler file it writes.

    Raises (when awaited):
        RuntimeError: it exited, or wrote no scheduler file within ``timeout`` seconds.
    """

    def __init__(self, scheduler_kwargs: dict[str, Any] | None = None, timeout: int = 30) -> None:
        self.scheduler_kwargs = {"scheduler_file": os.path.join(tempfile.gettempdir(),
                                                                f"shoal-{uuid.uuid4()}.json")}
        self.scheduler_kwargs.update(scheduler_kwargs or {})
        self.timeout = timeout
        self.security: Any = None
        super().__init__()

    async def _start(self) -> None:
        from shoal.cluster._scheduler_file import read_scheduler_file, with_file_token

        path = self.scheduler_kwargs["scheduler_file"]
        await self._spawn("--spec", json.dumps({"cls": "shoal.Scheduler",
                                                "opts": self.scheduler_kwargs}))
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:  # ends: the file is read, the process exits, or the deadline passes
            try:
                info = read_scheduler_file(path, 0)
                break
            except (OSError, ValueError):  # not written yet (written atomically)
                if self.process.returncode is not None:
                    raise RuntimeError("Scheduler failed to start and exited with code "
                                       f"{self.process.returncode} (its error is above, on "
                                       "stderr)") from None
                if loop.time() > deadline:
                    await self.close()
                    raise RuntimeError(f"Scheduler failed to start within {self.timeout}s") from None
                await asyncio.sleep(0.05)  # ends: the loop's conditions above
        self.address = str(info["address"])
        self.security = with_file_token(info, None)
        logger.info("Scheduler at %r", self.address)

    async def close(self) -> None:
        await super().close()
        try:
            os.unlink(self.scheduler_kwargs["scheduler_file"])
        except OSError:  # already gone, or never written
            pass


class SubprocessWorker(Subprocess):
    """A shoal worker (``worker_class``: ``"distributed.Nanny"``, shoal's Nanny, by
    default) in a process of its own. The start returns once the process is started, as
    dask's; ``cluster.wait_for_workers`` waits for them to register."""

    _takes_scheduler_security = True  # SpecCluster passes the scheduler's (its token)

    def __init__(self, scheduler: str, worker_class: str = "distributed.Nanny",
                 name: Any = None, worker_kwargs: dict[str, Any] | None = None,
                 security: Any = None) -> None:
        self.name = name
        self.scheduler = scheduler
        self.worker_class = worker_class
        self.worker_kwargs = dict(worker_kwargs or {})
        self.security = security
        super().__init__()

    async def _start(self) -> None:
        opts = dict(self.worker_kwargs)
        if self.name is not None:
            opts.setdefault("name", self.name)
        token = getattr(self.security, "token", None)
        await self._spawn(self.scheduler, "--spec",
                          json.dumps({"cls": self.worker_class, "opts": opts}),
                          env={"SHOAL_TOKEN": token} if token else None)


def SubprocessCluster(
    host: str | None = None,
    scheduler_port: int = 0,
    scheduler_kwargs: dict[str, Any] | None = None,
    dashboard_address: str | None = ":8787",
    worker_class: str = "distributed.Nanny",
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    worker_kwargs: dict[str, Any] | None = None,
    silence_logs: Any = logging.WARN,
    **kwargs: Any,
) -> Any:
    """A scheduler and workers, each in a process of its own (dask's ``SubprocessCluster``,
    experimental there too): a ``SpecCluster`` named "SubprocessCluster".

    Args:
        host: the address to bind (default ``127.0.0.1``).
        scheduler_port: the scheduler's port (0: any free one).
        scheduler_kwargs: more arguments of shoal's ``Scheduler``.
        dashboard_address: the dashboard's (``":0"`` any free port; None: no dashboard).
        worker_class: ``"distributed.Nanny"`` (shoal's Nanny: a worker process watched by
            its nanny) or ``"distributed.Worker"``, or shoal's names for them.
        n_workers, threads_per_worker: dask's LocalCluster rule when not given.
        worker_kwargs: more arguments of the worker class (``memory_limit`` defaults to the
            machine's memory shared out).
        silence_logs: the level the processes' shoal loggers hand on from.
        **kwargs: ``SpecCluster``'s (``asynchronous``, ``name``...).

    Raises:
        RuntimeError: the scheduler did not start.
    """
    from shoal.cluster._sizing import cpu_count, local_memory_limit, local_shape
    from shoal.cluster._spec import SpecCluster

    host = host or "127.0.0.1"
    worker_kwargs = dict(worker_kwargs or {})
    n_workers, threads_per_worker = local_shape(n_workers, threads_per_worker, True,
                                                cpu_count())
    if n_workers and "memory_limit" not in worker_kwargs:
        worker_kwargs["memory_limit"] = local_memory_limit("auto", n_workers, threads_per_worker)
    scheduler_options = {"host": host, "port": scheduler_port,
                         "dashboard": dashboard_address is not None,
                         "dashboard_address": dashboard_address, **(scheduler_kwargs or {})}
    worker_options = {"host": host, "nthreads": threads_per_worker,
                      "silence_logs": silence_logs, **worker_kwargs}
    scheduler = {"cls": SubprocessScheduler, "options": {"scheduler_kwargs": scheduler_options}}
    worker = {"cls": SubprocessWorker,
              "options": {"worker_class": worker_class, "worker_kwargs": worker_options}}
    kwargs.setdefault("name", "SubprocessCluster")
    return SpecCluster(workers=dict.fromkeys(range(n_workers), worker), scheduler=scheduler,
                       worker=worker, silence_logs=silence_logs, **kwargs)
