"""dask.array programs on shoal: rechunking, map_blocks that drop or add axes, reductions
with split_every, blockwise, QR / TSQR / SVD of a tall matrix, seeded random numbers,
overlaps, and storing into an HDF5 dataset. Checked against dask's local scheduler."""

from __future__ import annotations

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_rechunk_map_blocks_axes_and_reductions(client):
    x = da.random.default_rng(42).random((400, 300), chunks=(100, 100))
    y = x.rechunk((50, 300))
    assert y.chunks == ((50,) * 8, (300,))
    parts = (
        y.sum(),
        x.sum(axis=0, split_every=2),
        x.map_blocks(lambda b: b.sum(axis=1), drop_axis=1, dtype=float),
        x.map_blocks(lambda b: b[:, :, None] * np.ones(2), new_axis=2, chunks=(100, 100, 2),
                     dtype=float).sum(axis=(0, 1)),
        da.blockwise(np.add, "ij", x, "ij", x.T, "ji", dtype=float).sum(),
        x.map_overlap(lambda b: b * 2, depth=1, boundary="reflect").sum(),
        da.cumsum(x, axis=0)[-1],
        x.argmax(),
        da.topk(x.ravel(), 3),
    )
    got = dask.compute(*parts)
    want = dask.compute(*parts, scheduler="sync")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w)


def test_tall_matrix_factorisations_and_seeded_random(client):
    tall = da.random.RandomState(0).random_sample((600, 20), chunks=(100, 20))
    q, r = da.linalg.qr(tall)
    q2, r2 = da.linalg.tsqr(tall)
    _, s, _ = da.linalg.svd(tall)
    qq, rr, qq2, rr2, ss, a = dask.compute(q, r, q2, r2, s, tall)
    np.testing.assert_allclose(qq @ rr, a)
    np.testing.assert_allclose(qq2 @ rr2, a)
    np.testing.assert_allclose(ss, np.linalg.svd(a, compute_uv=False))
    normal = da.random.RandomState(7).normal(size=(100,), chunks=10)
    np.testing.assert_array_equal(normal.compute(), normal.compute(scheduler="sync"))


def test_store_into_an_hdf5_dataset(client, tmp_path):
    # dask.distributed cannot send the open h5py dataset (it fails to serialise it); shoal
    # runs the writes in this process, where the file is open.
    x = da.random.default_rng(3).random((200, 100), chunks=(50, 50))
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        da.store(x, f.create_dataset("x", shape=x.shape, dtype="f8"))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][:], x.compute(scheduler="sync"))
