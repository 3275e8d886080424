"""Helpers shared by the integration tests: waiting on conditions, gating tasks, processes.

Nothing here sleeps "to let things settle": every wait polls a condition and fails with a
message once its deadline passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
from _waiting import wait_for

__all__ = ["Gate", "alive", "descendants", "gated", "process_tree", "scheduler_tasks", "wait_for"]


def scheduler_tasks(client: Any) -> Mapping[Any, Any]:
    """The seed's ``client.cluster.scheduler.tasks``, read afresh on every call.

    dask hands out its live dict; shoal may hand out a snapshot, so tests never hold on to it.
    """
    return client.cluster.scheduler.tasks


class Gate:
    """A file that tasks poll for: lets a test hold a task in 'processing' for as long as it needs.

    The fixture that creates it opens it at teardown, so no worker thread stays blocked.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def open(self) -> None:
        Path(self.path).touch()


def gated(path: str, value: object, timeout: float = 30) -> object:
    """Task body: block until the gate file at ``path`` exists (or ``timeout``), then return ``value``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} was never opened")
        time.sleep(0.005)
    return value


# multiprocessing starts these once per interpreter and keeps them until it exits; they are not
# part of any cluster, so they don't count as leftovers.
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (non-zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_cluster_process(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        command = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    return not any(helper in command for helper in _INTERPRETER_HELPERS)


def process_tree(pid: int) -> set[int]:
    """``pid`` and the PIDs of its live descendants (interpreter-wide helpers excluded)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    return {pid} | {p.pid for p in children if _is_cluster_process(p)}


def descendants() -> set[int]:
    """PIDs of the live processes this test process started (interpreter-wide helpers excluded)."""
    return {p.pid for p in psutil.Process().children(recursive=True) if _is_cluster_process(p)}
