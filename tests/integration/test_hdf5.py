"""Issue 3: the seed's "Persist" section on a small HDF5 file, and writing to HDF5 with da.store."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

from shoal import futures_of, wait
from shoal.client import _collections, _submit

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


@pytest.fixture(params=["whole", "in-pieces"])
def submissions(request: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The graphs ``get`` submits (one entry per ``submit_graph`` call), each sent whole,
    or in pieces of 7 rows (``_submit.PIECE_ROWS`` shrunk)."""
    if request.param == "in-pieces":
        monkeypatch.setattr(_submit, "PIECE_ROWS", 7)
    calls: list[Any] = []
    submit = _collections.submit_graph

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return submit(*args, **kwargs)

    monkeypatch.setattr(_collections, "submit_graph", counted)
    return calls


def test_a_store_of_many_chunks_into_a_local_hdf5_file_is_one_submission(
    client, tmp_path, submissions
):
    # The writes run here; finding them must not cost one whole-graph submission each.
    source = np.arange(4_000, dtype="float64")
    x = da.from_array(source, chunks=100) * 2
    with h5py.File(tmp_path / "out.hdf5", mode="w") as f:
        target = f.create_dataset("/y", shape=source.shape, dtype=source.dtype)
        da.store(x, target, lock=True)
    with h5py.File(tmp_path / "out.hdf5", mode="r") as f:
        np.testing.assert_array_equal(f["/y"][:], source * 2)
    assert len(submissions) == 1


def test_a_store_whose_chunks_need_other_chunks_writes_the_right_data(
    client, tmp_path, submissions
):
    source = np.arange(3_000, dtype="float64")
    x = da.from_array(source, chunks=100)
    running = x.cumsum(axis=0)  # each chunk needs every chunk before it
    mirrored = x + x[::-1]  # each chunk needs another chunk of x
    with h5py.File(tmp_path / "out.hdf5", mode="w") as f:
        a = f.create_dataset("/a", shape=source.shape, dtype=source.dtype)
        b = f.create_dataset("/b", shape=source.shape, dtype=source.dtype)
        da.store([running, mirrored], [a, b], lock=True)
    with h5py.File(tmp_path / "out.hdf5", mode="r") as f:
        np.testing.assert_array_equal(f["/a"][:], np.cumsum(source))
        np.testing.assert_array_equal(f["/b"][:], source + source[::-1])
    assert len(submissions) == 1


def test_a_store_made_with_compute_false_writes_when_computed(client, tmp_path, submissions):
    source = np.arange(2_000, dtype="float64")
    x = da.from_array(source, chunks=100) - 1
    with h5py.File(tmp_path / "out.hdf5", mode="w") as f:
        target = f.create_dataset("/y", shape=source.shape, dtype=source.dtype)
        stored = da.store(x, target, lock=True, compute=False)
        assert not submissions
        assert not f["/y"][:].any()
        stored.compute()
    with h5py.File(tmp_path / "out.hdf5", mode="r") as f:
        np.testing.assert_array_equal(f["/y"][:], source - 1)
    assert len(submissions) == 1


def test_a_store_computed_with_other_results_returns_them(client, tmp_path, submissions):
    # The store's inputs are also wanted as results: the cluster computes them once, and
    # the results are dask's.
    source = np.arange(2_000, dtype="float64")
    x = da.from_array(source, chunks=100) + 3
    with h5py.File(tmp_path / "out.hdf5", mode="w") as f:
        target = f.create_dataset("/y", shape=source.shape, dtype=source.dtype)
        stored = da.store(x, target, lock=True, compute=False)
        total, values, _ = dask.compute(x.sum(), x, stored)
    with h5py.File(tmp_path / "out.hdf5", mode="r") as f:
        np.testing.assert_array_equal(f["/y"][:], source + 3)
    assert total == (source + 3).sum()
    np.testing.assert_array_equal(values, source + 3)
    assert len(submissions) == 1
