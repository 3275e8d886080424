"""A task whose completion report cannot be encoded fails its future with an error that
says so, instead of leaving the client waiting forever (the worker's batch holding the
report was dropped whole, silently). Uses the session's shared cluster: one tiny task."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import Client


def _weird_result() -> Any:
    # A result whose type's name is not a string: the worker's TaskDone carries
    # ``type(result).__name__``, which msgpack cannot encode (a stand-in for the next
    # value nobody thought of). Defined in here, so it is pickled by value.
    class Meta(type):
        @property
        def __name__(cls) -> Any:  # type: ignore[override]
            return object()

    class Weird(metaclass=Meta):
        pass

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
    c = make_client(n_workers=1, processes=False)
    bad = c.submit(_inc, 1, key=("x", _Key()))
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
        bad = remote.submit(lambda: 1, key=("x", _Key()))
        good = remote.submit(lambda: 2, key="fine-remote")
        with pytest.raises(TypeError, match="could not encode a 'update-graph' message"):
            bad.result(timeout=30)
        assert good.result(timeout=30) == 2
