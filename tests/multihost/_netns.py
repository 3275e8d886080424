"""Separate network hosts on one Linux machine: network namespaces joined by veth pairs and
a bridge, for tests of shoal across machines on real network stacks.

Layout of one ``Network`` (names unique per run: ``shmh<pid>x<hex>-<role>``):

    [sched 10.213.0.1]  [w1 10.213.0.2]  [w2 10.213.0.3]  [cli 10.213.0.4]
          eth0               eth0             eth0             eth0
            \\                  |                |                /
             +------- bridge "br0" in the switch namespace ------+

The 10.213.0.0/24 addresses exist only inside these namespaces: nothing in the machine's own
network namespace is touched or routed there. Processes run in a host with ``ip netns exec``;
``close()`` kills every process left in the namespaces and deletes them (deleting the switch
namespace deletes the veth pairs and the bridge).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBNET_PREFIX = "10.213.0"
HOSTS = ("sched", "w1", "w2", "cli")
_PREFIX = "shmh"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class Unavailable(Exception):
    """Network namespaces cannot be made here (the reason is the message)."""


REQUIRE_ENV = "SHOAL_REQUIRE_MULTIHOST"


def skip_unless_required(reason: str) -> None:
    """Skip the test for ``reason`` (this machine cannot run it), or fail it when
    ``SHOAL_REQUIRE_MULTIHOST=1`` says it must run (``make test`` as root, as in CI): there
    a missing tool is a broken set-up, not a reason to stop testing multi-host shoal."""
    import pytest

    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: these tests must run here)")
    pytest.skip(reason)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def check_available() -> None:
    """Raises:
        Unavailable: no ``ip`` command, or creating a namespace is not permitted."""
    if not sys.platform.startswith("linux"):
        raise Unavailable("network namespaces are Linux-only")
    if shutil.which("ip") is None:
        raise Unavailable("the `ip` command (iproute2) is not installed; `make test` installs it")
    probe = f"{_PREFIX}{os.getpid()}x{secrets.token_hex(3)}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        raise Unavailable(f"`ip netns add` is not permitted here ({made.stderr.strip()}); "
                          "these tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    _ip("netns", "del", probe, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces left by runs whose process is gone (a crashed or killed run):
    their names carry the creating pid. Returns the names deleted."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    removed = []
    for line in listed:
        name = line.split(" ", 1)[0]
        if not name.startswith(_PREFIX) or "x" not in name:
            continue
        pid_text = name[len(_PREFIX):].split("x", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_namespace_processes(ns: str) -> None:
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Process:
    """A process running in one host; its stdout and stderr go to a log file."""

    def __init__(self, net: Network, host: str, argv: Sequence[str], env: dict[str, str],
                 log: Path, pipes: bool = False) -> None:
        """``pipes``: stdin and stdout are pipes to the test (stderr alone goes to the log)."""
        self.host = host
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", net.ns(host), *argv], env=env,
            stdout=subprocess.PIPE if pipes else self._log_file,
            stderr=self._log_file if pipes else subprocess.STDOUT,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        )
        net.processes.append(self)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log_file.close()
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


class Agent:
    """A Python process in one host that runs the code the test sends it (a client on a
    machine of its own), answering each request with one JSON line."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.popen.stdout is not None
        for raw in self.proc.popen.stdout:
            self._lines.put(raw.decode())
        self._lines.put(None)

    def call(self, code: str, timeout: float = 60) -> Any:
        """Run ``code`` in the agent (its last line an expression whose value, JSON-able, is
        returned). Raises AssertionError with the remote traceback if it raised."""
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.write(json.dumps({"code": code}).encode() + b"\n")
        self.proc.popen.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"agent on {self.proc.host} gave no answer in {timeout} s to:\n"
                                 f"{code}\nits log:\n{self.proc.output()}") from None
        if line is None:
            raise AssertionError(f"agent on {self.proc.host} exited; its log:\n"
                                 f"{self.proc.output()}")
        reply = json.loads(line)
        if "error" in reply:
            raise AssertionError(f"agent on {self.proc.host} raised:\n{reply['error']}")
        return reply["value"]

    def close(self) -> None:
        if self.proc.popen.stdin is not None and self.proc.popen.poll() is None:
            try:
                self.proc.popen.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Network:
    """Four hosts on one bridge. Use as a context manager; see the module docstring."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.run_id = f"{_PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        self.workdir = workdir
        self.shared = workdir / "shared"  # "a shared file system", as on a cluster
        self.shared.mkdir(parents=True, exist_ok=True)
        self.processes: list[Process] = []
        self.token = secrets.token_hex(16)
        self.env = dict(os.environ)
        self.env.update({
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
            "SHOAL_TOKEN": self.token,
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env or {})
        self._made: list[str] = []
        self._counter = 0

    def ns(self, host: str) -> str:
        return f"{self.run_id}-{host}"

    def ip(self, host: str) -> str:
        return f"{SUBNET_PREFIX}.{HOSTS.index(host) + 1}"

    def __enter__(self) -> Network:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        switch = self.ns("switch")
        for ns in (switch, *(self.ns(h) for h in HOSTS)):
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for i, host in enumerate(HOSTS):
            # Both ends are born inside the namespaces: nothing appears in the machine's own.
            _ip("-n", switch, "link", "add", f"port{i}", "type", "veth",
                "peer", "name", "eth0", "netns", self.ns(host))
            _ip("-n", switch, "link", "set", f"port{i}", "master", "br0", "up")
            _ip("-n", self.ns(host), "addr", "add", f"{self.ip(host)}/24", "dev", "eth0")
            _ip("-n", self.ns(host), "link", "set", "eth0", "up")

    def add_address(self, host: str, address: str) -> None:
        """A second address on ``host``'s eth0 (inside the namespace's subnet)."""
        _ip("-n", self.ns(host), "addr", "add", f"{address}/24", "dev", "eth0")

    def link(self, host: str, up: bool) -> None:
        """Cut (or restore) ``host``'s cable: its switch port goes down, so frames to and
        from it are dropped while both ends keep their sockets, as in a partition."""
        port = f"port{HOSTS.index(host)}"
        _ip("-n", self.ns("switch"), "link", "set", port, "up" if up else "down")

    def spawn(self, host: str, argv: Sequence[str], env: dict[str, str | None] | None = None,
              pipes: bool = False) -> Process:
        self._counter += 1
        log = self.workdir / f"{self._counter:02d}-{host}-{Path(argv[-1]).name[:20]}.log"
        merged: dict[str, str | None] = dict(self.env)
        merged.update(env or {})
        full_env = {k: v for k, v in merged.items() if v is not None}  # None: unset it
        return Process(self, host, argv, full_env, log, pipes=pipes)

    def shoal(self, host: str, *args: str, env: dict[str, str | None] | None = None) -> Process:
        """``shoal ARGS`` in ``host``."""
        return self.spawn(host, [sys.executable, "-m", "shoal", *args], env=env)

    def agent(self, host: str, env: dict[str, str | None] | None = None) -> Agent:
        """A Python process in ``host`` that runs code the test sends (see :class:`Agent`)."""
        return Agent(self.spawn(host, [sys.executable, "-u", str(HERE / "_agent.py")], env=env,
                                pipes=True))

    def logs(self) -> str:
        parts = []
        for p in self.processes:
            parts.append(f"===== {p.log.name} (exit {p.popen.poll()}) =====\n{p.output()[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every process and delete every namespace this network made (also after a
        failure half-way through creating it)."""
        for p in reversed(self.processes):
            try:
                p.stop(timeout=5)
            except Exception as exc:  # keep cleaning up: the namespaces must go
                print(f"could not stop {p.log.name}: {exc!r}", file=sys.stderr)
        for ns in self._made:
            _kill_namespace_processes(ns)
        deadline = time.monotonic() + 10
        for ns in reversed(self._made):
            while _ip("netns", "del", ns, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    print(f"could not delete network namespace {ns}", file=sys.stderr)
                    break
                time.sleep(0.05)
        self._made = []
