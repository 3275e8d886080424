"""The nanny's restart policy (``worker/_nanny_exits``): an exit status and what the worker
process declared on its intent pipe make one verdict; no process is started here."""

from __future__ import annotations

import signal

import pytest

from shoal.worker._nanny_exits import (
    EXIT_LIFETIME,
    EXIT_MEMORY,
    EXIT_PLUGIN_RESTART,
    EXIT_PRELOAD_FAILED,
    EXIT_RESTART,
    EXIT_SCHEDULER_GONE,
    MAX_RESTARTS_PER_MINUTE,
    Exit,
    failures_within_a_minute,
    read_exit,
)

KILLED = -signal.SIGKILL


@pytest.mark.parametrize(("code", "declared", "verdict"), [
    (EXIT_SCHEDULER_GONE, bytes([EXIT_SCHEDULER_GONE]), Exit.SCHEDULER_GONE),
    (EXIT_PRELOAD_FAILED, bytes([EXIT_PRELOAD_FAILED]), Exit.PRELOAD_FAILED),
    (EXIT_LIFETIME, bytes([EXIT_LIFETIME]), Exit.LIFETIME_OVER),
    (EXIT_RESTART, bytes([EXIT_RESTART]), Exit.RESTART),
    (EXIT_PLUGIN_RESTART, bytes([EXIT_PLUGIN_RESTART]), Exit.PLUGIN_RESTART),
    (KILLED, b"", Exit.UNASKED),
    (1, b"", Exit.UNASKED),
    (0, b"", Exit.UNASKED),
    (EXIT_MEMORY, bytes([EXIT_MEMORY]), Exit.UNASKED),
])
def test_a_declared_status_is_a_request_and_anything_else_is_unasked(code, declared, verdict):
    assert read_exit(code, declared) == (verdict, False)


@pytest.mark.parametrize("code", [EXIT_SCHEDULER_GONE, EXIT_RESTART, EXIT_LIFETIME])
def test_a_request_status_the_worker_did_not_declare_is_a_crash(code):
    # a task calling os._exit(5) is not client.restart
    assert read_exit(code, b"") == (Exit.UNASKED, True)
    assert read_exit(code, bytes([EXIT_MEMORY])) == (Exit.UNASKED, True)


@pytest.mark.parametrize("code", [KILLED, 1, 0, EXIT_MEMORY, EXIT_SCHEDULER_GONE])
def test_a_worker_dying_during_its_end_of_lifetime_retirement_ends_its_lifetime(code):
    # It declared its lifetime over as its retirement began: whatever ends the process then
    # (a kill, a crash, its memory), the lifetime's retirement is what ended it, and
    # lifetime_restart brings a fresh one (the scheduler, asked, would say "retired").
    declared = bytes([EXIT_LIFETIME]) if code != EXIT_MEMORY else bytes([EXIT_LIFETIME, EXIT_MEMORY])
    assert read_exit(code, declared) == (Exit.LIFETIME_OVER, False)


def test_a_request_declared_after_the_lifetime_ended_is_honoured():
    declared = bytes([EXIT_LIFETIME, EXIT_PLUGIN_RESTART])
    assert read_exit(EXIT_PLUGIN_RESTART, declared) == (Exit.PLUGIN_RESTART, False)
    declared = bytes([EXIT_LIFETIME, EXIT_RESTART])
    assert read_exit(EXIT_RESTART, declared) == (Exit.RESTART, False)


def test_failures_older_than_a_minute_leave_the_budget():
    restarts: list[float] = []
    for i in range(MAX_RESTARTS_PER_MINUTE):
        restarts = failures_within_a_minute(restarts, 100.0 + i)
    assert len(restarts) == MAX_RESTARTS_PER_MINUTE
    assert len(failures_within_a_minute(restarts, 110.0)) == MAX_RESTARTS_PER_MINUTE + 1
    assert failures_within_a_minute(restarts, 168.5) == [109.0, 168.5]
