"""Which test first saw each child process of this test process.

A process left running is found late (the session's cluster checks at the very end), far from
the test that started it. After every test the root conftest records the child processes that
appeared during it, so a leftover can be named by its test.
"""

from __future__ import annotations

import os
import time

import psutil

_first_seen: dict[int, str] = {}


def _descendants_from_proc() -> list[int] | None:
    """This process's descendants from Linux's ``/proc/PID/task/TID/children`` files (a
    few reads, ~0.2 ms), or None where there are none to read. psutil's
    ``children(recursive=True)`` reads every process's stat file on the machine instead
    (3-4 ms a call with ~100 processes), and ``record`` runs after every test."""
    found: list[int] = []
    todo = [os.getpid()]
    while todo:  # ends: the process tree is finite (a PID is met once: one parent each)
        pid = todo.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == os.getpid():
                return None  # no /proc (not Linux)
            continue  # ended meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(p) for p in f.read().split()]
            except FileNotFoundError:
                if pid == os.getpid() and not os.path.exists(f"/proc/{pid}/task/{tid}"):
                    continue  # the thread ended meanwhile
                if pid == os.getpid():
                    return None  # a kernel without the children files
                continue
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def record(nodeid: str) -> None:
    """Attribute the child processes alive now and not seen before to the test ``nodeid``."""
    pids = _descendants_from_proc()
    if pids is None:
        try:
            pids = [child.pid for child in psutil.Process().children(recursive=True)]
        except psutil.Error:
            return
    for pid in pids:
        _first_seen.setdefault(pid, nodeid)


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
