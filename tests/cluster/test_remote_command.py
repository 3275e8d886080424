"""The command SSHCluster runs on a remote host: secrets from its first input line only,
and it stops when its input (the SSH session) ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _remote(*args: str, stdin: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "shoal.cluster._remote", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_only_shoal_and_dask_variables_may_be_set_through_the_session() -> None:
    done = _remote("scheduler", stdin=json.dumps({"LD_PRELOAD": "/tmp/x.so"}) + "\n")
    assert done.returncode != 0
    assert "refusing to set 'LD_PRELOAD'" in done.stderr


def test_input_that_ends_before_the_settings_is_refused() -> None:
    done = _remote("worker", "tcp://127.0.0.1:1", stdin="")
    assert done.returncode != 0
    assert "closed before the session's settings arrived" in done.stderr


def test_a_scheduler_stops_cleanly_when_its_session_input_ends() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cluster._remote", "scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"SHOAL_TOKEN": "t0ken"}) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("Scheduler at: tcp://127.0.0.1:")
        proc.stdin.close()  # the SSH session ends
        proc.wait(30)
        out, err = proc.stdout.read(), proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "t0ken" not in out + err


def test_input_ending_while_starting_stops_cleanly_too() -> None:
    done = _remote("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   stdin=json.dumps({"SHOAL_TOKEN": "t0ken"}) + "\n")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("role", ["demo", ""])
def test_only_scheduler_and_worker_run_remotely(role: str) -> None:
    done = _remote(*([role] if role else []), stdin="")
    assert done.returncode == 2 and "usage" in done.stderr
