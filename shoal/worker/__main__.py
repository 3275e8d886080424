"""``python -m shoal.worker ADDR``: one worker process (started by a nanny)."""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import logging
import os
import signal
import sys
import threading

from shoal._loop import run_main
from shoal.worker._execute import WARM_IMPORTS_ENV, import_in_background
from shoal.worker._resources import parse_resources
from shoal.worker._server import SchedulerGone, Worker

# Exit status meaning "leave for good": the scheduler closed this worker, or there was no
# scheduler to register with for the death timeout. The nanny does not restart such a worker.
EXIT_SCHEDULER_GONE = 3
# Exit status asking the nanny for a fresh process at once (a nanny plugin such as Environ
# changed what the process must start with); not counted as a crash.
EXIT_PLUGIN_RESTART = 4
# Exit status meaning "replace me" (client.restart): a fresh process at once, from the
# nanny's warm standby when it has one; not counted as a crash.
EXIT_RESTART = 5
# Exit status meaning "my lifetime is over" (--lifetime): retired gracefully; the nanny
# starts a fresh worker if its lifetime restart is on, else leaves it gone.
EXIT_LIFETIME = 6
# Exit status meaning "a preload failed" (--preload): the nanny does not try again (the
# same module would fail the same way) and ``shoal worker`` ends with an error.
EXIT_PRELOAD_FAILED = 7
# Exit status meaning "killed for memory": the nanny asked (SIGUSR1, past its terminate
# threshold) and the worker told the scheduler why before exiting; a crash, restarted.
EXIT_MEMORY = 8
# Statuses 3-7 are requests to the nanny, honoured only when declared on the pipe the nanny
# passes (``--intent-fd``, see _declared): a task calling os._exit(3) is a crash.
_intent_fd: int | None = None
# The nanny's pid, set by the nanny: the worker dies with it (see _die_with_parent).
PARENT_PID_ENV = "SHOAL_NANNY_PID"
# Seconds the import thread waits for the loop to send the worker's ready notice before
# letting tasks start anyway (a loop that busy is not about to lose a notice it queued).
READY_NOTICE_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> bool:
    """Whether a nanny started this process. Ask Linux to SIGKILL this process when its nanny's process dies, however it dies
    (SIGKILL of ``shoal worker`` or of the user's program running a LocalCluster): a
    worker without its nanny is an orphan nobody supervises or stops."""
    parent = os.environ.pop(PARENT_PID_ENV, None)  # not for the tasks' own subprocesses
    if parent is None or not sys.platform.startswith("linux"):
        return parent is not None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        logging.getLogger("shoal.worker").warning(
            "could not tie this worker to its nanny's life (prctl: %s)", os.strerror(err))
        return True
    if os.getppid() != int(parent):  # the nanny died before the request took effect
        os._exit(EXIT_SCHEDULER_GONE)
    return True


def _declared(status: int) -> int:
    """``status``, first told to the nanny as this process's own choice: the nanny reads the
    statuses above as requests only when declared, so that a task's ``os._exit(5)`` (or a
    library's ``exit(3)``) is the crash it is, not "restart me" or "leave me gone"."""
    if _intent_fd is not None and status:
        try:
            os.write(_intent_fd, bytes([status]))
        except OSError as exc:  # the nanny is gone: nothing to tell
            logging.getLogger("shoal.worker").debug("could not tell the nanny: %s", exc)
    return status


def _on_stop_signal(worker: Worker, signum: int, has_nanny: bool) -> None:
    """SIGTERM or SIGINT: close. On purpose (the tasks it runs are not to blame) unless the
    worker has a nanny that did not send it while tasks run: then, most likely, a task sent
    it to its own process (``os.kill(os.getpid(), SIGTERM)``), which in dask kills the
    worker and counts against its tasks. Closing on purpose there made the task move on and
    stop every worker in turn, until their nannies gave up and the user waited for ever."""
    from shoal.worker._plugins import nanny_closing

    name = signal.Signals(signum).name
    if has_nanny and worker.running_tasks() and not nanny_closing():
        worker.close_as_crash(f"{name} while running tasks, not from its nanny (a task "
                              f"sending it to its own process?); its nanny restarts it")
    else:
        logging.getLogger("shoal.worker").info("worker %s closing on %s", worker.address, name)
        asyncio.get_running_loop().create_task(worker.close())  # awaited by run()


def _exit_for_restart() -> None:
    """Leave at once: the nanny replaces this process with a fresh one, so nothing here
    (data, running tasks, threads) needs an orderly end, and a task that ignores
    cancellation cannot delay the restart."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_declared(EXIT_RESTART))


def _configure_timeouts(comm_timeout: float | None) -> None:
    """Timeouts from the command line (the nanny reads them from dask's config), so that
    starting and connecting never import dask."""
    if comm_timeout is not None:
        from shoal.comm._tcp import set_comm_timeout

        set_comm_timeout(comm_timeout)


def _wait_for_go() -> bool:
    """A nanny's standby: everything is imported; wait until the nanny needs a worker.
    Its line carries the environment to add (the dask config as of now). EOF: not needed
    (the nanny closed), so exit."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return False
    import json

    os.environ.update(json.loads(line).get("env", {}))
    return True


def _say_ready(fd: int, address: str) -> None:
    """Tell the nanny this worker registered, and at which address (it starts a standby
    only then; ``await shoal.Nanny(...)`` returns then, knowing the worker's address)."""
    try:
        os.write(fd, address.encode() + b"\n")  # one write under PIPE_BUF: read whole
        os.close(fd)
    except OSError as exc:  # the nanny is gone or did not wait: nothing to tell
        logging.getLogger("shoal.worker").debug("could not tell the nanny: %s", exc)


def _fraction(value: str) -> float | bool:
    return False if value.lower() in ("false", "none", "off") else float(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.worker")
    p.add_argument("scheduler")
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--name", default=None)
    # The nanny's: --name is the repr of a name that is not a str (an int, float, tuple...).
    p.add_argument("--name-is-literal", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory-limit", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", default="0", help="port or range 'first:last' to bind")
    p.add_argument("--contact-address", default=None, help="address to advertise")
    p.add_argument("--local-directory", default=None)
    for name in ("target", "spill", "pause", "transfer"):  # of the limit, or "false" (off)
        p.add_argument(f"--memory-{name}", type=_fraction, default=None)
    p.add_argument("--memory-terminate", type=_fraction, default=None,
                   help="(for the nanny) the fraction of the limit past which it kills this "
                   "worker, said to the scheduler then")
    p.add_argument("--memory-spill-compression", default=None,
                   help="'auto' (lz4 when installed), 'lz4' or 'false' (default: dask's "
                   "distributed.worker.memory.spill-compression)")
    p.add_argument("--memory-max-spill", default=None,
                   help="most bytes of spill files, or 'false' (no cap; default: dask's "
                   "distributed.worker.memory.max-spill)")
    p.add_argument("--scheduler-sni", default=None,
                   help="the TLS SNI to send the scheduler (default: its host's name)")
    p.add_argument("--memory-monitor-interval", type=float, default=None,
                   help="seconds between memory samples (default: dask's "
                   "distributed.worker.memory.monitor-interval)")
    p.add_argument("--resources", default=None,
                   help='abstract resources tasks may claim, like "GPU=2,MEM=10e9"')
    p.add_argument("--death-timeout", type=float, default=None,
                   help="seconds to keep trying to reach the scheduler before exiting")
    # The nanny reads dask's config for this (importing dask here costs start-up time).
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="bound of one attempt to connect to the scheduler, in seconds")
    p.add_argument("--comm-timeout", type=float, default=None,
                   help="seconds of silence after which a connection is dead (default: "
                   "dask's distributed.comm.timeouts.tcp)")
    p.add_argument("--lifetime", type=float, default=None,
                   help="seconds after registering at which this worker retires gracefully "
                   "(the nanny staggers it)")
    p.add_argument("--preload", action="append", default=[],
                   help="module or .py file whose dask_setup(worker) runs before registering")
    p.add_argument("--preload-argv", default=None,
                   help="(for the nanny) JSON list of the arguments for the preloads")
    p.add_argument("--ready-fd", type=int, default=None,
                   help="(for the nanny) a pipe to write one byte to once registered")
    p.add_argument("--intent-fd", type=int, default=None,
                   help="(for the nanny) a pipe on which a deliberate exit status is declared")
    p.add_argument("--standby", action="store_true",
                   help="(for the nanny) import, then wait for a line on stdin before starting")
    args = p.parse_args(argv)
    global _intent_fd
    if args.intent_fd is not None:
        os.set_inheritable(args.intent_fd, False)  # (not for the tasks' own subprocesses)
        _intent_fd = args.intent_fd
    has_nanny = _die_with_parent()
    # (popped: not for the tasks' own subprocesses)
    warm = [m for m in os.environ.pop(WARM_IMPORTS_ENV, "").split(",") if m]
    _configure_timeouts(args.comm_timeout)
    if args.standby and not _wait_for_go():
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet = os.environ.get("SHOAL_LOG_LEVEL")  # LocalCluster(silence_logs=): cluster/_local_options
    if quiet:
        logging.getLogger("shoal").setLevel(int(quiet))

    gone: list[bool] = []
    restart: list[bool] = []
    lifetime_over: list[bool] = []
    crashed: list[bool] = []  # closed as a crash (close_as_crash): exits 1, restarted
    preload_failed: list[bool] = []

    from shoal.comm._security import Security, set_default_security

    security = Security.from_env()  # what the nanny passed; tasks' clients use it too
    set_default_security(security)

    async def run() -> None:
        name = ast.literal_eval(args.name) if args.name_is_literal else args.name
        # The nanny's format_resources: an int amount stays an int, as it was given.
        resources = (None if args.resources is None
                     else parse_resources(args.resources, keep_ints=True))
        worker = Worker(args.scheduler, nthreads=args.nthreads, name=name,
                        port=args.port, contact_address=args.contact_address,
                        memory_limit=args.memory_limit, host=args.host,
                        death_timeout=args.death_timeout, connect_timeout=args.connect_timeout,
                        local_directory=args.local_directory,
                        memory_target_fraction=args.memory_target,
                        memory_spill_fraction=args.memory_spill,
                        memory_pause_fraction=args.memory_pause,
                        memory_transfer_fraction=args.memory_transfer,
                        security=security,
                        resources=resources, lifetime=args.lifetime)
        if args.preload:
            import json

            from shoal._preload import PreloadError, load_preloads

            try:
                worker.preloads = load_preloads(
                    args.preload, json.loads(args.preload_argv) if args.preload_argv else None)
            except PreloadError as exc:
                logging.getLogger("shoal.worker").error("%s; not starting", exc)
                preload_failed.append(True)
                return
        if args.memory_spill_compression is not None:
            worker._spill_compression_setting = args.memory_spill_compression
        if args.memory_max_spill is not None:
            worker._max_spill_setting = args.memory_max_spill
        if args.memory_monitor_interval is not None:
            worker._monitor_interval = args.memory_monitor_interval
        worker.scheduler_sni = args.scheduler_sni
        if has_nanny:
            worker.on_restart = _exit_for_restart
            # Told as the retirement begins: a kill during it still ends the lifetime.
            worker.on_lifetime_over = lambda: _declared(EXIT_LIFETIME)
            worker.task_exit_ends_process = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_stop_signal, worker, sig, has_nanny)
        if has_nanny and args.memory_terminate:
            fraction = float(args.memory_terminate)

            async def killed_for_memory() -> None:
                try:
                    await asyncio.wait_for(worker.say_killed_for_memory(fraction), 1.0)
                finally:  # the nanny's SIGKILL follows its grace anyway: exit first
                    os._exit(_declared(EXIT_MEMORY))

            # The nanny's warning before its SIGKILL (_nanny_watch.MEMORY_KILL_GRACE later).
            loop.add_signal_handler(signal.SIGUSR1,
                                    lambda: loop.create_task(killed_for_memory()))
        # Registered: load what most tasks will need, off the critical path of start-up (0.1 s
        # a worker, which would otherwise delay the first results), then the collections'
        # modules its nanny's process has imported (_execute.WARM_IMPORTS_ENV).
        # (shoal.client._scheduler_names: a task's compute(scheduler="distributed") means the
        # worker's shoal client, as dask's means its own.) Started from the scheduler's answer,
        # before the first tasks that may come with it: unpickling waits for these imports.
        # Once imported, it tells the scheduler it is ready before any task starts (until
        # then, its death blames none of the tasks waiting for the import).
        def say_ready() -> None:  # in the import thread
            said = threading.Event()

            def on_loop() -> None:
                try:
                    worker.say_ready()
                finally:
                    said.set()

            try:
                loop.call_soon_threadsafe(on_loop)
            except RuntimeError:  # the loop closed: the worker is gone
                return
            said.wait(READY_NOTICE_TIMEOUT)  # ends: the loop runs it soon, or the timeout

        def warm_imports() -> None:
            worker.on_registered = None  # once: a later registration finds them imported
            import_in_background("dask._task_spec", "dask.sizeof",
                                 "shoal.client._scheduler_names", *warm, then=say_ready)

        worker.on_registered = warm_imports
        # Registering may wait for the scheduler (up to the death timeout); a SIGTERM meanwhile
        # ends the wait.
        starting = asyncio.ensure_future(worker.start())
        closed = asyncio.ensure_future(worker.wait_closed())
        await asyncio.wait([starting, closed], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await worker.close()
            return
        from shoal._preload import PreloadError

        try:
            starting.result()
        except PreloadError as exc:
            logging.getLogger("shoal.worker").error("%s; not starting", exc)
            await worker.close()
            preload_failed.append(True)
            return
        except SchedulerGone as exc:
            logging.getLogger("shoal.worker").error("%s; exiting", exc)
            await worker.close()
            gone.append(True)
            return
        if args.ready_fd is not None:
            _say_ready(args.ready_fd, worker.address)
        logging.getLogger("shoal.worker").info("worker at %s", worker.address)
        await worker.wait_closed()
        await worker.close()
        crashed.append(worker.crash_reason is not None)
        gone.append(worker.scheduler_gone)
        restart.append(worker.restart_requested)
        lifetime_over.append(worker.lifetime_ended)

    # Everything imported so far lives as long as the process: keep it out of the
    # collector's way, and collect young objects less often (tasks allocate many).
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    if run_main(run, "shoal worker") != 0 or any(crashed):
        return 1  # a crash: its nanny restarts it
    if preload_failed:
        return _declared(EXIT_PRELOAD_FAILED)
    if any(restart):
        return _declared(EXIT_PLUGIN_RESTART)
    if any(lifetime_over):
        return _declared(EXIT_LIFETIME)
    return _declared(EXIT_SCHEDULER_GONE) if any(gone) else 0


if __name__ == "__main__":
    sys.exit(main())
