"""The worker's statistical profiler (dask's ``distributed.worker.profile``): what it
samples and how it answers the scheduler's ``ProfileAsk``.

Owns: starting and stopping the worker's samplers (``shoal._profiler``), one for the task
threads (grouped by key prefix; idle while no task runs) and one for the worker's event
loop thread (``client.profile(server=True)``), and the answer to ``ProfileAsk``. Nothing
here runs per task: the sampler finds each thread's task by walking its frames.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from shoal._profiler import Sampler, loop_settings, loop_thread, task_threads
from shoal.comm import Connection
from shoal.protocol._messages import ProfileAsk, Response
from shoal.worker._execute import _UNPICKLE, imports_ready

if TYPE_CHECKING:
    from shoal.worker._server import Worker


class WorkerProfiler:
    """The two samplers of one worker; :meth:`close` stops both and waits for them."""

    def __init__(self, worker: Worker) -> None:
        def executor() -> Any:
            return worker._executor

        def busy() -> bool:
            ex = worker._executor
            return ex is not None and ex.executing > 0

        # Settings (dask's config) are read in the sampling threads, holding the worker's
        # import lock, once dask is imported: a worker process imports it in the background
        # after registering (a start-up cost it does not pay before), never from two
        # threads at once.
        def dask_imported() -> bool:
            return "dask.config" in sys.modules and imports_ready.is_set()

        self.tasks = Sampler(task_threads(executor), busy, name="shoal-profile-tasks",
                             lock=_UNPICKLE, ready=dask_imported)
        self.loop = Sampler(loop_thread(), settings=loop_settings, name="shoal-profile-loop",
                            lock=_UNPICKLE, ready=dask_imported)

    def close(self) -> None:
        self.tasks.close()
        self.loop.close()

    def answer(self, conn: Connection, msg: ProfileAsk) -> None:
        """Answer the tree; for the event loop (``server``), None while its sampling is off
        (``shoal.profile.event-loops``), so the client can say how to turn it on."""
        if msg.server:  # the loop runs no task: ``key`` does not apply (as in dask)
            loop = self.loop
            tree = None if loop.off else loop.profile(msg.start, msg.stop)
        else:
            tree = self.tasks.profile(msg.start, msg.stop, msg.key)
        conn.send(Response(msg.request_id, True, tree))
