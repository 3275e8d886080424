"""An intermediate result leaves its worker as soon as the last task reading it there has
run (``Compute.drop``), without waiting for the scheduler's free: in a shuffle, every
worker otherwise holds each input for a scheduler round trip after its reader ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shoal import Client

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def _block(n: int) -> bytes:
    return b"x" * n


def _size(value: bytes) -> int:
    return len(value)


def test_chain_intermediate_leaves_the_worker_without_a_free_from_the_scheduler(
    make_client: Callable[..., Client],
) -> None:
    c = make_client(n_workers=1, processes=False)
    scheduler = c.cluster.scheduler
    (worker,) = c.cluster._inproc_workers
    # Hold back every free the scheduler sends to workers: whatever leaves the worker's
    # data now, the worker dropped on its own.
    withheld: list[Any] = []

    def withhold(frees: dict[str, list[Any]], address: str) -> None:
        withheld.extend(frees.pop(address, None) or ())

    scheduler._send_frees = withhold
    try:
        graph = {"inter": (_block, 1_000_000), "out": (_size, "inter")}
        assert c.get(graph, "out") == 1_000_000
        wait_for(lambda: "inter" not in worker.data, timeout=10)
        assert "inter" not in withheld  # the scheduler did not have to free it
        assert "inter" not in scheduler.tasks or not scheduler.tasks["inter"].who_has
    finally:
        del scheduler._send_frees


def test_intermediate_a_client_holds_stays_on_the_worker(
    make_client: Callable[..., Client],
) -> None:
    c = make_client(n_workers=1, processes=False)
    (worker,) = c.cluster._inproc_workers
    inter = c.submit(_block, 1_000, key="held-inter")
    out = c.submit(_size, inter, key="held-out")
    assert out.result(timeout=10) == 1_000
    assert "held-inter" in worker.data
    assert inter.result(timeout=10) == b"x" * 1_000
