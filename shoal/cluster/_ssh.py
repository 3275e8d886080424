"""SSHCluster: ``shoal scheduler`` on the first host and ``shoal worker`` on the others,
started over SSH (dask's ``distributed.SSHCluster`` signature).

Owns: turning dask's ``connect_options`` (asyncssh's names) into options of the system's
OpenSSH client, which it runs as subprocesses (no SSH protocol of its own: host keys, agents,
``~/.ssh/config`` and jump hosts work as they do for ``ssh``); passing the cluster's secret to
each remote process over its session's standard input (never on a command line, which ``ps``
shows to every user of the remote machine), with the TLS certificates and keys each role
needs (read here, sent as PEM text, held in memory there); and stopping the remote processes
by ending their sessions. It knows nothing of what the scheduler and workers do once started.
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
from shoal._status import Status

logger = logging.getLogger("shoal.ssh")

# asyncssh's connect() names that have an OpenSSH equivalent.
_CONNECT_OPTIONS = ("username", "port", "client_keys", "known_hosts", "config",
                    "connect_timeout")
_SCHEDULER_FLAGS = {"host": "--host", "port": "--port", "interface": "--interface",
                    "dashboard_address": "--dashboard-address", "protocol": "--protocol"}
_WORKER_FLAGS = {"nthreads": "--nthreads", "n_workers": "--nworkers", "nworkers": "--nworkers",
                 "memory_limit": "--memory-limit", "name": "--name", "host": "--host",
                 "interface": "--interface", "listen_address": "--listen-address",
                 "contact_address": "--contact-address", "worker_port": "--worker-port",
                 "death_timeout": "--death-timeout", "resources": "--resources",
                 "local_directory": "--local-directory"}
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
        elif name == "resources" and isinstance(value, Mapping):  # dask's form: a dict
            args += [table[name], ",".join(f"{k}={v}" for k, v in value.items())]
        elif value is not None:
            args += [table[name], str(value)]
    return args


# What each remote role is sent of the cluster's Security: its own certificate and key (a
# worker's tasks also connect as clients), never another role's key.
_ROLE_FIELDS = {
    "scheduler": ("tls_scheduler_cert", "tls_scheduler_key"),
    "worker": ("tls_worker_cert", "tls_worker_key", "tls_client_cert", "tls_client_key"),
}


def _pem(security: Any, field: str) -> str | None:
    """The PEM text of ``security.<field>`` (read from its file when it is a path: the
    remote hosts need not have the file).

    Raises:
        ValueError: the file cannot be read here.
    """
    value = getattr(security, field)
    if not value or "\n" in value:
        return value or None
    try:
        with open(os.path.expanduser(value)) as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"security.{field}: cannot read {value!r} ({exc.strerror}); "
                         "SSHCluster sends the certificates' contents to the hosts, so they "
                         "must be readable on this machine") from None


def remote_settings(security: Any, role: str) -> dict[str, str]:
    """The environment a remote ``role`` ("scheduler" or "worker") is sent over its SSH
    session's input: ``SHOAL_TOKEN``, and with TLS, ``SHOAL_SECURITY`` holding the CA and
    that role's certificate and key as PEM text (a worker's client certificate defaults to
    its worker one, as ``shoal worker --tls-cert`` does).

    Raises:
        ValueError: a certificate or key file cannot be read here, or a role's certificate
            is missing while a CA is given.
    """
    from shoal.comm._security import _FIELDS, TOKEN_ENV, Security

    env = {TOKEN_ENV: security.token} if security.token else {}
    if not any(getattr(security, f) for f in _FIELDS if f != "tls_ciphers"):
        return env  # no TLS: the host's own dask config applies, as for `shoal worker`
    own = _ROLE_FIELDS[role]
    pems = {f: _pem(security, f) for f in ("tls_ca_file", *own)}
    if role == "worker":
        pems["tls_client_cert"] = pems["tls_client_cert"] or pems["tls_worker_cert"]
        pems["tls_client_key"] = pems["tls_client_key"] or pems["tls_worker_key"]
    if not (pems["tls_ca_file"] and pems[own[0]]):
        raise ValueError(f"a TLS SSHCluster needs security.tls_ca_file and "
                         f"security.{own[0]} (and its key) for the {role}s")
    sent = Security(require_encryption=security.require_encryption, token=security.token,
                    tls_ciphers=security.tls_ciphers, tls_min_version=security.tls_min_version,
                    tls_max_version=security.tls_max_version, **{f: v for f, v in pems.items() if v})
    for field in _FIELDS:  # not what this host's config may hold, nor other roles' keys
        if field not in pems and field != "tls_ciphers":
            setattr(sent, field, None)
    return sent.to_env()


class PerHostLengthError(ValueError, RuntimeError):
    """A per-host list (``connect_options``, ``remote_python``) of the wrong length: a
    RuntimeError as in dask, and a ValueError, which it is."""


def _address_host(host: str) -> str:
    """The host part of an SSH destination (``user@host`` → ``host``)."""
    return host.rsplit("@", 1)[-1]


def failure_reason(role: str, host: str, status: int | None, lines: Sequence[str],
                   ready: str, timeout: float) -> str:
    """One line saying why the ``role`` on ``host`` did not start: what ssh or the remote
    command said last (ssh ends with 255 for its own errors, a shell with 127 for a missing
    command), and what to check."""
    said = next((line.strip() for line in reversed(lines) if line.strip()), "")
    head = f"could not start the {role} on {host} over SSH"
    if status is None:
        last = f" (it last printed: {said})" if said else ""
        return f"{head}: no {ready!r} line within {timeout:g} s{last}"
    hint = ""
    if status == 255 and "Permission denied" in said:
        hint = "check connect_options' username and client_keys (or your ssh-agent)"
    elif status == 255 and "Host key verification failed" in said:
        hint = "add the host to known_hosts (connect_options['known_hosts'])"
    elif status == 127:
        hint = "check remote_python for that host"
    elif "No module named" in said:
        hint = "is shoal installed for remote_python on that host?"
    said = said or "it printed nothing"
    if hint:
        said = f"{said}{'' if said.endswith('.') else '.'} {hint[0].upper()}{hint[1:]}"
    return f"{head} (exit status {status}): {said}"


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
                (one line naming the host, with ssh's or shoal's last complaint; the
                rest of what it printed is logged).
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
        if self.lines:
            logger.error("the %s on %s printed:\n%s", self.role, self.host,
                         "\n".join(self.lines[-20:]))
        raise RuntimeError(failure_reason(self.role, self.host, self.proc.returncode,
                                          self.lines, ready, timeout))

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            del self.lines[:-200]
            logger.debug("%s on %s: %s", self.role, self.host, line)
            self._seen.set()
        await self.proc.wait()  # ends: its output closed, so it is exiting
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


# dask's SSHCluster passes its **kwargs to SpecCluster; these have no use for shoal's.
_SPEC_CLUSTER_KWARGS = frozenset({"silence_logs", "loop", "shutdown_on_close",
                                  "scheduler_sync_interval", "shutdown_scheduler"})
# dask's old SSHCluster took these (it still turns to it when given one).
_OLD_SSH_KWARGS = frozenset({
    "scheduler_addr", "scheduler_port", "worker_addrs", "nthreads", "nprocs", "n_workers",
    "ssh_username", "ssh_port", "ssh_private_key", "nohost", "logdir", "memory_limit",
    "worker_port", "nanny_port", "remote_dask_worker"})


def _check_spec_cluster_kwargs(kwargs: Mapping[str, Any]) -> None:
    """SSHCluster's ``**kwargs``, as dask's: those SpecCluster takes are accepted.

    Raises:
        TypeError: ``asynchronous=True``, one of dask's old SSHCluster's, or an unknown one.
    """
    if kwargs.get("asynchronous"):
        raise TypeError("SSHCluster(asynchronous=True) is not supported by shoal: its "
                        "SSHCluster starts when made; make it outside the event loop (or in "
                        "a thread: await asyncio.to_thread(SSHCluster, ...))")
    old = sorted(_OLD_SSH_KWARGS & set(kwargs))
    if old:
        raise TypeError(f"SSHCluster({', '.join(old)}=...): dask's old SSHCluster arguments "
                        "are not supported; pass hosts=[scheduler_host, worker_host, ...] and "
                        "worker_options={'nthreads': ..., 'n_workers': ...}")
    unknown = sorted(set(kwargs) - _SPEC_CLUSTER_KWARGS - {"asynchronous"})
    if unknown:
        raise TypeError(f"SSHCluster got unexpected keyword arguments {unknown}; it takes "
                        f"dask's: {sorted(_SPEC_CLUSTER_KWARGS | {'asynchronous'})}")


class SSHCluster:
    """A scheduler on ``hosts[0]`` and workers on each of ``hosts[1:]``, started over SSH with
    the system's OpenSSH client (``ssh`` must be on PATH; shoal installed on every host).

    Args:
        hosts: host names or addresses (a host may repeat; ``user@host`` works too).
        connect_options: asyncssh's names, translated to ``ssh`` options: ``username``,
            ``port``, ``client_keys``, ``known_hosts`` (None: no host key checking),
            ``config`` (an ssh_config file), ``connect_timeout`` (default: half of
            ``timeout``). One dict, or one per host.
        worker_options: ``nthreads``, ``n_workers``, ``memory_limit``, ``name``, ``host``,
            ``interface``, ``listen_address``, ``contact_address``, ``worker_port``,
            ``death_timeout``, ``resources`` (a dict or "GPU=1,MEM=1e9"),
            ``local_directory`` (``shoal worker``'s flags).
        scheduler_options: ``port`` (default 8786), ``host`` (default: every interface,
            reached at ``hosts[0]``), ``interface``, ``dashboard_address``, ``dashboard``,
            ``protocol`` (default: tls with certificates, else tcp).
        worker_class: only shoal's own worker ("distributed.Nanny", the default).
        remote_python: the Python (or a command prefix such as ``"env VAR=x python3"``)
            to run on the hosts; one string, or one per host (default: this Python's path).
        security: a :class:`shoal.Security` (``Security.temporary()``, or certificate
            files or PEM text; default: dask's config). Its ``token`` is the cluster's
            secret (default: ``SHOAL_TOKEN``, else a fresh random one). The token, the CA
            and each role's certificate and key (files are read here) reach each remote
            process over its session's input, never on a command line or in a lasting
            file (OpenSSL reads a key only from a file: it is written to a private 0600
            file for the moment of loading, then deleted); the scheduler and workers
            then listen on tls:// with mutual TLS, and ``Client(cluster)`` presents the
            client certificate.
        timeout: seconds to wait for the scheduler and each worker to start.
        kwargs: what dask passes on to its ``SpecCluster``: ``silence_logs``, ``loop``,
            ``shutdown_on_close``, ``scheduler_sync_interval``, ``shutdown_scheduler`` are
            accepted and have no use here (the remote processes' output is kept, see
            ``logs()``; shoal runs on its own loop; closing stops every process), and
            ``asynchronous`` only False.

    Raises:
        TypeError: a keyword dask's SSHCluster does not take, dask's old SSHCluster's
            (``scheduler_addr``...), or ``asynchronous=True``.
        ValueError: no hosts, an option that does not exist (the message lists those
            that do), or a certificate that cannot be read or is missing for a role.
        PerHostLengthError: a per-host list of the wrong length (a ValueError and, as in
            dask, a RuntimeError).
        RuntimeError: a process could not be started (one line: the host, and what ssh
            or shoal said).
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
        **kwargs: Any,
    ) -> None:
        _check_spec_cluster_kwargs(kwargs)
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
            raise PerHostLengthError(f"connect_options has {len(per_host)} entries for "
                                     f"{len(self.hosts)} hosts: give one dict, or one per host")
        # ssh's own connect timeout, so an unreachable host fails with ssh's reason
        wait = {"connect_timeout": max(1.0, timeout / 2)}
        self._ssh = [["ssh", *ssh_options({**wait, **o})] for o in per_host]
        pythons = ([remote_python] * len(self.hosts)
                   if remote_python is None or isinstance(remote_python, str)
                   else list(remote_python))
        if len(pythons) != len(self.hosts):
            raise PerHostLengthError(f"remote_python has {len(pythons)} entries for "
                                     f"{len(self.hosts)} hosts: give one, or one per host")
        self._pythons = [p or shlex.quote(sys.executable) for p in pythons]
        sched_opts = dict(scheduler_options or {})
        self._scheduler_host_given = "host" in sched_opts or "interface" in sched_opts
        if not self._scheduler_host_given:
            sched_opts["host"] = "0.0.0.0"
        sched_opts.setdefault("port", 8786)
        self._scheduler_args = _flags(sched_opts, _SCHEDULER_FLAGS, "scheduler_options")
        self._worker_args = _flags(dict(worker_options or {}), _WORKER_FLAGS, "worker_options")
        from shoal.comm._security import Security

        if security is None:
            security = Security()  # SHOAL_TOKEN, if set, is the token
        elif not isinstance(security, Security):
            raise TypeError(f"security must be a shoal.Security, got {type(security).__name__}")
        if not security.token:
            security.token = secrets.token_urlsafe(32)
        self.security = security  # Client(cluster) uses it
        self._secrets = {role: remote_settings(security, role)
                         for role in ("scheduler", "worker")}
        self.timeout = timeout
        self.scheduler_address = ""
        self.dashboard_link: str | None = None
        self._scheduler: _Remote | None = None
        self._workers: list[_Remote] = []
        self.status = Status.starting
        try:
            _loop.run_sync(self._start(), None)
        except BaseException:
            self.close()
            raise
        self.status = Status.running

    @property
    def token(self) -> str:
        """The cluster's secret, which clients present (also set as ``SHOAL_TOKEN``)."""
        return str(self.security.token)

    async def _start(self) -> None:
        self._scheduler = _Remote(self.hosts[0], "scheduler", self._scheduler_args,
                                  self._ssh[0], self._pythons[0])
        printed = await self._scheduler.start(self._secrets["scheduler"], "Scheduler at:",
                                              self.timeout)
        if self._scheduler_host_given:
            self.scheduler_address = printed
        else:  # bound everywhere: reach it by the name that reached its host
            scheme, port = printed.split("://", 1)[0], printed.rsplit(":", 1)[1]
            host = _address_host(self.hosts[0])
            self.scheduler_address = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        for line in self._scheduler.lines:
            if line.startswith("Dashboard at:"):
                self.dashboard_link = line.split(":", 1)[1].strip()
        self._workers = [
            _Remote(host, "worker", [self.scheduler_address, *self._worker_args], ssh, python)
            for host, ssh, python in zip(self.hosts[1:], self._ssh[1:], self._pythons[1:],
                                         strict=True)
        ]
        await asyncio.gather(*(w.start(self._secrets["worker"], "Started ", self.timeout)
                               for w in self._workers))

    async def _close(self) -> None:
        await asyncio.gather(*(w.close() for w in self._workers))
        if self._scheduler is not None:
            await self._scheduler.close()

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers, then the scheduler (by ending their SSH sessions)."""
        if self.status == "closed":
            return
        self.status = Status.closed
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
                f"workers={len(self.hosts) - 1}, status={self.status.value!r})")

