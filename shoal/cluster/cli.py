"""``shoal scheduler``, ``shoal worker ADDR`` and ``shoal demo``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from shoal._loop import run_main


def _parse_memory(value: str) -> int:
    from dask.utils import parse_bytes

    if value in ("auto", "0"):
        return 0
    try:
        return int(parse_bytes(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size like '4GB' or 'auto'") from None


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


def scheduler_main(args: argparse.Namespace) -> int:
    from shoal.scheduler._server import Scheduler

    async def main() -> None:
        dash = None if args.no_dashboard else args.dashboard_address
        from shoal.cluster._local import _scheduler_config

        sched = Scheduler(args.host, args.port, dashboard_address=dash, **_scheduler_config())
        await sched.start()
        print(f"Scheduler at: {sched.address}", flush=True)
        if sched.dashboard_link:
            print(f"Dashboard at: {sched.dashboard_link}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await sched.close()

    return run_main(main, "shoal")


def worker_main(args: argparse.Namespace) -> int:
    import os

    from shoal.cluster._local import split_cores
    from shoal.worker._nanny import Nanny

    nworkers, nthreads = split_cores(args.nworkers, args.nthreads, os.cpu_count() or 1)
    if args.nworkers is None and args.nthreads is None:
        nworkers, nthreads = 1, os.cpu_count() or 1

    async def main() -> None:
        nannies = [
            Nanny(args.scheduler, nthreads=nthreads,
                  name=(f"{args.name}-{i}" if nworkers > 1 else args.name) if args.name else None,
                  memory_limit=args.memory_limit, host=args.host,
                  death_timeout=args.death_timeout, resources=args.resources)
            for i in range(nworkers)
        ]
        await asyncio.gather(*(n.start() for n in nannies))
        print(f"Started {nworkers} worker(s) with {nthreads} thread(s) each for {args.scheduler}",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def all_gone() -> None:
            await asyncio.gather(*(n._supervisor for n in nannies if n._supervisor))

        gone = asyncio.ensure_future(all_gone())
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([gone, waiter], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*(n.close() for n in nannies))
        gone.cancel()
        waiter.cancel()

    return run_main(main, "shoal")


def demo_main(argv: list[str]) -> int:
    from shoal.demo.tour import main

    return int(main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        return demo_main(argv[1:])
    p = argparse.ArgumentParser(prog="shoal", description="shoal: a fast distributed task scheduler")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scheduler", help="run a scheduler")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8786)
    s.add_argument("--dashboard-address", default=":8787")
    s.add_argument("--no-dashboard", action="store_true")
    w = sub.add_parser("worker", help="run workers for a scheduler")
    w.add_argument("scheduler", help="scheduler address, e.g. tcp://127.0.0.1:8786")
    w.add_argument("--nthreads", type=int, default=None)
    w.add_argument("--nworkers", type=int, default=None)
    w.add_argument("--memory-limit", type=_parse_memory, default=0)
    w.add_argument("--name", default=None)
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--resources", type=_parse_resources, default=None,
                   help='abstract resources per worker, like "GPU=2,MEM=10e9" '
                        "(default: dask's config distributed.worker.resources)")
    w.add_argument("--death-timeout", type=_parse_seconds, default=None,
                   help="seconds (or '1 minute') to wait for a scheduler before closing; a "
                   "worker whose scheduler goes away keeps reconnecting until then "
                   "(default: forever)")
    sub.add_parser("demo", help="the seed notebook's tour on a local cluster")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "scheduler":
        return scheduler_main(args)
    if args.command == "worker":
        return worker_main(args)
    return demo_main([])


if __name__ == "__main__":
    sys.exit(main())
