"""The scheduler's per-task message path, alone: messages in, events, state, commands out.

``python -m benchmarks._msgpath`` runs the real ``Scheduler`` shell in this process, with
one fake worker connection (what the scheduler sends it is encoded as for TCP) and one
fake client connection (in-process, nothing encoded, as a ``LocalCluster`` client). It
submits a map of ``--tasks`` no-op tasks, then answers every compute at once with its
result, as a worker would, through the real encoder and decoder, and lets the scheduler
handle those reports in its bounded steps. It prints the scheduler's CPU per task
(``time.process_time`` around the scheduler's part only: the fake worker's decoding and
encoding are not counted), with the collector off.

It uses the columnar messages when this checkout has them (``tasks_done``), so the same
script measures a checkout before them too: run it interleaved in both, e.g.
``PYTHONPATH=<checkout> python -m benchmarks._msgpath``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Sequence
from typing import Any

from shoal.comm._connection import Connection
from shoal.protocol import _messages as m
from shoal.protocol._framing import decode, encode
from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import ClientJoined
from shoal.scheduler._server import Scheduler

PAYLOAD = Serialized([b"\x80\x05K\x01."])


class _Worker(Connection):
    """What the scheduler sends the worker, encoded (frames without the length prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.peer = "w1"
        self.out: list[list[Any]] = []

    def _write_batch(self, batch: list[m.Message]) -> None:
        self.out.append(encode(batch)[1:])

    def _close(self) -> None:
        pass


class _Client(Connection):
    def __init__(self) -> None:
        super().__init__()
        self.peer = "c"
        self.received = 0

    def _write_batch(self, batch: list[m.Message]) -> None:
        self.received += len(batch)

    def _close(self) -> None:
        pass


def _answers(sent: list[list[Any]]) -> list[Any] | None:
    """The fake worker: every compute it was sent, done at once, as one wire batch."""
    rows = []
    for frames in sent:
        for msg in decode(frames):
            if isinstance(msg, m.Compute):
                rows.append(m.TaskDone(msg.key, 8, "int", 0.0, 0.0001, 1, None, msg.run))
            elif msg.tag == "computes-as-columns":
                for key, run in zip(msg.keys, msg.runs, strict=True):  # type: ignore[attr-defined]
                    rows.append(m.TaskDone(key, 8, "int", 0.0, 0.0001, 1, None, run))
    if not rows:
        return None
    batch: list[Any] = rows
    columns = getattr(m, "tasks_done", None)
    if columns is not None and len(rows) > 1:
        batch = [columns(rows)]
    return list(encode(batch)[1:])


def _graph(lo: int, hi: int) -> m.UpdateGraph:
    keys = [f"noop-{i}" for i in range(lo, hi)]
    rows: list[Any] = [(f"noop-{i}", PAYLOAD, [], [], (0, 1, i), 0, None, "noop")
                       for i in range(lo, hi)]
    return m.UpdateGraph(rows, keys, {})


async def _run(n: int) -> tuple[float, int]:
    sched = Scheduler()
    worker = _Worker()
    sched._on_worker_message(worker, [m.Register("w1", "w1", 1, 2**30, 1, "host")])
    client = _Client()
    client.info["name"] = "c"
    sched._clients["c"] = client
    sched._apply([ClientJoined("c")])

    async def answer_all() -> None:
        while True:
            frames = _answers(worker.out)
            worker.out = []
            if frames is None:
                return
            sched._on_worker_batch(worker, decode(frames))
            while "backlog" in worker.info:
                await asyncio.sleep(0)
            await asyncio.sleep(0)

    # Warm up: the prefix gets a measured duration, so the worker is sent deep batches.
    sched._on_client_message(client, [_graph(-200, 0)])
    await answer_all()
    sched._on_client_message(client, [m.ReleaseKeys([f"noop-{i}" for i in range(-200, 0)])])
    await asyncio.sleep(0)
    worker.out = []
    client.received = 0
    used = 0.0
    start = time.process_time()
    sched._on_client_message(client, [_graph(0, n)])
    await asyncio.sleep(0)
    used += time.process_time() - start
    while True:
        frames = _answers(worker.out)
        worker.out = []
        if frames is None:
            break
        start = time.process_time()
        sched._on_worker_batch(worker, decode(frames))
        while "backlog" in worker.info:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        used += time.process_time() - start
    unfinished = [k for k, ts in sched.state.tasks.items() if ts.state != "memory"]
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} tasks did not finish, e.g. {unfinished[:3]}")
    return used, client.received


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._msgpath")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    gc.disable()
    for _ in range(args.repeats):
        used, received = asyncio.run(_run(args.tasks))
        print(f"{used / args.tasks * 1e6:.2f} µs CPU/task (scheduler: decode, handle, encode); "
              f"{received} messages to the client")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
