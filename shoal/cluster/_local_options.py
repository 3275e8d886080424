"""dask's ``LocalCluster`` keyword arguments beyond the core ones, read into what shoal does.

Owns: resolving ``host`` / ``ip`` / ``interface`` to the address to bind, choosing processes
or threads from ``worker_class``, the ``scheduler_kwargs`` shoal's scheduler honours,
``silence_logs`` (the level of shoal's loggers while a cluster is open, here and in its
worker processes), and the clear refusal of the keywords shoal cannot honour. Knows nothing
of the running cluster: every function takes values and returns values (or raises).
"""

from __future__ import annotations

import logging
import socket
import warnings
from typing import Any

# The environment variable carrying ``silence_logs`` to worker processes (read by
# ``shoal.worker.__main__``, which does not import this module: keep the names equal).
LOG_LEVEL_ENV = "SHOAL_LOG_LEVEL"

# dask's keywords for server add-ons shoal's scheduler and workers do not have.
_UNSUPPORTED = {
    "services": "shoal's scheduler serves only its own dashboard (dashboard_address=)",
    "worker_services": "shoal's workers serve no add-on services",
    "service_kwargs": "shoal's dashboard takes no options beyond dashboard_address=",
    "blocked_handlers": "shoal's scheduler has no handler blocklist; use security= "
                        "(a token or TLS) to keep others out",
}

# scheduler_kwargs shoal's Scheduler honours, with what each means in dask.
SCHEDULER_KWARGS = ("port", "dashboard_address", "allowed_failures", "worker_ttl", "bandwidth")


def refuse_unsupported(given: dict[str, Any]) -> None:
    """Raise for a keyword shoal cannot honour given a value other than dask's default.

    Raises:
        TypeError: names the keyword and what to do instead.
    """
    for name, value in given.items():
        if value:  # dask's defaults are None (or empty): those are fine
            raise TypeError(f"LocalCluster({name}=...) is not supported by shoal: "
                            f"{_UNSUPPORTED[name]}; leave it out")


def resolve_host(host: str | None, ip: str | None, interface: str | None) -> str:
    """The address to bind the scheduler and workers: ``host``; dask's deprecated ``ip``
    (its alias, with dask's warning); the IPv4 address of network ``interface`` (like
    ``"lo"`` or ``"eth0"``); loopback when none is given.

    Raises:
        ValueError: two of them are given and disagree, or no such interface (or it has
            no IPv4 address); the message lists the interfaces there are.
    """
    if ip is not None:
        warnings.warn("The `ip` parameter has been deprecated. Please use `host` instead",
                      DeprecationWarning, stacklevel=3)
        if host is not None and host != ip:
            raise ValueError(f"LocalCluster got host={host!r} and ip={ip!r}; ip is the old "
                             "name of host: give host only")
        host = ip
    if interface is None:
        return host if host is not None else "127.0.0.1"
    if host is not None:
        raise ValueError(f"LocalCluster got host={host!r} and interface={interface!r}; give "
                         "one (interface binds that network interface's address)")
    return interface_address(interface)


def interface_address(interface: str) -> str:
    """The IPv4 address of network interface ``interface`` (dask binds that one).

    Raises:
        ValueError: no such interface, or it has no IPv4 address.
    """
    import psutil

    if not isinstance(interface, str):
        raise TypeError(f"interface must be a network interface name like 'lo', got {interface!r}")
    found = psutil.net_if_addrs()
    if interface not in found:
        raise ValueError(f"no network interface {interface!r} on this machine; there are "
                         f"{sorted(found)}")
    for address in found[interface]:
        if address.family == socket.AF_INET:
            return str(address.address)
    raise ValueError(f"network interface {interface!r} has no IPv4 address; give host= "
                     "the address to bind instead")


def choose_processes(processes: bool | None, worker_class: Any) -> bool:
    """Workers in processes (a nanny each) or threads here, from ``processes`` and dask's
    ``worker_class`` (a ``Nanny`` means processes, a ``Worker`` threads; dask's classes
    or shoal's). Default: processes.

    Raises:
        TypeError: another worker class (shoal runs its own workers).
        ValueError: ``processes`` contradicts ``worker_class``.
    """
    if worker_class is None:
        return True if processes is None else bool(processes)
    kind = _worker_kind(worker_class)
    if kind is None:
        raise TypeError(
            f"LocalCluster(worker_class={worker_class!r}) is not supported by shoal: it runs "
            "its own workers and takes only Nanny (worker processes) or Worker (threads in "
            "this process), dask's or shoal's; for code run on each worker use a "
            "WorkerPlugin (client.register_plugin)")
    wanted = kind == "Nanny"
    if processes is not None and bool(processes) != wanted:
        raise ValueError(f"LocalCluster got processes={processes!r} with worker_class="
                         f"{kind}: a {kind} runs {'in its own process' if wanted else 'here'}; "
                         "give one of them")
    return wanted


def _worker_kind(cls: Any) -> str | None:
    """"Nanny" or "Worker" for dask's or shoal's class of that name (not a subclass:
    shoal cannot run a subclass's code), else None."""
    if not isinstance(cls, type):
        return None
    where = (cls.__module__, cls.__qualname__)
    if where in (("distributed.nanny", "Nanny"), ("shoal.worker._nanny", "Nanny"),
                 ("shoal.cluster._servers", "Nanny")):
        return "Nanny"
    if where in (("distributed.worker", "Worker"), ("shoal.worker._server", "Worker"),
                 ("shoal.cluster._servers", "Worker")):
        return "Worker"
    return None


def scheduler_options(scheduler_kwargs: Any, port: int, dashboard_address: str | None,
                      config: dict[str, Any]) -> dict[str, Any]:
    """The scheduler's settings: dask's config (``config``), then LocalCluster's own
    arguments, then ``scheduler_kwargs`` (dask's ``Scheduler`` arguments shoal honours:
    ``port``, ``dashboard_address``, ``allowed_failures``, ``worker_ttl`` (seconds or
    ``"5 minutes"``), ``bandwidth`` (bytes/s or ``"100MB"``)).

    Raises:
        TypeError: ``scheduler_kwargs`` is not a dict, or has a key shoal does not honour.
        ValueError: a value is out of range.
    """
    from dask.utils import parse_bytes, parse_timedelta

    options: dict[str, Any] = {**config, "port": port, "dashboard_address": dashboard_address}
    if scheduler_kwargs is None:
        return options
    if not isinstance(scheduler_kwargs, dict):
        raise TypeError(f"scheduler_kwargs must be a dict, got {type(scheduler_kwargs).__name__}")
    unknown = sorted(set(scheduler_kwargs) - set(SCHEDULER_KWARGS))
    if unknown:
        raise TypeError(f"scheduler_kwargs {unknown} are not supported by shoal's scheduler; "
                        f"it takes {list(SCHEDULER_KWARGS)}")
    for key, value in scheduler_kwargs.items():
        if key == "worker_ttl":
            seconds = None if value is None else parse_timedelta(value)
            value = 1e9 if seconds is None else float(seconds)
        elif key == "bandwidth":
            value = float(parse_bytes(value) if isinstance(value, str) else value)
            if value <= 0:
                raise ValueError(f"scheduler_kwargs bandwidth must be positive, got {value!r}")
        elif key == "allowed_failures":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"scheduler_kwargs allowed_failures must be a non-negative "
                                 f"integer, got {value!r}")
        elif key == "port":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
                raise ValueError(f"scheduler_kwargs port must be a port number (0 for any), "
                                 f"got {value!r}")
        elif key == "dashboard_address" and value is not None and not isinstance(value, str):
            raise TypeError(f"scheduler_kwargs dashboard_address must be like ':8787' or None, "
                            f"got {value!r}")
        options[key] = value
    return options


def log_level(silence_logs: Any) -> int | None:
    """dask's ``silence_logs`` as a logging level, or None for "leave logging alone"
    (False, None, 0).

    Raises:
        ValueError: not a level (an int, or a name like "error").
    """
    if silence_logs is None or silence_logs is False or silence_logs == 0:
        return None
    if isinstance(silence_logs, str):
        level = logging.getLevelName(silence_logs.upper())
        if isinstance(level, int):
            return level
    elif isinstance(silence_logs, int) and not isinstance(silence_logs, bool):
        return silence_logs
    raise ValueError(f"silence_logs must be a logging level (like logging.ERROR or 'error') "
                     f"or False to leave logging alone, got {silence_logs!r}")


def worker_level(level: int | None) -> str | None:
    """What ``LOG_LEVEL_ENV`` carries to worker processes for ``level`` (None: nothing)."""
    return None if level is None or level == logging.WARNING else str(level)


class QuietLogs:
    """``silence_logs`` in this process: while held, shoal's loggers hand on (to your
    handlers, or stderr) only records at ``level`` and above, as dask's ``silence_logs``
    sets its stream handler's level. WARNING, dask's default, is what shoal prints anyway:
    nothing changes. Records below still reach the in-memory logs (``get_logs``). A level
    you set on the ``"shoal"`` logger yourself is kept."""

    def __init__(self, level: int | None) -> None:
        self._logger = logging.getLogger("shoal")
        self._changed = (level is not None and level != logging.WARNING
                         and self._logger.level == logging.NOTSET)
        if self._changed:
            assert level is not None
            self._logger.setLevel(level)

    def release(self) -> None:
        """Give the logger back its level (once)."""
        if self._changed:
            self._changed = False
            self._logger.setLevel(logging.NOTSET)
