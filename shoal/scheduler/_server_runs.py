"""Questions :class:`~shoal.scheduler._server.Scheduler` fans out to workers
(``client.run``, ``replicate``, ``rebalance``): one request id, answers gathered per worker,
a worker that leaves answering with an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.comm import Connection
from shoal.protocol._messages import Response, Run
from shoal.protocol._serialize import Serialized
from shoal.scheduler._server_base import ShellBase


class WorkerRuns(ShellBase):
    """Requests fanned out to workers and their answers."""

    # --- client.run ---------------------------------------------------------------------------

    def start_run(self, conn: Connection, function: Serialized, workers: list[Any] | None,
                  wait: bool = True) -> asyncio.Future[Any]:
        """``client.run``: on every worker, or on ``workers`` (addresses or names).

        Raises:
            ValueError: one of ``workers`` is not in the cluster (the message lists them).
        """
        from shoal.scheduler._membership import resolve_workers

        wanted = None if workers is None else set(resolve_workers(self, workers))  # type: ignore[arg-type]
        targets = [w for w in self._workers if wanted is None or w in wanted]
        return self.ask_workers(conn, {w: lambda rid: Run(rid, function, wait) for w in targets})

    def ask_workers(self, conn: Connection | None,
                    asks: dict[str, Any]) -> asyncio.Future[dict[str, tuple[bool, Any]]]:
        """Send each worker its message (``asks``: address -> ``build(request_id)``);
        resolves to ``{address: (ok, value)}`` once every one answered or left."""
        targets = [w for w in asks if w in self._workers]
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        results: dict[str, Any] = {}
        self._pending_runs[rid] = (conn, rid, results, set(targets))  # type: ignore[assignment]
        self._run_futures[rid] = fut
        if not targets:
            self._finish_run(rid)
            return fut
        for w in targets:
            self._workers[w].send(asks[w](rid))
        return fut

    def _on_run_response(self, address: str | None, msg: Response) -> None:
        entry = self._pending_runs.get(msg.request_id)
        if entry is None or address is None:
            return
        _, rid, results, waiting = entry
        results[address] = (msg.ok, msg.value)
        waiting.discard(address)
        if not waiting:
            self._finish_run(rid)

    def _fail_runs_for(self, address: str) -> None:
        for rid, (_, _, results, waiting) in list(self._pending_runs.items()):
            if address in waiting:
                waiting.discard(address)
                results[address] = (False, {"kind": "lost", "type": "CommClosedError",
                                            "message": f"worker {address} died during run",
                                            "exception": None, "traceback": None, "tb_text": ""})
                if not waiting:
                    self._finish_run(rid)

    def _finish_run(self, rid: int) -> None:
        _, _, results, _ = self._pending_runs.pop(rid)
        fut = self._run_futures.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(results)
