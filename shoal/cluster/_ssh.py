"""SSHCluster: ``shoal scheduler`` on the first host and ``shoal worker`` on the others,
started over SSH (dask's ``distributed.SSHCluster`` signature).

Owns: turning dask's ``connect_options`` (asyncssh's names) into options of the system's
OpenSSH client, which it runs as subprocesses (no SSH protocol of its own: host keys, agents,
``~/.ssh/config`` and jump hosts work as they do for ``ssh``); passing the cluster's secret to
each remote process over its session's standard input (never on a command line, which ``ps``
shows to every user of the remote machine); and stopping the remote processes by ending their
sessions. It knows nothing of what the scheduler and workers do once started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from shoal import _loop

logger = logging.getLogger("shoal.ssh")

# asyncssh's connect() names that have an OpenSSH equivalent.
_CONNECT_OPTIONS = ("username", "port", "client_keys", "known_hosts", "config",
                    "connect_timeout")
_SCHEDULER_FLAGS = {"host": "--host", "port": "--port", "interface": "--interface",
                    "dashboard_address": "--dashboard-address"}
_WORKER_FLAGS = {"nthreads": "--nthreads", "n_workers": "--nworkers", "nworkers": "--nworkers",
                 "memory_limit": "--memory-limit", "name": "--name", "host": "--host",
                 "interface": "--interface", "listen_address": "--listen-address",
                 "contact_address": "--contact-address", "worker_port": "--worker-port",
                 "death_timeout": "--death-timeout"}
_DEFAULT_WORKER_CLASSES = ("distributed.Nanny", "shoal.Nanny", "dask.distributed.Nanny")


def ssh_options(options: Mapping[str, Any]) -> list[str]:
    """OpenSSH client arguments for dask's ``connect_options`` (asyncssh's names).

    Raises:
        ValueError: an option OpenSSH has no equivalent for (the message lists those that
            work), or a password (use a key or an ssh-agent: nothing can be typed here).
    """
    unknown = sorted(set(options) - set(_CONNECT_OPTIONS))
    if "password" in unknown:
        raise ValueError("SSHCluster does not send passwords: use a key (connect_options="
                         "{'client_keys': [path]}) or an ssh-agent")
    if unknown:
        raise ValueError(f"connect_options {unknown} are not supported by SSHCluster (it runs "
                         f"OpenSSH's ssh); supported: {', '.join(_CONNECT_OPTIONS)}")
    args = ["-T", "-o", "BatchMode=yes"]
    if options.get("config") is not None:
        configs = options["config"]
        for path in [configs] if isinstance(configs, (str, os.PathLike)) else configs:
            args += ["-F", os.fspath(path)]
    if options.get("username") is not None:
        args += ["-l", str(options["username"])]
    if options.get("port") is not None:
        args += ["-p", str(int(options["port"]))]
    keys = options.get("client_keys")
    if keys is not None:
        for key in [keys] if isinstance(keys, (str, os.PathLike)) else keys:
            args += ["-i", os.fspath(key), "-o", "IdentitiesOnly=yes"]
    if "known_hosts" in options:
        known = options["known_hosts"]
        if known is None:  # asyncssh: no host key checking
            args += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "LogLevel=ERROR"]
        else:
            args += ["-o", f"UserKnownHostsFile={os.fspath(known)}",
                     "-o", "StrictHostKeyChecking=yes"]
    if options.get("connect_timeout") is not None:
        args += ["-o", f"ConnectTimeout={max(1, round(float(options['connect_timeout'])))}"]
    return args


def _flags(options: Mapping[str, Any], table: Mapping[str, str], what: str) -> list[str]:
    """``shoal scheduler``/``shoal worker`` flags for ``options`` (``table``: option → flag;
    ``dashboard=False`` means ``--no-dashboard``, for the scheduler).

    Raises:
        ValueError: an option with no flag (the message lists those that exist).
    """
    known = set(table) | ({"dashboard"} if what == "scheduler_options" else set())
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{what} {unknown} are not supported; supported: "
                         f"{', '.join(sorted(known))}")
    args: list[str] = []
    for name, value in options.items():
        if name == "dashboard":
            if not value:
                args.append("--no-dashboard")
        elif value is not None:
            args += [table[name], str(value)]
    return args


def _address_host(host: str) -> str:
    """The host part of an SSH destination (``user@host`` → ``host``)."""
    return host.rsplit("@", 1)[-1]


class _Remote:
    """One ``shoal scheduler`` / ``shoal worker`` running on a host over one SSH session."""

    def __init__(self, host: str, role: str, argv: list[str], ssh: list[str],
                 remote_python: str) -> None:
        self.host = host
        self.role = role
        remote = " ".join([remote_python, "-m", "shoal.cluster._remote", role,
                           *map(shlex.quote, argv)])
        self.command = [*ssh, host, remote]
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seen = asyncio.Event()

    async def start(self, env: Mapping[str, str], ready: str, timeout: float) -> str:
        """Start it, send ``env`` (the secrets) as its first input line, and return the
        first output line starting with ``ready``.

        Raises:
            RuntimeError: the command ended or printed no such line within ``timeout`` s
                (the message carries what it printed: ssh's or shoal's complaint).
        """
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(dict(env)).encode() + b"\n")
        await self.proc.stdin.drain()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for line in self.lines:
                if line.startswith(ready):
                    return line[len(ready):].strip()
            left = deadline - asyncio.get_running_loop().time()
            if self._reader.done() or left <= 0:
                break
            self._seen.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._seen.wait(), left)
        said = "\n".join(self.lines[-20:]) or "(nothing)"
        status = self.proc.returncode
        raise RuntimeError(
            f"could not start the {self.role} on {self.host} over SSH "
            f"({'still running' if status is None else f'exit status {status}'} after "
            f"printing no {ready!r} within {timeout:g} s). It printed:\n{said}"
        )

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            del self.lines[:-200]
            logger.debug("%s on %s: %s", self.role, self.host, line)
            self._seen.set()
        await self.proc.wait()
        self._seen.set()

    async def close(self, timeout: float = 10.0) -> None:
        """End the session: the remote command stops when its input ends."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("the %s on %s did not stop within %g s of its SSH session's end; "
                           "killing the local ssh", self.role, self.host, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class SSHCluster:
    """A scheduler on ``hosts[0]`` and workers on each of ``hosts[1:]``, started over SSH with
    the system's OpenSSH client (``ssh`` must be on PATH; shoal installed on every host).

    Args:
        hosts: host names or addresses (a host may repeat; ``user@host`` works too).
        connect_options: asyncssh's names, translated to ``ssh`` options: ``username``,
            ``port``, ``client_keys``, ``known_hosts`` (None: no host key checking),
            ``config`` (an ssh_config file), ``connect_timeout``. One dict, or one per host.
        worker_options: ``nthreads``, ``n_workers``, ``memory_limit``, ``name``, ``host``,
            ``interface``, ``listen_address``, ``contact_address``, ``worker_port``,
            ``death_timeout`` (``shoal worker``'s flags).
        scheduler_options: ``port`` (default 8786), ``host`` (default: every interface,
            reached at ``hosts[0]``), ``interface``, ``dashboard_address``, ``dashboard``.
        worker_class: only shoal's own worker ("distributed.Nanny", the default).
        remote_python: the Python (or a command prefix such as ``"env VAR=x python3"``)
            to run on the hosts; one string, or one per host (default: this Python's path).
        security: a :class:`shoal.Security` whose ``token`` is the cluster's secret
            (default: the ``SHOAL_TOKEN`` environment variable, else a fresh random one).
            It reaches each remote process over its session's input, never on a command
            line; ``Client(cluster)`` presents it. TLS certificates are not sent (refused).
        timeout: seconds to wait for the scheduler and each worker to start.

    Raises:
        ValueError: no hosts, an option that does not exist (the message lists those
            that do), or TLS certificates in ``security``.
        RuntimeError: a process could not be started (with what ssh or shoal printed).
    """

    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        connect_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        worker_options: Mapping[str, Any] | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        worker_class: str = "distributed.Nanny",
        remote_python: str | Sequence[str] | None = None,
        *,
        security: Any = None,
        timeout: float = 60.0,
    ) -> None:
        if not hosts or isinstance(hosts, str) or len(hosts) < 2:
            raise ValueError("SSHCluster needs a list of at least two hosts: the scheduler's, "
                             "then one per worker (repeat a host to share it)")
        if worker_class not in _DEFAULT_WORKER_CLASSES:
            raise ValueError(f"worker_class {worker_class!r} is not supported: shoal runs its "
                             "own workers (leave worker_class at its default)")
        if shutil.which("ssh") is None:
            raise RuntimeError("SSHCluster runs the OpenSSH client, but `ssh` is not on PATH "
                               "(install openssh-client)")
        self.hosts = list(hosts)
        per_host = (list(connect_options) if isinstance(connect_options, Sequence)
                    else [connect_options or {}] * len(self.hosts))
        if len(per_host) != len(self.hosts):
            raise ValueError(f"connect_options has {len(per_host)} entries for "
                             f"{len(self.hosts)} hosts: give one dict, or one per host")
        self._ssh = [["ssh", *ssh_options(o)] for o in per_host]
        pythons = ([remote_python] * len(self.hosts)
                   if remote_python is None or isinstance(remote_python, str)
                   else list(remote_python))
        if len(pythons) != len(self.hosts):
            raise ValueError(f"remote_python has {len(pythons)} entries for {len(self.hosts)} "
                             "hosts: give one, or one per host")
        self._pythons = [p or shlex.quote(sys.executable) for p in pythons]
        sched_opts = dict(scheduler_options or {})
        self._scheduler_host_given = "host" in sched_opts or "interface" in sched_opts
        if not self._scheduler_host_given:
            sched_opts["host"] = "0.0.0.0"
        sched_opts.setdefault("port", 8786)
        self._scheduler_args = _flags(sched_opts, _SCHEDULER_FLAGS, "scheduler_options")
        self._worker_args = _flags(dict(worker_options or {}), _WORKER_FLAGS, "worker_options")
        from shoal.comm._security import _FIELDS, Security

        if security is None:
            security = Security()  # SHOAL_TOKEN, if set, is the token
        elif not isinstance(security, Security):
            raise TypeError(f"security must be a shoal.Security, got {type(security).__name__}")
        tls = sorted(f for f in _FIELDS if f != "tls_ciphers" and getattr(security, f))
        if tls:
            raise ValueError(f"SSHCluster sends the hosts the cluster's token, not TLS "
                             f"certificates ({', '.join(tls)} given): start TLS clusters with "
                             "shoal scheduler/worker --tls-* on each host (docs/deploy.md)")
        if not security.token:
            security.token = secrets.token_urlsafe(32)
        self.security = security  # Client(cluster) uses it
        self._secrets = {"SHOAL_TOKEN": security.token}
        self.timeout = timeout
        self.scheduler_address = ""
        self.dashboard_link: str | None = None
        self._scheduler: _Remote | None = None
        self._workers: list[_Remote] = []
        self.status = "starting"
        try:
            _loop.run_sync(self._start(), None)
        except BaseException:
            self.close()
            raise
        self.status = "running"

    @property
    def token(self) -> str:
        """The cluster's secret, which clients present (also set as ``SHOAL_TOKEN``)."""
        return self._secrets["SHOAL_TOKEN"]

    async def _start(self) -> None:
        self._scheduler = _Remote(self.hosts[0], "scheduler", self._scheduler_args,
                                  self._ssh[0], self._pythons[0])
        printed = await self._scheduler.start(self._secrets, "Scheduler at:", self.timeout)
        if self._scheduler_host_given:
            self.scheduler_address = printed
        else:  # bound everywhere: reach it by the name that reached its host
            port = printed.rsplit(":", 1)[1]
            host = _address_host(self.hosts[0])
            self.scheduler_address = f"tcp://{f'[{host}]' if ':' in host else host}:{port}"
        for line in self._scheduler.lines:
            if line.startswith("Dashboard at:"):
                self.dashboard_link = line.split(":", 1)[1].strip()
        self._workers = [
            _Remote(host, "worker", [self.scheduler_address, *self._worker_args], ssh, python)
            for host, ssh, python in zip(self.hosts[1:], self._ssh[1:], self._pythons[1:],
                                         strict=True)
        ]
        await asyncio.gather(*(w.start(self._secrets, "Started ", self.timeout)
                               for w in self._workers))

    async def _close(self) -> None:
        await asyncio.gather(*(w.close() for w in self._workers))
        if self._scheduler is not None:
            await self._scheduler.close()

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers, then the scheduler (by ending their SSH sessions)."""
        if self.status == "closed":
            return
        self.status = "closed"
        _loop.run_sync(self._close(), timeout)

    def logs(self) -> dict[str, str]:
        """What each remote process printed lately, by ``role host``."""
        remotes = [r for r in [self._scheduler, *self._workers] if r is not None]
        return {f"{r.role} {r.host}#{i}": "\n".join(r.lines) for i, r in enumerate(remotes)}

    def __enter__(self) -> SSHCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SSHCluster({self.scheduler_address or 'not started'!r}, "
                f"workers={len(self.hosts) - 1}, status={self.status!r})")

