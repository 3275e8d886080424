"""dask's ``dask scheduler`` / ``dask worker`` option rules, for ``shoal scheduler`` /
``shoal worker`` (``cli.py``): how many workers and threads, what a ``--host`` or ``--port``
may hold, the worker name, and which of dask's options shoal accepts without effect (a
warning says why) or cannot honour (an error says why).

Owns: turning option values into what the commands start, as pure functions (values in,
values or ``ValueError`` out). Must not know: argparse, processes, servers.
"""

from __future__ import annotations

import re
from typing import Any

from shoal.cluster._sizing import split_cores

# dask's default ``--worker-class`` (its only value shoal runs: shoal's own worker).
DEFAULT_WORKER_CLASS = "dask.distributed.Worker"
_WORKER_CLASSES = frozenset({DEFAULT_WORKER_CLASS, "distributed.Worker",
                             "distributed.worker.Worker", "dask.distributed.Nanny",
                             "distributed.Nanny", "distributed.nanny.Nanny"})
_NO_WORKER_DASHBOARD = ("shoal's workers serve no dashboard: the scheduler's dashboard shows "
                        "every worker (/workers)")

# Worker options of dask's that shoal accepts and ignores: option -> why it has no effect.
WORKER_IGNORED: dict[str, str] = {
    "--dashboard": _NO_WORKER_DASHBOARD,
    "--dashboard-address": _NO_WORKER_DASHBOARD,
    "--dashboard-prefix": _NO_WORKER_DASHBOARD + " (and dask deprecated this option)",
    "--nanny-port": "shoal's nanny is a task in this process and serves no port (the "
                    "workers' data ports are --worker-port)",
}

# Scheduler options of dask's that shoal accepts and ignores.
SCHEDULER_IGNORED: dict[str, str] = {
    "--show": "dask deprecated it, and it did nothing there either",
    "--use-xheaders": "shoal's dashboard builds every link relative to the page, so a "
                      "TLS-terminating proxy needs no X-Forwarded headers (and dask "
                      "deprecated this option)",
}


def worker_shape(nworkers: str | None, nthreads: int, cores: int) -> tuple[int, int]:
    """dask worker's ``--nworkers`` and ``--nthreads`` → (worker processes, threads each).

    ``nworkers``: None → 1; ``"auto"`` → dask's split of the cores (threads too); a negative
    number → ``cores + 1 + nworkers``. ``nthreads`` 0 → the cores shared out between the
    workers (at least 1).

    Raises:
        ValueError: ``nworkers`` is not a number or ``auto``, or comes to fewer than 1.
    """
    if nworkers == "auto":
        return split_cores(None, None, cores)
    if nworkers is None:
        count = 1
    else:
        try:
            count = int(nworkers)
        except ValueError:
            raise ValueError(f"--nworkers {nworkers!r} must be a number of worker processes "
                             "or 'auto'") from None
        if count < 0:
            count = cores + 1 + count
    if count <= 0:
        raise ValueError(f"--nworkers {nworkers} starts no worker on {cores} cores: give at "
                         "least 1 (negative: cores + 1 + nworkers)")
    if nthreads < 0:
        raise ValueError(f"--nthreads {nthreads} must be 0 (the cores shared out) or more")
    return count, nthreads or max(1, cores // count)


def worker_name(name: str | None) -> str | int | None:
    """dask worker's ``--name``: a number is an int (as dask's), anything else stays;
    none (or empty): the worker's address, as in dask."""
    if not name:
        return None
    try:
        return int(name)
    except ValueError:
        return name


def check_protocol(protocol: str | None) -> None:
    """``--protocol``: shoal speaks tcp and tls.

    Raises:
        ValueError: ucx, ws, inproc..., or dask's comma list of protocols (one listener
            per protocol).
    """
    if protocol is None:
        return
    if "," in protocol:
        raise ValueError(f"--protocol {protocol}: a shoal scheduler listens on one protocol "
                         "(give tcp or tls, and one --port)")
    name = protocol.rstrip(":/")
    if name not in ("tcp", "tls"):
        raise ValueError(f"--protocol {protocol}: shoal speaks tcp and tls only (ucx, ws and "
                         "inproc are not supported); use tcp, or tls with --tls-cert")


def scheduler_host_port(host: str, port: str | None, protocol: str | None
                        ) -> tuple[str, int, str | None]:
    """dask scheduler's ``--host`` (``IP``, ``IP:PORT`` or ``tcp://IP:PORT``) and
    ``--port`` → (host to bind, port, protocol). The port: ``--port``, else the one in
    ``--host``, else 8786; the protocol: ``--protocol``, else the host's scheme.

    Raises:
        ValueError: a port list (``8786,8787``), not a port, or a scheme that contradicts
            ``--protocol``.
    """
    from shoal.comm._addresses import split_host_port

    check_protocol(protocol)
    if port is not None and "," in port:
        raise ValueError(f"--port {port}: a shoal scheduler listens on one port (dask's lists "
                         "go with one --protocol each; shoal speaks one)")
    scheme, sep, _ = host.partition("://")
    bare, in_host = split_host_port(host, "--host") if host else ("", None)
    if sep:
        given = protocol.rstrip(":/") if protocol else None
        if given is not None and given != scheme:
            raise ValueError(f"--host {host} contradicts --protocol {protocol}: give one")
        protocol = protocol or scheme
    if port is not None and port != "":
        if not re.fullmatch(r"\d+", port.strip()) or int(port) > 65535:
            raise ValueError(f"--port {port!r} must be a port number (0: any free port)")
        number = int(port)
    else:
        number = in_host if in_host is not None else 8786
    return bare, number, protocol


def check_worker_class(worker_class: str) -> None:
    """``--worker-class``: dask's default (shoal's worker) only.

    Raises:
        ValueError: any other class.
    """
    if worker_class not in _WORKER_CLASSES:
        raise ValueError(f"--worker-class {worker_class}: shoal runs its own worker, which "
                         "cannot be replaced by another class; drop the option (worker "
                         "plugins and --preload customise a worker)")


def ignored(given: dict[str, Any], table: dict[str, str]) -> list[str]:
    """Warnings for the options of ``table`` that were given (value not None)."""
    return [f"{option} has no effect in shoal: {table[option]}"
            for option, value in given.items() if value is not None and option in table]
