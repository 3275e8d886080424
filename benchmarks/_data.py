"""The persist workload's input: an HDF5 file like the tutorial's ``prep.py -d random``."""

from __future__ import annotations

import os

DATASET = "/x"


def hdf5_matches(path: str, n: int) -> bool:
    """True if ``path`` already holds a float32 dataset ``/x`` of length ``n`` (reusable)."""
    if not os.path.exists(path):
        return False
    import h5py

    try:
        with h5py.File(path, mode="r") as f:
            dset = f.get(DATASET)
            return dset is not None and dset.shape == (n,) and dset.dtype == "float32"
    except OSError:
        return False


def write_hdf5(path: str, n: int, block: int = 1_000_000, seed: int = 0) -> None:
    """Write ``n`` exponential float32 values to dataset ``/x`` of ``path``, ``block`` at a time.

    Contiguous layout and exponential values as the tutorial's prep script; writing block by
    block keeps memory at one block however large ``n`` is. Writes to a temporary name and
    renames, so an interrupted run never leaves a short file that looks reusable.
    """
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    partial = path + ".partial"
    with h5py.File(partial, mode="w") as f:
        dset = f.create_dataset(DATASET, shape=(n,), dtype="f4")
        for start in range(0, n, block):
            stop = min(start + block, n)
            dset[start:stop] = rng.exponential(size=stop - start).astype("f4")
    os.replace(partial, path)
