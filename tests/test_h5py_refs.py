"""h5py objects travel by reference: (file name, object name), reopened read-only on load."""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from shoal.protocol import _h5py_refs  # noqa: E402


@pytest.fixture(autouse=True)
def installed():
    _h5py_refs.install()


@pytest.fixture
def h5file(tmp_path: Path) -> Path:
    path = tmp_path / "data.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, mode="w") as f:
        f.create_dataset("/x", data=rng.exponential(size=10_000).astype("f4"), chunks=(1000,))
        f.create_dataset("/group/y", data=np.arange(12).reshape(3, 4))
    return path


def _sum_pickled_dataset(payload: bytes) -> float:
    # Runs in a spawned process: nothing is open or installed there beforehand.
    dset = pickle.loads(payload)
    return float(dset[:].sum())


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_dataset_round_trips_in_process(h5file: Path, dumps) -> None:
    with h5py.File(h5file, mode="r") as f:
        expected = f["/x"][:]
        clone = pickle.loads(dumps(f["/x"]))
        assert isinstance(clone, h5py.Dataset)
        assert clone.name == "/x"
        np.testing.assert_array_equal(clone[:], expected)
        assert clone.file.mode == "r"


def test_file_and_group_round_trip(h5file: Path) -> None:
    with h5py.File(h5file, mode="r") as f:
        file_clone = cloudpickle.loads(cloudpickle.dumps(f))
        group_clone = pickle.loads(pickle.dumps(f["/group"]))
    assert isinstance(file_clone, h5py.File)
    assert Path(file_clone.filename) == h5file
    assert isinstance(group_clone, h5py.Group)
    np.testing.assert_array_equal(group_clone["y"][:], np.arange(12).reshape(3, 4))


def test_relative_path_is_made_absolute(h5file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(h5file.parent)
    with h5py.File(h5file.name, mode="r") as f:
        payload = pickle.dumps(f["/x"])
    monkeypatch.chdir("/")
    assert Path(pickle.loads(payload).file.filename) == h5file


def test_one_handle_per_file_reopened_when_closed(h5file: Path) -> None:
    with h5py.File(h5file, mode="r") as f:
        payload = pickle.dumps(f["/x"])
    first = pickle.loads(payload)
    second = pickle.loads(payload)
    assert first.file.id == second.file.id
    first.file.close()
    third = pickle.loads(payload)
    assert third.id.valid
    assert third.shape == (10_000,)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_dataset_round_trips_to_spawned_process(h5file: Path, dumps) -> None:
    with h5py.File(h5file, mode="r") as f:
        expected = float(f["/x"][:].sum())
        payload = dumps(f["/x"])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(_sum_pickled_dataset, (payload,))
    assert result == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["r+", "a"])
def test_writable_file_is_refused_with_the_fix(h5file: Path, mode: str) -> None:
    with h5py.File(h5file, mode=mode) as f:
        with pytest.raises(TypeError) as info:
            cloudpickle.dumps(f["/x"])
        with pytest.raises(TypeError):
            pickle.dumps(f)
    message = str(info.value)
    assert str(h5file) in message
    assert "open for writing" in message
    assert "mode='r'" in message


def test_closed_dataset_is_refused(h5file: Path) -> None:
    f = h5py.File(h5file, mode="r")
    dset = f["/x"]
    f.close()
    with pytest.raises(TypeError, match="closed"):
        pickle.dumps(dset)


def test_file_object_is_refused(h5file: Path) -> None:
    image = io.BytesIO(h5file.read_bytes())
    with h5py.File(image, mode="r") as f, pytest.raises(TypeError, match="not a file on disk"):
        pickle.dumps(f["/x"])


def test_dask_processes_scheduler_reads_the_file(h5file: Path) -> None:
    da = pytest.importorskip("dask.array")
    # dask's processes scheduler exports PYTHONHASHSEED=6640 into this process for its pool
    # (dask.multiprocessing) and leaves it there: put it back as it was, else every worker
    # process this test process starts later inherits it (a shell export wins over dask's
    # pre-spawn-environ config: test_worker_environ's configured seed failed after this).
    saved = os.environ.get("PYTHONHASHSEED")
    try:
        with h5py.File(h5file, mode="r") as f:
            dset = f["/x"]
            x = da.from_array(dset, chunks=(1000,))
            total = x.sum().compute(scheduler="processes", num_workers=2)
            expected = dset[:].sum()
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved
    assert total == pytest.approx(expected, rel=1e-5)
