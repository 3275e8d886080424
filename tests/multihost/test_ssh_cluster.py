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

from ._netns import HERE, ROOT, Agent, Network, _ip, skip_unless_required

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


@pytest.fixture
def keys(net: Network, tmp_path: Path) -> Path:
    """A directory of throwaway SSH keys, with an ``sshd`` running in each of SSH_HOSTS that
    accepts ``user_key``."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        skip_unless_required(
            f"needs OpenSSH's server ({SSHD}) and client; `make test` installs them")
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
    return keys


PYTHON = f"env PYTHONPATH={ROOT}:{HERE} {sys.executable}"  # the remote_python


def _ssh_client(net: Network, keys: Path) -> Agent:
    """An agent in the client host with ``options`` (connect_options for the sshds) and
    ``hosts`` defined; no SHOAL_TOKEN: the cluster makes up its secret."""
    client = net.agent("cli", env={"SHOAL_TOKEN": None})
    client.call(f"""
from shoal import Client, Security, SSHCluster
import _tasks
options = {{"username": "root", "client_keys": [{str(keys / 'user_key')!r}],
           "known_hosts": {str(keys / 'known_hosts')!r},
           "config": {str(keys / 'ssh_config')!r}, "connect_timeout": 10}}
hosts = {[net.ip(h) for h in SSH_HOSTS]!r}
0
""")
    return client


def test_ssh_cluster_starts_a_scheduler_and_workers_over_ssh_and_passes_the_secret_unseen(
    net: Network, keys: Path,
) -> None:
    # No SHOAL_TOKEN here: the cluster makes up its secret, and Client(cluster) presents it.
    client = _ssh_client(net, keys)
    python = PYTHON
    hosts = [net.ip(h) for h in SSH_HOSTS]
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


def _write_certificates(directory: Path) -> dict[str, str]:
    """A CA, and a certificate and key it signed for each role, as files readable only by
    their owner; returns ``Security``'s fields -> paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def signed(subject: str, key: ec.EllipticCurvePrivateKey, ca: bool,
               issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(name(subject))
                .issuer_name(name("shoal-test-ca")).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(issuer_key, hashes.SHA256()))

    def write(filename: str, data: bytes) -> str:
        path = directory / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    fields = {"tls_ca_file": write("ca.pem", signed("shoal-test-ca", ca_key, True, ca_key)
                                   .public_bytes(serialization.Encoding.PEM))}
    for role in ("scheduler", "worker", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        fields[f"tls_{role}_cert"] = write(f"{role}.pem", signed(role, key, False, ca_key)
                                           .public_bytes(serialization.Encoding.PEM))
        fields[f"tls_{role}_key"] = write(f"{role}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return fields


def test_ssh_cluster_over_tls_computes_across_hosts_and_refuses_clients_without_certificates(
    net: Network, keys: Path, tmp_path: Path,
) -> None:
    certs = _write_certificates(tmp_path / "certs")
    maker = _ssh_client(net, keys)
    workers = maker.call(f"""
cluster = SSHCluster(
    hosts, connect_options=options, worker_options={{"nthreads": 1, "n_workers": 1}},
    scheduler_options={{"port": 8786, "dashboard": False}}, remote_python={PYTHON!r},
    security=Security(**{certs!r}),
)
client = Client(cluster)
client.wait_for_workers(2, timeout=60)
sorted(client.scheduler_info()["workers"])
""", timeout=120)
    address = maker.call("cluster.scheduler_address")
    assert address == f"tls://{net.ip('sched')}:8786"
    assert [w.rsplit(":", 1)[0] for w in workers] == [f"tls://{net.ip('w1')}",
                                                      f"tls://{net.ip('w2')}"]
    token = maker.call("cluster.token")

    # Another client, holding only the CA, a client certificate and the token, computes a
    # graph whose second task fetches the first one's result from the other worker host.
    other = net.agent("cli", env={"SHOAL_TOKEN": token})
    n, records = other.call(f"""
from shoal import Client, Security
import _tasks
client = Client({address!r}, timeout=30, security=Security(
    tls_ca_file={certs['tls_ca_file']!r}, tls_client_cert={certs['tls_client_cert']!r},
    tls_client_key={certs['tls_client_key']!r}))
x = client.submit(_tasks.payload, 1_000_000, workers=[{workers[0]!r}])
y = client.submit(_tasks.length, x, workers=[{workers[1]!r}])
n = y.result(timeout=60)
[n, [(r["worker"], r["kind"]) for r in client._task_stream_since(0)[1] if r["key"] == x.key]]
""")
    assert n == 999_936
    assert [workers[1], "transfer"] in records and [workers[0], "compute"] in records

    # Without a certificate from the cluster's CA nobody gets in, token or not.
    refusals = other.call(f"""
import socket, ssl
from shoal import Security

def refusal(address, security):
    try:
        Client(address, timeout=5, security=security)
    except Exception as exc:
        return f"{{type(exc).__name__}}: {{exc}}"
    return "connected"

def raw_tls_without_certificate():
    ctx = ssl.create_default_context(cafile={certs['tls_ca_file']!r})
    ctx.check_hostname = False
    with socket.create_connection(({net.ip('sched')!r}, 8786), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"shoal")
                return f"read {{tls.recv(100)!r}}"
        except (ssl.SSLError, OSError) as exc:
            return f"{{type(exc).__name__}}: {{exc}}"

stranger = Security.temporary()
[
    refusal({address!r}, Security(token={token!r})),
    refusal({address!r}, Security(tls_ca_file={certs['tls_ca_file']!r}, token={token!r},
                                  tls_client_cert=stranger.tls_client_cert,
                                  tls_client_key=stranger.tls_client_key)),
    refusal({address.replace('tls://', 'tcp://')!r}, Security(token={token!r})),
    raw_tls_without_certificate(),
]
""", timeout=60)
    no_cert, wrong_ca, plain_tcp, raw = refusals
    assert "no TLS certificate is configured for the client" in no_cert
    # The scheduler ends the handshake of a certificate its CA did not sign...
    assert "closed during the handshake" in wrong_ca
    assert "closed during the handshake" in plain_tcp and plain_tcp.startswith("OSError")
    # ...and of one without a certificate, before a byte of shoal's protocol is answered.
    assert raw == "read b''" or "certificate" in raw, raw

    # The keys reached the hosts in memory: no command line shows any line of them.
    key_lines = [line for role in ("scheduler", "worker", "client")
                 for line in Path(certs[f"tls_{role}_key"]).read_text().splitlines()[1:-1]]
    assert not [cmd for cmd in _all_command_lines() if any(k in cmd for k in key_lines)]

    maker.call("client.close(); cluster.close(); 0", timeout=60)


def test_ssh_cluster_start_failures_are_one_line_naming_the_host_within_the_deadline(
    net: Network, keys: Path, tmp_path: Path,
) -> None:
    _keygen(tmp_path / "stranger_key")  # not in authorized_keys
    client = _ssh_client(net, keys)
    client.call(f"""
import time

def failure(hosts, options, python={PYTHON!r}, timeout=20):
    start = time.monotonic()
    try:
        SSHCluster(hosts, connect_options=options, remote_python=python, timeout=timeout,
                   scheduler_options={{"dashboard": False}})
    except RuntimeError as exc:
        return [str(exc), time.monotonic() - start]
    return ["started", 0]
0
""")
    absent = "10.213.0.99"  # in the subnet, but no host answers there
    cases = {
        "bad key": ("hosts, {**options, 'client_keys': "
                    f"[{str(tmp_path / 'stranger_key')!r}]}}"),
        "no such python": "hosts, options, '/nonexistent/python3'",
        "unreachable scheduler host": f"[{absent!r}, *hosts[1:]], options, timeout=8",
        "unreachable worker host": f"[*hosts[:2], {absent!r}], options, timeout=8",
    }
    said = {case: client.call(f"failure({args})", timeout=60) for case, args in cases.items()}
    for case, (message, seconds) in said.items():
        assert "\n" not in message and seconds < 30, (case, message, seconds)
    sched = net.ip("sched")
    assert said["bad key"][0].startswith(
        f"could not start the scheduler on {sched} over SSH (exit status 255): ")
    assert "Permission denied (publickey)" in said["bad key"][0]
    assert said["no such python"][0].startswith(
        f"could not start the scheduler on {sched} over SSH (exit status 127): ")
    assert "/nonexistent/python3" in said["no such python"][0]
    assert said["unreachable scheduler host"][0].startswith(
        f"could not start the scheduler on {absent} over SSH")
    assert said["unreachable worker host"][0].startswith(
        f"could not start the worker on {absent} over SSH")

    # What did start (the scheduler, the first worker) was stopped again.
    def remote_processes_gone() -> bool:
        return not any("shoal" in cmd for h in SSH_HOSTS
                       for cmd in _namespace_commands(net, h).values())

    wait_for(remote_processes_gone, timeout=30, interval=0.1)
