"""Issue 9, item 11: a scatter is done only once a worker holds the data, and scattering to
a key that is being computed answers (the scattered data wins, as in dask.distributed)."""

from __future__ import annotations

import dask
import pytest

from ._helpers import gated

pytestmark = pytest.mark.integration


def test_scatter_to_a_key_being_computed_answers(client, gate) -> None:
    computing = client.submit(gated, gate.path, "computed", key="scatter-over-compute")
    scattered = client.scatter({"scatter-over-compute": "scattered"}, timeout=20)
    assert scattered["scatter-over-compute"].result(timeout=20) == "scattered"
    assert computing.result(timeout=20) == "scattered"


def test_scattered_data_is_held_by_a_worker_when_scatter_returns(client) -> None:
    fut = client.scatter(list(range(1000)), hash=False)
    held = client.who_has(fut)
    assert all(held[f.key] for f in fut)


def test_scatter_with_no_worker_ends_with_a_timeout_error_naming_the_fix(make_client):
    c = make_client(n_workers=0)
    with (dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}),
          pytest.raises(TimeoutError, match=r"No valid workers.*start workers")):
        c.scatter([1, 2], timeout=60)
