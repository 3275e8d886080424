"""How SSHCluster packages the cluster's credentials for the remote hosts: the token and each
role's TLS certificate and key travel over the SSH session's input, never on the command line
handed to ``ssh`` (tests/multihost/test_ssh_cluster.py runs them against real sshd)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from shoal import Client, Security, SSHCluster
from shoal.cluster._ssh import failure_reason, remote_settings
from shoal.comm._security import SECURITY_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent.parent


def _sent(env: dict[str, str]) -> dict[str, object]:
    return dict(json.loads(env[SECURITY_ENV]))


def test_each_role_is_sent_the_ca_and_only_its_own_certificate_and_key() -> None:
    security = Security(token="t0ken", tls_ca_file="CA\n", tls_scheduler_cert="SC\n",
                        tls_scheduler_key="SK\n", tls_worker_cert="WC\n", tls_worker_key="WK\n",
                        tls_client_cert="CC\n", tls_client_key="CK\n")
    scheduler = remote_settings(security, "scheduler")
    assert scheduler[TOKEN_ENV] == "t0ken"
    fields = _sent(scheduler)
    assert (fields["tls_ca_file"], fields["tls_scheduler_cert"], fields["tls_scheduler_key"]) \
        == ("CA\n", "SC\n", "SK\n")
    assert fields["require_encryption"] is True
    assert not any(fields[f] for f in ("tls_worker_cert", "tls_worker_key", "tls_client_cert",
                                       "tls_client_key"))
    worker = _sent(remote_settings(security, "worker"))
    assert (worker["tls_worker_cert"], worker["tls_worker_key"], worker["tls_client_cert"],
            worker["tls_client_key"]) == ("WC\n", "WK\n", "CC\n", "CK\n")
    assert not worker["tls_scheduler_key"] and not worker["tls_scheduler_cert"]


def test_certificate_files_are_read_here_and_sent_as_their_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    temporary = Security.temporary()
    paths = {}
    for field in ("tls_ca_file", "tls_worker_cert", "tls_worker_key"):
        paths[field] = tmp_path / f"{field}.pem"
        paths[field].write_text(str(getattr(temporary, field)))
    security = Security(token="t", **{f: str(p) for f, p in paths.items()})
    worker = _sent(remote_settings(security, "worker"))
    assert worker["tls_ca_file"] == temporary.tls_ca_file
    assert worker["tls_worker_key"] == temporary.tls_worker_key
    # A worker's tasks connect as clients with its worker certificate, as with --tls-cert.
    assert worker["tls_client_key"] == temporary.tls_worker_key
    # ...and what arrives builds a working mutual-TLS context on the remote side.
    monkeypatch.setenv(SECURITY_ENV, remote_settings(security, "worker")[SECURITY_ENV])
    assert Security.from_env().ssl_context("worker", server=True) is not None


def test_unreadable_or_missing_certificates_are_refused_before_connecting(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"security\.tls_ca_file: cannot read .*nope\.pem"):
        SSHCluster(["a", "b"], security=Security(tls_ca_file=str(missing), token="t"))
    with pytest.raises(ValueError, match=r"tls_scheduler_cert .*for the schedulers"):
        remote_settings(Security(tls_ca_file="CA\n", tls_worker_cert="W\n"), "scheduler")


def test_without_tls_only_the_token_is_sent() -> None:
    assert remote_settings(Security(token="t0ken"), "worker") == {TOKEN_ENV: "t0ken"}


@pytest.mark.parametrize(("status", "lines", "expected"), [
    (255, ["ssh: connect to host h port 22: Connection refused"],
     "could not start the scheduler on h over SSH (exit status 255): ssh: connect to host h "
     "port 22: Connection refused"),
    (255, ["root@h: Permission denied (publickey)."],
     "could not start the scheduler on h over SSH (exit status 255): root@h: Permission denied "
     "(publickey). Check connect_options' username and client_keys (or your ssh-agent)"),
    (127, ["bash: line 1: /opt/py: No such file or directory", ""],
     "could not start the scheduler on h over SSH (exit status 127): bash: line 1: /opt/py: "
     "No such file or directory. Check remote_python for that host"),
    (1, ["Traceback ...", "/usr/bin/python3: No module named shoal"],
     "could not start the scheduler on h over SSH (exit status 1): /usr/bin/python3: No "
     "module named shoal. Is shoal installed for remote_python on that host?"),
    (None, [], "could not start the scheduler on h over SSH: no 'Scheduler at:' line within "
     "5 s"),
])
def test_a_failed_start_is_one_line_naming_the_host(
    status: int | None, lines: list[str], expected: str,
) -> None:
    assert failure_reason("scheduler", "h", status, lines, "Scheduler at:", 5) == expected


FAKE_SSH = """#!{python}
# Records the argv ssh was given, then runs the remote command here, its input unchanged.
import json, os, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
os.execvp("sh", ["sh", "-c", sys.argv[-1]])
"""


def _command_lines() -> list[str]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    return lines


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_tls_cluster_gets_its_credentials_through_the_session_never_on_the_ssh_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable))
    (bin_dir / "ssh").chmod(stat.S_IRWXU)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    security = Security.temporary()
    python = f"env PYTHONPATH={ROOT} {sys.executable}"
    with SSHCluster(["127.0.0.1", "127.0.0.1"], worker_options={"nthreads": 1},
                    scheduler_options={"host": "127.0.0.1", "port": 0, "dashboard": False},
                    remote_python=python, security=security, timeout=30) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        secrets = [cluster.token, *str(security.tls_worker_key).splitlines()[1:-1]]
        running = _command_lines()
        assert not [line for line in running if any(s in line for s in secrets)]
        # Without a certificate the scheduler cannot be reached over tls://.
        with pytest.raises(ValueError, match="certificate"):
            Client(address, security=Security(token=cluster.token), timeout=5)

    argvs = [json.loads(line) for line in log.read_text().splitlines()]
    ssh = ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "127.0.0.1"]
    assert argvs == [
        [*ssh, f"{python} -m shoal.cluster._remote scheduler --host 127.0.0.1 --port 0 "
               "--no-dashboard"],
        [*ssh, f"{python} -m shoal.cluster._remote worker {address} --nthreads 1"],
    ]
