"""A third round of collection programs on shoal: array reductions, rechunks, map_blocks and
overlaps; bag foldby/groupby; dataframe groupby, merge, set_index, shuffle and cumulative
operations (which depend on the partitions' order); delayed over nested containers;
persist then compute; and collections that depend on persisted ones or on futures. Each
result is checked against dask's local scheduler (``scheduler="sync"``) or numpy/pandas."""

from __future__ import annotations

import operator

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed

from shoal import Future, futures_of, wait

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:Computing mixed collections")]  # dask's advice


def sync(c):
    return c.compute(scheduler="sync")


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    pdf = pd.DataFrame({"k": rng.integers(0, 8, 400), "v": rng.random(400),
                        "w": rng.integers(0, 50, 400)}, index=rng.permutation(400))
    return pdf, dd.from_pandas(pdf, npartitions=4, sort=False)


def test_array_reductions_over_axes_after_a_rechunk(client):
    rng = np.random.default_rng(0)
    n = rng.random((60, 40))
    x = da.from_array(n, chunks=(15, 10)).rechunk((20, 40))
    got = client.compute([x.mean(axis=0), x.std(axis=1), x.argmax(axis=0), x.max(), x.var()],
                         sync=True)
    np.testing.assert_allclose(got[0], n.mean(axis=0))
    np.testing.assert_allclose(got[1], n.std(axis=1))
    np.testing.assert_array_equal(got[2], n.argmax(axis=0))
    assert got[3] == n.max()
    assert np.isclose(got[4], n.var())


def test_map_blocks_with_block_info_and_an_overlap(client):
    x = da.arange(40, chunks=10)

    def offset(block, block_info=None):
        return block + block_info[0]["chunk-location"][0] * 1000

    y = x.map_blocks(offset, dtype=x.dtype)
    np.testing.assert_array_equal(y.compute(), sync(y))
    smooth = x.astype(float).map_overlap(lambda b: (b + np.roll(b, 1) + np.roll(b, -1)) / 3,
                                         depth=1, boundary="reflect")
    np.testing.assert_allclose(smooth.compute(), sync(smooth))


def test_array_linear_algebra_and_seeded_random(client):
    a = da.random.default_rng(7).random((30, 6), chunks=(10, 6))
    q, r = da.linalg.qr(a)
    nq, nr = client.compute([q, r], sync=True)
    np.testing.assert_allclose(nq @ nr, sync(a), atol=1e-10)
    np.testing.assert_allclose((a.T @ a).compute(), sync(a.T @ a))


def test_bag_foldby_and_groupby_word_counts(client):
    text = ["the cat sat", "on the mat", "the end", "a cat", "mat mat"]
    words = db.from_sequence(text, npartitions=3).map(str.split).flatten()
    counts = words.foldby(lambda w: w, lambda acc, _: acc + 1, 0, operator.add, 0)
    assert sorted(counts.compute()) == sorted(sync(counts))
    groups = words.groupby(len, shuffle="tasks").map(lambda kv: (kv[0], sorted(kv[1])))
    assert sorted(groups.compute()) == sorted(sync(groups))
    freq, top, distinct = client.compute([words.frequencies(), words.topk(2, key=len),
                                          words.distinct()], sync=True)
    assert sorted(freq) == sorted(sync(words.frequencies()))
    assert top == sync(words.topk(2, key=len))
    assert sorted(distinct) == sorted(sync(words.distinct()))


def test_dataframe_groupby_merge_and_set_index(client, frame):
    pdf, ddf = frame
    agg = ddf.groupby("k").agg({"v": "sum", "w": ["min", "max"]})
    pd.testing.assert_frame_equal(agg.compute().sort_index(), pdf.groupby("k").agg(
        {"v": "sum", "w": ["min", "max"]}).sort_index())
    names = dd.from_pandas(pd.DataFrame({"k": range(8), "name": list("abcdefgh")}),
                           npartitions=2)
    merged = ddf.merge(names, on="k", shuffle_method="tasks")
    key = ["k", "v"]
    pd.testing.assert_frame_equal(
        merged.compute().sort_values(key).reset_index(drop=True),
        pdf.merge(names.compute(), on="k").sort_values(key).reset_index(drop=True))
    indexed = ddf.set_index("w", shuffle_method="tasks")
    got = indexed.compute()
    assert got.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(got.sort_values(["v"]).sort_index(kind="stable"),
                                  pdf.set_index("w").sort_values(["v"]).sort_index(kind="stable"))


def test_dataframe_shuffle_keeps_every_row_and_groups_keys_together(client, frame):
    pdf, ddf = frame
    shuffled = ddf.shuffle("k", shuffle_method="tasks", npartitions=3)
    parts = client.compute(shuffled.to_delayed(), sync=True)
    assert sum(len(p) for p in parts) == len(pdf)
    owners = [set(p.k) for p in parts]
    assert all(a.isdisjoint(b) for i, a in enumerate(owners) for b in owners[i + 1:])
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), pdf.sort_index())


def test_cumulative_operations_follow_partition_order(client, frame):
    pdf, ddf = frame
    cum, arr = client.compute([ddf.v.cumsum(), da.arange(5, chunks=2)], sync=True)
    pd.testing.assert_series_equal(cum, pdf.v.cumsum())  # row for row, index included
    np.testing.assert_array_equal(arr, np.arange(5))
    shifted = (ddf.w - ddf.w.shift(1)).fillna(0)
    pd.testing.assert_series_equal(shifted.compute(), (pdf.w - pdf.w.shift(1)).fillna(0))


def test_delayed_over_nested_containers(client):
    @delayed
    def total(spec):
        return sum(spec["xs"]) + sum(v for pair in spec["pairs"] for v in pair) + spec["n"]

    xs = [delayed(operator.mul)(i, 2) for i in range(4)]
    spec = {"xs": xs, "pairs": [(delayed(abs)(-1), 2), (3, delayed(len)("four"))], "n": 5}
    assert total(spec).compute() == sync(total(spec)) == 12 + 10 + 5
    out = client.compute({"spec": spec, "arr": da.ones(3, chunks=2).sum()}, sync=True)
    assert out == {"spec": {"xs": [0, 2, 4, 6], "pairs": [(1, 2), (3, 4)], "n": 5}, "arr": 3.0}


def test_persist_then_compute_derived_collections(client, frame):
    pdf, ddf = frame
    x = da.arange(100, chunks=25)
    px, pdd = client.persist([x * 2, ddf[ddf.w > 10]])
    wait(futures_of(px) + futures_of(pdd))
    assert all(isinstance(f, Future) for f in futures_of(px))
    np.testing.assert_array_equal((px + 1).compute(), np.arange(100) * 2 + 1)
    pd.testing.assert_frame_equal(pdd.compute(), pdf[pdf.w > 10])
    assert px.sum().compute() == 2 * sum(range(100))
    assert pdd.v.sum().compute() == pytest.approx(pdf[pdf.w > 10].v.sum())


def test_compute_of_a_collection_depending_on_persisted_ones_and_futures(client):
    x = client.persist(da.arange(12, chunks=4))
    base = client.submit(operator.add, 10, 5)
    scaled = delayed(operator.mul)(x.sum(), base)
    bag = db.from_sequence(range(4), npartitions=2).map(lambda v, b: v + b, base)
    fs = client.compute([scaled, bag, x[::3]])
    got = client.gather(fs)
    assert got[0] == 66 * 15
    assert got[1] == [15, 16, 17, 18]
    np.testing.assert_array_equal(got[2], np.arange(0, 12, 3))


def test_bag_and_dataframe_conversions(client, frame):
    pdf, ddf = frame
    records = ddf[["k", "w"]].to_bag(format="dict")
    got = client.compute(records.filter(lambda r: r["k"] == 3).pluck("w"), sync=True)
    assert got == list(pdf[pdf.k == 3].w)  # partition order kept
    back = db.from_sequence([{"a": i, "b": i * i} for i in range(10)], npartitions=3)
    df = back.to_dataframe()
    pd.testing.assert_frame_equal(df.compute(), sync(df))


def test_from_delayed_pieces_and_to_delayed_round_trip(client):
    parts = [delayed(pd.DataFrame)({"x": range(i * 3, i * 3 + 3)}) for i in range(3)]
    ddf = dd.from_delayed(parts, meta=pd.DataFrame({"x": pd.Series(dtype="int64")}))
    assert list(ddf.x.compute()) == list(range(9))
    blocks = da.arange(9, chunks=3).to_delayed().ravel().tolist()
    sums = client.compute([delayed(np.sum)(b) for b in blocks], sync=True)
    assert sums == [3, 12, 21]
    stacked = da.concatenate([da.from_delayed(b, shape=(3,), dtype=int) for b in blocks[::-1]])
    np.testing.assert_array_equal(stacked.compute(), [6, 7, 8, 3, 4, 5, 0, 1, 2])


def test_dask_compute_and_persist_of_one_kind_under_the_client(client, frame):
    pdf, ddf = frame
    x = da.arange(30, chunks=7)
    a, b, c = dask.compute(x.sum(), x[::2], (x ** 2).mean())
    assert (a, list(b), c) == (435, list(range(0, 30, 2)), np.mean(np.arange(30) ** 2))
    s, m = dask.compute(ddf.v.sum(), ddf.groupby("k").w.max())
    assert s == pytest.approx(pdf.v.sum())
    pd.testing.assert_series_equal(m.sort_index(), pdf.groupby("k").w.max().sort_index())
    (p,) = dask.persist(ddf.w.cumsum())
    pd.testing.assert_series_equal(p.compute(), pdf.w.cumsum())


def test_a_frame_its_array_and_persisted_mixes_over_many_partitions(client):
    pdf = pd.DataFrame({"a": np.arange(60), "b": np.arange(60) % 7}, index=np.arange(60)[::-1])
    ddf = dd.from_pandas(pdf, npartitions=12, sort=False)  # more than 10: key order shows
    arr = ddf.a.to_dask_array(lengths=True)
    got = client.compute([arr, ddf.a, arr.sum(), ddf.b.value_counts()], sync=True)
    np.testing.assert_array_equal(got[0], pdf.a.values)
    pd.testing.assert_series_equal(got[1], pdf.a)
    assert got[2] == pdf.a.sum()
    pd.testing.assert_series_equal(got[3].sort_index(), pdf.b.value_counts().sort_index())
    x, b = da.arange(30, chunks=3), db.from_sequence(range(20), npartitions=7)
    p = client.persist([ddf, x, b])
    got = client.compute([p[0].a.cumsum(), (p[1] * 2).sum(), p[2].sum()], sync=True)
    pd.testing.assert_series_equal(got[0], pdf.a.cumsum())
    assert got[1:] == [870, 190]
