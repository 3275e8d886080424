"""A nanny supervises one worker process: starts it, restarts it if it dies or outgrows
its memory limit, and stops it for good on close. Runs as a task in its owner's loop
(the LocalCluster's or the ``shoal worker`` command's), not as a process of its own.

Owns: the worker process's lifecycle (start, the warm standby, the registration pipe,
supervision, close). Its parts: the command line and environment (``_worker_command``),
the memory settings (``_memory_settings``), the watch for exit and memory
(``_nanny_watch``), the restart policy (``_nanny_exits``), the nanny plugins' state
(``_nanny_plugins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import random
import shutil
import time
from typing import Any

from shoal import _logs
from shoal.worker._inherited_config import INHERIT_CONFIG_ENV, inherited_config
from shoal.worker._memory_settings import (
    MEMORY_TERMINATE_FRACTION,
    NANNY_MONITOR_INTERVAL,
    memory_settings,
)
from shoal.worker._name import check_worker_name
from shoal.worker._nanny_exits import (
    MAX_RESTARTS_PER_MINUTE,
    Exit,
    failures_within_a_minute,
    read_exit,
)
from shoal.worker._nanny_plugins import NannyPluginState
from shoal.worker._nanny_watch import watch
from shoal.worker._resources import check_resources
from shoal.worker._worker_command import worker_command, worker_environ

logger = logging.getLogger("shoal.nanny")

# The worker's local directory, "<prefix><pid>-<random>" (shoal.worker._plugins).
_WORKER_SPACE_PREFIX = "shoal-worker-space-"

# The worker process starts a process group of its own. Ctrl-C in a terminal (and Jupyter's
# "interrupt kernel") signals the whole foreground group: the user's program, where a local
# cluster's nannies run, takes its KeyboardInterrupt and goes on, and its workers must not see
# the SIGINT (they would close and lose their data). The nanny still stops its worker, and the
# worker dies with its nanny (PR_SET_PDEATHSIG in worker/__main__.py), group or not. A group,
# not a session: Linux's scheduler shares the CPU between sessions first (autogroup), which
# took a third more time for tasks that wait on tasks (the fib benchmark). os.setpgrp after
# the fork, as uvloop's subprocess_exec takes no process_group (it takes no lock: safe with
# threads).
_OWN_PROCESS_GROUP: dict[str, Any] = {"preexec_fn": os.setpgrp}


class Nanny:
    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: Any = None,
        memory_limit: int = 0,
        host: str = "127.0.0.1",
        port: int | str = 0,
        contact_address: str | None = None,
        env: dict[str, str] | None = None,
        death_timeout: float | None = None,
        local_directory: str | None = None,
        security: Any = None,
        resources: dict[str, float] | str | None = None,
        lifetime: float | str | None = None,
        lifetime_stagger: float | str | None = None,
        lifetime_restart: bool | None = None,
        preload: list[str] | None = None,
        preload_argv: list[str] | list[list[str]] | None = None,
        preload_nanny: list[str] | None = None,
        preload_nanny_argv: list[str] | list[list[str]] | None = None,
        scheduler_sni: str | None = None,
    ) -> None:
        """``scheduler_sni``: the TLS SNI its workers send the scheduler (dask's).
        ``lifetime`` (seconds or ``"1 hour"``), ``lifetime_stagger``,
        ``lifetime_restart``: each worker process retires gracefully after the lifetime,
        moved by up to ± the stagger, and with restart this nanny starts a fresh one
        (default: dask's ``distributed.worker.lifetime.*``). ``preload``/``preload_argv``:
        modules each worker process runs ``dask_setup(worker)`` of before registering
        (default: ``distributed.worker.preload``); ``preload_nanny``/``preload_nanny_argv``:
        modules whose ``dask_setup(nanny)`` runs in this process before the first worker
        starts (default: ``distributed.nanny.preload``). See ``shoal/_preload.py``.

        Raises:
            ValueError: a lifetime that is not a duration.
            shoal._preload.PreloadError: a nanny preload could not be imported.
        """
        from shoal._preload import configured, configured_preloads, normalize
        from shoal.worker._lifetime import configured_lifetime

        _logs.ring("shoal.nanny")  # recent records, for get_worker_logs(nanny=True)
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = check_worker_name(name, "Nanny")
        self.memory_limit = memory_limit
        self.host = host
        self.port = port  # the worker's data port, or a range "first:last" (dask's --worker-port)
        self.contact_address = contact_address  # advertised instead of host:port (NAT)
        self.scheduler_sni = scheduler_sni
        self.env = env
        self.death_timeout = death_timeout
        self.local_directory = local_directory
        self.terminate_fraction = MEMORY_TERMINATE_FRACTION
        self.monitor_interval = NANNY_MONITOR_INTERVAL
        self._space_parent: str | None = None  # where worker processes make their directory
        self.security = security  # a shoal.comm._security.Security, passed on in the env
        # Resolved here (dask's config is read in this process) and passed on explicitly.
        self.resources = check_resources(resources)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts: list[float] = []  # when its worker died (the last minute's)
        self._failed_starts: list[float] = []  # when it died before registering
        # A standby process (imports done, waiting on its stdin), kept after the first
        # requested restart; None until then.
        self._spare: asyncio.subprocess.Process | None = None
        self._spare_task: asyncio.Task[None] | None = None
        # Read ends of the pipes on which workers say "registered": the current worker's,
        # and those of a process just started (before it becomes current) and of the spare.
        self._ready_fd: int | None = None
        self._new_ready_fd: int | None = None
        self._spare_ready_fd: int | None = None
        # Read ends of the pipes on which worker processes declare a deliberate exit status
        # (shoal.worker.__main__._declared), by pid: read once the process has exited.
        self._intents: dict[int, int] = {}
        # The current worker's registration: its address, None if it ended first; and the
        # address of the last worker that registered (each restart brings a new one).
        self._registered: asyncio.Future[str | None] | None = None
        self.worker_address: str | None = None
        # Where nanny plugins (run in the worker on our behalf) leave the env to keep.
        self._plugin_state = NannyPluginState()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self.lifetime, self.lifetime_stagger, self.lifetime_restart = configured_lifetime(
            lifetime, lifetime_stagger, lifetime_restart)
        self._random = random.Random()  # staggers lifetimes (unseeded: workers must differ)
        # The worker processes' preloads, passed on by name and imported only there (files
        # as absolute paths).
        worker_preloads = normalize(*configured("worker", preload, preload_argv))
        self.preload = [os.path.abspath(name) if name.endswith(".py") else name
                        for name, _ in worker_preloads]
        self.preload_argv = [argv for _, argv in worker_preloads]
        self.preloads = configured_preloads("nanny", preload_nanny, preload_nanny_argv)
        self.preload_failed = False  # a worker's preload failed: not restarted

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def stopped(self) -> bool:
        """It supervises no worker any more, and will not start one: its worker was
        retired or closed by the scheduler, reached its lifetime, failed a preload or died
        too often (or the nanny was closed)."""
        return self._closing or (self._supervisor is not None and self._supervisor.done())

    async def start(self) -> None:
        """Run the nanny preloads, then start the worker process and supervise it.

        Raises:
            shoal._preload.PreloadError: a nanny preload's ``dask_setup`` raised.
        """
        await self.preloads.setup(self)
        await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> None:
        """Start the worker: activate the warm standby when there is one, else a new
        process."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.returncode is None and spare.stdin is not None:
            go = json.dumps({"env": {INHERIT_CONFIG_ENV: inherited_config()}})
            self.process = spare  # first: a close during the drain stops it
            try:
                spare.stdin.write(go.encode() + b"\n")
                await spare.stdin.drain()
                spare.stdin.close()
                self._take_ready_fd(self._spare_ready_fd)
                self._spare_ready_fd = None
                return
            except (BrokenPipeError, ConnectionResetError) as exc:
                logger.info("worker %s: standby process %s is gone (%s); starting a new one",
                            self.name, spare.pid, exc)
        self.process = await self._start_process(standby=False)
        self._take_ready_fd(self._new_ready_fd)
        self._new_ready_fd = None

    async def _spare_once_ready(self) -> None:
        """Start a standby process for the next restart once the current worker said it
        registered (or ended); the standby imports the worker, then waits on its stdin
        for the word to go (``python -m shoal.worker --standby``)."""
        proc, registered = self.process, self._registered
        if proc is None or registered is None:
            return
        exited: asyncio.Future[Any] = asyncio.ensure_future(proc.wait())
        try:
            # Ends: the worker registers (or its pipe closes), or its process exits.
            await asyncio.wait([registered, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if (registered.done() and proc is self.process and self._spare is None
                and not self._closing):
            self._spare = await self._start_process(standby=True)

    async def worker_registered(self) -> str | None:
        """The address of the current worker process once it has registered with the
        scheduler, or None if it ended first (it writes its address to a pipe)."""
        registered = self._registered
        if registered is None:
            return None
        # Ends: the worker writes its address, or its process ends (the pipe's EOF).
        return await asyncio.shield(registered)

    def _take_ready_fd(self, fd: int | None) -> None:
        """Make ``fd`` (the pipe of the worker process just started) the current one, and
        read the worker's address from it once it registers (``worker_address``)."""
        old, self._ready_fd = self._ready_fd, fd
        if old is not None:
            self._unwatch(old)
        self._registered = None
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        registered: asyncio.Future[str | None] = loop.create_future()
        self._registered = registered

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                data = os.read(fd, 4096)
            except OSError:  # closed under us: the process is being replaced
                data = b""
            address = data.decode(errors="replace").strip() or None
            if address is not None:
                self.worker_address = address
            if not registered.done():
                registered.set_result(address)

        loop.add_reader(fd, readable)

    def _unwatch(self, fd: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to remove
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)

    async def _start_process(self, standby: bool) -> asyncio.subprocess.Process:
        memory_args = self._memory_args() if self.memory_limit else []
        lifetime = None
        if self.lifetime is not None:
            from shoal.worker._lifetime import staggered

            lifetime = staggered(self.lifetime, self.lifetime_stagger, self._random)
        args = worker_command(self, standby=standby, memory_args=memory_args, lifetime=lifetime)
        # The worker writes a byte to this pipe once registered (see _spare_once_ready).
        ready_r, ready_w = os.pipe()
        args += ["--ready-fd", str(ready_w)]
        intent_r, intent_w = os.pipe()
        os.set_blocking(intent_r, False)
        args += ["--intent-fd", str(intent_w)]
        env = worker_environ(self, standby=standby, plugin_env=self._plugin_state.environ())
        try:
            proc = await asyncio.create_subprocess_exec(
                # stdout and stderr are inherited: print() in a task shows where the user looks.
                *args, env=env, pass_fds=(ready_w, intent_w),
                stdin=asyncio.subprocess.PIPE if standby else asyncio.subprocess.DEVNULL,
                **_OWN_PROCESS_GROUP,
            )
        except BaseException:
            os.close(ready_r)
            os.close(intent_r)
            raise
        finally:
            os.close(ready_w)
            os.close(intent_w)
        self._intents[proc.pid] = intent_r
        if standby:
            self._spare_ready_fd = ready_r
        else:
            self._new_ready_fd = ready_r
        return proc

    def _memory_args(self) -> list[str]:
        """dask's ``distributed.worker.memory.*`` settings for the worker's command line;
        keeps what this nanny needs of them (its terminate fraction and pace)."""
        settings = memory_settings(self.local_directory)
        self.terminate_fraction = settings.terminate_fraction
        self.monitor_interval = settings.monitor_interval
        self._space_parent = settings.space_parent
        return settings.args

    async def _remove_worker_space(self, pid: int) -> None:
        """Remove the local directory (spill files, uploads) of worker process ``pid``,
        which has exited: one that was killed (past its terminate threshold, or on close
        after SIGTERM's grace) could not remove it, and nothing else would."""
        if self._space_parent is None:
            return
        pattern = os.path.join(glob.escape(self._space_parent), f"{_WORKER_SPACE_PREFIX}{pid}-*")

        def remove() -> None:
            for path in glob.glob(pattern):
                logger.info("removing %s, left by worker process %d", path, pid)
                shutil.rmtree(path, ignore_errors=True)

        await asyncio.to_thread(remove)  # spill files may be many GB: not on the loop

    async def _watch(self, proc: asyncio.subprocess.Process) -> int:
        """Wait for worker process ``proc`` to exit and return its status, killing it past
        its terminate threshold (``_nanny_watch.watch``), once this nanny told the
        scheduler why itself (``_memory_notice``)."""
        return await watch(proc, interval=self.monitor_interval, memory_limit=self.memory_limit,
                           terminate_fraction=self.terminate_fraction, name=self.name,
                           tell_scheduler=self._tell_scheduler_of_memory_kill)

    def _tell_scheduler_of_memory_kill(self, rss: int) -> asyncio.Future[bool] | None:
        """Start telling the scheduler that the current worker is killed for memory
        (None: its address is not known, it never registered)."""
        if self.worker_address is None:
            return None
        from shoal.worker._memory_notice import tell_scheduler

        return asyncio.ensure_future(tell_scheduler(
            self.scheduler_address, worker=self.worker_address, process=rss,
            limit=self.memory_limit, fraction=self.terminate_fraction, name=self.name,
            security=self.security, server_hostname=self.scheduler_sni))

    async def _supervise(self) -> None:
        while not self._closing:
            proc = self.process
            assert proc is not None
            code = await self._watch(proc)
            declared = self._declared_exit(proc.pid)
            if self._closing:
                return
            asked, undeclared = read_exit(code, declared)
            if undeclared:
                logger.warning("worker %s exited with status %s, which it did not declare: "
                               "a crash (a task calling os._exit or sys.exit?), not a request",
                               self.name, code)
            await self._remove_worker_space(proc.pid)
            if asked is Exit.SCHEDULER_GONE:
                logger.info("worker %s stopped: closed by its scheduler, or no scheduler within "
                            "its death timeout; not restarting", self.name)
                return
            if asked is Exit.PRELOAD_FAILED:
                logger.error("worker %s: a preload failed (see its error above); not "
                             "restarting it", self.name)
                self.preload_failed = True
                return
            if asked is Exit.LIFETIME_OVER:
                if not self.lifetime_restart:
                    logger.info("worker %s retired at the end of its lifetime", self.name)
                    return
                logger.info("worker %s retired at the end of its lifetime; starting a fresh "
                            "one", self.name)
                await self._spawn()
                continue
            if asked is Exit.RESTART:  # asked for (client.restart): no failure to count
                logger.info("worker %s restarting as asked", self.name)
                await self._spawn()
                # A worker restarted once is likely to be restarted again (a notebook's
                # "restart and run all"): keep a warm standby so that the next restart
                # costs a registration, not a Python start-up. It is started once the new
                # worker has registered, so that it does not compete with it for the CPU.
                if self._spare_task is None or self._spare_task.done():
                    self._spare_task = asyncio.get_running_loop().create_task(
                        self._spare_once_ready())
                continue
            if asked is Exit.PLUGIN_RESTART:
                logger.info("worker %s restarts for a nanny plugin", self.name)
                await self._drop_spare()  # started before the plugin: not what it asks for
                await self._spawn()
                continue
            address = await self._registered_address()
            if address is not None and await self._was_retired(address, proc.pid):
                logger.info("worker %s exited with code %s while it was retired; not "
                            "restarting it", self.name, code)
                return
            now = time.monotonic()
            self.restarts = failures_within_a_minute(self.restarts, now)
            if address is None:  # it cannot start: the failure budget (see _nanny_exits)
                self._failed_starts = failures_within_a_minute(self._failed_starts, now)
                if len(self._failed_starts) > MAX_RESTARTS_PER_MINUTE:
                    logger.error("worker %s died %d times in a minute before registering "
                                 "with its scheduler; not restarting it", self.name,
                                 len(self._failed_starts))
                    return
            logger.warning("worker %s exited with code %s; restarting it", self.name, code)
            await self._spawn()

    async def _registered_address(self) -> str | None:
        """The address of the worker process that just exited, if it had registered."""
        try:
            # ends: its process exited, so its pipe is at EOF (or has its address)
            return await asyncio.wait_for(self.worker_registered(), 2.0)
        except (asyncio.TimeoutError, TimeoutError):
            return None

    async def _was_retired(self, address: str, pid: int) -> bool:
        """The worker process at ``address`` that just exited unasked was retired, says the
        scheduler (``_exit_notice``): dask's retire_workers tells the nanny first, so that
        a worker dying as it is retired does not come back."""
        from shoal.worker._exit_notice import was_retired

        return await was_retired(self.scheduler_address, worker=address, pid=pid, name=self.name,
                                 security=self.security, server_hostname=self.scheduler_sni)

    def _declared_exit(self, pid: int) -> bytes:
        """What worker process ``pid`` declared before exiting (its exit statuses, in
        order; ``_nanny_exits.read_exit``), empty if nothing."""
        fd = self._intents.pop(pid, None)
        if fd is None:
            return b""
        try:
            return os.read(fd, 64)  # (non-blocking: the writer has exited)
        except OSError:  # nothing written
            return b""
        finally:
            os.close(fd)

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        if self._spare_task is not None:
            self._spare_task.cancel()
            await asyncio.gather(self._spare_task, return_exceptions=True)
        # The supervisor first: a replacement it is starting (a restart under way) is
        # then either never started or the ``self.process`` stopped below, never a
        # worker started after this close looked, left retrying a closed scheduler.
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._drop_spare()
        proc = self.process
        if proc is not None and proc.returncode is None:
            # The worker process tears the nanny plugins down on this SIGTERM (as dask's
            # Nanny.close does), not on one that does not come from this close.
            self._plugin_state.mark_closing()
            try:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), timeout)
            except (ProcessLookupError, asyncio.TimeoutError):
                try:
                    proc.kill()
                    await proc.wait()
                except ProcessLookupError:
                    pass
        if proc is not None:
            await self._remove_worker_space(proc.pid)
        # Those its worker process did not tear down (it was gone, or died during it).
        await self._plugin_state.teardown_left(self.name, self.worker_address,
                                               self._space_parent or self.local_directory)
        await self.preloads.teardown()
        if self._ready_fd is not None:
            self._unwatch(self._ready_fd)
        for fd in (self._new_ready_fd, self._spare_ready_fd):
            if fd is not None:
                os.close(fd)
        self._ready_fd = self._new_ready_fd = self._spare_ready_fd = None
        for fd in self._intents.values():
            os.close(fd)
        self._intents.clear()
        self._plugin_state.remove()

    async def _drop_spare(self) -> None:
        """End the standby: EOF on its stdin makes it exit; killed if it does not."""
        spare, self._spare = self._spare, None
        if spare is not None:
            self._declared_exit(spare.pid)  # (closes its pipe)
        if spare is None or spare.returncode is not None:
            return
        if spare.stdin is not None:
            spare.stdin.close()
        try:
            await asyncio.wait_for(spare.wait(), 1.0)
        except asyncio.TimeoutError:  # still importing: it reads its stdin only after
            try:
                spare.kill()
            except ProcessLookupError:
                pass
            await spare.wait()

    def kill_nowait(self) -> None:
        """Last-resort cleanup at interpreter exit."""
        self._closing = True
        spare = self._spare
        if spare is not None and spare.returncode is None:
            try:
                spare.kill()
            except ProcessLookupError:
                pass
        self._plugin_state.remove()
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
