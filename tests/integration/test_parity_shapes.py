"""Return shapes and errors of the Client's less common methods, as dask.distributed's
(each checked side by side against the installed distributed): the log and task-stream
getters' tuples, ``nbytes`` of what is not on the cluster, ``futures_of``/``wait`` keeping
distinct Future objects of one key.
"""

from __future__ import annotations

import concurrent.futures
import re
from typing import Any

import dask
import pytest

from shoal import Client, futures_of, wait

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


# --- the getters: tuples where dask returns tuples -------------------------------------------


def test_log_getters_return_tuples_of_tuples_as_dask(client: Client) -> None:
    client.submit(inc, 1).result(timeout=30)
    scheduler = client.get_scheduler_logs(n=3)
    assert type(scheduler) is tuple and scheduler
    assert all(type(row) is tuple and len(row) == 2 for row in scheduler)
    workers = client.get_worker_logs(n=3)
    assert type(workers) is dict and workers
    for rows in workers.values():
        assert type(rows) is tuple and rows
        assert all(type(row) is tuple and len(row) == 2 for row in rows)
    nannies = client.get_worker_logs(n=3, nanny=True)
    assert type(nannies) is dict
    assert all(type(rows) is tuple for rows in nannies.values())


def test_get_task_stream_returns_a_tuple_of_records_with_tuple_startstops(client: Client) -> None:
    client.submit(inc, 41, pure=False).result(timeout=30)
    records = client.get_task_stream(count=5)
    assert type(records) is tuple and records
    assert all(type(r) is dict and type(r["startstops"]) is tuple for r in records)


# --- nbytes ----------------------------------------------------------------------------------


def test_nbytes_of_an_unpersisted_collection_raises_type_error(client: Client) -> None:
    lazy = dask.delayed(inc)(1)
    with pytest.raises(TypeError, match="persist"):
        client.nbytes(lazy)
    with pytest.raises(TypeError, match="persist"):
        client.nbytes([lazy])


def test_nbytes_of_futures_and_persisted_collections_counts_their_results(client: Client) -> None:
    fut = client.submit(inc, 1, key="nbytes-shape-1")
    fut.result(timeout=30)
    assert client.nbytes([fut], summary=False) == {"nbytes-shape-1": 28}
    persisted = client.persist(dask.delayed(inc)(2, dask_key_name="nbytes-shape-2"))
    wait(futures_of(persisted))
    assert client.nbytes(persisted, summary=False) == {"nbytes-shape-2": 28}


# --- futures_of / wait: one entry per Future object, not per key -------------------------------


def test_futures_of_keeps_distinct_futures_of_one_key(client: Client) -> None:
    a = client.submit(inc, 7)
    b = client.submit(inc, 7)  # pure: the same key, another Future object
    assert a.key == b.key and a is not b
    found = futures_of([a, b, a, {"x": b}])
    assert len(found) == 2
    assert found[0] is a and found[1] is b


def test_wait_returns_every_distinct_future_of_one_key(client: Client) -> None:
    a = client.submit(inc, 8)
    b = client.submit(inc, 8)
    done, not_done = wait([a, b], timeout=30)
    assert len(done) == 2 and not not_done
    assert any(f is a for f in done) and any(f is b for f in done)
    first = wait([a, b], timeout=30, return_when="FIRST_COMPLETED")
    assert len(first.done) + len(first.not_done) == 2


def test_futures_of_with_a_client_raises_for_cancelled_futures(client: Client) -> None:
    gone = client.submit(inc, 9, key="futures-of-cancelled")
    gone.cancel()
    assert futures_of([gone]) == [gone]  # without a client: no check, as dask's
    with pytest.raises(concurrent.futures.CancelledError, match="futures-of-cancelled"):
        futures_of([gone], client=client)


# --- story: dask's scheduler rows ------------------------------------------------------------


def test_story_rows_carry_recommendations_stimulus_ids_and_times(client: Client) -> None:
    import time

    before = time.time()
    fut = client.submit(inc, 1, key="story-shape-1")
    fut.result(timeout=30)
    everyone = client.story(fut)
    rows = [r for r in everyone if r[0] == "scheduler"]
    assert rows and all(type(r) is tuple and len(r) == 7 for r in rows)
    # then the worker's rows (dask's worker transition rows, after its address)
    (ran,) = client.who_has(fut)["story-shape-1"]
    theirs = [r for r in everyone if r[0] != "scheduler"]
    assert everyone == rows + theirs
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in theirs] == [
        (ran, "story-shape-1", "released", "executing", "executing", {}),
        (ran, "story-shape-1", "executing", "memory", "memory", {})]
    for *_, stimulus_id, when in theirs:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*-\d+\.\d+", stimulus_id), stimulus_id
        assert before - 1 <= when <= time.time() + 1
    assert client.story(theirs[-1][6]) == [theirs[-1]]  # a worker's stimulus id
    moves = [(r[2], r[3]) for r in rows]
    assert moves[-1] == ("processing", "memory")
    for who, key, _start, _finish, recommendations, stimulus_id, when in rows:
        assert who == "scheduler" and key == "story-shape-1"
        assert type(recommendations) is dict
        # dask's form: what happened, then when ("update-graph-1796232193.33"); which
        # event moved it depends on what else the busy shared cluster is doing
        assert type(stimulus_id) is str
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*-\d+\.\d+", stimulus_id), stimulus_id
        assert before - 1 <= when <= time.time() + 1
    done_stimulus = rows[-1][5]
    assert done_stimulus.startswith(("task-finished-", "tasks-finished-"))
    # dask's story takes stimulus ids too: the rows that stimulus made
    by_stimulus = client.story(done_stimulus)
    assert by_stimulus and all(r[5] == done_stimulus for r in by_stimulus if r[0] == "scheduler")
    assert rows[-1] in by_stimulus


def _story_length(dask_worker: Any) -> Any:
    return dask_worker.state.log.maxlen


def test_a_worker_process_keeps_the_configured_number_of_story_rows(make_client: Any) -> None:
    with dask.config.set({"distributed.admin.low-level-log-length": 3}):
        c = make_client(1)
    # read once the worker process has imported dask (in the background, after start-up)
    wait_for(lambda: list(c.run(_story_length).values()) == [3])
    c.gather(c.map(inc, range(5)))
    (address,) = c.run(_story_length)
    rows = [r for r in c.story(*[f.key for f in c.map(inc, range(5))]) if r[0] == address]
    assert 0 < len(rows) <= 3


# --- the less common Client methods ------------------------------------------------------------


def test_nthreads_of_given_workers_lists_only_those(client: Client) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2
    assert client.nthreads(workers[0]) == {workers[0]: 1}
    assert client.nthreads([workers[1]]) == {workers[1]: 1}
    assert client.nthreads() == client.ncores() == {w: 1 for w in workers}


def test_processing_lists_each_workers_keys_as_a_tuple(client: Client) -> None:
    got = client.processing()
    assert set(got) == set(client.scheduler_info()["workers"])
    assert all(type(keys) is tuple for keys in got.values())


def test_client_futures_of_raises_for_cancelled_futures_as_dask(client: Client) -> None:
    gone = client.submit(inc, 11, key="client-futures-of-cancelled")
    gone.cancel()
    with pytest.raises(concurrent.futures.CancelledError, match="client-futures-of-cancelled"):
        client.futures_of([gone])
    live = client.submit(inc, 12)
    assert client.futures_of([live, 3]) == [live]
