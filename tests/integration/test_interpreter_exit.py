"""A script that uses a Client exits cleanly: status 0, no shoal thread still running when the
interpreter finalises, and quickly even when the user forgot to close the client.

The defect these pin: shoal's loop thread was a daemon thread asked to stop at exit but never
waited for; uvloop's wake-up then ran on that thread after the interpreter was finalised and
crashed the process (status 139, most often under real-time priority, where the main thread
finalises before the loop thread is scheduled)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

# The report runs after shoal's own exit hook (hooks run last-registered first, and this one is
# registered before shoal is imported), so it sees what shoal leaves for finalisation.
_SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time

    def report():
        left = [t.name for t in threading.enumerate() if t.name.startswith("shoal-")]
        took = time.monotonic() - END
        sys.stdout.write("shoal threads at exit: %r\\nexit took %.3f s\\n" % (left, took))
        sys.stdout.flush()

    atexit.register(report)

    import shoal

    def inc(x):
        return x + 1

    if __name__ == "__main__":
        {body}
        END = time.monotonic()
    """
)

_WITH_CLOSE = """with shoal.Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        assert c.submit(inc, 1).result() == 2"""

_FORGOT_CLOSE = """c = shoal.Client(n_workers=2, threads_per_worker=1, dashboard_address=None)
    assert c.submit(inc, 1).result() == 2"""


def _command(path: str) -> list[str]:
    command = [sys.executable, path]
    if os.geteuid() == 0 and shutil.which("chrt"):  # real-time priority makes the race likely
        command = ["chrt", "-f", "10", *command]
    return command


def _run(tmp_path, body: str, timeout: float) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(_SCRIPT.format(body=body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONFAULTHANDLER="1")
    return subprocess.run(
        _command(str(path)), env=env, capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path,
    )


def _exit_took(stdout: str) -> float:
    return float(stdout.split("exit took ")[1].split()[0])


def test_a_script_using_a_client_exits_with_status_zero_and_no_shoal_thread_left(tmp_path):
    for run in range(12):
        done = _run(tmp_path, _WITH_CLOSE, timeout=120)
        assert done.returncode == 0, (run, done.returncode, done.stdout, done.stderr)
        assert "shoal threads at exit: []" in done.stdout, (run, done.stdout, done.stderr)


def test_a_script_that_forgets_to_close_its_client_still_exits_cleanly_and_promptly(tmp_path):
    for run in range(4):
        done = _run(tmp_path, _FORGOT_CLOSE, timeout=120)
        assert done.returncode == 0, (run, done.returncode, done.stdout, done.stderr)
        assert "shoal threads at exit: []" in done.stdout, (run, done.stdout, done.stderr)
        # Bounded, not fast: shoal's exit hook (closing the cluster it started, stopping its
        # loop) must not sit out a long timeout.
        assert _exit_took(done.stdout) < 15, (run, done.stdout)
