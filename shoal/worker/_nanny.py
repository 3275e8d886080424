"""A nanny supervises one worker process: starts it, restarts it if it dies or outgrows
its memory limit, and stops it for good on close. Runs as a task in its owner's loop
(the LocalCluster's or the ``shoal worker`` command's), not as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import psutil

from shoal.worker._resources import check_resources, format_resources

logger = logging.getLogger("shoal.nanny")

MEMORY_TERMINATE_FRACTION = 0.95
# dask's defaults for distributed.worker.memory.* (used when its config does not say).
MEMORY_FRACTIONS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "transfer": 0.1,
                    "terminate": MEMORY_TERMINATE_FRACTION}
_EXIT_SCHEDULER_GONE = 3  # shoal.worker.__main__.EXIT_SCHEDULER_GONE (not imported: keeps imports light)
_EXIT_PLUGIN_RESTART = 4  # shoal.worker.__main__.EXIT_PLUGIN_RESTART: a nanny plugin asked
MAX_RESTARTS_PER_MINUTE = 10


def _connect_timeout() -> float:
    """dask's ``distributed.comm.timeouts.connect``: the bound of one connection attempt."""
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.connect", "30s")
    return float(parse_timedelta(value, default="seconds") or 30.0)


class Nanny:
    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str | None = None,
        memory_limit: int = 0,
        host: str = "127.0.0.1",
        port: int | str = 0,
        contact_address: str | None = None,
        env: dict[str, str] | None = None,
        death_timeout: float | None = None,
        local_directory: str | None = None,
        security: Any = None,
        resources: dict[str, float] | str | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = name
        self.memory_limit = memory_limit
        self.host = host
        self.port = port  # the worker's data port, or a range "first:last" (dask's --worker-port)
        self.contact_address = contact_address  # advertised instead of host:port (NAT)
        self.env = env
        self.death_timeout = death_timeout
        self.local_directory = local_directory
        self.terminate_fraction = MEMORY_TERMINATE_FRACTION
        self.security = security  # a shoal.comm._security.Security, passed on in the env
        # Resolved here (dask's config is read in this process) and passed on explicitly.
        self.resources = check_resources(resources)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts: list[float] = []
        # Where nanny plugins (run in the worker on our behalf) leave the env to keep.
        fd, self._plugin_state = tempfile.mkstemp(prefix="shoal-nanny-", suffix=".json")
        os.close(fd)
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> None:
        args = [
            sys.executable, "-m", "shoal.worker", self.scheduler_address,
            "--nthreads", str(self.nthreads), "--memory-limit", str(self.memory_limit),
            "--host", self.host,
        ]
        if self.name is not None:
            args += ["--name", str(self.name)]
        if self.death_timeout is not None:
            args += ["--death-timeout", str(self.death_timeout)]
        if self.port:
            args += ["--port", str(self.port)]
        if self.contact_address is not None:
            args += ["--contact-address", self.contact_address]
        args += ["--resources", format_resources(self.resources)]
        args += ["--connect-timeout", str(_connect_timeout())]
        if self.memory_limit:
            args += self._memory_args()
        env = dict(os.environ)
        # Like multiprocessing's spawn: the worker imports what its parent can import, so
        # functions from the user's modules (and test files) unpickle by reference.
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.update(self.env or {})
        # glibc's malloc otherwise keeps freed big blocks (its mmap threshold grows to the
        # largest block freed), so memory given back by spilling never leaves the process;
        # dask's distributed.nanny.pre-spawn-environ sets the same.
        env.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
        from shoal.worker._plugins import NANNY_PLUGINS_ENV, NANNY_STATE_ENV, read_nanny_state

        kept = read_nanny_state(self._plugin_state)
        env.update(kept["env"])
        env[NANNY_STATE_ENV] = self._plugin_state
        env[NANNY_PLUGINS_ENV] = json.dumps(kept["plugins"])  # names may hold any character
        # Credentials never go on the command line: ``ps`` shows that to every user.
        if self.security is None:
            from shoal.comm._security import Security

            self.security = Security()
        env.update(self.security.to_env())
        env.setdefault("OMP_NUM_THREADS", str(self.nthreads))
        env.setdefault("MKL_NUM_THREADS", str(self.nthreads))
        env.setdefault("OPENBLAS_NUM_THREADS", str(self.nthreads))
        # The worker dies with this process (shoal.worker.__main__.PARENT_PID_ENV).
        env["SHOAL_NANNY_PID"] = str(os.getpid())
        self.process = await asyncio.create_subprocess_exec(
            # stdout and stderr are inherited: print() in a task shows where the user looks.
            *args, stdin=asyncio.subprocess.DEVNULL, env=env,
        )

    def _memory_args(self) -> list[str]:
        """dask's ``distributed.worker.memory.*`` fractions and ``temporary-directory``,
        read here (the worker process does not import dask's config to start)."""
        import dask.config

        memory = {name: dask.config.get(f"distributed.worker.memory.{name}", default)
                  for name, default in MEMORY_FRACTIONS.items()}
        terminate = memory["terminate"]
        self.terminate_fraction = float(terminate) if terminate not in (None, False) else 0.0
        args = []
        for name in ("target", "spill", "pause", "transfer"):
            value = memory.get(name)
            args += [f"--memory-{name}", "false" if value in (None, False) else str(float(value))]
        # Always given ("" for the system's temporary directory), so that the worker need
        # not import dask's config to start.
        directory = self.local_directory or dask.config.get("temporary-directory", None)
        return [*args, "--local-directory", str(directory or "")]

    async def _supervise(self) -> None:
        while not self._closing:
            proc = self.process
            assert proc is not None
            waiter = asyncio.ensure_future(proc.wait())
            while not waiter.done():
                await asyncio.wait([waiter], timeout=0.5)
                if not waiter.done() and self.memory_limit and self.terminate_fraction:
                    self._check_memory(proc.pid)
            if self._closing:
                return
            code = waiter.result()
            if code == _EXIT_SCHEDULER_GONE:
                logger.info("worker %s stopped: closed by its scheduler, or no scheduler within "
                            "its death timeout; not restarting", self.name)
                return
            if code == _EXIT_PLUGIN_RESTART:
                logger.info("worker %s restarts for a nanny plugin", self.name)
                await self._spawn()
                continue
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]
            if len(self.restarts) > MAX_RESTARTS_PER_MINUTE:
                logger.error("worker %s died %d times in a minute; not restarting it",
                             self.name, len(self.restarts))
                return
            logger.warning("worker %s exited with code %s; restarting it", self.name, code)
            await self._spawn()

    def _check_memory(self, pid: int) -> None:
        try:
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return
        if rss > self.terminate_fraction * self.memory_limit:
            logger.warning(
                "worker %s uses %d bytes, over %.0f%% of its %d-byte limit; restarting it",
                self.name, rss, self.terminate_fraction * 100, self.memory_limit,
            )
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        proc = self.process
        if proc is not None and proc.returncode is None:
            try:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), timeout)
            except (ProcessLookupError, asyncio.TimeoutError):
                try:
                    proc.kill()
                    await proc.wait()
                except ProcessLookupError:
                    pass
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        with contextlib.suppress(OSError):
            os.remove(self._plugin_state)

    def kill_nowait(self) -> None:
        """Last-resort cleanup at interpreter exit."""
        self._closing = True
        with contextlib.suppress(OSError):
            os.remove(self._plugin_state)
        proc = self.process
        if proc is not None and proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass

    def __repr__(self) -> str:
        return f"<Nanny {self.name} pid={self.pid}>"


def status(nanny: Nanny) -> dict[str, Any]:
    return {"name": nanny.name, "pid": nanny.pid, "restarts": len(nanny.restarts)}
