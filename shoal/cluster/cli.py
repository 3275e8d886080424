"""``shoal scheduler``, ``shoal worker ADDR`` and ``shoal demo``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from shoal._loop import run_main


def _parse_memory(value: str) -> str:
    from shoal.cluster._sizing import parse_memory_limit

    try:
        parse_memory_limit(value, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value  # resolved once the threads per worker are known


def _parse_resources(value: str) -> dict[str, float]:
    from shoal.worker._resources import parse_resources

    try:
        return parse_resources(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_seconds(value: str) -> float:
    from dask.utils import parse_timedelta

    try:
        return float(parse_timedelta(value, default="seconds"))
    except (ValueError, KeyError, TypeError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration like '60', '60s' or '2 minutes'") from None


def _security(args: argparse.Namespace, role: str) -> Any:
    """The Security the command line describes (TLS files, token), else the one SSHCluster
    sent over the session's input (``SHOAL_SECURITY``, see ``_remote.py``), else None for
    defaults."""
    import os

    from shoal.comm._security import SECURITY_ENV, Security

    tls = {}
    if args.tls_ca_file:
        tls["tls_ca_file"] = args.tls_ca_file
    # A worker process is also a client: tasks' get_client() connects as one.
    for part in (role, "client") if role == "worker" else (role,):
        if args.tls_cert:
            tls[f"tls_{part}_cert"] = args.tls_cert
        if args.tls_key:
            tls[f"tls_{part}_key"] = args.tls_key
    if not tls and os.environ.get(SECURITY_ENV):
        security = Security.from_env()  # PEM text in memory, in no lasting file
        security.token = args.token or security.token
        return security
    if not tls and not args.token:
        return None
    return Security(token=args.token, **tls)


def _add_security_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=None,
                   help="the cluster's secret (visible in `ps`: prefer the SHOAL_TOKEN "
                   "environment variable or --scheduler-file)")
    p.add_argument("--tls-ca-file", default=None, help="CA certificate(s) for TLS (PEM)")
    p.add_argument("--tls-cert", default=None, help="this process's TLS certificate (PEM)")
    p.add_argument("--tls-key", default=None, help="this process's TLS private key (PEM)")


def _say_how_to_join(sched: Any, path: str | None) -> None:
    if not sched.security.token:
        return
    if path:
        print(f"Token written to {path} (mode 0600). Join with: shoal worker "
              f"--scheduler-file {path}  /  Client(scheduler_file={path!r})", flush=True)
    elif sched.token_generated:
        print("Authentication is on (bound off loopback). Join with: SHOAL_TOKEN="
              f"{sched.security.token} shoal worker {sched.address}  /  the same SHOAL_TOKEN "
              "for Client(); or start the scheduler with --scheduler-file PATH", flush=True)


def _started_lines(address: str, dashboard_link: str | None, host: str) -> list[str]:
    """What ``shoal scheduler`` prints once it listens: the dashboard first, then the
    address (whose line is the one to wait for: everything is up by then)."""
    from shoal.comm._addresses import split_host_port

    lines = [f"Dashboard at: {dashboard_link}"] if dashboard_link else []
    lines.append(f"Scheduler at: {address}")
    bound = split_host_port(address, "scheduler address")[0]
    if host in ("127.0.0.1", "localhost", "::1") and bound == host:
        lines.append("Listening on this machine only (dask's binds every interface): give "
                     "--host 0.0.0.0 or --interface eth0 for workers on other machines")
    return lines


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """``--pid-file PATH``: this process's id in PATH while it runs (removed at the end,
    unless another process wrote its own id there meanwhile)."""
    if not path:
        yield
        return
    pid = str(os.getpid())
    with open(path, "w") as f:
        f.write(pid)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path) as f:
                mine = f.read().strip() == pid
            if mine:
                os.remove(path)


async def _until_signalled(*others: Any) -> None:
    """Wait for SIGTERM or SIGINT, or for any of ``others`` (awaitables) to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.ensure_future(stop.wait()), *map(asyncio.ensure_future, others)]
    try:
        # Ends: SIGTERM or SIGINT, or one of ``others`` ending (the server closing itself,
        # e.g. its idle timeout): a command runs until told to stop, as dask's do.
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def scheduler_main(args: argparse.Namespace) -> int:
    from shoal._preload import PreloadError
    from shoal.scheduler._server import Scheduler

    async def main() -> None:
        dash = None if args.no_dashboard else args.dashboard_address
        from shoal.cluster._local import _scheduler_config

        sched = Scheduler(args.host, args.port, dashboard_address=dash,
                          security=_security(args, "scheduler"), protocol=args.protocol,
                          scheduler_file=args.scheduler_file,
                          auth=False if args.no_auth else None,
                          preload=args.preload or None, preload_argv=args.preload_argv or None,
                          idle_timeout=args.idle_timeout, http_prefix=args.dashboard_prefix,
                          **_scheduler_config())
        await sched.start()
        for line in _started_lines(sched.address, sched.dashboard_link, args.host):
            print(line, flush=True)
        _say_how_to_join(sched, args.scheduler_file)
        # Ends: SIGTERM or SIGINT, or the scheduler closed itself (its idle timeout).
        await _until_signalled(sched.finished())
        await sched.close()

    with _pid_file(args.pid_file):
        try:
            return run_main(main, "shoal")
        except PreloadError as exc:
            print(f"shoal scheduler: {exc}", file=sys.stderr)
            return 1


def worker_main(args: argparse.Namespace) -> int:
    from dask.system import CPU_COUNT

    from shoal.cluster._cli_options import worker_shape
    from shoal.cluster._sizing import parse_memory_limit
    from shoal.worker._nanny import Nanny

    security = _security(args, "worker")
    address = args.scheduler
    if args.scheduler_file:
        if address:
            print("shoal worker: give a scheduler address or --scheduler-file, not both",
                  file=sys.stderr)
            return 2
        from shoal.cluster._scheduler_file import read_scheduler_file, with_file_token
        from shoal.worker._worker_command import connect_timeout

        try:
            info = read_scheduler_file(args.scheduler_file, args.death_timeout or connect_timeout())
        except OSError as exc:
            print(f"shoal worker: {exc}", file=sys.stderr)
            return 1
        address = info["address"]
        security = with_file_token(info, security)
    if not address:
        print("shoal worker: give the scheduler's address or --scheduler-file PATH",
              file=sys.stderr)
        return 2
    try:
        # dask's rule: ONE worker process unless --nworkers says otherwise, with
        # --nthreads threads (0: the cores shared out between the workers).
        nworkers, nthreads = worker_shape(args.nworkers, args.nthreads, CPU_COUNT)
        address = _with_protocol(address, args.protocol)
        addresses = _worker_addresses(args, address, nworkers)
    except ValueError as exc:
        print(f"shoal worker: {exc}", file=sys.stderr)
        return 2

    def name(i: int) -> str | None:
        if args.name is None or nworkers == 1:
            return args.name  # type: ignore[no-any-return]
        return f"{args.name}-{i}"

    failed: list[str] = []

    async def main() -> None:
        from shoal._preload import PreloadError

        nannies = []
        try:
            for i in range(nworkers):
                nannies.append(Nanny(
                    address, nthreads=nthreads, name=name(i),
                    memory_limit=parse_memory_limit(args.memory_limit, nthreads), **addresses,
                    death_timeout=args.death_timeout, security=security,
                    local_directory=args.local_directory, resources=args.resources,
                    lifetime=args.lifetime, lifetime_stagger=args.lifetime_stagger,
                    lifetime_restart=args.lifetime_restart, preload=args.preload or None,
                    preload_argv=args.preload_argv or None,
                    preload_nanny=args.preload_nanny or None,
                    scheduler_sni=args.scheduler_sni))
            await asyncio.gather(*(n.start() for n in nannies))
        except (PreloadError, ValueError) as exc:
            failed.append(str(exc))
            await asyncio.gather(*(n.close() for n in nannies))
            return
        print(f"Started {nworkers} worker(s) with {nthreads} thread(s) each for {address}",
              flush=True)

        async def all_gone() -> None:
            await asyncio.gather(*(n._supervisor for n in nannies if n._supervisor))

        await _until_signalled(all_gone())  # ends: a signal, or every worker gone for good
        await asyncio.gather(*(n.close() for n in nannies))
        failed.extend(f"worker {n.name}: a preload failed" for n in nannies if n.preload_failed)

    async def main_without_nanny() -> None:
        from shoal._preload import PreloadError
        from shoal.worker._server import Worker

        workers: list[Any] = []
        try:
            for i in range(nworkers):
                workers.append(_worker_without_nanny(args, address, nthreads, name(i),
                                                     addresses, security))
            await asyncio.gather(*(w.start() for w in workers))
        except PreloadError as exc:
            failed.append(str(exc))
            await asyncio.gather(*(w.close() for w in workers))
            return
        print(f"Started {nworkers} worker(s) with {nthreads} thread(s) each for {address} "
              "(no nanny)", flush=True)

        async def all_gone() -> None:
            await asyncio.gather(*(Worker.wait_closed(w) for w in workers))

        await _until_signalled(all_gone())
        await asyncio.gather(*(w.close() for w in workers))

    with _pid_file(args.pid_file):
        code = run_main(main if args.nanny else main_without_nanny, "shoal")
    for problem in failed:
        print(f"shoal worker: {problem}", file=sys.stderr)
    return 1 if failed and code == 0 else code


def _worker_without_nanny(args: argparse.Namespace, address: str, nthreads: int,
                          name: str | None, addresses: dict[str, Any], security: Any) -> Any:
    """``shoal worker --no-nanny``: one worker run in this process, as a nanny would start
    it (its lifetime staggered, its preloads loaded here).

    Raises:
        shoal._preload.PreloadError: a preload could not be imported.
    """
    import random

    from shoal._preload import configured_preloads
    from shoal.cluster._sizing import parse_memory_limit
    from shoal.worker._lifetime import configured_lifetime, staggered
    from shoal.worker._server import Worker
    from shoal.worker._worker_command import connect_timeout

    lifetime, stagger, _ = configured_lifetime(args.lifetime, args.lifetime_stagger, False)
    worker = Worker(address, nthreads=nthreads, name=name,
                    memory_limit=parse_memory_limit(args.memory_limit, nthreads), **addresses,
                    death_timeout=args.death_timeout, connect_timeout=connect_timeout(),
                    local_directory=args.local_directory, security=security,
                    resources=args.resources,
                    lifetime=None if lifetime is None else staggered(lifetime, stagger,
                                                                     random.Random()))
    worker.preloads = configured_preloads("worker", args.preload or None,
                                          args.preload_argv or None)
    worker.scheduler_sni = args.scheduler_sni
    return worker


def _with_protocol(address: str, protocol: str | None) -> str:
    """``--protocol tcp|tls`` (dask's): the scheme of a scheduler address given without one.
    A worker speaks its scheduler's protocol (its data port too).

    Raises:
        ValueError: the address names another protocol.
    """
    if protocol is None:
        return address
    protocol = protocol.rstrip(":/")
    scheme, sep, _ = address.partition("://")
    if not sep:
        return f"{protocol}://{address}"
    if scheme != protocol:
        raise ValueError(f"--protocol {protocol} contradicts the scheduler address "
                         f"{address!r}: a worker speaks its scheduler's protocol (give one)")
    return address


def _default_scheduler_address(args: argparse.Namespace) -> None:
    """dask's ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``) for a worker given
    neither an address nor ``--scheduler-file``, as ``dask worker`` reads it."""
    if args.scheduler or args.scheduler_file:
        return
    import dask.config

    args.scheduler = dask.config.get("scheduler-address", None) or None


def _worker_addresses(args: argparse.Namespace, scheduler: str, nworkers: int) -> dict[str, Any]:
    """The Nanny options for ``--host``/``--interface``/``--listen-address``/
    ``--contact-address``/``--worker-port`` (dask's flags).

    Raises:
        ValueError: conflicting flags, an unknown interface, or one port for many workers.
    """
    from shoal.comm._addresses import plan_addresses, split_host_port

    host, port = args.host, args.worker_port
    if host is not None:  # dask's --host may be tcp://IP:PORT (its port: the data port)
        scheme, sep, _ = host.partition("://")
        if sep and scheme != scheduler.partition("://")[0]:
            raise ValueError(f"--host {host} contradicts the scheduler address {scheduler}: a "
                             "worker speaks its scheduler's protocol")
        host, in_host = split_host_port(host, "--host")
        if in_host is not None:
            if port is not None and str(port) != str(in_host):
                raise ValueError(f"--host {args.host} and --worker-port {port} give two ports")
            port = in_host
    plan = plan_addresses(host=host, interface=args.interface,
                          listen_address=args.listen_address,
                          contact_address=args.contact_address, port=port,
                          towards=split_host_port(scheduler, "scheduler address")[0])
    if nworkers > 1 and ((len(plan.bind_ports) == 1 and plan.bind_ports[0])
                         or plan.contact_port is not None):
        raise ValueError(f"{nworkers} workers cannot share one port: give --worker-port a range "
                         "like 9000:9010 (and no port in --contact-address)")
    contact = plan.contact_host
    if plan.contact_port is not None:
        contact = plan.contact_address(plan.contact_port)
    ports = plan.bind_ports
    port = "0" if ports == (0,) else f"{ports[0]}:{ports[-1]}"
    return {"host": plan.bind_host, "port": port, "contact_address": contact}


def _add_address_flags(s: argparse.ArgumentParser, w: argparse.ArgumentParser) -> None:
    s.add_argument("--interface", default=None,
                   help="network interface like eth0 whose address to bind and advertise")
    w.add_argument("--host", default=None,
                   help="address to bind and advertise; 0.0.0.0 binds every interface and "
                   "advertises the one that reaches the scheduler (default: that one only)")
    w.add_argument("--interface", default=None,
                   help="network interface like eth0 whose address to bind and advertise")
    w.add_argument("--listen-address", default=None,
                   help="address to bind, like tcp://0.0.0.0:9000, when it differs from the "
                   "advertised --contact-address")
    w.add_argument("--contact-address", default=None,
                   help="address to advertise to the scheduler and peers, like "
                   "tcp://203.0.113.7:9000 (behind NAT)")
    w.add_argument("--worker-port", default=None,
                   help="data port to bind, or a range like 9000:9010 for --nworkers > 1 "
                   "(default: a free port)")


def _scheduler_address(args: argparse.Namespace) -> None:
    """dask's ``--host`` (``IP``, ``IP:PORT``, ``tcp://IP:PORT``), ``--port``,
    ``--protocol`` and ``--interface eth0`` (bind and advertise that NIC's address) → the
    host, port and protocol the scheduler starts with (loopback by default: see README).

    Raises:
        ValueError: conflicting or malformed values, or what shoal cannot listen on.
    """
    from shoal.cluster._cli_options import scheduler_host_port
    from shoal.comm._addresses import interface_address

    host, args.port, args.protocol = scheduler_host_port(args.host or "", args.port,
                                                         args.protocol)
    if args.interface is not None:
        if "," in args.interface:
            raise ValueError(f"--interface {args.interface}: a shoal scheduler listens on one "
                             "interface")
        if host:
            raise ValueError("give --host or --interface, not both")
        host = interface_address(args.interface)
    args.host = host or "127.0.0.1"
    if args.dashboard_prefix is not None:
        prefix = "/" + args.dashboard_prefix.strip("/")
        args.dashboard_prefix = None if prefix == "/" else prefix


def demo_main(argv: list[str]) -> int:
    from shoal.demo.tour import main

    return int(main(argv) or 0)


class _Version(argparse.Action):
    """``--version``: imports the scheduler's state machine only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from shoal import __version__
        from shoal.scheduler import build

        print(f"shoal {__version__} (scheduler state machine: {build()})")
        parser.exit()


def _add_common_flags(p: argparse.ArgumentParser, role: str) -> None:
    """Flags ``shoal scheduler`` and ``shoal worker`` share with dask's commands."""
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print shoal's version and its scheduler build (compiled or pure Python)")
    p.add_argument("--pid-file", default=None,
                   help="write this process's id to this file (removed on exit)")
    p.add_argument("--preload", action="append", default=[], metavar="MODULE",
                   help=f"module like foo.bar or file /path/to/foo.py whose dask_setup({role}) "
                   f"runs {'in each worker process before it registers' if role == 'worker' else 'once the scheduler listens'}"
                   " and dask_teardown at close (repeatable; default: dask's "
                   f"distributed.{role}.preload). Arguments the command does not know go "
                   "to a dask_setup that is a click command")


def _add_lifetime_flags(w: argparse.ArgumentParser) -> None:
    w.add_argument("--lifetime", type=_parse_seconds, default=None,
                   help="retire each worker gracefully (its data moved to others) after this "
                   "long, like '1 hour' (default: dask's distributed.worker.lifetime.duration)")
    w.add_argument("--lifetime-stagger", type=_parse_seconds, default=None,
                   help="move each worker's lifetime by a random amount up to this, either "
                   "way, so that workers started together do not leave together")
    w.add_argument("--lifetime-restart", action=argparse.BooleanOptionalAction, default=None,
                   help="start a fresh worker when one's lifetime is over (needs the nanny; "
                   "default: dask's distributed.worker.lifetime.restart, False)")


def _check_scheduler_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags of dask's ``dask scheduler`` that shoal's cannot honour fail with the reason;
    those without effect here are named in a warning."""
    from shoal.cluster._cli_options import SCHEDULER_IGNORED, ignored

    if args.jupyter:
        p.error("--jupyter: shoal's scheduler serves no Jupyter server; start one with "
                "`jupyter lab` and connect a Client from it")
    try:
        _scheduler_address(args)
    except ValueError as exc:
        p.error(str(exc))
    for warning in ignored({"--show": args.show or None, "--use-xheaders": args.use_xheaders},
                           SCHEDULER_IGNORED):
        print(f"shoal scheduler: warning: {warning}", file=sys.stderr)


def _check_worker_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags of dask's ``dask worker`` that shoal's cannot honour fail with the reason;
    those without effect here are named in a warning."""
    from shoal.cluster._cli_options import (
        WORKER_IGNORED,
        check_protocol,
        check_worker_class,
        ignored,
        worker_name,
    )

    try:
        check_protocol(args.protocol)
        check_worker_class(args.worker_class)
    except ValueError as exc:
        p.error(str(exc))
    given = {"--dashboard": args.dashboard or None, "--dashboard-address": args.dashboard_address,
             "--dashboard-prefix": args.dashboard_prefix, "--nanny-port": args.nanny_port}
    for warning in ignored(given, WORKER_IGNORED):
        print(f"shoal worker: warning: {warning}", file=sys.stderr)
    args.name = worker_name(args.name)
    _default_scheduler_address(args)
    if args.lifetime_restart and not args.nanny:
        p.error("--lifetime-restart needs a nanny to start the fresh worker: drop "
                "--no-nanny, or --lifetime-restart")
    if args.preload_nanny and not args.nanny:
        p.error("--preload-nanny runs in the nanny: drop --no-nanny, or use --preload")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        return demo_main(argv[1:])
    # No abbreviations (as dask's click commands): ``--nthread 2`` is an error, not --nthreads.
    p = argparse.ArgumentParser(prog="shoal", description="shoal: a fast distributed task scheduler",
                                allow_abbrev=False)
    p.add_argument("--version", action=_Version, nargs=0,
                   help="print shoal's version and its scheduler build (compiled or pure Python)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scheduler", help="run a scheduler", allow_abbrev=False)
    s.add_argument("--host", default=None,
                   help="address to bind and advertise, like 10.0.0.5, 10.0.0.5:8786 or "
                   "tcp://10.0.0.5:8786; 0.0.0.0 binds every interface (default 127.0.0.1: "
                   "this machine only, where dask binds every interface)")
    s.add_argument("--port", default=None,
                   help="port to listen at (default: the one in --host, else 8786; 0: any)")
    s.add_argument("--dashboard-address", default=":8787")
    s.add_argument("--dashboard-prefix", default=None,
                   help="serve the dashboard under this path, like /dask (behind a proxy)")
    s.add_argument("--jupyter", action=argparse.BooleanOptionalAction, default=False,
                   help="(dask's Jupyter server in the scheduler: not in shoal; "
                   "--no-jupyter is accepted)")
    s.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                   help="(deprecated in dask; no effect)")
    s.add_argument("--use-xheaders", default=None, help="(deprecated in dask; no effect)")
    s.add_argument("--no-dashboard", action="store_true")
    s.add_argument("--dashboard", dest="no_dashboard", action="store_false",
                   help="serve the dashboard (the default)")
    s.add_argument("--idle-timeout", type=_parse_seconds, default=None,
                   help="close the scheduler after this long with no task waiting or "
                   "running, like '1 hour' (default: dask's distributed.scheduler.idle-timeout)")
    _add_common_flags(s, "scheduler")
    s.add_argument("--scheduler-file", default=None,
                   help="write the address (and token, mode 0600) here as JSON for workers "
                   "and clients (dask's format)")
    s.add_argument("--protocol", default=None,
                   help="tcp or tls (default: tls when --tls-cert is given)")
    s.add_argument("--no-auth", action="store_true",
                   help="do not require a token even off loopback (anyone who can reach the "
                   "port can run code)")
    _add_security_flags(s)
    w = sub.add_parser("worker", help="run workers for a scheduler", allow_abbrev=False)
    w.add_argument("scheduler", nargs="?", default=None,
                   help="scheduler address, e.g. tcp://127.0.0.1:8786 (default: dask's "
                   "scheduler-address config, DASK_SCHEDULER_ADDRESS)")
    w.add_argument("--scheduler-file", default=None,
                   help="read the scheduler's address and token from this file (waits for it)")
    _add_security_flags(w)
    w.add_argument("--nthreads", type=int, default=0,
                   help="threads per worker process (default 0: the cores shared out "
                   "between the worker processes)")
    w.add_argument("--nworkers", default=None,
                   help="worker processes (default 1); negative: cores + 1 + N; 'auto': "
                   "dask's split of the cores into processes and threads")
    w.add_argument("--memory-limit", type=_parse_memory, default="auto",
                   help="per worker: bytes, '4GB', a fraction of the machine's memory, 'auto' "
                   "(the default: the machine's memory split by threads) or 0 for no limit")
    w.add_argument("--local-directory", default=None,
                   help="where workers spill data past their memory target (default: dask's "
                   "temporary-directory config, else the system's temporary directory)")
    w.add_argument("--name", default=None,
                   help="the worker's name (a number is an int, as in dask); with --nworkers "
                   "each gets NAME-0, NAME-1...")
    w.add_argument("--resources", type=_parse_resources, default=None,
                   help='abstract resources per worker, like "GPU=2,MEM=10e9" '
                        "(default: dask's config distributed.worker.resources)")
    w.add_argument("--death-timeout", type=_parse_seconds, default=None,
                   help="seconds (or '1 minute') to wait for a scheduler before closing; a "
                   "worker whose scheduler goes away keeps reconnecting until then "
                   "(default: forever)")
    w.add_argument("--nanny", action=argparse.BooleanOptionalAction, default=True,
                   help="supervise each worker process (restart it if it dies or passes its "
                   "memory limit); --no-nanny runs the workers in this process")
    w.add_argument("--protocol", default=None,
                   help="tcp or tls for a scheduler address given without one (a worker "
                   "speaks its scheduler's protocol)")
    _add_lifetime_flags(w)
    _add_common_flags(w, "worker")
    w.add_argument("--preload-nanny", action="append", default=[], metavar="MODULE",
                   help="module or .py file whose dask_setup(nanny) runs in this process "
                   "before the nanny starts its worker (default: dask's "
                   "distributed.nanny.preload)")
    w.add_argument("--dashboard-address", default=None, help="(no effect: shoal's workers "
                   "serve no dashboard; the scheduler's shows every worker)")
    w.add_argument("--dashboard", action=argparse.BooleanOptionalAction, default=None,
                   help="(no effect: shoal's workers serve no dashboard)")
    w.add_argument("--dashboard-prefix", default=None, help="(no effect, as --dashboard)")
    w.add_argument("--nanny-port", default=None,
                   help="(no effect: shoal's nanny serves no port)")
    w.add_argument("--worker-class", default="dask.distributed.Worker",
                   help="dask's default only (shoal's worker)")
    w.add_argument("--scheduler-sni", default=None,
                   help="the TLS SNI to send the scheduler, for a proxy that routes by it "
                   "(default: the scheduler's host name; the certificate is checked against "
                   "the cluster's CA either way)")
    sub.add_parser("demo", help="the seed notebook's tour on a local cluster")
    _add_address_flags(s, w)
    args, extra = p.parse_known_args(argv)
    # Arguments the command does not know are for a click-command dask_setup (dask's
    # PRELOAD_ARGV), and need a --preload.
    if extra and (args.command not in ("scheduler", "worker") or not args.preload):
        p.error(f"unrecognized arguments: {' '.join(extra)} (arguments for a preload "
                    "module's dask_setup go after --preload MODULE)")
    if args.command in ("scheduler", "worker"):
        args.preload_argv = extra
    if args.command == "scheduler":
        _check_scheduler_flags(p, args)
    if args.command == "worker":
        _check_worker_flags(p, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "scheduler":
        return scheduler_main(args)
    if args.command == "worker":
        return worker_main(args)
    return demo_main([])


if __name__ == "__main__":
    sys.exit(main())
