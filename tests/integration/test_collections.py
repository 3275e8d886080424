"""Issue 3: dask's own collections (array, bag, dataframe, delayed) running on the cluster."""

from __future__ import annotations

import concurrent.futures
import os

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed
from dask._task_spec import Task, TaskRef
from dask.delayed import Delayed

from shoal import Client, Future, futures_of, wait

from ._helpers import scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def worker_pid(_=None):
    return os.getpid()


def flaky(counter_path, value):
    """Fail on the first call, succeed afterwards; the count lives in a file all processes see."""
    calls = 0
    if os.path.exists(counter_path):
        with open(counter_path) as f:
            calls = int(f.read())
    with open(counter_path, "w") as f:
        f.write(str(calls + 1))
    if calls == 0:
        raise RuntimeError(f"flaky failure, call {calls + 1}")
    return value


def counted_block(block, counter_path):
    with open(counter_path, "a") as f:
        f.write("x")
    return block * 2


def _data(n=100_000, seed=0):
    return np.random.default_rng(seed).random(n)


# --- the client is dask's default scheduler ------------------------------------------------------


def test_compute_runs_on_the_workers(client):
    worker_pids = set(client.run(os.getpid).values())
    assert delayed(worker_pid)(1).compute() in worker_pids


def test_sync_scheduler_bypasses_the_cluster(client):
    with dask.config.set(scheduler="sync"):
        assert delayed(worker_pid)(2).compute() == os.getpid()


def test_the_scheduler_named_distributed_is_the_shoal_client(client):
    # Programs written for dask say scheduler="distributed" (or "dask.distributed"), in
    # compute() or in dask.config, to mean "the Client": with shoal it is shoal's.
    x = da.arange(100, chunks=10).sum()
    assert x.compute(scheduler="distributed") == 4950
    assert dask.compute(x, scheduler="dask.distributed") == (4950,)
    with dask.config.set(scheduler="distributed"):
        assert x.compute() == 4950
    assert client.submit(_compute_named_distributed).result(timeout=30) == 45


def _compute_named_distributed() -> int:
    return int(da.arange(10, chunks=5).sum().compute(scheduler="distributed"))


def test_array_sum_and_mean_match_numpy(client):
    data = _data()
    x = da.from_array(data, chunks=10_000)
    np.testing.assert_allclose(x.sum().compute(), data.sum())
    np.testing.assert_allclose(x.mean().compute(), data.mean())
    np.testing.assert_allclose((x[::2] * 3 - 1).std().compute(), (data[::2] * 3 - 1).std())


# --- persist -----------------------------------------------------------------------------------


def test_persist_puts_the_chunks_in_worker_memory_as_futures(client):
    data = _data()
    x = client.persist(da.from_array(data, chunks=10_000))
    futs = futures_of(x)
    assert len(futs) == 10
    assert all(isinstance(f, Future) for f in futs)
    wait(x, timeout=30)
    tasks = scheduler_tasks(client)
    assert all(tasks[f.key].state == "memory" for f in futs)
    np.testing.assert_allclose(x.sum().compute(), data.sum())


def test_deleting_a_persisted_collection_releases_its_chunks(client):
    x = client.persist(da.from_array(_data(seed=1), chunks=10_000))
    wait(x, timeout=30)
    keys = [f.key for f in futures_of(x)]
    assert set(keys) <= set(scheduler_tasks(client))
    del x
    wait_for(lambda: not set(keys) & set(scheduler_tasks(client)), timeout=10)


def test_persist_of_several_collections_returns_a_list(client):
    a = da.ones(100, chunks=10)
    b = da.arange(100, chunks=25)
    persisted = client.persist([a, b])
    assert isinstance(persisted, list) and len(persisted) == 2
    pa, pb = persisted
    assert len(futures_of(pa)) == 10 and len(futures_of(pb)) == 4
    assert pa.sum().compute() == 100
    assert pb.sum().compute() == sum(range(100))


def test_dask_persist_returns_a_tuple_of_persisted_collections(client):
    a = da.arange(100, chunks=10)
    (pa,) = dask.persist(a)
    futs = futures_of(pa)
    assert len(futs) == 10 and all(isinstance(f, Future) for f in futs)
    assert pa.sum().compute() == sum(range(100))


def test_persisted_array_in_a_new_graph_is_not_recomputed(client, tmp_path):
    counter = tmp_path / "loads"
    x = da.ones(100, chunks=10).map_blocks(
        counted_block, str(counter), meta=np.array((), dtype=float)
    )
    x = client.persist(x)
    wait(x, timeout=30)
    assert len(counter.read_text()) == 10
    assert (x + 1).sum().compute() == 300
    assert (x * x).max().compute() == 4
    assert len(counter.read_text()) == 10


# --- compute, get, delayed ----------------------------------------------------------------------


def test_dask_compute_of_several_collections(client):
    data = _data(1_000)
    a = da.from_array(data, chunks=100)
    total, mean = dask.compute(a.sum(), a.mean())
    np.testing.assert_allclose([total, mean], [data.sum(), data.mean()])


def test_client_compute_returns_futures(client):
    a = da.arange(1_000, chunks=100)
    fut = client.compute(a.sum())
    assert isinstance(fut, Future)
    assert fut.result(timeout=10) == sum(range(1_000))
    futs = client.compute([a.sum(), a.max()])
    assert isinstance(futs, list) and all(isinstance(f, Future) for f in futs)
    assert client.gather(futs) == [sum(range(1_000)), 999]


def test_client_compute_traverses_containers_of_collections_as_dask_does(client):
    # dask wraps a dict, list, tuple or set argument in dask.delayed (traverse=True): one
    # future for the whole container, its collections computed. Returning the dict as it
    # was left its arrays uncomputed.
    a = da.arange(1_000, chunks=100)
    fut = client.compute({"total": a.sum(), "top": [a.max(), 7]})
    assert isinstance(fut, Future)
    assert fut.result(timeout=30) == {"total": sum(range(1_000)), "top": [999, 7]}
    futs = client.compute([a.sum(), (a.min(), a.max()), 5])
    assert futs[2] == 5 and client.gather(futs[:2]) == [sum(range(1_000)), (0, 999)]
    assert client.compute({"n": a.sum()}, sync=True) == {"n": sum(range(1_000))}
    untraversed = {"n": a.sum()}
    assert client.compute(untraversed, traverse=False) is untraversed


def test_client_compute_sync_returns_values(client):
    a = da.arange(1_000, chunks=100)
    assert client.compute([a.sum(), a.max()], sync=True) == [sum(range(1_000)), 999]


def test_client_get_with_a_plain_dict_graph(client):
    dsk = {"get-a": 1, "get-b": (inc, "get-a"), "get-c": (add, "get-a", "get-b")}
    assert client.get(dsk, ["get-c", "get-b"]) == [3, 2]
    assert client.get(dsk, "get-c") == 3


def test_delayed_graph_like_the_seed(client):
    ratios = [
        delayed(lambda a, b: a // b)(a, b) for a, b in zip([5, 25, 30], [5, 5, 6], strict=True)
    ]
    out = delayed(sum)(ratios)
    f = client.compute(out)
    assert client.gather(f) == 11


def test_delayed_accepts_a_future_as_argument(client):
    fut = client.submit(inc, 1)
    assert delayed(inc)(fut).compute() == 3
    assert client.compute(delayed(add)(fut, 10)).result(timeout=60) == 12  # (a loaded CI)


# --- annotations and compute keywords -----------------------------------------------------------


def test_annotate_retries_reaches_the_scheduler(client, tmp_path):
    with dask.annotate(retries=2):
        task = delayed(flaky)(str(tmp_path / "calls"), "ok")
    assert task.compute() == "ok"
    assert (tmp_path / "calls").read_text() == "2"


def test_compute_retries_keyword_reaches_the_scheduler(client, tmp_path):
    task = delayed(flaky)(str(tmp_path / "calls"), "ok")
    assert client.compute(task, retries=2).result(timeout=10) == "ok"


def test_annotate_priority_is_accepted(client):
    with dask.annotate(priority=10):
        x = da.arange(100, chunks=10) + 1
    assert x.sum().compute() == sum(range(1, 101))


# --- bag and dataframe --------------------------------------------------------------------------


def test_bag_map_filter_sum(client):
    bag = db.from_sequence(range(1_000), npartitions=8)
    result = bag.map(inc).filter(lambda v: v % 3 == 0).sum().compute()
    assert result == sum(v for v in range(1, 1_001) if v % 3 == 0)


def test_dataframe_groupby_sum_matches_pandas(client):
    rng = np.random.default_rng(2)
    pdf = pd.DataFrame({"k": rng.integers(0, 7, 5_000), "v": rng.random(5_000)})
    ddf = dd.from_pandas(pdf, npartitions=5)
    result = ddf.groupby("k").v.sum().compute().sort_index()
    expected = pdf.groupby("k").v.sum().sort_index()
    pd.testing.assert_series_equal(result, expected, check_names=False)
    assert len(ddf[ddf.v > 0.5]) == int((pdf.v > 0.5).sum())


# --- bad input ----------------------------------------------------------------------------------


def _released_key(client):
    fut = client.submit(inc, 99, pure=False)
    key = fut.key
    fut.result(timeout=10)
    del fut
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)
    return key


def test_an_explicit_p2p_shuffle_is_refused_saying_what_to_use(client):
    # shoal has no p2p shuffle: dask.distributed's p2p tasks failed on the workers with
    # "P2P ... failed during transfer phase". Refuse before anything runs, naming the fix.
    df = dd.from_pandas(pd.DataFrame({"a": np.arange(100) % 7, "b": np.arange(100)}),
                        npartitions=4)
    for graph in (df.shuffle("a", shuffle_method="p2p").b.sum(),
                  df.merge(df, on="a", shuffle_method="p2p").b_x.sum(),
                  da.ones((40, 40), chunks=(40, 1)).rechunk((1, 40), method="p2p").sum()):
        with pytest.raises(NotImplementedError, match="shuffle_method='tasks'"):
            graph.compute()
        with pytest.raises(NotImplementedError, match="p2p"):
            client.compute(graph)
    assert df.shuffle("a").b.sum().compute() == sum(range(100))  # tasks, shoal's default


def test_graph_with_a_key_the_cluster_no_longer_holds_errors_instead_of_hanging(client):
    key = _released_key(client)
    with pytest.raises(Exception, match=r"(?i)lost dependenc"):
        client.get({"needs-lost": Task("needs-lost", inc, TaskRef(key))}, "needs-lost")


def test_lost_dependencies_error_names_the_missing_key(client):
    key = _released_key(client)
    with pytest.raises(Exception) as info:
        client.get({"needs-lost": Task("needs-lost", inc, TaskRef(key))}, "needs-lost")
    assert key in str(info.value)


def test_a_persisted_collection_used_after_restart_raises_cancelled_error_as_in_dask(make_client):
    # dask raises CancelledError ("lost dependencies") for a graph on futures that a
    # restart (or a lost worker holding scattered data) took: `except CancelledError` in a
    # program written for dask must catch shoal's error too.
    client = make_client()
    held = client.persist(da.arange(40, chunks=10) * 2)
    wait(held, timeout=30)
    client.restart()
    with pytest.raises(concurrent.futures.CancelledError, match="lost dependencies"):
        held.sum().compute()


def test_client_compute_after_close_raises_a_clear_error(client):
    other = Client(client.cluster.scheduler_address)
    other.close()
    with pytest.raises(Exception, match=r"(?i)closed"):
        other.compute(da.ones(10, chunks=5).sum())


def test_computing_a_persisted_collection_after_its_client_closed_raises_a_clear_error(client):
    other = Client(client.cluster.scheduler_address)
    x = other.persist(da.ones(100, chunks=10))
    wait(x, timeout=60)
    other.close()
    with pytest.raises(Exception, match=r"(?i)closed"):
        x.sum().compute()


# --- the delayed graph path (issue 14): read from the layers, ordered as a tree ----------------


def _delayed_tree(leaves, name):
    level = [delayed(inc)(i, dask_key_name=(f"{name}-leaf", i)) for i in range(leaves)]
    n = 0
    while len(level) > 1:
        pairs = []
        for a, b in zip(level[::2], level[1::2], strict=False):
            pairs.append(delayed(add)(a, b, dask_key_name=(f"{name}-add", n)))
            n += 1
        level = pairs + level[len(pairs) * 2:]
    return level[0]


def _every_node(root):
    """A Delayed for every task of ``root``'s graph (layers and annotations kept)."""
    return [Delayed(k, root.dask) for k in root.dask.layers]


def test_a_delayed_trees_priorities_on_the_scheduler_are_dasks_order(client):
    from dask._task_spec import convert_legacy_graph
    from dask.order import order

    root = _delayed_tree(48, "prio")
    nodes = _every_node(root)  # every key wanted: each keeps its task (and priority) after
    futures = client.compute(nodes)
    assert client.gather(futures)[[n.key for n in nodes].index(root.key)] == sum(range(1, 49))
    tasks = scheduler_tasks(client)
    by_scheduler = sorted((n.key for n in nodes), key=lambda k: tasks[k].priority)
    expected = order(convert_legacy_graph(dict(root.__dask_graph__())))
    assert by_scheduler == sorted(expected, key=expected.get)
    # depth first: the first reduction comes right after its two leaves
    first_reduction = root.dask.layers[by_scheduler[2]].mapping[by_scheduler[2]]
    assert first_reduction.dependencies == set(by_scheduler[:2])


def test_a_delayed_graph_runs_only_the_tasks_its_keys_need(client, tmp_path):
    marker = tmp_path / "ran"
    dsk = {
        "cull-needed": Task("cull-needed", inc, 1),
        "cull-out": Task("cull-out", add, TaskRef("cull-needed"), 10),
        "cull-unneeded": Task("cull-unneeded", flaky, str(marker), "never"),
    }
    future = client.compute(Delayed("cull-out", dsk))
    assert future.result(timeout=10) == 12
    assert "cull-unneeded" not in scheduler_tasks(client)
    assert Delayed("cull-out", dsk).compute() == 12
    assert not marker.exists()


def test_persist_of_a_delayed_tree_holds_its_root_as_a_future(client):
    root = _delayed_tree(16, "persisted")
    persisted = client.persist(root)
    (fut,) = futures_of(persisted)
    assert fut.key == root.key
    assert persisted.compute() == sum(range(1, 17))
    assert client.compute(delayed(inc)(persisted)).result(timeout=10) == sum(range(1, 17)) + 1


def test_annotated_priority_of_a_delayed_graph_reaches_the_scheduler(client):
    with dask.annotate(priority=7):
        root = _delayed_tree(4, "annotated")
    futures = client.compute(_every_node(root))
    client.gather(futures)
    tasks = scheduler_tasks(client)
    assert {tasks[f.key].priority[0] for f in futures} == {-7}


def test_a_wide_delayed_graph_goes_in_pieces_and_keeps_its_result(client):
    from shoal.client._submit import PIECE_ROWS

    root = _delayed_tree(PIECE_ROWS, "wide")  # 2 x PIECE_ROWS - 1 tasks: several pieces
    assert client.compute(root).result(timeout=60) == sum(range(1, PIECE_ROWS + 1))


def pair(first, second):
    return (first, second)


def test_delayed_keyword_inputs_literals_and_tuple_keys_reach_the_function(client):
    a = delayed(inc)(1, dask_key_name=("kw-a", 0))
    out = delayed(add)(10, y=a, dask_key_name=("kw-out", 1))
    both = delayed(pair)(None, out, dask_key_name="kw-pair")
    assert client.compute(both).result(timeout=10) == (None, 12)
    assert both.compute() == (None, 12)
    with_list = delayed(pair)([a, 5], "text")  # a list of references: a dask Task travels
    assert with_list.compute() == ([2, 5], "text")


def test_a_graph_reusing_a_key_whose_last_future_is_being_dropped_still_finds_it(client):
    # dask builds ``arr.mean() + ddf.v.sum()`` by computing ``ddf.v.sum()`` first and
    # dropping its future; the client then skipped the key's row ("held"), and the release
    # counted meanwhile on the loop reached the scheduler before the graph: lost dependency.
    # Here the death is counted between the check and the graph's sending, every time.
    x = client.submit(inc, 1, key="reused-x")
    assert x.result() == 2
    graph = {"reused-x": Task("reused-x", inc, 1), "reused-y": Task("reused-y", inc,
                                                                    TaskRef("reused-x"))}
    original = client._submit_rows

    def submit_rows_after_the_death_is_counted(*args, **kwargs):
        nonlocal x
        del x
        wait_for(lambda: not client._dead, timeout=10)  # ends: the loop counts deaths
        return original(*args, **kwargs)

    client._submit_rows = submit_rows_after_the_death_is_counted
    try:
        assert client.get(graph, "reused-y") == 3
    finally:
        del client._submit_rows
