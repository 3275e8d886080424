"""``python -m shoal.cluster._spec_main [SCHEDULER_ADDRESS] --spec JSON``: run one server
from a spec in this process until it closes or is told to stop (SIGTERM/SIGINT), as dask's
``dask spec`` command. ``SubprocessCluster`` starts its scheduler and each worker this way.

The spec is ``{"cls": ..., "opts": {...}}`` (``"options"`` too); ``cls`` as
``SpecCluster`` resolves it (``"distributed.Nanny"`` is shoal's Nanny). ``silence_logs`` in
the options sets the level shoal's loggers hand on from, here and in worker processes.
Must not know: which server it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any


async def _serve(address: str | None, spec: dict[str, Any]) -> None:
    from shoal.cluster import _local_options as options
    from shoal.cluster._spec import resolve_class

    opts = dict(spec.get("opts", spec.get("options", {})) or {})
    level = options.log_level(opts.pop("silence_logs", None))
    quiet = options.QuietLogs(level)
    if (carried := options.worker_level(level)) is not None:
        os.environ[options.LOG_LEVEL_ENV] = carried  # the nanny's worker process inherits it
    cls = resolve_class(spec["cls"], "--spec cls")
    server = cls(address, **opts) if address is not None else cls(**opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server
        ended = asyncio.ensure_future(server.finished())
        told = asyncio.ensure_future(stop.wait())
        # Ends: the server closes by itself, or a signal asks it to.
        await asyncio.wait([ended, told], return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        told.cancel()
    finally:
        await server.close()
        quiet.release()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.cluster._spec_main",
                                description="Run one shoal server from a spec.")
    p.add_argument("address", nargs="?", default=None, help="the scheduler's address")
    p.add_argument("--spec", required=True, help='JSON like {"cls": "shoal.Nanny", "opts": {}}')
    args = p.parse_args(argv)
    from shoal.worker.__main__ import _die_with_parent

    _die_with_parent()  # SubprocessCluster's processes end with the process that started them
    spec = json.loads(args.spec)
    if not isinstance(spec, dict) or "cls" not in spec:
        p.error(f"--spec must be a JSON object with 'cls', got {args.spec!r}")
    try:
        asyncio.run(_serve(args.address, spec))
    except (OSError, RuntimeError, TypeError, ValueError) as exc:
        print(f"shoal spec: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
