"""SSHCluster against real OpenSSH servers: an ``sshd`` (Debian's openssh-server) in each of
the scheduler's and workers' hosts, with a throwaway host key and user key made by the test
and a config file of its own (the machine's ssh configuration is not read or touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _waiting import wait_for

from ._netns import HERE, ROOT, Network, _ip

SSHD = "/usr/sbin/sshd"
SSH_HOSTS = ("sched", "w1", "w2")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shoal-test",
                    "-f", str(path)], check=True, timeout=30)


def _start_sshd(net: Network, keys: Path) -> None:
    # sshd's privilege-separation directory (made by the package's service scripts, which
    # do not run in containers); compiled into sshd, so it cannot be moved elsewhere.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    for host in SSH_HOSTS:
        config = keys / f"sshd_config.{host}"
        config.write_text(
            f"ListenAddress {net.ip(host)}:22\n"
            f"HostKey {keys / 'host_key'}\n"
            f"PidFile {keys / f'sshd.{host}.pid'}\n"
            f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "LogLevel VERBOSE\n"
        )
        # Without the run's SHOAL_TOKEN: only SSHCluster may bring it to the sessions.
        proc = net.spawn(host, [SSHD, "-D", "-e", "-f", str(config)], env={"SHOAL_TOKEN": None})
        wait_for(lambda p=proc: "Server listening on" in p.output() or p.popen.poll() is not None,
                 timeout=20, interval=0.05)
        assert proc.popen.poll() is None, proc.output()


def _namespace_commands(net: Network, host: str) -> dict[int, str]:
    out = {}
    for pid in _ip("netns", "pids", net.ns(host), check=False).stdout.split():
        try:
            out[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return out


def _all_command_lines() -> list[str]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    return lines


def test_ssh_cluster_starts_a_scheduler_and_workers_over_ssh_and_passes_the_secret_unseen(
    net: Network, tmp_path: Path,
) -> None:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.skip(f"needs OpenSSH's server ({SSHD}) and client; `make test` installs them")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    _keygen(keys / "host_key")
    _keygen(keys / "user_key")
    (keys / "authorized_keys").write_text((keys / "user_key.pub").read_text())
    host_key = (keys / "host_key.pub").read_text().split()
    (keys / "known_hosts").write_text(
        "".join(f"{net.ip(h)} {host_key[0]} {host_key[1]}\n" for h in SSH_HOSTS))
    (keys / "ssh_config").write_text("")  # so ~/.ssh/config is not read
    _start_sshd(net, keys)

    # No SHOAL_TOKEN here: the cluster makes up its secret, and Client(cluster) presents it.
    client = net.agent("cli", env={"SHOAL_TOKEN": None})
    python = f"env PYTHONPATH={ROOT}:{HERE} {sys.executable}"
    hosts = [net.ip(h) for h in SSH_HOSTS]
    client.call(f"""
from shoal import Client, SSHCluster
import _tasks
options = {{"username": "root", "client_keys": [{str(keys / 'user_key')!r}],
           "known_hosts": {str(keys / 'known_hosts')!r},
           "config": {str(keys / 'ssh_config')!r}, "connect_timeout": 10}}
0
""")
    refused = client.call(f"""
try:
    SSHCluster({hosts!r}, connect_options={{**options, "port": 2222}}, remote_python={python!r})
except RuntimeError as exc:
    message = str(exc)
message
""")
    assert f"could not start the scheduler on {net.ip('sched')} over SSH" in refused
    assert "Connection refused" in refused
    workers = client.call(f"""
cluster = SSHCluster(
    {hosts!r},
    connect_options=options,
    worker_options={{"nthreads": 1, "n_workers": 1}},
    scheduler_options={{"port": 8786, "dashboard": False}},
    remote_python={python!r},
)
client = Client(cluster)
client.wait_for_workers(2, timeout=60)
sorted(client.scheduler_info()["workers"])
""", timeout=120)
    assert client.call("cluster.scheduler_address") == f"tcp://{net.ip('sched')}:8786"
    assert [w.split("//")[1].rsplit(":", 1)[0] for w in workers] == [net.ip("w1"), net.ip("w2")]
    assert client.call("client.submit(_tasks.slow_inc, 1, 0.0).result(timeout=30)") == 2
    ran_on = client.call("""
sorted(client.gather([client.submit(_tasks.where, i, workers=[w], pure=False)
                      for i, w in enumerate(sorted(client.scheduler_info()["workers"]))]))
""")
    assert ran_on == [net.ip("w1"), net.ip("w2")]

    # The secret reached the remote hosts over the sessions' input (sshd passes no client
    # environment here): the worker processes the remote `shoal worker` started carry it...
    token = client.call("cluster.token")
    assert len(token) >= 32
    started = [pid for pid, cmd in _namespace_commands(net, "w1").items()
               if "-m shoal.worker" in cmd]
    assert started, _namespace_commands(net, "w1")
    environ = Path(f"/proc/{started[0]}/environ").read_bytes().split(b"\0")
    assert f"SHOAL_TOKEN={token}".encode() in environ
    # ...but no command line on this machine, where the "remote" hosts run too, shows it.
    assert not [line for line in _all_command_lines() if token in line]

    client.call("client.close(); cluster.close(); 0", timeout=60)

    def remote_processes_gone() -> bool:
        return not any("shoal" in cmd for h in SSH_HOSTS
                       for cmd in _namespace_commands(net, h).values())

    wait_for(remote_processes_gone, timeout=30, interval=0.1)
