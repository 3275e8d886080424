"""Large graphs go to the scheduler in pieces (``_submit.PIECE_ROWS`` rows each): shrunk
here so that small graphs take that path, end to end."""

from __future__ import annotations

import operator
import threading
import time
from typing import Any

import dask
import dask.array as da
import pytest

from shoal import Client, wait
from shoal.client import _submit

from ._helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_submit, "PIECE_ROWS", 7)


def test_a_map_sent_in_pieces_gives_every_result(client: Client, small_pieces: None) -> None:
    futures = client.map(operator.neg, range(100))
    assert client.gather(futures) == [-i for i in range(100)]


def test_a_collection_sent_in_pieces_computes_as_sent_whole(
    client: Client, small_pieces: None
) -> None:
    x = da.arange(60, chunks=1)
    total = (x + 1).sum()
    assert total.compute() == sum(range(1, 61))
    assert client.compute(total).result() == sum(range(1, 61))


def test_a_delayed_tree_sent_in_pieces_keeps_intermediates_it_needs(
    client: Client, small_pieces: None
) -> None:
    leaves = [dask.delayed(operator.add)(i, 1) for i in range(32)]
    while len(leaves) > 1:
        leaves = [dask.delayed(operator.add)(a, b) for a, b in
                  zip(leaves[::2], leaves[1::2], strict=True)]
    future = client.compute(leaves[0])
    wait([future], timeout=60)
    assert future.result() == sum(range(1, 33))


class _WaitsForARootTask:
    """An argument whose pickling (on the client, while the graph's rows are made) waits
    until the in-process scheduler has seen a task finish, with a deadline; it notes
    whether one did."""

    def __init__(self, scheduler: Any, timeout: float) -> None:
        self.scheduler = scheduler
        self.timeout = timeout
        self.saw_a_task_done: bool | None = None

    def __reduce__(self) -> Any:
        deadline = time.monotonic() + self.timeout
        while self.scheduler.state.completed_total == self._base:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self.saw_a_task_done = self.scheduler.state.completed_total > self._base
        return (int, (0,))

    def start(self) -> None:
        self._base = self.scheduler.state.completed_total


def _add_all(values: list[int], extra: int) -> int:
    return sum(values) + extra


def test_root_tasks_finish_before_a_large_graphs_last_piece_is_made(
    client: Client, small_pieces: None
) -> None:
    # The last row's payload is made only once a root task sent in an earlier piece has
    # finished: the graph is sent while it is being made, not after.
    waiter = _WaitsForARootTask(client.cluster.scheduler, timeout=30)
    graph: dict[Any, Any] = {("root", i): (operator.neg, i) for i in range(30)}
    graph["total"] = (_add_all, [("root", i) for i in range(30)], waiter)
    waiter.start()
    assert client.get(graph, "total") == -sum(range(30))
    assert waiter.saw_a_task_done is True


def test_a_graph_that_fails_midway_lets_the_cluster_drop_the_pieces_sent(
    client: Client, small_pieces: None
) -> None:
    scheduler = client.cluster.scheduler
    graph: dict[Any, Any] = {("sent-root", i): (operator.neg, i) for i in range(30)}
    graph["fails"] = (_add_all, [("sent-root", i) for i in range(30)], threading.Lock())
    with pytest.raises(TypeError, match="lock"):
        client.get(graph, "fails")
    wait_for(lambda: not any(("sent-root", i) in scheduler.state.tasks for i in range(30)),
             timeout=60)
    assert client.get({"after": (operator.neg, 1)}, "after") == -1


class _SubmitsBetweenPieces:
    """Pickled while the graph's pieces go out: a task is submitted then (from another
    thread, or from this one) and its result waited for, with a deadline: it goes out
    between two pieces of the graph."""

    def __init__(self, client: Client, other_thread: bool) -> None:
        self.client = client
        self.other_thread = other_thread
        self.result: Any = None

    def _submit(self) -> None:
        self.result = self.client.submit(operator.neg, 7, pure=False).result(timeout=30)

    def __reduce__(self) -> Any:
        if self.other_thread:
            thread = threading.Thread(target=self._submit)
            thread.start()
            thread.join(timeout=30)
        else:
            self._submit()
        return (int, (0,))


@pytest.mark.parametrize("other_thread", [True, False], ids=["other-thread", "same-thread"])
def test_a_submission_between_a_graphs_pieces_runs_and_keeps_the_pieces_sent(
    client: Client, small_pieces: None, other_thread: bool
) -> None:
    # The graph's first pieces are in the scheduler, held for its last task, when another
    # whole UpdateGraph goes out: that submission neither waits for the graph's last piece
    # nor ends the scheduler's hold on the pieces sent (each graph sent in pieces has a
    # stream number of its own).
    between = _SubmitsBetweenPieces(client, other_thread)
    graph: dict[Any, Any] = {("held-root", i): (operator.neg, i) for i in range(30)}
    graph["joined"] = (_add_all, [("held-root", i) for i in range(30)], between)
    assert client.get(graph, "joined") == -sum(range(30))
    assert between.result == -7


def test_an_array_sum_sent_in_pieces_gives_dasks_result_and_keys(
    client: Client, small_pieces: None
) -> None:
    x = da.random.RandomState(3).random(97, chunks=1)
    total = (x * 2).sum()
    expected = total.compute(scheduler="sync")
    future = client.compute(total)
    assert future.key == total.__dask_keys__()[0] or future.key.startswith("finalize-")
    assert future.result() == pytest.approx(expected)
    assert client.compute(total, optimize_graph=False).result() == pytest.approx(expected)


def test_a_store_into_a_local_hdf5_file_sent_in_pieces_writes_the_right_data(
    client: Client, small_pieces: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writes must run here: they are left out of the pieces as they are met, their
    # inputs are named wanted in the last piece, and the graph goes out once (no piece is
    # aborted for a write found, and no attempt per write).
    h5py = pytest.importorskip("h5py")
    import numpy as np

    from shoal.client import _collections

    submissions: list[Any] = []
    aborts: list[Any] = []
    submit, abort = _collections.submit_graph, _submit.GraphPieces.abort

    def counted_submit(*args: Any, **kwargs: Any) -> Any:
        submissions.append(args[2])
        return submit(*args, **kwargs)

    def counted_abort(self: Any) -> None:
        aborts.append(self)
        abort(self)

    monkeypatch.setattr(_collections, "submit_graph", counted_submit)
    monkeypatch.setattr(_submit.GraphPieces, "abort", counted_abort)
    source = np.arange(3_000, dtype="float64")
    x = da.from_array(source, chunks=100) + 1
    with h5py.File(tmp_path / "out.hdf5", mode="w") as f:
        target = f.create_dataset("/y", shape=source.shape, dtype=source.dtype)
        da.store(x, target, lock=True)
    with h5py.File(tmp_path / "out.hdf5", mode="r") as f:
        np.testing.assert_array_equal(f["/y"][:], source + 1)
    assert (len(submissions), aborts) == (1, [])
    assert client.submit(operator.neg, 2, pure=False).result(timeout=30) == -2


class _Pieces:
    """The UpdateGraph pieces the client queues (``_submit.UpdateGraph`` wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[Any] = []
        real = _submit.UpdateGraph

        def record(*args: Any, **kwargs: Any) -> Any:
            msg = real(*args, **kwargs)
            if msg.stream:
                self.sent.append(msg)
            return msg

        monkeypatch.setattr(_submit, "UpdateGraph", record)

    def check_held(self) -> tuple[int, int]:
        """Each piece names as held exactly its keys that a later piece's rows use; returns
        (keys held, rows sent)."""
        assert self.sent and not self.sent[-1].more
        held = rows = 0
        for i, msg in enumerate(self.sent[:-1]):
            later = {d for m in self.sent[i + 1:] for r in m.tasks for d in r[2]}
            assert msg.more and msg.held is not None
            assert set(msg.held) == {r[0] for r in msg.tasks} & later, i
            held += len(msg.held)
            rows += len(msg.tasks)
        return held, rows


@pytest.mark.parametrize("shape", ["tree", "shared-inputs"])
def test_a_graph_in_pieces_holds_only_what_later_pieces_use(
    client: Client, small_pieces: None, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    pieces = _Pieces(monkeypatch)
    x = da.arange(64, chunks=1)
    # a reduction tree (each chunk used once), or a graph whose chunks two tasks each use
    total = (x + 1).sum(split_every=2) if shape == "tree" else (x + x[::-1]).sum()
    expected = total.compute(scheduler="sync")
    assert client.compute(total).result() == expected
    held, rows = pieces.check_held()
    # a tree's results are mostly freed as a whole graph's (its reductions' inputs come
    # right before them); chunks used again half a graph later stay until then
    assert 0 < held < (rows / 2 if shape == "tree" else rows), (held, rows)
