"""Which test first saw each child process of this test process.

A process left running is found late (the session's cluster checks at the very end), far from
the test that started it. After every test the root conftest records the child processes that
appeared during it, so a leftover can be named by its test.
"""

from __future__ import annotations

import time

import psutil

_first_seen: dict[int, str] = {}


def record(nodeid: str) -> None:
    """Attribute the child processes alive now and not seen before to the test ``nodeid``."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        _first_seen.setdefault(child.pid, nodeid)


# multiprocessing starts these once per interpreter and keeps them until it exits.
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def leftovers(grace: float) -> set[int]:
    """Child processes (interpreter-wide helpers aside) still alive after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:  # ends: none left, or the deadline
        left = set()
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            return set()
        for child in children:
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                command = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if not any(helper in command for helper in _INTERPRETER_HELPERS):
                left.add(child.pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def describe(pids: set[int]) -> str:
    """One line per PID: its command line and the test after which it was first seen alive."""
    lines = []
    for pid in sorted(pids):
        try:
            command = " ".join(psutil.Process(pid).cmdline())[:200]
        except psutil.Error:
            command = "(gone)"
        lines.append(f"pid {pid} first seen after {_first_seen.get(pid, '(unknown)')}: {command}")
    return "\n".join(lines)
