"""Issue 9, item 15: a closure that captures data is not kept forever. Once no task uses
it, the scheduler forgets its blob and tells the workers and the client; the client drops
its copy when the closure itself goes. Using the function again sends it again."""

from __future__ import annotations

import gc

import pytest

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def holds_blob(fid: str) -> bool:
    from shoal.protocol import _serialize

    return fid in _serialize._BLOBS


def _make_closure(size: int):
    data = b"x" * size

    def uses_data(i: int) -> int:
        return len(data) + i

    return uses_data


def test_unused_closure_blobs_are_forgotten_everywhere(client) -> None:
    scheduler = client.cluster.scheduler
    uses_data = _make_closure(300_000)
    fut = client.submit(uses_data, 1, pure=False)
    assert fut.result(timeout=20) == 300_001
    fid = client._functions.fid(uses_data)
    assert fid in scheduler._functions
    del fut
    wait_for(lambda: fid not in scheduler._functions, timeout=20)
    wait_for(lambda: not any(client.run(holds_blob, fid).values()), timeout=20)
    # still alive in the client: used again, it travels again
    assert client.submit(uses_data, 2, pure=False).result(timeout=20) == 300_002
    assert fid in client._functions.blobs
    del uses_data
    gc.collect()
    wait_for(lambda: fid not in client._functions.blobs, timeout=5)


def test_a_function_used_again_soon_stays_on_the_workers(client) -> None:
    scheduler = client.cluster.scheduler
    uses_data = _make_closure(1000)
    for i in range(3):
        assert client.submit(uses_data, i, pure=False).result(timeout=20) == 1000 + i
    assert client._functions.fid(uses_data) in scheduler._functions
