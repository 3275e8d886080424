"""SSHCluster's translation of dask's options into OpenSSH's and shoal's flags (no SSH
server needed; tests/multihost/test_ssh_cluster.py runs it against real ones)."""

from __future__ import annotations

import pytest

from shoal import SSHCluster
from shoal.cluster._ssh import _SCHEDULER_FLAGS, _WORKER_FLAGS, _flags, ssh_options
from shoal.cluster.cli import main


def test_asyncssh_names_become_openssh_options() -> None:
    args = ssh_options({"username": "ana", "port": 2222, "client_keys": ["/k1", "/k2"],
                        "known_hosts": "/kh", "config": "/cfg", "connect_timeout": 7.4})
    joined = " ".join(args)
    assert args[:3] == ["-T", "-o", "BatchMode=yes"]  # never prompts, never a terminal
    for expected in ("-l ana", "-p 2222", "-i /k1", "-i /k2", "-F /cfg",
                     "UserKnownHostsFile=/kh", "StrictHostKeyChecking=yes", "ConnectTimeout=7"):
        assert expected in joined


def test_known_hosts_none_turns_host_key_checking_off_as_in_asyncssh() -> None:
    joined = " ".join(ssh_options({"known_hosts": None}))
    assert "StrictHostKeyChecking=no" in joined and "UserKnownHostsFile=/dev/null" in joined


def test_passwords_and_unknown_options_are_refused_with_what_works() -> None:
    with pytest.raises(ValueError, match="does not send passwords"):
        ssh_options({"password": "x"})
    with pytest.raises(ValueError, match=r"\['agent_forwarding'\].*supported: username"):
        ssh_options({"agent_forwarding": True})


def test_every_option_maps_to_a_flag_the_cli_has(capsys: pytest.CaptureFixture[str]) -> None:
    for command, table in (("scheduler", _SCHEDULER_FLAGS), ("worker", _WORKER_FLAGS)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = capsys.readouterr().out
        for flag in table.values():
            assert flag in help_text, (command, flag)
    assert _flags({"dashboard": False, "port": 0}, _SCHEDULER_FLAGS, "scheduler_options") == [
        "--no-dashboard", "--port", "0"]
    with pytest.raises(ValueError, match=r"worker_options \['preload'\]"):
        _flags({"preload": ["x"]}, _WORKER_FLAGS, "worker_options")
    with pytest.raises(ValueError, match=r"worker_options \['dashboard'\]"):
        _flags({"dashboard": True}, _WORKER_FLAGS, "worker_options")  # workers serve none


@pytest.mark.parametrize(("args", "message"), [
    ((["one-host"],), "at least two hosts"),
    (("host1,host2",), "at least two hosts"),
    ((["a", "b"], [{}, {}, {}]), "3 entries for 2 hosts"),
    ((["a", "b"], None, None, None, "dask_cuda.CUDAWorker"), "worker_class"),
    ((["a", "b"], None, None, None, "distributed.Nanny", ["python3"]), "1 entries for 2"),
])
def test_ssh_cluster_refuses_bad_arguments_before_connecting(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SSHCluster(*args)


def test_ssh_cluster_refuses_a_security_that_is_not_one() -> None:
    with pytest.raises(TypeError, match=r"shoal\.Security"):
        SSHCluster(["a", "b"], security={"token": "t"})


def test_worker_resources_and_local_directory_become_shoal_worker_flags() -> None:
    # dask's worker_options give resources as a dict (Nanny's argument)
    assert _flags({"resources": {"GPU": 2, "MEM": 10e9}, "local_directory": "/scratch"},
                  _WORKER_FLAGS, "worker_options") == [
        "--resources", "GPU=2,MEM=10000000000.0", "--local-directory", "/scratch"]
    assert _flags({"resources": "GPU=1"}, _WORKER_FLAGS, "worker_options") == [
        "--resources", "GPU=1"]


@pytest.mark.parametrize("kwargs", [{"connect_options": [{}, {}, {}]},
                                    {"remote_python": ["python3"]}])
def test_a_per_host_list_of_the_wrong_length_raises_dasks_runtime_error(kwargs: dict) -> None:
    with pytest.raises(RuntimeError, match="for 2 hosts"):
        SSHCluster(["a", "b"], **kwargs)


def test_ssh_cluster_takes_dasks_spec_cluster_keywords_and_refuses_others_by_name() -> None:
    # dask forwards **kwargs to SpecCluster; the ones shoal has no use for are accepted
    # (the hosts are still checked first: no connection is tried here).
    with pytest.raises(ValueError, match="at least two hosts"):
        SSHCluster(["a"], silence_logs=False, shutdown_on_close=True, loop=None,
                   scheduler_sync_interval=1, shutdown_scheduler=True, asynchronous=False)
    with pytest.raises(TypeError, match="asynchronous=True"):
        SSHCluster(["a", "b"], asynchronous=True)
    with pytest.raises(TypeError, match=r"scheduler_addr.*hosts="):
        SSHCluster(["a", "b"], scheduler_addr="a")
    with pytest.raises(TypeError, match="no_such_option"):
        SSHCluster(["a", "b"], no_such_option=1)
