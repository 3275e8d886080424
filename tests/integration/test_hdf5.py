"""Issue 3: the seed's "Persist" section on a small HDF5 file, and writing to HDF5 with da.store."""

from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest

from shoal import futures_of, wait

from ._helpers import scheduler_tasks, wait_for

pytestmark = pytest.mark.integration

BLOCKS, BLOCK = 20, 5_000


def inc(x):
    return x + 1


@pytest.fixture
def random_hdf5(tmp_path):
    """Like the tutorial's prep.py: exponential float32 data in /x, here 20 blocks of 5,000."""
    path = tmp_path / "random.hdf5"
    data = np.random.default_rng(0).exponential(size=BLOCKS * BLOCK).astype("float32")
    with h5py.File(path, mode="w") as f:
        f.create_dataset("/x", data=data, chunks=(BLOCK,))
    return path, data


def test_the_seed_persist_flow_on_hdf5(client, random_hdf5):
    path, data = random_hdf5
    expected = data.sum(dtype="float64")
    with h5py.File(path, mode="r") as f:
        dset = f["/x"]
        x = da.from_array(dset, chunks=(BLOCK,))
        np.testing.assert_allclose(x.sum().compute(), expected, rtol=1e-5)
        np.testing.assert_allclose(x.sum().compute(), expected, rtol=1e-5)

        x = client.persist(x)
        wait(x, timeout=30)
        keys = [fut.key for fut in futures_of(x)]
        assert len(keys) == BLOCKS
        tasks = scheduler_tasks(client)
        assert all(tasks[k].state == "memory" for k in keys)
        np.testing.assert_allclose(x.sum().compute(), expected, rtol=1e-5)
        np.testing.assert_allclose(x.mean().compute(), data.mean(dtype="float64"), rtol=1e-5)

        # the seed's exercise: releasing the memory of x
        del x
        wait_for(lambda: not set(keys) & set(scheduler_tasks(client)), timeout=10)


def test_store_to_hdf5_with_lock_writes_the_right_data(client, tmp_path):
    source = np.arange(10_000, dtype="float64") * 0.5
    x = da.from_array(source, chunks=1_000) + 1
    path = tmp_path / "out.hdf5"
    with h5py.File(path, mode="w") as f:
        target = f.create_dataset("/y", shape=source.shape, dtype=source.dtype)
        da.store(x, target, lock=True)
    with h5py.File(path, mode="r") as f:
        np.testing.assert_array_equal(f["/y"][:], source + 1)
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_sending_a_writable_hdf5_dataset_fails_with_a_clear_message(client, tmp_path):
    path = tmp_path / "writable.hdf5"
    with h5py.File(path, mode="w") as f:
        dset = f.create_dataset("/z", data=np.arange(10))
        with pytest.raises((TypeError, ValueError), match=r"(?i)read-only|read mode|writable"):
            client.submit(np.sum, dset).result(timeout=10)
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2
