"""Placement across processes: a big shared input does not pin all the work to its holder."""

from __future__ import annotations

import time

import dask
import numpy as np
import pytest

pytestmark = pytest.mark.integration


def train():
    return np.ones(2**20)  # 8 MB


def predict(chunk, model):
    time.sleep(0.01)
    return float(model[0]) * chunk


def test_map_over_a_shared_big_input_uses_every_worker(client):
    model = client.submit(train, pure=False)
    futures = client.map(predict, range(100), model=model, pure=False)
    assert client.gather(futures) == [float(i) for i in range(100)]
    holders = client.who_has(futures)
    used = {w for ws in holders.values() for w in ws}
    assert len(used) == 2, holders


def test_bandwidth_comes_from_dask_config(make_client):
    with dask.config.set({"distributed.scheduler.bandwidth": "1kB"}):
        c = make_client(n_workers=1)
    assert c.cluster.scheduler.state.bandwidth == 1000.0
