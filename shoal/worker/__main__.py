"""``python -m shoal.worker ADDR``: one worker process (started by a nanny)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import threading

from shoal._loop import run_main
from shoal.worker._server import Worker

# Exit status meaning "my scheduler is gone": the nanny does not restart such a worker.
EXIT_SCHEDULER_GONE = 3


def _warm_imports() -> None:
    """Import dask's task spec and sizes now rather than inside the first task that needs
    them (0.1 s a worker, which would delay the first results)."""
    import dask._task_spec
    import dask.sizeof  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.worker")
    p.add_argument("scheduler")
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--name", default=None)
    p.add_argument("--memory-limit", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    gone: list[bool] = []

    async def run() -> None:
        worker = Worker(args.scheduler, nthreads=args.nthreads, name=args.name,
                        memory_limit=args.memory_limit, host=args.host)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(worker.close()))
        await worker.start()
        # Registered: now load what most tasks will need, off the critical path of start-up.
        threading.Thread(target=_warm_imports, name="shoal-warm-imports", daemon=True).start()
        logging.getLogger("shoal.worker").info("worker at %s", worker.address)
        await worker.wait_closed()
        await worker.close()
        gone.append(worker.scheduler_gone)

    # Everything imported so far lives as long as the process: keep it out of the
    # collector's way, and collect young objects less often (tasks allocate many).
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    if run_main(run, "shoal worker") != 0:
        return 1
    return EXIT_SCHEDULER_GONE if any(gone) else 0


if __name__ == "__main__":
    sys.exit(main())
