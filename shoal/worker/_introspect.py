"""What a worker tells about itself when the client asks: the call stacks of its running
tasks, its recent log records, its software versions and a dump of its state.

Owns: those answers, as functions ``client.run`` calls on the worker (importable, so they
travel by reference; ``dask_worker=`` is the worker). Nothing here runs per task: the
running tasks are found by walking the task threads' frames (``sys._current_frames``) down
to the executor's frame for the task, which names its key.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from types import FrameType
from typing import Any

from shoal import _logs


def _task_frames() -> dict[Any, FrameType]:
    """Key -> the innermost frame of each task running in this process: a thread whose
    stack goes through ``Executor._execute`` runs that call's ``cmd``."""
    from shoal.worker._execute import Executor

    execute_code = Executor._execute.__code__
    out: dict[Any, FrameType] = {}
    for frame in sys._current_frames().values():
        walk: FrameType | None = frame
        while walk is not None and walk.f_code is not execute_code:
            walk = walk.f_back
        if walk is not None:
            cmd = walk.f_locals.get("cmd")
            if cmd is not None:
                out[cmd.key] = frame
    return out


def _stack_of(frame: FrameType) -> list[str]:
    """The task's own frames (from the task's function down to the innermost), formatted
    like a traceback's lines."""
    from shoal.worker._execute import Executor

    execute_code = Executor._execute.__code__
    frames: list[FrameType] = []
    walk: FrameType | None = frame
    while walk is not None and walk.f_code is not execute_code:
        frames.append(walk)
        walk = walk.f_back
    frames.reverse()
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
    return summary.format()


def call_stacks(keys: list[Any] | None = None, dask_worker: Any = None) -> dict[Any, list[str]]:
    """Key -> the formatted call stack of each task running on this worker (only ``keys``
    when given); empty when none runs."""
    wanted = None if keys is None else set(keys)
    mine = _mine(dask_worker)
    return {key: _stack_of(frame) for key, frame in _task_frames().items()
            if (wanted is None or key in wanted) and (mine is None or key in mine)}


def _mine(worker: Any) -> set[Any] | None:
    """The keys this worker's state runs or waits to run: several in-process workers share
    one process's threads (None: no state to tell, keep every task)."""
    state = getattr(worker, "state", None)
    return None if state is None else set(state.tasks)


def worker_story(keys_or_stimuli: list[Any], dask_worker: Any = None) -> list[tuple[Any, ...]]:
    """The worker's story rows about these keys or stimulus ids (``client.story``)."""
    return [] if dask_worker is None else dask_worker.story(*keys_or_stimuli)


# A worker's ``story_length`` before dask's config is read (None is a length: no bound).
STORY_LENGTH_UNREAD: Any = object()


def story_length() -> int | None:
    """Story rows a worker keeps: dask's ``distributed.admin.low-level-log-length``
    (None: all). Imports dask: not before a worker process has (``follow_story_length``)."""
    from shoal._logs import low_level_log_length

    value = low_level_log_length(1000)
    return None if value is None else max(0, value)


async def follow_story_length(worker: Any) -> None:
    """Once the worker process has imported dask in the background, its state keeps the
    configured number of story rows (dask's default, 1,000, until then). A process that
    never imports dask (nothing of it configured, no task needing it) keeps the default:
    importing it only to read the length would cost every such start ~0.3 s of CPU."""
    from shoal.worker._execute import imports_ready

    if not imports_ready.is_set():
        await asyncio.to_thread(imports_ready.wait)  # ends: the import thread sets it
    if "dask" not in sys.modules:
        return
    worker.story_length = story_length()
    if worker.state is not None:
        worker.state.set_log_length(worker.story_length)


def worker_logs(n: int | None = None, dask_worker: Any = None) -> list[tuple[str, str]]:
    """The worker's last ``n`` log records (logger ``shoal.worker``), newest first."""
    return _logs.ring("shoal.worker", _logs.configured_length()).newest(
        n, _logs.configured_format())


def nanny_logs(n: int | None = None, dask_worker: Any = None) -> list[tuple[str, str]]:
    """The nannies' last ``n`` log records (logger ``shoal.nanny``), newest first."""
    return _logs.ring("shoal.nanny", _logs.configured_length()).newest(
        n, _logs.configured_format())


def versions(packages: list[str] | None = None) -> dict[str, dict[str, Any]]:
    from shoal._versions import get_versions

    return get_versions(packages)


def dump_state(dask_worker: Any = None) -> dict[str, Any]:
    """The worker's state as plain data (keys as text) for ``client.dump_cluster_state``."""
    worker = dask_worker
    state = getattr(worker, "state", None)
    out: dict[str, Any] = {
        "address": getattr(worker, "address", ""),
        "name": getattr(worker, "name", None),
        "nthreads": getattr(worker, "nthreads", None),
        "memory_limit": getattr(worker, "memory_limit", None),
        "paused": getattr(worker, "paused", False),
        "data": sorted(str(k) for k in list(getattr(worker, "data", {}))),
        "logs": worker_logs(100),
    }
    if state is not None:
        out.update({
            "tasks": {str(k): {"state": t.state, "dependencies": [str(d) for d in t.deps],
                               "missing": sorted(str(d) for d in t.missing)}
                      for k, t in list(state.tasks.items())},
            "held": {str(k): n for k, n in list(state.held.items())},
            "in_flight": {str(k): peer for k, peer in list(state.in_flight.items())},
            "bad_peers": sorted(state.bad_peers),
        })
    return out
