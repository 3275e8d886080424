"""A task whose completion report cannot be encoded fails its future with an error that
says so, instead of leaving the client waiting forever (the worker's batch holding the
report was dropped whole, silently). Uses the session's shared cluster: one tiny task."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import Client


def _weird_result() -> Any:
    # A result whose type's name is not a string: the worker's TaskDone carries the
    # type's name (for a "builtins" class, ``__name__`` alone), which msgpack cannot encode
    # (a stand-in for the next value nobody thought of). Defined in here, so it is pickled
    # by value.
    class Meta(type):
        @property
        def __name__(cls) -> Any:  # type: ignore[override]
            return object()

    class Weird(metaclass=Meta):
        __module__ = "builtins"

    return Weird()


def test_a_result_whose_report_cannot_be_encoded_fails_its_future(client: Client) -> None:
    fut = client.submit(_weird_result, pure=False)
    with pytest.raises(TypeError, match="could not encode a 'task-done' message"):
        fut.result(timeout=30)
    assert client.submit(lambda: 1, pure=False).result(timeout=30) == 1  # the worker goes on


class _Key:
    """A key of a type msgpack cannot carry (dask keys are str, int, float or tuples)."""

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return type(other) is _Key


def test_a_task_whose_compute_cannot_be_encoded_fails_instead_of_hanging(
    make_client: Any,
) -> None:
    # The in-process client hands its graph over without encoding it; the scheduler's
    # compute to the worker cannot carry the key: the task fails, the others run.
    # (A key given to submit is refused at once, as in dask: here it is a graph's inner key,
    # which neither shoal nor dask checks.)
    c = make_client(n_workers=1, processes=False)
    bad = c.get({("x", _Key()): (_inc, 1), "top": (_inc, ("x", _Key()))}, "top", sync=False)
    good = c.submit(lambda: 2, key="fine")
    with pytest.raises(TypeError, match="could not encode a 'compute' message"):
        bad.result(timeout=30)
    assert good.result(timeout=30) == 2
    # The function blob the failed compute carried still reached the worker.
    assert c.submit(_inc, 2, key="after").result(timeout=30) == 3


def _inc(x: int) -> int:
    return x + 1


def test_a_graph_that_cannot_be_encoded_fails_its_futures_instead_of_hanging(
    client: Client,
) -> None:
    # A client of a remote scheduler encodes its graph: the one that cannot go fails its
    # futures here; what was sent with it still runs.
    assert client.scheduler is not None
    with Client(client.scheduler.address, set_as_default=False) as remote:
        bad = remote.get({("x", _Key()): (_inc, 1), "top-remote": (_inc, ("x", _Key()))},
                         "top-remote", sync=False)
        good = remote.submit(lambda: 2, key="fine-remote")
        with pytest.raises(TypeError, match="could not encode a 'update-graph' message"):
            bad.result(timeout=30)
        assert good.result(timeout=30) == 2


def test_a_scatter_that_cannot_be_encoded_fails_instead_of_hanging(client: Client) -> None:
    # A remote client's scatter cannot carry the key: its request fails here. (Without an
    # answer it waited for ``timeout``, or for ever without one.)
    assert client.scheduler is not None
    with Client(client.scheduler.address, set_as_default=False) as remote:
        with pytest.raises(TypeError, match="could not encode a 'scatter' message"):
            remote.scatter({("x", _Key()): 1}, timeout=20)
        assert remote.scatter(5).result(timeout=30) == 5


def test_scattered_data_the_scheduler_cannot_send_a_worker_fails_the_scatter(
    client: Client,
) -> None:
    # The in-process client hands its data over without encoding it; the scheduler's store
    # to the worker cannot carry the key: the scatter fails instead of waiting for a worker.
    with pytest.raises(TypeError, match="could not encode a 'store' message"):
        client.scatter({("y", _Key()): 1}, timeout=20)
    assert client.scatter(6).result(timeout=30) == 6


def _total(*parts: int) -> int:
    return sum(parts)


def test_a_graph_whose_last_piece_cannot_be_encoded_fails_and_lets_go_of_its_pieces(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A graph sent in pieces whose last piece cannot go: the compute fails, and the
    # scheduler drops the tasks of the pieces sent (it kept them for the last piece until
    # the client left).
    from shoal.client import _submit

    from ._helpers import wait_for

    monkeypatch.setattr(_submit, "PIECE_ROWS", 4)
    assert client.scheduler is not None and client.cluster is not None
    tasks = client.cluster.scheduler.state.tasks  # type: ignore[attr-defined]
    parts = [f"part-{i}" for i in range(6)]
    graph: dict[Any, Any] = {p: (_inc, i) for i, p in enumerate(parts)}
    graph[("sum", _Key())] = (_total, *parts)  # comes last: inputs first
    graph["top-sum"] = (_inc, ("sum", _Key()))  # (asked for: a key given is checked at once)
    with Client(client.scheduler.address, set_as_default=False) as remote:
        with pytest.raises(TypeError, match="could not encode a 'update-graph' message"):
            remote.get(graph, "top-sum", sync=True)
        wait_for(lambda: not any(p in tasks for p in parts), timeout=20)
        assert remote.submit(_inc, 1, key="after-pieces").result(timeout=30) == 2


def test_a_graph_whose_middle_piece_cannot_be_encoded_fails_with_the_encoding_error(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A graph sent in pieces whose middle piece cannot go: the compute fails with the
    # TypeError saying why (the later pieces, lacking that piece's tasks, failed with "lost
    # dependencies"), and the scheduler lets go of the pieces sent before.
    from shoal.client import _submit

    from ._helpers import wait_for

    monkeypatch.setattr(_submit, "PIECE_ROWS", 4)
    assert client.scheduler is not None and client.cluster is not None
    tasks = client.cluster.scheduler.state.tasks  # type: ignore[attr-defined]
    # Two branches, ordered (dask's order) the longer first: pieces of 4 rows are
    # [a-0..a-3], [a-4, a-5, bad, b-0], [b-1, top-mid].
    graph: dict[Any, Any] = {"a-0": (_inc, 0)}
    graph.update({f"a-{i}": (_inc, f"a-{i - 1}") for i in range(1, 6)})
    graph[("bad", _Key())] = (_inc, 1)
    graph.update({"b-0": (_inc, ("bad", _Key())), "b-1": (_inc, "b-0")})
    graph["top-mid"] = (_total, "a-5", "b-1")
    sent = [f"a-{i}" for i in range(6)]
    with Client(client.scheduler.address, set_as_default=False) as remote:
        with pytest.raises(TypeError, match="could not encode a 'update-graph' message"):
            remote.get(graph, "top-mid", sync=True)
        wait_for(lambda: not any(p in tasks for p in sent), timeout=20)
        assert remote.submit(_inc, 1, key="after-mid").result(timeout=30) == 2
