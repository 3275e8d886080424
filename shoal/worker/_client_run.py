"""``client.run`` on a worker: the function runs on a daemon thread of its own (an async
one on the worker's loop), and its outcome goes back to the caller as a ``Response``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import Any

from shoal.comm import Connection
from shoal.protocol._messages import Response, Run
from shoal.protocol._serialize import dumps
from shoal.worker._execute import imports_ready, unpickle
from shoal.worker._worker_base import WorkerBase

logger = logging.getLogger("shoal.worker")


class ClientRunMixin(WorkerBase):
    """Running the functions ``client.run`` sends."""

    async def _run_function(self, conn: Connection, msg: Run) -> None:
        """``client.run``: the function runs on a daemon thread of its own, so one that never
        returns neither holds a pool thread nor keeps the process from exiting; if the
        worker closes first, the caller gets an error instead of waiting forever. An async
        function is awaited on the worker's loop. ``dask_worker=`` is given this worker."""
        from shoal._run import in_background, inject
        from shoal.protocol._errors import exception_to_error

        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if not outcome.done():
                outcome.set_result((ok, value))

        def run() -> None:
            try:
                ok, value = True, fn()
            except BaseException as exc:  # reported to the caller, whatever it is
                ok, value = False, exc
            try:
                loop.call_soon_threadsafe(deliver, ok, value)
            except RuntimeError:  # the loop closed: the worker is gone, nobody to answer
                logger.info("worker %s: client.run finished after the worker closed",
                            self.address)

        fn: Any = None
        if not imports_ready.is_set():
            # Like a task: unpickling may import modules that import dask, never at the same
            # time as the start-up thread does (it always ends by setting the flag).
            await asyncio.to_thread(imports_ready.wait)
        try:
            fn = inject(unpickle(msg.function), "dask_worker", self)
        except BaseException as exc:
            deliver(False, exc)
        else:
            if inspect.iscoroutinefunction(fn):
                # An async function runs on this loop (dask's rule); without ``wait`` nobody
                # waits for it: it is a task of the worker, cancelled when it closes.
                if not msg.wait:
                    # Started after the answer is queued (below), so the answer leaves
                    # first: a function that ends this process (dask's chaos idiom) must
                    # not take the caller's None with it.
                    loop.call_soon(self._spawn, in_background(fn, f"worker {self.address}"))
                    deliver(True, None)
                else:
                    self._spawn(self._await_run(fn, deliver))
            else:
                threading.Thread(target=run, name=f"shoal-run-{msg.request_id}",
                                 daemon=True).start()
        try:
            ok, value = await outcome
        except asyncio.CancelledError:
            gone = RuntimeError(f"worker {self.address} closed while the function given to "
                                "client.run was still running")
            conn.send(Response(msg.request_id, False,
                               exception_to_error(gone, None, "run", self.address, time.time())))
            raise
        if ok:
            try:
                value = dumps(value)
            except Exception as exc:
                ok, value = False, exc
        if not ok:
            value = exception_to_error(value, value.__traceback__, "run", self.address, time.time())
        conn.send(Response(msg.request_id, ok, value))

    @staticmethod
    async def _await_run(function: Any, deliver: Any) -> None:
        try:
            value = await function()
        except Exception as exc:
            deliver(False, exc)
        else:
            deliver(True, value)
