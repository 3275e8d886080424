"""The tutorial's random data set: an HDF5 file with one dataset `/x` of exponential float32.

This mirrors what the dask tutorial's `prep.py -d random` writes (1,000 blocks of 1e6 values,
4 GB), at any size, with a seeded generator, one block in memory at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATASET = "/x"


def prepare_random(
    path: str | os.PathLike[str] = "data/random.hdf5",
    blocks: int = 1000,
    block_size: int = 1_000_000,
    seed: int = 0,
    *,
    progress: bool = False,
) -> Path:
    """Write `blocks * block_size` exponential float32 values to dataset `/x` of an HDF5 file.

    The file is written one block at a time (each block is one HDF5 chunk), so memory use stays
    at one block whatever the size. It is written under a temporary name and renamed when
    complete, so an interrupted run never leaves a truncated file behind. If `path` already
    holds a float32 dataset `/x` of the requested length (and, when it records one, the same
    seed), nothing is written.

    Args:
        path: the HDF5 file to create; missing parent directories are created.
        blocks: number of blocks (the tutorial uses 1,000).
        block_size: values per block and per HDF5 chunk (the tutorial uses 1,000,000).
        seed: seed of the random generator; the same seed gives the same file.
        progress: show a progress bar on stderr while writing.

    Returns:
        The path of the file, resolved to an absolute path.

    Raises:
        ValueError: if `blocks` or `block_size` is not positive.
        ImportError: if h5py is not installed (install shoal[hdf5]).
    """
    import h5py

    if blocks < 1 or block_size < 1:
        raise ValueError(
            f"prepare_random needs at least one block of at least one value; "
            f"got blocks={blocks}, block_size={block_size}"
        )
    target = Path(path).resolve()
    if _matches(target, blocks * block_size, seed):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    rng = np.random.default_rng(seed)
    bar = _progress_bar(blocks, target.name) if progress else None
    try:
        with h5py.File(partial, mode="w") as f:
            dset = f.create_dataset(
                DATASET, shape=(blocks * block_size,), dtype="f4", chunks=(block_size,)
            )
            dset.attrs["seed"] = seed
            dset.attrs["block_size"] = block_size
            for i in range(blocks):
                start = i * block_size
                dset[start : start + block_size] = rng.standard_exponential(
                    block_size, dtype=np.float32
                )
                if bar is not None:
                    bar.update(1)
        os.replace(partial, target)
    finally:
        if bar is not None:
            bar.close()
        partial.unlink(missing_ok=True)
    return target


def _matches(path: Path, length: int, seed: int) -> bool:
    """Whether `path` already holds the requested data set (an unreadable file does not)."""
    import h5py

    if not path.is_file():
        return False
    try:
        with h5py.File(path, mode="r") as f:
            dset = f.get(DATASET)
            if not isinstance(dset, h5py.Dataset):
                return False
            recorded_seed = dset.attrs.get("seed", seed)
            return bool(
                dset.shape == (length,) and dset.dtype == np.float32 and recorded_seed == seed
            )
    except OSError:
        return False


def _progress_bar(total: int, name: str):  # type: ignore[no-untyped-def]
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"writing {name}", unit="block", leave=False)
