"""The arguments of the public ``Scheduler``, ``Worker`` and ``Nanny`` (dask's signatures),
read into what shoal's servers take.

Owns: dask's defaults for the keywords shoal honours, the refusal (naming the keyword and
why) of the ones it does not, scheduler addresses given as dask allows them, and durations.
Knows nothing of running servers: every function takes values and returns values (or
raises), so the checks run at construction, before anything starts.
"""

from __future__ import annotations

from typing import Any

# dask keywords shoal's servers do not have: (dask's default, why). Their default is
# accepted (code that spells out dask's defaults runs); anything else is refused.
_NO_ADDONS = "shoal's servers run no add-on services or extensions"
_NO_DASHBOARD = ("shoal's workers serve no dashboard of their own: the scheduler's dashboard "
                 "shows each worker")
_NO_PROFILER_SETTINGS = "shoal's profiler is configured through dask's config"

SCHEDULER_REFUSED: dict[str, tuple[Any, str]] = {
    "services": (None, _NO_ADDONS + " (the dashboard is dashboard_address=)"),
    "service_kwargs": (None, _NO_ADDONS),
    "extensions": (None, _NO_ADDONS),
    "validate": (None, "shoal's scheduler state is validated by its own test suite, not at "
                       "run time"),
    "plugins": ((), "register scheduler plugins once it runs: "
                    "client.register_plugin(plugin)"),
    "contact_address": (None, "shoal's scheduler advertises the address it binds (host=, "
                              "interface=)"),
    "transition_counter_max": (False, "shoal's scheduler counts no transitions"),
    "jupyter": (False, "shoal's scheduler serves no Jupyter server"),
}

_WORKER_COMMON: dict[str, tuple[Any, str]] = {
    "services": (None, _NO_ADDONS),
    "validate": (None, "shoal's worker state is validated by its own test suite"),
    "silence_logs": (None, "set the level of the 'shoal' logger with logging instead"),
}

WORKER_REFUSED: dict[str, tuple[Any, str]] = {
    **_WORKER_COMMON,
    "executor": (None, "a shoal worker runs tasks in its own pool of nthreads threads"),
    "heartbeat_interval": ("1s", "shoal's workers send a heartbeat every second"),
    "extensions": (None, _NO_ADDONS),
    "metrics": ({}, "shoal's heartbeats carry a fixed set of metrics"),
    "startup_information": ({}, "shoal's workers report a fixed set of facts"),
    "dashboard_address": (None, _NO_DASHBOARD),
    "dashboard": (False, _NO_DASHBOARD),
    "http_prefix": ("/", _NO_DASHBOARD),
    "nanny": (None, "use shoal.Nanny to run a worker in a process of its own"),
    "plugins": ((), "register worker plugins once it runs: client.register_plugin(plugin)"),
    "low_level_profiler": (None, _NO_PROFILER_SETTINGS),
    "profile_cycle_interval": (None, _NO_PROFILER_SETTINGS),
    "transition_counter_max": (False, "shoal's worker counts no transitions"),
    "data": (None, "a shoal worker keeps its own store, spilling to local_directory under "
                   "memory_limit"),
    "WorkerStateClass": (None, "shoal's worker state machine is its own"),
}

NANNY_REFUSED: dict[str, tuple[Any, str]] = {
    **_WORKER_COMMON,
    "validate": (False, "shoal's worker state is validated by its own test suite"),
    "reconnect": (True, "a shoal worker always registers again after losing its scheduler "
                        "(death_timeout= bounds how long it tries)"),
    "quiet": (False, "set the level of the 'shoal' logger with logging instead"),
    "worker_class": (None, "a shoal nanny runs shoal's worker"),
    "port": (None, "shoal's nanny serves nothing, so it has no port (worker_port= is the "
                   "worker's)"),
    "config": (None, "a shoal worker process inherits this process's dask config "
                     "(dask.config.set before starting the nanny)"),
}

# Durations of the worker's lifetime, which a nanny (and a worker) take as dask does.
LIFETIME_KEYWORDS = ("lifetime", "lifetime_stagger", "lifetime_restart")


def refuse(cls: str, given: dict[str, Any], refused: dict[str, tuple[Any, str]],
           takes: str) -> None:
    """Raise for a keyword of ``given`` (those a constructor caught in ``**kwargs``) that
    shoal does not honour, unless it holds dask's default.

    Raises:
        TypeError: names the keyword and what to do instead; or, for a keyword dask does not
            have either, says it is unexpected and lists what ``cls`` takes (``takes``).
    """
    for name, value in given.items():
        if name not in refused:
            raise TypeError(f"{cls}() got an unexpected keyword argument {name!r}; it takes "
                            f"{takes}")
        default, why = refused[name]
        if not _is_default(value, default):
            raise TypeError(f"{cls}({name}={value!r}) is not supported by shoal: {why}; "
                            "leave it out")


def _is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` means what dask's ``default`` does (None and False both: "off")."""
    if default is None or default is False:
        return value is None or value is False
    if isinstance(default, str) and default[:1].isdigit():  # a duration like "1s"
        try:
            return seconds(value, "a duration") == seconds(default, "a duration")
        except ValueError:
            return False
    if isinstance(default, (tuple, dict)):
        return value is None or (isinstance(value, (tuple, list, dict)) and not value)
    return bool(value == default and type(value) is type(default))


def seconds(value: Any, what: str) -> float | None:
    """A duration (seconds, or a string like ``"30s"`` / ``"1 hour"``) in seconds, None
    for None.

    Raises:
        ValueError: not a duration, or negative (the message names ``what``).
    """
    if value is None:
        return None
    from dask.utils import parse_timedelta

    try:
        parsed = parse_timedelta(value, default="seconds")
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{what} must be seconds or a duration like '30s', got "
                         f"{value!r}") from None
    if isinstance(value, bool) or parsed is None or parsed < 0:
        raise ValueError(f"{what} must be a non-negative duration, got {value!r}")
    return float(parsed)


def protocol_name(protocol: str | None, cls: str) -> str | None:
    """``"tcp"`` or ``"tls"`` (given as dask allows: ``"tcp://"``), or None.

    Raises:
        ValueError: another protocol.
    """
    if protocol is None:
        return None
    name = str(protocol).rstrip(":/")
    if name not in ("tcp", "tls"):
        raise ValueError(f"{cls}(protocol={protocol!r}): shoal speaks 'tcp' and 'tls' only")
    return name


def scheduler_address(scheduler_ip: Any, scheduler_port: Any, scheduler_file: Any,
                      protocol: str | None, cls: str) -> str | None:
    """The scheduler address ``Worker`` / ``Nanny`` were given, as a URL (``"host:port"``
    gets ``tcp://``, or the ``protocol``'s scheme); None when it is read from
    ``scheduler_file`` at start.

    Raises:
        TypeError: no scheduler named, or both an address and a scheduler file.
        ValueError: not an address, or one whose scheme contradicts ``protocol``.
    """
    if scheduler_file is not None:
        if scheduler_ip is not None:
            raise TypeError(f"{cls}() got a scheduler address and scheduler_file=; give one")
        return None
    if scheduler_ip is None:
        raise TypeError(f"{cls}() needs the scheduler's address (like {cls}(s.address) or "
                        f"{cls}('tcp://127.0.0.1:8786')) or scheduler_file=")
    if not isinstance(scheduler_ip, str):
        raise TypeError(f"{cls}() takes the scheduler's address as a string like "
                        f"'tcp://127.0.0.1:8786', got {scheduler_ip!r}")
    text = scheduler_ip.strip()
    if scheduler_port is not None:
        if isinstance(scheduler_port, bool) or not isinstance(scheduler_port, int):
            raise ValueError(f"{cls}(scheduler_port={scheduler_port!r}) must be a port number")
        text = f"{text.rstrip('/')}:{scheduler_port}"
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = protocol or "tcp", text
    elif protocol is not None and scheme != protocol:
        raise ValueError(f"{cls}(protocol={protocol!r}) contradicts the scheduler address "
                         f"{scheduler_ip!r}: a shoal worker speaks its scheduler's protocol")
    from shoal.comm._addresses import split_host_port

    _host, port = split_host_port(f"{scheme}://{rest}", "scheduler address")
    if port is None:
        raise ValueError(f"{cls}: scheduler address {scheduler_ip!r} has no port (like "
                         "'tcp://127.0.0.1:8786')")
    return f"{scheme}://{rest}"


def coerce_security(security: Any, cls: str) -> Any:
    """A :class:`shoal.Security` from one, from dask's dict form, or None.

    Raises:
        TypeError: anything else.
    """
    from shoal.comm._security import Security

    if security is None or isinstance(security, Security):
        return security
    if isinstance(security, dict):
        return Security(**security)
    raise TypeError(f"{cls}(security={security!r}) must be a shoal.Security or a dict of its "
                    "arguments")


def positive_threads(nthreads: Any, cls: str) -> int:
    """``nthreads``, dask's default (this machine's cores, ``dask.system.CPU_COUNT``) for
    None.

    Raises:
        ValueError: not a positive integer.
    """
    if nthreads is None:
        from dask.system import CPU_COUNT

        return int(CPU_COUNT)
    if isinstance(nthreads, bool) or not isinstance(nthreads, int) or nthreads < 1:
        raise ValueError(f"{cls}(nthreads={nthreads!r}) must be a positive integer")
    return nthreads


def bind_host(host: str | None, interface: str | None, cls: str) -> str | None:
    """What to bind: ``host``, or network ``interface``'s address; None for "decide from
    the scheduler's address" (the one local address that routes there).

    Raises:
        ValueError: both given, or no such interface.
    """
    if host is not None and interface is not None:
        raise ValueError(f"{cls}() got host={host!r} and interface={interface!r}; give one")
    if interface is not None:
        from shoal.comm._addresses import interface_address

        return interface_address(interface)
    return host
