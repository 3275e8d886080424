"""The worker's session with the scheduler: connect and register (retrying with backoff
until accepted, within ``death_timeout``), heartbeat, reconnect as a fresh worker when the
connection drops, and be restarted. Why each session starts afresh: ``_server.py``."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import psutil

from shoal.comm import Connection, connect
from shoal.protocol._framing import encode
from shoal.protocol._messages import PROTOCOL_VERSION, Heartbeat, Hello, Register
from shoal.worker._spill import SpillBuffer
from shoal.worker._worker_base import WorkerBase

logger = logging.getLogger("shoal.worker")

HEARTBEAT_INTERVAL = 1.0
FIRST_RECONNECT_DELAY = 0.05  # seconds; doubles after each failed attempt...
MAX_RECONNECT_DELAY = 5.0  # ...up to this


class SchedulerGone(OSError):
    """The worker found no scheduler to register with within its death timeout."""


class SessionMixin(WorkerBase):
    """Registering with the scheduler, keeping the session alive and renewing it."""

    async def _register(self) -> None:
        """Connect and register, retrying with backoff until accepted; then heartbeat.

        Raises:
            SchedulerGone: not registered within ``death_timeout`` seconds.
            TypeError: the registration holds a value the wire format cannot carry (it would
                never reach the scheduler: no attempt could succeed).
        """
        try:
            encode([self._registration()])
        except Exception as exc:
            raise TypeError(
                f"worker {self.address} could not encode its registration for the scheduler "
                f"({type(exc).__name__}: {exc}): its name, nthreads, memory_limit and "
                "resources must be str, int or float values msgpack can carry") from exc
        deadline = None if self.death_timeout is None else time.monotonic() + self.death_timeout
        delay = FIRST_RECONNECT_DELAY
        while True:
            attempt = self.connect_timeout
            if deadline is not None:
                attempt = max(min(attempt, deadline - time.monotonic()), 0.01)
            problem = await self._try_register(attempt)
            self.register_problem = problem
            if problem is None:
                break
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise SchedulerGone(
                    f"worker {self.address} could not register with the scheduler at "
                    f"{self.scheduler_address} within its death timeout of "
                    f"{self.death_timeout} s ({problem})"
                )
            logger.warning("worker %s: no session with the scheduler at %s (%s); retrying in "
                           "%.2f s", self.address, self.scheduler_address, problem, delay)
            await asyncio.sleep(delay)  # backoff; the loop ends at the deadline or close()
            delay = min(delay * 2, MAX_RECONNECT_DELAY)
        if self._session > 1:
            logger.warning("worker %s registered again with %s as a fresh worker",
                           self.address, self.scheduler_address)
        else:  # as dask's worker says at INFO (kept in its log ring, not printed)
            logger.info("worker %s registered to %s", self.address, self.scheduler_address)
        assert self._scheduler is not None
        self._spawn(self._heartbeat_loop(self._scheduler))
        if isinstance(self.data, SpillBuffer):
            self._spawn(self._memory_monitor(self.data))

    def _registration(self) -> Register:
        # As the user gave it (checked when the worker was made: _name.check_worker_name),
        # so that it comes back of the same type (a float, a tuple...), as in dask.
        return Register(self.address, self.name, self.nthreads, self.memory_limit, os.getpid(),
                        self.contact_host, self.incarnation, self.resources or None)

    async def _try_register(self, timeout: float) -> str | None:
        """One attempt to connect and register: None once accepted, else what went wrong."""
        conn: Connection | None = None
        self._registered = asyncio.get_running_loop().create_future()
        try:
            conn = await connect(self.scheduler_address, timeout=timeout,
                                 security=self.security, role="worker",
                                 server_hostname=self.scheduler_sni)
            self._scheduler = conn
            conn.set_handler(self._on_scheduler)
            conn.send(Hello("worker", PROTOCOL_VERSION, str(self.name)))
            conn.send(self._registration())
            refused = await asyncio.wait_for(self._registered, timeout)
            if refused is not None:
                problem = f"registration refused: {refused}"
            elif conn.closed:
                problem = "the connection closed right after registering"
            else:
                return None
        except OSError as exc:  # also ConnectionError and TimeoutError
            problem = str(exc) or type(exc).__name__
        finally:
            self._registered = None
        self._scheduler = None
        if conn is not None:
            conn.close()
        return problem

    async def _reconnect(self) -> None:
        """The scheduler connection dropped: drop the old session, then register again."""
        logger.warning("worker %s lost its connection to the scheduler at %s; reconnecting "
                       "(its %d held keys and running tasks are dropped)",
                       self.address, self.scheduler_address, len(self.data))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.close()
        if self._actors is not None:
            self._actors.close()  # its actors went with the data; pending calls are refused
        for peer in self._peers.values():  # fetches of the old session: nobody waits
            peer.info.pop("requests", None)
        self._new_session(asyncio.get_running_loop())
        try:
            await self._register()
        except SchedulerGone as exc:
            logger.error("%s; closing", exc)
            self.scheduler_gone = True
            await self.close()

    def _restart(self, conn: Connection, reason: str) -> None:
        """Be replaced (``client.restart``): exit for the nanny to start a fresh process,
        or, without a nanny, drop this session and register again as a fresh worker."""
        logger.info("worker %s restarting: %s", self.address, reason)
        if self.on_restart is not None:
            self.on_restart()
            return
        conn.close()  # its loss starts _reconnect, as any lost scheduler connection does

    async def _heartbeat_loop(self, conn: Connection) -> None:
        assert self.state is not None
        self._process.cpu_percent()
        while not conn.closed:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                rss = self._process.memory_info().rss
                cpu = self._process.cpu_percent()
            except psutil.Error:
                rss, cpu = 0, 0.0
            executing = self._executor.executing if self._executor else 0
            data = self.data
            if isinstance(data, SpillBuffer):
                managed, spilled = data.managed_in_memory, data.spilled_bytes
                on_disk = data.spilled_disk_bytes
            else:
                managed, spilled, on_disk = self.state.managed_bytes, 0, 0
            conn.send(Heartbeat(rss, managed, cpu, executing, spilled, on_disk))
