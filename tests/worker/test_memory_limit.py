"""memory_limit as dask reads it (``parse_memory_limit``): auto, sizes, fractions, none."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from shoal.cluster._sizing import parse_memory_limit

TOTAL = 16 * 10**9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (0, 0),
        ("0", 0),
        ("auto", TOTAL // 4),  # 1 thread of 4 cores
        ("4GB", 4 * 10**9),
        ("1GiB", 2**30),
        (0.5, TOTAL // 2),
        ("0.25", TOTAL // 4),
        (3 * 10**9, 3 * 10**9),
        ("100GB", TOTAL),  # never more than the machine has
    ],
)
def test_memory_limit_means_what_it_means_in_dask(value: object, expected: int) -> None:
    assert parse_memory_limit(value, 1, cores=4, total=TOTAL) == expected


def test_auto_gives_a_worker_its_share_of_the_cores() -> None:
    assert parse_memory_limit("auto", 2, cores=4, total=TOTAL) == TOTAL // 2
    assert parse_memory_limit("auto", 8, cores=4, total=TOTAL) == TOTAL


@pytest.mark.parametrize("value", ["lots", -1, [1], True])
def test_a_bad_memory_limit_says_what_is_accepted(value: object) -> None:
    with pytest.raises(ValueError, match="memory_limit"):
        parse_memory_limit(value, 1, cores=4, total=TOTAL)


def test_the_nanny_passes_dasks_memory_config_to_its_worker(tmp_path: object) -> None:
    import dask

    from shoal.worker._nanny import Nanny

    nanny = Nanny("tcp://127.0.0.1:1", memory_limit=10**9)
    with dask.config.set({"distributed.worker.memory.spill": False,
                          "distributed.worker.memory.terminate": False,
                          "distributed.worker.memory.spill-compression": None,
                          "temporary-directory": str(tmp_path)}):
        args = nanny._memory_args()
    assert args == ["--memory-target", "0.6", "--memory-spill", "false", "--memory-pause", "0.8",
                    "--memory-transfer", "0.1", "--memory-terminate", "false",
                    "--memory-spill-compression", "false",
                    "--memory-max-spill", "false",
                    "--memory-monitor-interval", "0.1", "--local-directory", str(tmp_path)]
    assert nanny.terminate_fraction == 0.0  # never kills for memory
    with dask.config.set({"distributed.worker.memory.max-spill": "2 kB"}):
        args = nanny._memory_args()
    assert args[args.index("--memory-max-spill") + 1] == "2000"


def test_local_directory_given_to_the_nanny_wins_over_the_config(tmp_path: object) -> None:
    from shoal.worker._nanny import Nanny

    nanny = Nanny("tcp://127.0.0.1:1", memory_limit=10**9, local_directory="/spill/here")
    assert nanny._memory_args()[-2:] == ["--local-directory", "/spill/here"]


def test_dasks_memory_monitor_interval_paces_the_worker_and_its_nanny() -> None:
    import dask

    from shoal.worker._memory_settings import NANNY_MONITOR_INTERVAL, configured_monitor_interval
    from shoal.worker._nanny import Nanny

    nanny = Nanny("tcp://127.0.0.1:1", memory_limit=10**9)
    with dask.config.set({"distributed.worker.memory.monitor-interval": "250ms"}):
        args = nanny._memory_args()
        assert configured_monitor_interval() == 0.25  # a worker without a nanny
    at = args.index("--memory-monitor-interval")
    assert args[at + 1] == "0.25" and nanny.monitor_interval == 0.25
    nanny._memory_args()  # not configured (or dask's shipped 100ms): the worker's 100 ms,
    assert nanny.monitor_interval == NANNY_MONITOR_INTERVAL  # the nanny's own pace
    with dask.config.set({"distributed.worker.memory.monitor-interval": "100ms"}):
        nanny._memory_args()
    assert nanny.monitor_interval == NANNY_MONITOR_INTERVAL


_PAST_TERMINATE = """
import os, signal, time
signal.signal(signal.SIGUSR1, {handler})
print("ready", flush=True)
time.sleep(60)
"""


async def _watch_past_terminate(nanny: Any, handler: str,
                                started: Any = None) -> tuple[int, float]:
    """Start a process past ``nanny``'s terminate threshold whose SIGUSR1 handler is
    ``handler``, let the nanny watch it: its exit code and the seconds the watch took."""
    import asyncio
    import sys
    import time

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PAST_TERMINATE.format(handler=handler),
        stdout=asyncio.subprocess.PIPE)
    if started is not None:
        started(proc)
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 30)  # its handler is in place
    start = time.monotonic()
    try:
        code = await asyncio.wait_for(nanny._watch(proc), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    return code, time.monotonic() - start


@pytest.mark.parametrize(
    ("handler", "expected"),
    [("lambda *a: os._exit(8)", 8),  # a worker: tells the scheduler why, exits at once
     ("signal.SIG_IGN", -signal.SIGKILL)],  # one that does not: killed after the grace
)
def test_a_worker_past_terminate_is_warned_then_killed_after_the_grace(
    handler: str, expected: int
) -> None:
    import asyncio

    from shoal.worker._nanny import Nanny
    from shoal.worker._nanny_watch import MEMORY_KILL_GRACE

    nanny = Nanny("tcp://127.0.0.1:1", memory_limit=1)  # any process is past it
    nanny.terminate_fraction, nanny.monitor_interval = 0.95, 0.01

    code, took = asyncio.run(_watch_past_terminate(nanny, handler))
    assert code == expected
    if expected == -signal.SIGKILL:
        assert took >= MEMORY_KILL_GRACE


def test_a_nanny_tells_the_scheduler_why_before_it_kills_a_worker_that_cannot() -> None:
    """A worker too busy to answer SIGUSR1 (a task holding the GIL) never told the
    scheduler it was killed for memory: its KilledWorker said nothing of memory. The
    nanny, which measured it, says so itself, and kills only once the scheduler noted it."""
    import asyncio

    from shoal.comm import listen
    from shoal.protocol._messages import Hello, Message, NannyMemoryTerminated, Response
    from shoal.worker._nanny import Nanny
    from shoal.worker._nanny_watch import MEMORY_KILL_GRACE

    heard: list[tuple[Message, bool]] = []  # (message, the worker still alive)
    answer_after = MEMORY_KILL_GRACE + 0.3

    async def main() -> tuple[int, float]:
        procs: list[Any] = []

        def accept(conn: Any) -> None:
            def on_batch(c: Any, msgs: list[Message] | None) -> None:
                for msg in msgs or ():
                    heard.append((msg, procs[0].returncode is None))
                    if isinstance(msg, NannyMemoryTerminated):
                        asyncio.get_running_loop().call_later(
                            answer_after, c.send, Response(msg.request_id, True, None))

            conn.set_handler(on_batch)

        server = await listen("127.0.0.1", 0, accept)
        try:
            port = server.sockets[0].getsockname()[1]
            nanny = Nanny(f"tcp://127.0.0.1:{port}", name="n0", memory_limit=1)
            nanny.terminate_fraction, nanny.monitor_interval = 0.95, 0.01
            nanny.worker_address = "tcp://127.0.0.1:4321"
            return await _watch_past_terminate(nanny, "signal.SIG_IGN", procs.append)
        finally:
            server.close()

    code, took = asyncio.run(main())
    assert code == -signal.SIGKILL
    hello, notice = heard[0][0], heard[1][0]
    assert isinstance(hello, Hello) and hello.role == "nanny"
    assert isinstance(notice, NannyMemoryTerminated) and heard[1][1]  # before the kill
    assert notice.worker == "tcp://127.0.0.1:4321" and notice.limit == 1
    assert notice.process > 1 and notice.fraction == 0.95
    assert took >= answer_after  # killed once the scheduler noted why
