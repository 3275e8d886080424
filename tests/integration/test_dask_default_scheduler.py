"""While a shoal Client is open, dask's config ``scheduler`` is ``"dask.distributed"``, as
dask.distributed's Client sets it, and that name (or ``"distributed"``) computes on the
shoal client. On the session cluster."""

from __future__ import annotations

import dask
import dask.array as da
import pytest

from shoal import Client, futures_of

pytestmark = [pytest.mark.integration]


def test_the_config_names_the_distributed_scheduler_and_computes_on_shoal(client):
    assert dask.config.get("scheduler") == "dask.distributed"
    for name in ("distributed", "dask.distributed"):
        x = da.arange(10, chunks=5) + 1
        assert x.sum().compute(scheduler=name) == 55
    kept = (da.ones(4, chunks=2) * 3).persist()  # on the cluster, as futures
    assert len(futures_of(kept)) == 2 and kept.sum().compute() == 12


def test_the_config_goes_back_when_the_last_default_client_closes(client):
    from shoal.client._scheduler_names import value_before

    assert value_before(None, "threads", client) == "threads"  # the user's own choice
    assert value_before(None, "dask.distributed", None) == "dask.distributed"
    assert value_before(None, "dask.distributed", client) == client._previous_scheduler
    with dask.config.set(scheduler="threads"):
        with Client(client.scheduler_address) as c:
            assert dask.config.get("scheduler") == "dask.distributed"
            assert c._previous_scheduler == "threads"
        assert dask.config.get("scheduler") == "dask.distributed"  # the session's is open
