"""``shoal scheduler`` / ``shoal worker`` flags dask's commands have: parsing, help text and
the refusals (no process is started: the commands' mains are replaced)."""

from __future__ import annotations

import os

import pytest

from shoal import __version__
from shoal.cluster import cli
from shoal.scheduler import build


@pytest.fixture(autouse=True)
def started(monkeypatch):
    """The arguments the commands' mains were called with (no main really runs)."""
    got: list = []
    monkeypatch.setattr(cli, "scheduler_main", lambda args: got.append(args) or 0)
    monkeypatch.setattr(cli, "worker_main", lambda args: got.append(args) or 0)
    return got


@pytest.fixture
def parsed(started):
    """Run ``cli.main(argv)`` up to the command's main; returns the parsed arguments."""
    got = started

    def parse(argv):
        assert cli.main(argv) == 0
        return got.pop()

    return parse


def _fails(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["scheduler"], ["worker"]])
def test_version_is_printed_by_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"shoal {__version__} (scheduler state machine: {build()})"


def test_worker_help_lists_the_deployment_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    text = capsys.readouterr().out
    for flag in ("--lifetime ", "--lifetime-stagger", "--lifetime-restart", "--no-lifetime-restart",
                 "--preload ", "--preload-nanny", "--no-nanny", "--pid-file", "--protocol",
                 "--version", "distributed.worker.lifetime.duration",
                 "distributed.worker.preload", "distributed.nanny.preload"):
        assert flag in text, flag


def test_scheduler_help_lists_the_deployment_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["scheduler", "--help"])
    text = capsys.readouterr().out
    for flag in ("--preload ", "--idle-timeout", "--pid-file", "--version",
                 "distributed.scheduler.idle-timeout", "distributed.scheduler.preload"):
        assert flag in text, flag


def test_worker_lifetime_flags_are_durations(parsed):
    args = parsed(["worker", "tcp://h:8786", "--lifetime", "1 hour", "--lifetime-stagger", "5m",
                   "--lifetime-restart"])
    assert (args.lifetime, args.lifetime_stagger, args.lifetime_restart) == (3600.0, 300.0, True)
    args = parsed(["worker", "tcp://h:8786", "--no-lifetime-restart"])
    assert (args.lifetime, args.lifetime_stagger, args.lifetime_restart) == (None, None, False)
    args = parsed(["worker", "tcp://h:8786"])
    assert args.lifetime_restart is None  # dask's config decides


def test_a_lifetime_that_is_not_a_duration_is_refused(capsys):
    assert "'soon' is not a duration" in _fails(["worker", "tcp://h:8786", "--lifetime", "soon"],
                                                capsys)


def test_preload_flags_repeat_and_unknown_arguments_become_the_preload_argv(parsed):
    args = parsed(["worker", "tcp://h:8786", "--preload", "a.py", "--preload", "b",
                   "--preload-nanny", "n.py", "--vector", "3"])
    assert args.preload == ["a.py", "b"]
    assert args.preload_nanny == ["n.py"]
    assert args.preload_argv == ["--vector", "3"]
    args = parsed(["scheduler", "--preload", "s.py", "--port", "0", "--flag"])
    assert (args.preload, args.port, args.preload_argv) == (["s.py"], 0, ["--flag"])


def test_unknown_arguments_without_a_preload_are_refused(capsys):
    err = _fails(["worker", "tcp://h:8786", "--bogus-flag", "2"], capsys)
    assert "unrecognized arguments: --bogus-flag 2" in err
    assert "--preload" in err


def test_no_nanny_and_the_nanny_flag(parsed):
    assert parsed(["worker", "tcp://h:8786"]).nanny is True
    assert parsed(["worker", "tcp://h:8786", "--no-nanny"]).nanny is False
    assert parsed(["worker", "tcp://h:8786", "--nanny"]).nanny is True


def test_lifetime_restart_without_a_nanny_is_refused(capsys):
    err = _fails(["worker", "tcp://h:8786", "--no-nanny", "--lifetime", "1", "--lifetime-restart"],
                 capsys)
    assert "--lifetime-restart needs a nanny" in err


def test_a_nanny_preload_without_a_nanny_is_refused(capsys):
    assert "--preload-nanny runs in the nanny" in _fails(
        ["worker", "tcp://h:8786", "--no-nanny", "--preload-nanny", "n.py"], capsys)


def test_a_worker_accepts_no_dashboard(parsed):
    assert parsed(["worker", "tcp://h:8786", "--no-dashboard"]).dashboard is False


def test_scheduler_idle_timeout_and_dashboard_flags(parsed):
    args = parsed(["scheduler", "--idle-timeout", "30 minutes", "--pid-file", "/tmp/x.pid"])
    assert (args.idle_timeout, args.pid_file) == (1800.0, "/tmp/x.pid")
    assert parsed(["scheduler"]).idle_timeout is None  # dask's config decides
    assert parsed(["scheduler", "--no-dashboard"]).no_dashboard is True
    assert parsed(["scheduler", "--dashboard"]).no_dashboard is False


def test_protocol_gives_a_bare_scheduler_address_its_scheme():
    assert cli._with_protocol("10.0.0.1:8786", "tls") == "tls://10.0.0.1:8786"
    assert cli._with_protocol("10.0.0.1:8786", "tcp://") == "tcp://10.0.0.1:8786"
    assert cli._with_protocol("tls://10.0.0.1:8786", "tls") == "tls://10.0.0.1:8786"
    assert cli._with_protocol("tcp://10.0.0.1:8786", None) == "tcp://10.0.0.1:8786"
    with pytest.raises(ValueError, match="speaks its scheduler's protocol"):
        cli._with_protocol("tcp://10.0.0.1:8786", "tls")


def test_a_pid_file_holds_the_pid_while_running_and_is_removed_after(tmp_path):
    path = tmp_path / "shoal.pid"
    with cli._pid_file(str(path)):
        assert path.read_text() == str(os.getpid())
    assert not path.exists()


def test_a_pid_file_another_process_took_over_is_left_alone(tmp_path):
    path = tmp_path / "shoal.pid"
    with cli._pid_file(str(path)):
        path.write_text("1")  # a second command started with the same --pid-file
    assert path.read_text() == "1"


@pytest.mark.parametrize("argv", [
    ["worker", "tcp://127.0.0.1:8786", "--nthread", "2"],
    ["scheduler", "--idle", "5"],
])
def test_abbreviated_flags_are_errors_as_in_dasks_commands(argv, capsys):
    # argparse would read ``--nthread 2`` as ``--nthreads 2``; dask's click commands refuse it.
    assert "unrecognized arguments" in _fails(argv, capsys)


# --- workers x threads, as dask's ``dask worker`` ---------------------------------------------


@pytest.mark.parametrize("nworkers, nthreads, cores, shape", [
    (None, 4, 8, (1, 4)),      # --nthreads alone: ONE worker process with N threads
    (None, 1, 8, (1, 1)),
    (None, 0, 8, (1, 8)),      # neither (dask's --nthreads 0): one worker, a thread per core
    ("2", 0, 8, (2, 4)),       # --nworkers alone: the cores shared out
    ("3", 2, 8, (3, 2)),
    ("-1", 0, 8, (8, 1)),      # negative: CPU_COUNT + 1 + nworkers
    ("-2", 3, 8, (7, 3)),
    ("auto", 0, 8, (4, 2)),    # dask's nprocesses_nthreads
    ("auto", 5, 4, (4, 1)),    # auto decides the threads too
    ("16", 0, 8, (16, 1)),     # never 0 threads
])
def test_worker_shape_follows_dask_worker(nworkers, nthreads, cores, shape):
    from shoal.cluster._cli_options import worker_shape

    assert worker_shape(nworkers, nthreads, cores) == shape


@pytest.mark.parametrize("nworkers", ["0", "-9", "two"])
def test_a_worker_count_that_starts_nothing_is_refused(nworkers):
    from shoal.cluster._cli_options import worker_shape

    with pytest.raises(ValueError, match="--nworkers"):
        worker_shape(nworkers, 0, 8)


# --- every option of dask's commands ----------------------------------------------------------

# A value for each dask option whose click default is empty (the default is used otherwise).
_SAMPLES = {
    "--host": "127.0.0.1", "--port": "8786", "--interface": "lo", "--protocol": "tcp",
    "--tls-ca-file": "ca.pem", "--tls-cert": "cert.pem", "--tls-key": "key.pem",
    "--dashboard-prefix": "/dask", "--use-xheaders": "true", "--pid-file": "x.pid",
    "--scheduler-file": "s.json", "--preload": "mod", "--idle-timeout": "1h",
    "--worker-port": "9000", "--nanny-port": "9001", "--listen-address": "tcp://127.0.0.1:9000",
    "--contact-address": "tcp://127.0.0.1:9000", "--nthreads": "2", "--nworkers": "1",
    "--name": "w", "--local-directory": "/tmp", "--resources": "GPU=1",
    "--death-timeout": "60", "--lifetime": "1h", "--lifetime-stagger": "5m",
    "--preload-nanny": "mod", "--scheduler-sni": "sched.example.org",
}
# Options shoal refuses (with a reason: tested below), in the form that is refused.
_REFUSED = {"--jupyter"}


def _dask_options(command):
    """(flag, value or None for a flag) for every option form of a dask click command."""
    import click

    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.is_flag:
            yield from ((flag, None) for flag in (*param.opts, *param.secondary_opts)
                        if flag != "--version")
            continue
        flag = max(param.opts, key=len)
        default = param.default if param.default not in (None, "", ()) else None
        value = _SAMPLES.get(flag, None if default is None else str(default))
        assert value is not None, f"no sample value for dask's {flag}: add one to _SAMPLES"
        yield flag, value


def _dask_command(name):
    if name == "scheduler":
        from distributed.cli.dask_scheduler import main
    else:
        from distributed.cli.dask_worker import main
    return main


@pytest.mark.parametrize("command", ["scheduler", "worker"])
def test_every_option_of_dasks_command_is_accepted(command, parsed, capsys, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = list(_dask_options(_dask_command(command)))
    assert len(options) > 15
    head = [command] + (["tcp://127.0.0.1:8786"] if command == "worker" else [])
    for flag, value in options:
        if flag in _REFUSED:
            continue
        argv = [*head, flag] if value is None else [*head, flag, value]
        if command == "worker" and flag == "--scheduler-file":
            argv = [command, flag, value]
        parsed(argv)  # accepted: the command's main was reached
    capsys.readouterr()


@pytest.mark.parametrize("argv, why", [
    (["scheduler", "--jupyter"], "Jupyter"),
    (["scheduler", "--protocol", "ucx"], "tcp and tls only"),
    (["scheduler", "--protocol", "tcp,tls", "--port", "8786,8787"], "one protocol"),
    (["scheduler", "--port", "8786,8787"], "one port"),
    (["worker", "tcp://h:8786", "--protocol", "ucx"], "tcp and tls only"),
    (["worker", "tcp://h:8786", "--worker-class", "my.Worker"], "--worker-class my.Worker"),
])
def test_dask_options_shoal_cannot_honour_fail_with_the_reason(argv, why, capsys):
    assert why in _fails(argv, capsys)


@pytest.mark.parametrize("argv, option", [
    (["worker", "tcp://h:8786", "--dashboard-address", ":8788"], "--dashboard-address"),
    (["worker", "tcp://h:8786", "--dashboard"], "--dashboard"),
    (["worker", "tcp://h:8786", "--dashboard-prefix", "/w"], "--dashboard-prefix"),
    (["worker", "tcp://h:8786", "--nanny-port", "9000:9010"], "--nanny-port"),
    (["scheduler", "--show"], "--show"),
    (["scheduler", "--use-xheaders", "true"], "--use-xheaders"),
])
def test_dask_options_without_effect_warn_naming_the_option(argv, option, parsed, capsys):
    parsed(argv)
    err = capsys.readouterr().err
    assert f"{option} has no effect in shoal: " in err


def test_options_given_their_defaults_do_not_warn(parsed, capsys):
    parsed(["worker", "tcp://h:8786", "--no-dashboard", "--worker-class",
            "dask.distributed.Worker"])
    parsed(["scheduler", "--no-show", "--no-jupyter"])
    assert "no effect" not in capsys.readouterr().err


def test_scheduler_host_may_carry_scheme_and_port(parsed):
    args = parsed(["scheduler", "--host", "tcp://127.0.0.2:8790"])
    assert (args.host, args.port, args.protocol) == ("127.0.0.2", 8790, "tcp")
    args = parsed(["scheduler", "--host", "127.0.0.2:8790", "--port", "8800"])
    assert (args.host, args.port) == ("127.0.0.2", 8800)  # --port wins, as dask's
    args = parsed(["scheduler", "--host", "tls://10.0.0.1"])
    assert (args.host, args.port, args.protocol) == ("10.0.0.1", 8786, "tls")
    assert parsed(["scheduler"]).port == 8786


def test_a_numeric_worker_name_is_an_int_as_in_dask(parsed):
    assert parsed(["worker", "tcp://h:8786", "--name", "3"]).name == 3
    assert parsed(["worker", "tcp://h:8786", "--name", "w3"]).name == "w3"


def test_the_worker_nworkers_accepts_auto_and_negative_counts(parsed, capsys):
    assert parsed(["worker", "tcp://h:8786", "--nworkers", "auto"]).nworkers == "auto"
    assert parsed(["worker", "tcp://h:8786", "--nworkers", "-1"]).nworkers == "-1"
    assert parsed(["worker", "tcp://h:8786", "--nthreads", "0"]).nthreads == 0


def test_a_worker_without_an_address_uses_dasks_scheduler_address(parsed):
    import dask

    # DASK_SCHEDULER_ADDRESS reaches dask's config as this key.
    with dask.config.set({"scheduler-address": "tcp://10.1.2.3:8786"}):
        assert parsed(["worker"]).scheduler == "tcp://10.1.2.3:8786"
        assert parsed(["worker", "tcp://h:8786"]).scheduler == "tcp://h:8786"


def test_scheduler_dashboard_prefix_is_parsed(parsed):
    assert parsed(["scheduler", "--dashboard-prefix", "dask"]).dashboard_prefix == "/dask"
    assert parsed(["scheduler"]).dashboard_prefix is None


def test_the_scheduler_prints_its_dashboard_before_its_address():
    lines = cli._started_lines("tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status",
                               "127.0.0.1")
    assert lines[:2] == ["Dashboard at: http://127.0.0.1:8787/status",
                         "Scheduler at: tcp://127.0.0.1:8786"]
    assert "--host 0.0.0.0" in lines[2]  # bound to loopback: says how to open it up
    assert cli._started_lines("tcp://10.0.0.5:8786", None, "0.0.0.0") == [
        "Scheduler at: tcp://10.0.0.5:8786"]


def test_a_worker_host_may_carry_scheme_and_port(parsed):
    args = parsed(["worker", "tcp://127.0.0.1:8786", "--host", "tcp://127.0.0.1:9005"])
    plan = cli._worker_addresses(args, "tcp://127.0.0.1:8786", 1)
    assert plan["host"] == "127.0.0.1" and plan["port"] in ("9005", "9005:9005")
    args = parsed(["worker", "tcp://127.0.0.1:8786", "--host", "127.0.0.1"])
    assert cli._worker_addresses(args, "tcp://127.0.0.1:8786", 1)["port"] == "0"


def test_the_scheduler_sni_reaches_the_workers(parsed):
    # sent by their TLS connections to the scheduler: tests/comm/test_tls_transfer.py
    args = parsed(["worker", "tls://h:8786", "--scheduler-sni", "sched.example.org"])
    assert args.scheduler_sni == "sched.example.org"
    worker = cli._worker_without_nanny(args, "tls://h:8786", 1, None, {}, None)
    assert worker.scheduler_sni == "sched.example.org"
