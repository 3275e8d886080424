"""A nanny supervises one worker process: starts it, restarts it if it dies or outgrows
its memory limit, and stops it for good on close. Runs as a task in its owner's loop
(the LocalCluster's or the ``shoal worker`` command's), not as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import psutil

from shoal import _logs
from shoal.comm._tcp import comm_timeout
from shoal.worker._execute import WARM_CANDIDATES, WARM_IMPORTS_ENV, WARM_IMPORTS_MIN_MEMORY
from shoal.worker._memory import max_spill_bytes
from shoal.worker._name import check_worker_name
from shoal.worker._resources import check_resources, format_resources
from shoal.worker._spawn_environ import configured_spawn_environ, shipped_defaults

logger = logging.getLogger("shoal.nanny")

MEMORY_TERMINATE_FRACTION = 0.95
# dask's defaults for distributed.worker.memory.* (used when its config does not say).
MEMORY_FRACTIONS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "transfer": 0.1,
                    "terminate": MEMORY_TERMINATE_FRACTION}
_EXIT_SCHEDULER_GONE = 3  # shoal.worker.__main__.EXIT_SCHEDULER_GONE (not imported: keeps imports light)
_EXIT_PLUGIN_RESTART = 4  # shoal.worker.__main__.EXIT_PLUGIN_RESTART: a nanny plugin asked
_EXIT_RESTART = 5  # shoal.worker.__main__.EXIT_RESTART: client.restart asked for a fresh process
_EXIT_LIFETIME = 6  # shoal.worker.__main__.EXIT_LIFETIME: retired at the end of its lifetime
_EXIT_PRELOAD_FAILED = 7  # shoal.worker.__main__.EXIT_PRELOAD_FAILED: a --preload failed
_EXIT_MEMORY = 8  # shoal.worker.__main__.EXIT_MEMORY: killed past its terminate threshold
# The statuses read as requests: honoured only when the worker declared them first.
_REQUESTS = frozenset({_EXIT_SCHEDULER_GONE, _EXIT_PLUGIN_RESTART, _EXIT_RESTART,
                       _EXIT_LIFETIME, _EXIT_PRELOAD_FAILED})
# A worker past its terminate threshold gets SIGUSR1 first: it tells the scheduler why it
# dies (KilledWorker says so) and exits; SIGKILL follows after this many seconds if not.
MEMORY_KILL_GRACE = 0.2
MAX_RESTARTS_PER_MINUTE = 10
# How often a nanny samples its worker's memory (terminate threshold) unless dask's
# distributed.worker.memory.monitor-interval says otherwise (dask's own default, 100 ms,
# is the worker's pace: a nanny needs less).
NANNY_MONITOR_INTERVAL = 0.5
WORKER_MONITOR_INTERVAL = 0.1  # dask's default monitor-interval: the worker's memory samples
_MONITOR_INTERVAL_KEY = "distributed.worker.memory.monitor-interval"
# The worker's local directory, "<prefix><pid>-<random>" (shoal.worker._plugins).
_WORKER_SPACE_PREFIX = "shoal-worker-space-"


def _connect_timeout() -> float:
    """dask's ``distributed.comm.timeouts.connect``: the bound of one connection attempt."""
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.connect", "30s")
    return float(parse_timedelta(value, default="seconds") or 30.0)


def configured_monitor_interval() -> float:
    """dask's ``distributed.worker.memory.monitor-interval`` in seconds (default 100 ms).

    Raises:
        ValueError: not a positive duration.
    """
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get(_MONITOR_INTERVAL_KEY, None)
    if value is None:
        return WORKER_MONITOR_INTERVAL
    seconds = parse_timedelta(value, default="seconds")
    if not seconds or seconds <= 0:
        raise ValueError(f"dask config {_MONITOR_INTERVAL_KEY} must be a positive duration "
                         f"like '100ms', got {value!r}")
    return float(seconds)


# dask reads this variable when ``dask.config`` is first imported (dask's nanny and SSH
# deployments use it), so the worker gets the config lazily, at no start-up cost.
INHERIT_CONFIG_ENV = "DASK_INTERNAL_INHERIT_CONFIG"
# Top-level settings that describe this process, not the cluster: the client sets itself
# as dask's scheduler here; in a worker that would point at nothing.
_NOT_INHERITED = frozenset({"scheduler", "get"})


def _warn_of_memory_kill(pid: int) -> bool:
    """SIGUSR1 to a worker past its terminate threshold: it tells the scheduler why it dies
    and exits (``__main__``). False when that cannot be sent (no such signal, or gone)."""
    sig = getattr(signal, "SIGUSR1", None)
    if sig is None:
        return False
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass  # gone already: what the kill was for


def _jsonable(value: Any) -> Any:
    """``value`` with whatever JSON cannot carry left out (objects set as config values)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                v2 = _jsonable(v)
                if v2 is not _SKIP:
                    out[k] = v2
        return out
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return [v for v in items if v is not _SKIP]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _SKIP


_SKIP = object()


def _changed(config: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` that differ from ``baseline`` (nested dicts compared
    key by key)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        base = baseline.get(k, _SKIP)
        if isinstance(v, dict) and isinstance(base, dict):
            sub = _changed(v, base)
            if sub:
                out[k] = sub
        elif base is _SKIP or base != v:
            out[k] = v
    return out


def inherited_config() -> str:
    """The dask config settings this process made (``dask.config.set``, changes to
    ``dask.config.config``), serialized for a worker process, as dask's nanny passes its
    config on: they apply inside tasks too. Defaults, YAML files and ``DASK_*`` variables
    are not repeated: the worker reads those itself."""
    import dask.config

    baseline: dict[str, Any] = {}
    for defaults in dask.config.defaults:
        dask.config.update(baseline, defaults, priority="new")
    dask.config.update(baseline, dask.config.collect(), priority="new")
    config = {k: v for k, v in dask.config.global_config.items() if k not in _NOT_INHERITED}
    return str(dask.config.serialize(_jsonable(_changed(config, baseline))))


# The hash seed every nanny gives its worker unless one is configured: dask's, so that a
# value a program saw under dask.distributed stays the same.
_HASH_SEED = "6640"


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
        self.restarts: list[float] = []
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
        fd, self._plugin_state = tempfile.mkstemp(prefix="shoal-nanny-", suffix=".json")
        os.close(fd)
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
        args = [
            sys.executable, "-m", "shoal.worker", self.scheduler_address,
            "--nthreads", str(self.nthreads), "--memory-limit", str(self.memory_limit),
            "--host", self.host,
        ]
        if self.name is not None:
            if type(self.name) is str:
                args += ["--name", self.name]
            else:  # LocalCluster's 0, 1, ..., a float, a tuple: the same type there too
                args += ["--name", repr(self.name), "--name-is-literal"]
        if self.death_timeout is not None:
            args += ["--death-timeout", str(self.death_timeout)]
        if self.port:
            args += ["--port", str(self.port)]
        if self.contact_address is not None:
            args += ["--contact-address", self.contact_address]
        if self.scheduler_sni is not None:
            args += ["--scheduler-sni", self.scheduler_sni]
        args += ["--resources", format_resources(self.resources)]
        args += ["--connect-timeout", str(_connect_timeout())]
        if self.memory_limit:
            args += self._memory_args()
        if self.lifetime is not None:
            from shoal.worker._lifetime import staggered

            args += ["--lifetime", str(staggered(self.lifetime, self.lifetime_stagger,
                                                 self._random))]
        for name in self.preload:
            args += ["--preload", name]
        if any(self.preload_argv):
            args += ["--preload-argv", json.dumps(self.preload_argv)]
        args += ["--comm-timeout", str(comm_timeout())]
        if standby:
            args.append("--standby")
        # The worker writes a byte to this pipe once registered (see _spare_once_ready).
        ready_r, ready_w = os.pipe()
        args += ["--ready-fd", str(ready_w)]
        intent_r, intent_w = os.pipe()
        os.set_blocking(intent_r, False)
        args += ["--intent-fd", str(intent_w)]
        env = dict(os.environ)
        # Like multiprocessing's spawn: the worker imports what its parent can import, so
        # functions from the user's modules (and test files) unpickle by reference.
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        # shoal's defaults, dask's nanny config, the shell's exports, self.env: in that
        # order of precedence (shoal.worker._spawn_environ).
        configured = configured_spawn_environ(os.environ, self.env, self.memory_limit)
        env.update(configured)
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
        # As dask's nanny: one hash seed for every worker (unless configured), so tasks that
        # partition by ``hash()`` agree whichever worker runs them.
        env["PYTHONHASHSEED"] = configured.get("PYTHONHASHSEED", _HASH_SEED)
        # The worker dies with this process (shoal.worker.__main__.PARENT_PID_ENV).
        env["SHOAL_NANNY_PID"] = str(os.getpid())
        if not self.memory_limit or self.memory_limit >= WARM_IMPORTS_MIN_MEMORY:
            env[WARM_IMPORTS_ENV] = ",".join(m for m in WARM_CANDIDATES if m in sys.modules)
        if not standby:  # a standby gets the config when it is activated, not stale
            env[INHERIT_CONFIG_ENV] = inherited_config()
        try:
            proc = await asyncio.create_subprocess_exec(
                # stdout and stderr are inherited: print() in a task shows where the user looks.
                *args, env=env, pass_fds=(ready_w, intent_w),
                stdin=asyncio.subprocess.PIPE if standby else asyncio.subprocess.DEVNULL,
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
        """dask's ``distributed.worker.memory.*`` fractions and ``temporary-directory``,
        read here (the worker process does not import dask's config to start)."""
        import dask.config

        memory = {name: dask.config.get(f"distributed.worker.memory.{name}", default)
                  for name, default in MEMORY_FRACTIONS.items()}
        terminate = memory["terminate"]
        self.terminate_fraction = float(terminate) if terminate not in (None, False) else 0.0
        args = []
        for name in ("target", "spill", "pause", "transfer", "terminate"):
            value = memory.get(name)
            args += [f"--memory-{name}", "false" if value in (None, False) else str(float(value))]
        compression = dask.config.get("distributed.worker.memory.spill-compression", "auto")
        args += ["--memory-spill-compression",
                 "false" if compression in (None, False) else str(compression)]
        cap = max_spill_bytes(dask.config.get("distributed.worker.memory.max-spill", False))
        args += ["--memory-max-spill", "false" if cap is None else str(cap)]
        interval = configured_monitor_interval()
        args += ["--memory-monitor-interval", str(interval)]
        configured = dask.config.get(_MONITOR_INTERVAL_KEY, None)
        shipped = shipped_defaults(_MONITOR_INTERVAL_KEY.rpartition(".")[0]).get(
            "monitor-interval")
        mine = configured is not None and configured != shipped and configured != "100ms"
        self.monitor_interval = interval if mine else NANNY_MONITOR_INTERVAL
        # Always given ("" for the system's temporary directory), so that the worker need
        # not import dask's config to start.
        directory = self.local_directory or dask.config.get("temporary-directory", None)
        self._space_parent = str(directory or tempfile.gettempdir())
        return [*args, "--local-directory", str(directory or "")]

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
        its terminate threshold: SIGUSR1 (it tells the scheduler why and exits), then
        SIGKILL after ``MEMORY_KILL_GRACE`` if it is still there, and not before this
        nanny told the scheduler why itself (``_memory_notice``: the worker may be unable
        to, and its loss must come after the scheduler noted why)."""
        waiter = asyncio.ensure_future(proc.wait())
        kill_at: float | None = None  # warned for memory: SIGKILL then unless gone
        notice: asyncio.Future[bool] | None = None  # the scheduler being told why
        killed = False  # SIGKILL sent: only its exit is awaited
        try:
            # ends: the process exits: on its own, killed at kill_at (once the notice
            # ended: NOTICE_TIMEOUT at most), or by close() (terminate, then kill)
            while not waiter.done():
                wait = self.monitor_interval
                if kill_at is not None:
                    wait = max(0.0, kill_at - time.monotonic())
                await asyncio.wait([waiter], timeout=wait)
                if waiter.done():
                    break
                if kill_at is not None:
                    if time.monotonic() < kill_at:
                        continue
                    if notice is not None and not notice.done():
                        pending: list[asyncio.Future[Any]] = [waiter, notice]
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    _kill(proc.pid)
                    kill_at, killed = None, True
                elif self.memory_limit and self.terminate_fraction and not killed:
                    rss = self._past_terminate(proc.pid)
                    if rss is None:
                        continue
                    kill_at = time.monotonic() + MEMORY_KILL_GRACE
                    notice = self._tell_scheduler_of_memory_kill(rss)
                    if not _warn_of_memory_kill(proc.pid):
                        kill_at = time.monotonic()  # at once, once the notice ended
            return waiter.result()  # ends at once: the loop above left only once it was done
        finally:
            if notice is not None and not notice.done():
                notice.cancel()
            if not waiter.done():  # cancelled (close): the close waits for the exit itself
                waiter.cancel()

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
            asked: int | None = code  # what the status asks of this nanny (if it declared it)
            if code in _REQUESTS and code != declared:
                logger.warning("worker %s exited with status %s, which it did not declare: "
                               "a crash (a task calling os._exit or sys.exit?), not a request",
                               self.name, code)
                asked = None
            await self._remove_worker_space(proc.pid)
            if asked == _EXIT_SCHEDULER_GONE:
                logger.info("worker %s stopped: closed by its scheduler, or no scheduler within "
                            "its death timeout; not restarting", self.name)
                return
            if asked == _EXIT_PRELOAD_FAILED:
                logger.error("worker %s: a preload failed (see its error above); not "
                             "restarting it", self.name)
                self.preload_failed = True
                return
            if asked == _EXIT_LIFETIME:
                if not self.lifetime_restart:
                    logger.info("worker %s retired at the end of its lifetime", self.name)
                    return
                logger.info("worker %s retired at the end of its lifetime; starting a fresh "
                            "one", self.name)
                await self._spawn()
                continue
            if asked == _EXIT_RESTART:  # asked for (client.restart): no failure to count
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
            if asked == _EXIT_PLUGIN_RESTART:
                logger.info("worker %s restarts for a nanny plugin", self.name)
                await self._drop_spare()  # started before the plugin: not what it asks for
                await self._spawn()
                continue
            if await self._was_retired(proc.pid):
                logger.info("worker %s exited with code %s while it was retired; not "
                            "restarting it", self.name, code)
                return
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]
            if len(self.restarts) > MAX_RESTARTS_PER_MINUTE:
                logger.error("worker %s died %d times in a minute; not restarting it",
                             self.name, len(self.restarts))
                return
            logger.warning("worker %s exited with code %s; restarting it", self.name, code)
            await self._spawn()

    async def _was_retired(self, pid: int) -> bool:
        """The worker process that just exited unasked was retired, says the scheduler
        (``_exit_notice``): dask's retire_workers tells the nanny first, so that a worker
        dying as it is retired does not come back. False when it never registered."""
        try:
            # ends: its process exited, so its pipe is at EOF (or has its address)
            address = await asyncio.wait_for(self.worker_registered(), 2.0)
        except (asyncio.TimeoutError, TimeoutError):
            address = None
        if address is None:
            return False
        from shoal.worker._exit_notice import was_retired

        return await was_retired(self.scheduler_address, worker=address, pid=pid, name=self.name,
                                 security=self.security, server_hostname=self.scheduler_sni)

    def _declared_exit(self, pid: int) -> int | None:
        """The exit status worker process ``pid`` declared before exiting, or None."""
        fd = self._intents.pop(pid, None)
        if fd is None:
            return None
        try:
            data = os.read(fd, 64)  # (non-blocking: the writer has exited)
        except OSError:  # nothing written
            data = b""
        finally:
            os.close(fd)
        return data[-1] if data else None

    def _past_terminate(self, pid: int) -> int | None:
        """The memory of worker process ``pid`` when it is past its terminate threshold
        (logged), else None."""
        try:
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None
        if rss <= self.terminate_fraction * self.memory_limit:
            return None
        logger.warning(
            "worker %s uses %d bytes, over %.0f%% of its %d-byte limit; restarting it",
            self.name, rss, self.terminate_fraction * 100, self.memory_limit,
        )
        return rss

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
            from shoal.worker._plugins import nanny_closing_mark

            # The worker process tears the nanny plugins down on this SIGTERM (as dask's
            # Nanny.close does), not on one that does not come from this close.
            with contextlib.suppress(OSError):
                open(nanny_closing_mark(self._plugin_state), "w").close()
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
        from shoal.worker._plugins import nanny_closing_mark

        for path in (self._plugin_state, nanny_closing_mark(self._plugin_state)):
            with contextlib.suppress(OSError):
                os.remove(path)

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
        from shoal.worker._plugins import nanny_closing_mark

        for path in (self._plugin_state, nanny_closing_mark(self._plugin_state)):
            with contextlib.suppress(OSError):
                os.remove(path)
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
