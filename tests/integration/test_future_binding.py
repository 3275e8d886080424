"""``Future.bind_client`` (dask 2024+): a Future made by one client, bound to another of the
same cluster, holds its key through that one from then on."""

from __future__ import annotations

import pytest

from shoal import Client

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def _inc(x: int) -> int:
    return x + 1


def test_a_future_bound_to_another_client_is_held_and_read_through_it(client: Client) -> None:
    with Client(client.scheduler.address, set_as_default=False) as other:
        future = client.submit(_inc, 1, key="bind-1")
        future.bind_client(other)
        assert future.client is other
        assert future.result(timeout=30) == 2
        assert other._held("bind-1")
        # The former client lets go as any dropped future does: on its loop, soon after.
        wait_for(lambda: not client._held("bind-1"))
        wants = client.run_on_scheduler(
            lambda dask_scheduler: sorted(str(c) for c in dask_scheduler.tasks["bind-1"].who_wants))
        assert wants == [other.id]
        future.bind_client(other)  # (bound already: no change)
        assert other._held("bind-1")
        del future
        wait_for(lambda: not client.run_on_scheduler(
            lambda dask_scheduler: "bind-1" in dask_scheduler.tasks), timeout=30)
