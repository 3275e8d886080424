"""(a) SIGKILL a random worker 20 times while a 20,000-task dependent graph runs and a
persisted array is held: every result is right, nothing hangs, no process is left."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from integration._helpers import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

KILLS = 20
WIDTH = 5_000  # tasks per layer
LAYERS = 4  # 20,000 tasks, each layer reading two tasks of the one before


def slow_inc(x: int) -> int:
    time.sleep(0.002)
    return x + 1


def slow_add(a: int, b: int) -> int:
    time.sleep(0.002)
    return a + b


def expected_layers() -> list[list[int]]:
    layer = [x + 1 for x in range(WIDTH)]
    out = [layer]
    for _ in range(LAYERS - 1):
        layer = [layer[i] + layer[(i + 1) % WIDTH] for i in range(WIDTH)]
        out.append(layer)
    return out


def _kill_workers_during_the_graph(chaos_cluster) -> None:
    import dask.array as da
    import numpy as np

    rng = random.Random(20)
    cluster, client = chaos_cluster(n_workers=3)
    n = len(cluster.nannies)
    array = client.persist(da.arange(100_000, chunks=2_000) * 3)
    chunks = list(array.__dask_graph__().values())

    layer = client.map(slow_inc, range(WIDTH), pure=False)
    layers = [layer]
    for _ in range(LAYERS - 1):
        layer = client.map(slow_add, layer, layer[1:] + layer[:1], pure=False)
        layers.append(layer)

    state = cluster.scheduler.state
    kills: dict[int, int] = {i: 0 for i in range(n)}
    for _ in range(KILLS):
        mark = state.completed_total

        def whole_and_working(m: int = mark) -> bool:
            """The cluster is whole again and has done some work since the last kill
            (or has nothing left to do: then the kills destroy results it holds)."""
            return len(state.workers) == n and (
                state.completed_total >= m + 100 or all(f.done() for f in layers[-1]))

        wait_for(whole_and_working, timeout=180)
        fewest = min(kills.values())  # spread the kills over the nannies
        index = rng.choice([i for i, k in kills.items() if k == fewest])
        nanny = cluster.nannies[index]
        victim = nanny.pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        kills[index] += 1
        wait_for(lambda nn=nanny, v=victim: nn.pid not in (None, v), timeout=120)
        failed = [f for lay in layers for f in lay if f.status == "error"]
        if failed:  # no need to go on: report the first failure now
            failed[0].result(timeout=5)

    def all_settled() -> bool:
        # Last layer first: while the graph runs, its first future is pending and the
        # check ends at once (polled every 10 ms, 20,000 done() calls from the first layer
        # on held the GIL the in-process scheduler needs).
        return all(f.done() for lay in reversed(layers) for f in lay) and all(
            f.done() for f in chunks)

    wait_for(all_settled, timeout=300)
    expected = expected_layers()
    assert [client.gather(lay) for lay in layers] == expected
    assert client.compute(array.sum()).result(timeout=120) == (np.arange(100_000) * 3).sum()
    assert [f.status for f in chunks] == ["finished"] * len(chunks)


# ~175 s at load 20 on 2 cores, over 600 s at load 30 (20 restarts, 20,000 tasks): the
# deadline is for a hang only.
@pytest.mark.timeout(1200)
def test_twenty_sigkills_during_a_dependent_graph_lose_nothing(chaos_cluster) -> None:
    _kill_workers_during_the_graph(chaos_cluster)


def quick(x: int) -> int:
    return x + 1


@pytest.mark.timeout(400)  # ~80 s at load 20 on 2 cores (4 restarts)
def test_tasks_queued_behind_a_busy_thread_survive_four_kills(chaos_cluster, tmp_path) -> None:
    # Worker 0 runs a task that blocks its only thread; 20 quick tasks are queued behind
    # it there. Kill it 4 times (one more than allowed-failures): the blocked task was
    # executing each time, the quick ones never were, so they must still finish.
    from integration._helpers import Gate, gated

    cluster, client = chaos_cluster(n_workers=2)
    state = cluster.scheduler.state
    nanny = next(n for n in cluster.nannies if n.name == 0)
    warm, gate = Gate(tmp_path / "warm"), Gate(tmp_path / "gate")
    warm.open()
    # Known durations, so the scheduler sends quick tasks ahead behind a running one.
    assert client.gather(client.map(quick, range(20), workers=[0], pure=False)) == list(
        range(1, 21))
    assert client.submit(gated, warm.path, 0, workers=[0], pure=False).result(timeout=120) == 0
    try:
        blocker = client.submit(gated, gate.path, -1, workers=[0], pure=False)
        queued = client.map(quick, range(100, 120), workers=[0], pure=False)
        keys = [f.key for f in queued]
        for _ in range(4):
            def all_sent_to_the_current_worker0() -> bool:
                def on_worker0(key: object) -> bool:
                    t = state.tasks.get(key)
                    return (t is not None and t.state == "processing"
                            and t.processing_on is not None and t.processing_on.name == 0)

                def held_for_worker0(key: object) -> bool:
                    # Pinned tasks past the worker's free slots (measured durations run
                    # long on a loaded machine) wait on the scheduler in its queue.
                    t = state.tasks.get(key)
                    return (t is not None and t.state == "queued" and t.held_on is not None
                            and t.held_on.name == 0)

                return on_worker0(blocker.key) and all(
                    on_worker0(k) or held_for_worker0(k)
                    or getattr(state.tasks.get(k), "state", "") == "memory"
                    for k in keys)

            wait_for(all_sent_to_the_current_worker0, timeout=120)
            victim = nanny.pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda v=victim: nanny.pid not in (None, v), timeout=120)
        gate.open()
        assert client.gather(queued) == list(range(101, 121))
    finally:
        gate.open()
