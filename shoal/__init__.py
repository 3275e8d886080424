"""shoal: a fast, drop-in replacement for dask.distributed.

Change ``from dask.distributed import Client`` to ``from shoal import Client``.
Names are imported lazily so that worker processes start quickly.
"""

import typing as _typing

__version__ = "0.1.0"

_EXPORTS = {
    "Actor": "shoal.client._actor",
    "ActorFuture": "shoal.client._actor",
    "BaseActorFuture": "shoal.client._actor",
    "Client": "shoal.client._client",
    "default_client": "shoal.client._current",
    "get_client": "shoal.client._worker_client",
    "worker_client": "shoal.client._worker_client",
    "secede": "shoal.worker._context",
    "rejoin": "shoal.worker._context",
    "get_worker": "shoal.worker._context",
    "fire_and_forget": "shoal.client._fire_and_forget",
    "print": "shoal.worker._print",
    "warn": "shoal.worker._print",
    "Future": "shoal.client._future",
    "as_completed": "shoal.client._as_completed",
    "wait": "shoal.client._as_completed",
    "FIRST_COMPLETED": "shoal.client._as_completed",
    "ALL_COMPLETED": "shoal.client._as_completed",
    "FIRST_EXCEPTION": "shoal.client._as_completed",
    "futures_of": "shoal.client._structure",
    "LocalCluster": "shoal.cluster._local",
    "Adaptive": "shoal.cluster._adaptive",
    "Scheduler": "shoal.cluster._servers",
    "Worker": "shoal.cluster._servers",
    "Nanny": "shoal.cluster._servers",
    "SSHCluster": "shoal.cluster._ssh",
    "SpecCluster": "shoal.cluster._spec",
    "SubprocessCluster": "shoal.cluster._subprocess",
    "Security": "shoal.comm._security",
    "KilledWorker": "shoal.protocol._errors",
    "LostDataError": "shoal.protocol._errors",
    "RemoteError": "shoal.protocol._errors",
    "Reschedule": "shoal.protocol._errors",
    "CancelledError": "shoal.protocol._errors",
    "TimeoutError": "shoal.protocol._errors",
    "local_client": "shoal.client._worker_client",
    "FailureStory": "shoal.client._debug",
    "progress": "shoal.diagnostics",
    "performance_report": "shoal.diagnostics",
    "get_task_stream": "shoal.client._task_stream",
    "get_task_metadata": "shoal.client._task_metadata",
    "WorkerPlugin": "shoal._plugin",
    "SchedulerPlugin": "shoal._plugin",
    "NannyPlugin": "shoal._plugin",
    "UploadFile": "shoal._plugin",
    "UploadDirectory": "shoal._plugin",
    "Environ": "shoal._plugin",
    "PipInstall": "shoal._plugin",
    "InstallPlugin": "shoal._plugin",
    "CondaInstall": "shoal._plugin",
    "Lock": "shoal.client._locks",
    "MultiLock": "shoal.client._locks",
    "Semaphore": "shoal.client._locks",
    "Queue": "shoal.client._queue",
    "Variable": "shoal.client._variable",
    "Event": "shoal.client._event",
    "Status": "shoal._status",
    "sync": "shoal._sync",
    "CompatibleExecutor": "shoal.client._executor",
    "span": "shoal.client._spans",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        from shoal._not_offered import not_offered

        error = not_offered(name)  # dask's rpc, connect...: what to use instead
        if error is not None:
            raise error
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names and the submodules imported so far, as dir(distributed) shows its
    # own; not this module's helpers (_typing, _EXPORTS).
    return sorted({*_EXPORTS, *(k for k in globals() if not k.startswith("_")),
                   "__version__", "__all__"})


if _typing.TYPE_CHECKING:
    from shoal._plugin import CondaInstall as CondaInstall
    from shoal._plugin import Environ as Environ
    from shoal._plugin import InstallPlugin as InstallPlugin
    from shoal._plugin import NannyPlugin as NannyPlugin
    from shoal._plugin import PipInstall as PipInstall
    from shoal._plugin import SchedulerPlugin as SchedulerPlugin
    from shoal._plugin import UploadDirectory as UploadDirectory
    from shoal._plugin import UploadFile as UploadFile
    from shoal._plugin import WorkerPlugin as WorkerPlugin
    from shoal._status import Status as Status
    from shoal._sync import sync as sync
    from shoal.client._actor import Actor as Actor
    from shoal.client._actor import ActorFuture as ActorFuture
    from shoal.client._actor import BaseActorFuture as BaseActorFuture
    from shoal.client._as_completed import ALL_COMPLETED as ALL_COMPLETED
    from shoal.client._as_completed import FIRST_COMPLETED as FIRST_COMPLETED
    from shoal.client._as_completed import FIRST_EXCEPTION as FIRST_EXCEPTION
    from shoal.client._as_completed import as_completed as as_completed
    from shoal.client._as_completed import wait as wait
    from shoal.client._client import Client as Client
    from shoal.client._current import default_client as default_client
    from shoal.client._debug import FailureStory as FailureStory
    from shoal.client._event import Event as Event
    from shoal.client._executor import CompatibleExecutor as CompatibleExecutor
    from shoal.client._fire_and_forget import fire_and_forget as fire_and_forget
    from shoal.client._future import Future as Future
    from shoal.client._locks import Lock as Lock
    from shoal.client._locks import MultiLock as MultiLock
    from shoal.client._locks import Semaphore as Semaphore
    from shoal.client._queue import Queue as Queue
    from shoal.client._spans import span as span
    from shoal.client._structure import futures_of as futures_of
    from shoal.client._task_metadata import get_task_metadata as get_task_metadata
    from shoal.client._task_stream import get_task_stream as get_task_stream
    from shoal.client._variable import Variable as Variable
    from shoal.client._worker_client import get_client as get_client
    from shoal.client._worker_client import local_client as local_client
    from shoal.client._worker_client import worker_client as worker_client
    from shoal.cluster._adaptive import Adaptive as Adaptive
    from shoal.cluster._local import LocalCluster as LocalCluster
    from shoal.cluster._servers import Nanny as Nanny
    from shoal.cluster._servers import Scheduler as Scheduler
    from shoal.cluster._servers import Worker as Worker
    from shoal.cluster._spec import SpecCluster as SpecCluster
    from shoal.cluster._ssh import SSHCluster as SSHCluster
    from shoal.cluster._subprocess import SubprocessCluster as SubprocessCluster
    from shoal.comm._security import Security as Security
    from shoal.diagnostics import performance_report as performance_report
    from shoal.diagnostics import progress as progress
    from shoal.protocol._errors import CancelledError as CancelledError
    from shoal.protocol._errors import KilledWorker as KilledWorker
    from shoal.protocol._errors import LostDataError as LostDataError
    from shoal.protocol._errors import RemoteError as RemoteError
    from shoal.protocol._errors import Reschedule as Reschedule
    from shoal.protocol._errors import TimeoutError as TimeoutError
    from shoal.worker._context import get_worker as get_worker
    from shoal.worker._context import rejoin as rejoin
    from shoal.worker._context import secede as secede
    from shoal.worker._print import print as print
    from shoal.worker._print import warn as warn
