"""Programs of dask's I/O ecosystem on shoal: xarray writing netCDF and zarr, reading many
netCDF files in parallel, ``da.store`` / ``da.to_hdf5`` / ``to_zarr`` with locks, partitioned
parquet, one CSV file from many partitions, text files from a bag. Each was run on
dask.distributed first and is checked against numpy/pandas or dask's local scheduler.

These libraries pick their write locks by asking which scheduler is active, and only
recognize dask.distributed's Client: with shoal, xarray takes a ``threading.Lock`` and
``lock=True`` a per-process ``dask.utils.SerializableLock``. The programs here show what
shoal makes of those (see README, "Locks that libraries pick")."""

from __future__ import annotations

import time

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from shoal import Lock

pytestmark = pytest.mark.integration


def sync(*collections):
    return dask.compute(*collections, scheduler="sync")


def weather(days: int = 40) -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"temp": (("time", "y", "x"), rng.normal(15, 5, size=(days, 30, 20))),
         "prec": (("time", "y", "x"), rng.exponential(size=(days, 30, 20)).astype("f4"))},
        coords={"time": pd.date_range("2000-01-01", periods=days, freq="D"),
                "y": np.arange(30.0), "x": np.arange(20.0)},
    )


def slow(block: np.ndarray) -> np.ndarray:
    time.sleep(0.002)  # lets both workers' writes overlap in time
    return block


# --- xarray and netCDF --------------------------------------------------------------------


def test_xarray_writes_a_chunked_dataset_to_one_netcdf_file(client, tmp_path):
    # xarray takes a threading.Lock for the file with any scheduler but dask.distributed's
    # (it cannot pickle): the writes run in this process, which has the file open.
    ds = weather().chunk({"time": 5})
    anomaly = ds - ds.mean("time")
    path = tmp_path / "anomaly.nc"
    anomaly.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        xr.testing.assert_allclose(back.load(), anomaly.compute(scheduler="sync"))
    with xr.open_dataset(path, engine="h5netcdf", chunks={"time": 10}) as back:
        assert float(back.temp.std().compute()) == pytest.approx(
            float(anomaly.temp.std().compute(scheduler="sync")))


def test_xarray_netcdf_write_made_with_compute_false_writes_when_computed(client, tmp_path):
    ds = weather().chunk({"time": 10})
    path = tmp_path / "later.nc"
    delayed = ds.to_netcdf(path, engine="h5netcdf", compute=False)
    delayed.compute()
    with xr.open_dataset(path, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds.load())


def test_a_persisted_dataset_and_array_write_to_files_open_here(client, tmp_path):
    # The writes run here; their inputs are held on the cluster, outside the graph dask
    # hands over: they are fetched, not taken for a cycle.
    ds = (weather().chunk({"time": 5}) * 2).persist()
    ds.to_netcdf(tmp_path / "kept.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "kept.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), weather() * 2)
    x = (da.arange(1_000, chunks=100, dtype="f8") + 1).persist()
    with h5py.File(tmp_path / "kept.h5", "w") as f:
        da.store(x, f.create_dataset("x", shape=(1_000,), dtype="f8"), lock=True)
    with h5py.File(tmp_path / "kept.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][:], np.arange(1_000) + 1.0)


def test_client_compute_of_a_netcdf_write_names_the_thread_lock_and_the_fix(client, tmp_path):
    # client.compute returns futures: tasks that must run here cannot be futures.
    delayed = weather().chunk({"time": 10}).to_netcdf(tmp_path / "f.nc", engine="h5netcdf",
                                                     compute=False)
    with pytest.raises(TypeError, match=r"holds a threading.Lock of this process.*dask's compute"):
        client.compute(delayed)
    dask.compute(delayed)  # the same write, through dask, runs its writes here
    with xr.open_dataset(tmp_path / "f.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), weather())


def test_xarray_reads_many_files_in_parallel_and_writes_one(client, tmp_path):
    ds = weather()
    paths = []
    for i in range(4):
        path = tmp_path / f"month-{i}.nc"
        ds.isel(time=slice(10 * i, 10 * (i + 1))).to_netcdf(path, engine="h5netcdf")
        paths.append(path)
    with xr.open_mfdataset(paths, parallel=True, engine="h5netcdf", combine="by_coords") as m:
        assert m.temp.chunks[0] == (10, 10, 10, 10)
        xr.testing.assert_allclose(m.temp.mean("time").compute(), ds.temp.mean("time"))
        smooth = m.temp.rolling(time=3).mean()
        smooth.to_netcdf(tmp_path / "smooth.nc", engine="h5netcdf")
    with xr.open_dataarray(tmp_path / "smooth.nc", engine="h5netcdf") as back:
        xr.testing.assert_allclose(back.load(), ds.temp.rolling(time=3).mean())


# --- zarr -----------------------------------------------------------------------------------


def test_xarray_to_zarr_whole_then_by_regions_and_appended(client, tmp_path):
    ds = weather().chunk({"time": 10})
    ds.to_zarr(tmp_path / "whole.zarr")
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "whole.zarr").load(), ds.load())
    # a template first, then each worker-sized region on its own, as in xarray's docs
    ds.to_zarr(tmp_path / "regions.zarr", compute=False)
    for i in range(4):
        part = ds.isel(time=slice(10 * i, 10 * (i + 1))).drop_vars(["y", "x"])
        part.to_zarr(tmp_path / "regions.zarr", region={"time": slice(10 * i, 10 * (i + 1))})
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "regions.zarr").load(), ds.load())
    ds.isel(time=slice(0, 20)).to_zarr(tmp_path / "grown.zarr")
    ds.isel(time=slice(20, 40)).to_zarr(tmp_path / "grown.zarr", append_dim="time")
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "grown.zarr").load(), ds.load())


def test_store_with_lock_true_into_zarr_chunks_shared_by_tasks_loses_no_write(
    client, tmp_path
):
    # Each zarr chunk (1,000) is written by ~140 tasks (chunks of 7), on both workers: a
    # partial chunk write reads, changes and rewrites the whole chunk, so two processes
    # writing one chunk at once lose one's values unless the lock spans processes.
    # dask's lock=True gives a per-process SerializableLock to any scheduler but
    # dask.distributed's.
    n = 6_000
    target = zarr.open_array(tmp_path / "z", mode="w", shape=(n,), chunks=(1_000,), dtype="f8")
    x = (da.arange(n, chunks=7, dtype="f8") + 1).map_blocks(slow)
    da.store(x, target, lock=True)
    got = zarr.open_array(tmp_path / "z", mode="r")[:]
    assert int((got == 0).sum()) == 0, "writes were lost"
    np.testing.assert_array_equal(got, np.arange(n) + 1.0)


def test_store_with_a_shoal_lock_and_region_writes_into_zarr(client, tmp_path):
    x = da.random.default_rng(3).random((300, 200), chunks=(30, 50))
    target = zarr.open_array(tmp_path / "l.zarr", mode="w", shape=(600, 200), chunks=(100, 100),
                             dtype="f8")
    da.store(x.map_blocks(slow), target, lock=Lock("ecosystem-zarr"),
             regions=(slice(300, 600), slice(None)))
    (x * 0 - 1).to_zarr(target, region=(slice(0, 300), slice(None)))
    got = zarr.open_array(tmp_path / "l.zarr", mode="r")[:]
    np.testing.assert_array_equal(got[300:], x.compute(scheduler="sync"))
    assert (got[:300] == -1).all()
    (x + 1).to_zarr(tmp_path / "whole.zarr")
    np.testing.assert_array_equal(da.from_zarr(tmp_path / "whole.zarr").compute(),
                                  x.compute(scheduler="sync") + 1)


# --- HDF5 -----------------------------------------------------------------------------------


def test_to_hdf5_and_store_with_a_shoal_lock_into_hdf5(client, tmp_path):
    x = da.random.default_rng(2).random((400, 300), chunks=(30, 300))
    y = da.arange(1_000, chunks=100)
    da.to_hdf5(tmp_path / "t.h5", {"/x": x, "/y": y})
    with h5py.File(tmp_path / "t.h5", "r") as f:
        np.testing.assert_array_equal(f["/x"][:], x.compute(scheduler="sync"))
        np.testing.assert_array_equal(f["/y"][:], np.arange(1_000))
    with h5py.File(tmp_path / "u.h5", "w") as f:
        target = f.create_dataset("x", shape=x.shape, dtype=x.dtype, chunks=(64, 100))
        da.store(x, target, lock=Lock("ecosystem-h5"))
    with h5py.File(tmp_path / "u.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][:], x.compute(scheduler="sync"))


# --- dataframes and bags --------------------------------------------------------------------


def test_partitioned_parquet_round_trip_with_filters(client, tmp_path):
    pdf = pd.DataFrame({"k": np.arange(1_000) % 7, "g": np.repeat(list("abcde"), 200),
                        "v": np.arange(1_000.0)})
    dd.from_pandas(pdf, npartitions=6).to_parquet(tmp_path / "pq", partition_on=["g"])
    assert sorted(p.name for p in (tmp_path / "pq").iterdir() if p.is_dir()) == [
        f"g={g}" for g in "abcde"]
    back = dd.read_parquet(tmp_path / "pq").compute().sort_values("v").reset_index(drop=True)
    pd.testing.assert_series_equal(back["v"], pdf["v"])
    assert (back["g"].astype(str) == pdf["g"]).all()
    only_c = dd.read_parquet(tmp_path / "pq", filters=[("g", "==", "c")])
    assert only_c.v.sum().compute() == pdf[pdf.g == "c"].v.sum()
    means = dd.read_parquet(tmp_path / "pq").groupby("k").v.mean()
    pd.testing.assert_series_equal(means.compute().sort_index(), sync(means)[0].sort_index())


def test_csv_into_one_file_and_a_bag_into_text_files(client, tmp_path):
    pdf = pd.DataFrame({"a": np.arange(2_000), "b": np.arange(2_000) * 0.5})
    dd.from_pandas(pdf, npartitions=8).to_csv(tmp_path / "one.csv", single_file=True,
                                              index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one.csv"), pdf)
    lines = db.from_sequence(range(1_000), npartitions=7).map(lambda i: f"line {i}")
    lines.to_textfiles(str(tmp_path / "t-*.txt"))
    assert len(list(tmp_path.glob("t-*.txt"))) == lines.npartitions
    back = db.read_text(str(tmp_path / "t-*.txt")).map(str.strip).compute()
    assert back == [f"line {i}" for i in range(1_000)]
