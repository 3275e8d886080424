"""A fourth round of collection programs on shoal, in corners the first three left alone:
dask.array fancy indexing (index arrays, ``vindex``, ``take``, boolean rows), cumulative
products, ``split_every`` on several reductions, einsum/tensordot/coarsen/pad/fft, seeded
generators of both random APIs and ``svd_compressed``; dask.dataframe named and custom
aggregations, groupby apply/transform/cumcount, merges and joins (broadcast, shuffled, on
the index), a datetime index sliced, resampled and rolled, drop_duplicates/nunique/
quantiles/melt, parquet with a sorted index and filters; dask.bag folds, joins, zips and
seeded samples; delayed over dataclasses and namedtuples with nested keyword arguments;
futures and scattered data built into collections; raw graphs with odd keys; collections
computed inside tasks; and values numpy/pandas make awkward to serialise. Each result is
checked against dask's local scheduler (``scheduler="sync"``) or plain numpy/pandas."""

from __future__ import annotations

import dataclasses
import operator
from collections import namedtuple

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed
from dask.bag import random as bag_random

import shoal
from shoal import futures_of

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:Computing mixed collections")]  # dask's advice


def sync(*collections, **kwargs):
    return dask.compute(*collections, scheduler="sync", **kwargs)


def assert_same(got, want):
    """One result of the cluster against the local scheduler's: exact for frames, series and
    integer arrays, to a few ulps for floats (BLAS and SIMD sums may round differently in
    another process)."""
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want)
    elif isinstance(want, pd.Index):
        pd.testing.assert_index_equal(got, want)
    elif isinstance(want, np.ndarray) and want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=1e-12)
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want)
    else:
        assert got == want


def assert_all_same(parts, *, sort=False):
    got, want = dask.compute(*parts), sync(*parts)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if sort and isinstance(w, pd.DataFrame | pd.Series):
            g, w = g.sort_index(), w.sort_index()
        try:
            assert_same(g, w)
        except AssertionError as e:
            raise AssertionError(f"result {i} differs from the local scheduler's") from e


def inc(x):
    return x + 1


# --- dask.array -------------------------------------------------------------------------------

def test_fancy_indexing_cumulative_products_and_split_every_reductions(client):
    n = np.random.default_rng(0).random((50, 40))
    x = da.from_array(n, chunks=(13, 9))
    idx = np.array([3, 0, 49, 7, 7, 20])
    parts = (
        x[idx], x[:, [1, 5, 2]], x[idx][:, [0, 39, 0]], x.vindex[[1, 2, 3], [4, 5, 6]],
        da.take(x, [5, 1], axis=1), x[x[:, 0] > 0.5], x[da.from_array(idx, chunks=2)],
        da.cumprod(x + 0.5, axis=1), da.nancumsum(da.where(x > 0.9, np.nan, x), axis=0),
        x.argmin(axis=1), x.argmax(axis=0), da.argmin(x),
        x.sum(axis=1, split_every=2), x.prod(split_every=3),
        x.std(ddof=1, axis=0, split_every=2), x.T.rechunk((3, 50)).sum(axis=0),
        x.reshape(25, 2, 40), da.einsum("ij,kj->ik", x, x),
        da.coarsen(np.sum, x[:48], {0: 4, 1: 4}), da.pad(x, 2, mode="reflect"),
        x.map_overlap(lambda b: b.cumsum(axis=0), depth=(3, 0), boundary="periodic"),
        da.bincount(da.from_array(np.arange(100) % 13, chunks=17), minlength=13),
        da.fft.fft(x.rechunk({1: -1}), axis=1), da.argwhere(x > 0.95), x.topk(-3, axis=0),
    )
    assert_all_same(parts)


def test_a_vindex_result_named_with_a_numpy_integer_is_persisted_and_shared(client):
    # dask names ``x.vindex[...]``'s output ``("vindex-merge-...", np.int64(0))``: the
    # scheduler's messages to workers about that key could not be encoded, were dropped,
    # and persist (or any use on another worker) waited forever.
    n = np.arange(2000.0).reshape(50, 40)
    [future] = futures_of(client.persist(da.from_array(n, chunks=(13, 9)).vindex[[1, 2, 3],
                                                                              [4, 5, 6]]))
    assert future.result(timeout=30).tolist() == [44.0, 85.0, 126.0]
    for worker in client.scheduler_info()["workers"]:  # fetched by the other worker too
        assert client.submit(np.sum, future, workers=worker, allow_other_workers=False,
                             pure=False).result(timeout=30) == 255.0


def test_seeded_random_generators_give_the_local_schedulers_numbers(client):
    for state in (da.random.RandomState(5), da.random.default_rng(5)):
        draw = getattr(state, "integers", None) or state.randint
        assert_all_same((state.normal(size=(40, 30), chunks=(10, 10)),
                         draw(0, 100, size=50, chunks=9), state.poisson(3.0, size=20, chunks=6),
                         state.choice(100, size=30, chunks=7)))
    tall = da.random.default_rng(2).random((200, 30), chunks=(50, 30))
    _, s, _ = da.linalg.svd_compressed(tall, k=5, seed=3)  # a random projection, seeded
    assert_all_same((s,))


# --- dask.dataframe ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    n = 1200
    pdf = pd.DataFrame({"k": rng.integers(0, 15, n), "g": rng.choice(list("abcde"), n),
                        "v": rng.random(n), "w": rng.integers(0, 40, n),
                        "t": pd.date_range("2024-01-01", periods=n, freq="17min")})
    names = pd.DataFrame({"k": np.arange(20), "name": [f"n{i}" for i in range(20)],
                          "z": np.arange(20) * 1.5})
    return (pdf, dd.from_pandas(pdf, npartitions=6), names,
            dd.from_pandas(names, npartitions=3))


def test_named_custom_and_shuffled_groupby_aggregations(client, frames):
    _, ddf, _, _ = frames
    by_g = ddf.groupby("g")
    assert_all_same((
        ddf[["k", "v", "w"]].groupby("k").agg(["sum", "mean", "std", "count", "max"]),
        ddf.groupby(["k", "g"]).agg(vs=("v", "sum"), wm=("w", "max"), n=("v", "size")),
        by_g.w.nunique(), by_g.apply(lambda d: d.v.max() - d.v.min(), meta=("x", "f8")),
        by_g.v.transform(lambda s: s - s.mean(), meta=("v", "f8")), by_g.cumcount(),
        by_g.v.idxmax(), ddf[["g", "v"]].groupby("g").agg(
            dd.Aggregation("mysum", lambda s: s.sum(), lambda s: s.sum())),
        ddf.groupby("k").v.agg("median", split_out=3, shuffle_method="tasks"),
        ddf.groupby(ddf.w % 3).v.mean(),
    ), sort=True)


def test_merges_and_joins_broadcast_shuffled_and_on_the_index(client, frames):
    _, ddf, names, dnames = frames
    by_k = dd.from_pandas(names.set_index("k"), npartitions=2)
    parts = (
        ddf.merge(dnames, on="k", how="left"),
        ddf.merge(dnames, on="k", how="outer", shuffle_method="tasks"),
        ddf.merge(dnames, on="k", broadcast=True),
        ddf.join(by_k, on="k", how="left"),
        ddf.set_index("k").join(by_k, how="inner", shuffle_method="tasks"),
        dd.merge(ddf, by_k, left_on="k", right_index=True),
        ddf.merge(dnames.rename(columns={"k": "kk"}), left_on="w", right_on="kk", how="right"),
    )
    got, want = dask.compute(*parts), sync(*parts)
    for g, w in zip(got, want, strict=True):  # row order across partitions is not promised
        pd.testing.assert_frame_equal(g.reset_index().sort_values(list(g.reset_index().columns))
                                      .reset_index(drop=True),
                                      w.reset_index().sort_values(list(w.reset_index().columns))
                                      .reset_index(drop=True))


def test_a_datetime_index_sliced_resampled_rolled_and_repartitioned(client, frames):
    _, ddf, _, _ = frames
    s = ddf.set_index("t")
    by_w = ddf.set_index("w", shuffle_method="tasks")
    assert_all_same((
        s.loc["2024-01-03":"2024-01-05"], s.loc["2024-01-04"],
        s.v.resample("6h").agg(["sum", "max"]), s.v.rolling("2h").mean(),
        s.v.rolling(4, center=True).sum(), s.v.diff(3), by_w.loc[5:12],
        ddf.head(7, npartitions=3), ddf.tail(7), ddf.sort_values(["g", "w"]),
        ddf.nlargest(5, "v"), s.partitions[2], ddf.repartition(divisions=[0, 100, 700, 1199]),
        s.repartition(freq="1D").v.sum(),
        s.map_overlap(lambda d: d.v.rolling("3h").sum(), pd.Timedelta("3h"), 0,
                      meta=("v", "f8")),
    ))


def test_duplicates_uniques_quantiles_and_reshaping(client, frames):
    _, ddf, _, _ = frames
    assert_all_same((
        ddf.drop_duplicates(subset=["k", "g"]),
        ddf[["k", "g"]].drop_duplicates(split_out=3, shuffle_method="tasks"),
        ddf.g.value_counts(normalize=True), ddf.nunique(),
        dd.get_dummies(ddf[["g"]].categorize(["g"])), ddf.v.quantile([0.1, 0.5]),
        ddf.w.mode(), ddf.melt(id_vars=["k"], value_vars=["v", "w"]),
        ddf.query("w > 20 and g == 'a'"), ddf.v.cumprod(),
        ddf.map_partitions(lambda d, off: d.assign(x=d.w + off), 5,
                           meta=ddf._meta.assign(x=ddf._meta.w)),
        ddf[["v", "w"]].reduction(lambda d: d.sum(), aggregate=lambda d: d.sum()),
        dd.from_map(lambda i: pd.DataFrame({"i": [i] * i}), range(1, 6)),
    ), sort=True)


def test_parquet_with_a_sorted_index_filters_and_an_append(client, frames, tmp_path):
    pdf, ddf, _, _ = frames
    ddf.set_index("t").to_parquet(str(tmp_path / "by-time"))
    back = dd.read_parquet(str(tmp_path / "by-time"), calculate_divisions=True)
    assert back.known_divisions
    assert_all_same((back.loc["2024-01-05":"2024-01-06"], back.v.resample("1D").sum(),
                     dd.read_parquet(str(tmp_path / "by-time"), columns=["k", "v"],
                                     filters=[("k", ">", 10)])))
    ddf.to_parquet(str(tmp_path / "twice"), write_index=False)
    ddf.to_parquet(str(tmp_path / "twice"), write_index=False, append=True,
                   ignore_divisions=True)
    twice = dd.read_parquet(str(tmp_path / "twice"))
    assert len(twice) == 2 * len(pdf)
    assert twice.w.sum().compute() == 2 * pdf.w.sum()


# --- dask.bag ---------------------------------------------------------------------------------

def test_bag_folds_joins_zips_and_seeded_samples(client):
    b = db.from_sequence(range(200), npartitions=7)
    recs = db.from_sequence([{"n": i, "s": str(i % 9), "l": list(range(i % 4))}
                             for i in range(100)], npartitions=5)
    parts = (
        b.foldby(lambda x: x % 7, lambda acc, x: max(acc, x), -1, max, -1, split_every=2),
        b.groupby(lambda x: x % 5, shuffle="disk"), b.distinct(key=lambda x: x % 11),
        b.map(lambda x: x % 17).frequencies(sort=True), b.topk(4, key=lambda x: -x),
        b.random_sample(0.3, random_state=12),
        recs.to_dataframe(meta={"n": "i8", "s": "object", "l": "object"}).n.sum(),
        recs.pluck("l").flatten().frequencies(), recs.pluck(["n", "s"]),
        b.fold(operator.add, split_every=3), b.reduction(max, max, split_every=2),
        db.zip(b, b.map(str)).filter(lambda t: t[0] % 50 == 0), b.std(), b.var(),
        b.join(list(range(0, 200, 10)), lambda x: x % 10 * 10), b.repartition(3),
        b.map_partitions(lambda p: [sum(p)]), b.remove(lambda x: x % 2),
        b.accumulate(operator.add, initial=5), b.take(5, npartitions=2, compute=False),
        recs.map(lambda r: (r["s"], r["n"])).foldby(0, lambda a, t: a + t[1], 0,
                                                    operator.add, 0),
        db.concat([b, b]).count(),
    )
    got, want = dask.compute(*parts), sync(*parts)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if i in (0, 1, 2):  # groups and distinct values come in the shuffle's order
            g, w = sorted(g, key=repr), sorted(w, key=repr)
            if i == 1:
                g, w = [(k, sorted(v)) for k, v in g], [(k, sorted(v)) for k, v in w]
        assert_same(g, w)
    sampled = bag_random.sample(b, 10).compute()
    assert len(set(sampled)) == 10 and set(sampled) <= set(range(200))  # without replacement


# --- dask.delayed -----------------------------------------------------------------------------

@dataclasses.dataclass
class Point:
    x: object
    y: object
    tag: str = "p"


Pair = namedtuple("Pair", ["a", "b"])


def describe(*args, **kwargs):
    return repr((args, sorted(kwargs.items())))


def point_sum(p):
    return p.x + p.y, p.tag, type(p).__name__


def test_delayed_inside_dataclasses_namedtuples_and_nested_keywords(client):
    d1, d2 = delayed(operator.add)(1, 2), delayed(operator.mul)(3, 4)

    @delayed(nout=2)
    def divide(a, b):
        return divmod(a, b)

    q, r = divide(d2, 5)
    made = delayed(Point)(d1, y=d2)
    objs = (
        delayed(point_sum)(Point(d1, d2, "q")), delayed(point_sum)(Point(x=d1, y=5)),
        delayed(describe)([d1, (d2, {"k": d1})], kw={"a": [d2, d1], "b": (d1,)}, s={1, 2}),
        delayed(lambda p: p)(Pair(d1, d2)), delayed(describe)(d1, d2, z=[[[d1]]]),
        Point(d1, d2), Pair(d1, [d2]), {"a": d1, "b": [d2, {"c": d1}]}, (d1, [d2]),
        delayed(dict)(a=d1, b=d2), q, r, {"q": q}, made.x, made.y * 2,
        delayed(str.upper)(made.tag),
    )
    got = dask.compute(*objs)
    assert got == sync(*objs)
    assert got[0] == (15, "q", "Point") and got[5] == Point(3, 12)
    assert got[6] == Pair(3, [12]) and got[10:13] == (2, 2, {"q": 2})
    untraversed = dask.compute(*objs, traverse=False)  # containers come back as they were
    assert untraversed[5] is objs[5] and untraversed[7] is objs[7]
    assert untraversed[:5] == got[:5] and untraversed[10] == 2
    client_side = client.compute(list(objs), sync=True)
    assert client_side[5] is objs[5]  # as dask.distributed: no dataclass is looked into
    assert client_side[:5] + client_side[6:] == list(got[:5] + got[6:])


# --- futures into collections -----------------------------------------------------------------

def test_futures_and_scattered_data_built_into_collections(client):
    futures = [client.submit(np.arange, i * 4, i * 4 + 4) for i in range(3)]
    x = da.concatenate([da.from_delayed(f, shape=(4,), dtype=int) for f in futures])
    assert client.compute(x[::2]).result(timeout=30).tolist() == list(range(0, 12, 2))
    computed = client.compute(da.from_array(np.arange(12), chunks=4))
    y = da.from_delayed(computed, shape=(12,), dtype=int)  # a compute's future as a piece
    assert (y * 2).sum().compute() == 132
    doubled = client.persist(x * 2)
    chained = client.persist(doubled + 1)
    del doubled, futures
    assert chained.compute().tolist() == list(range(1, 24, 2))
    n = np.arange(24.0).reshape(6, 4)
    m = da.from_delayed(client.scatter(n), shape=n.shape, dtype=n.dtype).rechunk((2, 2))
    np.testing.assert_array_equal((m.T @ m).compute(), n.T @ n)
    pieces = [pd.DataFrame({"a": [i] * 3, "b": np.arange(3) + i * 3}, index=np.arange(3) + i * 3)
              for i in range(4)]
    frame = dd.from_delayed(client.scatter(pieces), meta=pieces[0], divisions=[0, 3, 6, 9, 11])
    assert frame.loc[4:7].b.compute().tolist() == [4, 5, 6, 7]
    assert db.from_delayed(client.scatter([[1, 2], [3]])).map(inc).compute() == [2, 3, 4]
    # held here: dask's bag.from_delayed keeps only the keys of futures, not the futures
    # (made inline, dask.distributed cancels them too: "lost dependencies")
    pieces = [client.submit(list, range(i)) for i in range(4)]
    lists = db.from_delayed(pieces)
    assert sorted(lists.compute()) == sorted(j for i in range(4) for j in range(i))


def test_nested_futures_in_submit_map_and_gather(client):
    a, b = client.submit(operator.add, 1, 1), client.submit(operator.add, 2, 2)
    f = client.submit(describe, [a, (b, {"x": a})], kw={"a": [b, a], "n": Pair(a, b)}, other=5)
    assert f.result(timeout=30) == describe([2, (4, {"x": 2})], kw={"a": [4, 2], "n": Pair(2, 4)},
                                            other=5)
    mapped = client.map(describe, [a, b], [[a], [b]], kw={"x": a})
    assert client.gather(mapped) == [describe(2, [2], kw={"x": 2}), describe(4, [4], kw={"x": 2})]
    tens = client.map(lambda v: v * 10, range(5))
    nested = {"a": tens[0], "b": [tens[1], (tens[2], {"c": tens[3]})], "d": 7,
              "e": Pair(tens[4], tens[0])}
    assert client.gather(nested) == {"a": 0, "b": [10, (20, {"c": 30})], "d": 7, "e": Pair(40, 0)}
    assert client.submit(sum, [a, a, a]).result(timeout=30) == 6  # one future thrice
    assert client.gather(client.scatter({"x": [1, 2], "y": 3})) == {"x": [1, 2], "y": 3}


# --- raw graphs, collections inside tasks -----------------------------------------------------

def test_raw_graphs_with_odd_keys_aliases_and_empty_or_deep_shapes(client):
    assert client.get({1: 5, 2: (inc, 1), 3: (operator.add, 1, 2)}, [3, 2]) == [11, 6]
    # dask's positional order: workers, allow_other_workers, resources, sync
    assert client.get({"soak7-x": 1, "soak7-y": (inc, "soak7-x")}, "soak7-y", None, None,
                      None, True) == 2
    assert client.get({("a", 1.5): 2, ("b", 0, 0): (inc, ("a", 1.5))}, ("b", 0, 0)) == 3
    assert client.get({"soak7-a": 1, "soak7-b": "soak7-a", "soak7-c": (inc, "soak7-b")},
                      ["soak7-b", "soak7-c"]) == [1, 2]
    assert client.get({"soak7-d": (dict, [["k", "soak7-e"]]), "soak7-e": 3}, "soak7-d") == {"k": 3}
    chain = delayed(0)
    for _ in range(1000):
        chain = delayed(inc)(chain)
    many = [delayed(inc)(i) for i in range(1000)]
    assert dask.compute(chain, delayed(sum)(many)) == (1000, sum(range(1, 1001)))
    assert dask.compute() == () and client.gather(client.compute([])) == []
    assert db.from_sequence([], npartitions=1).map(inc).compute() == []
    assert da.ones((0, 5), chunks=(2, 5)).sum(axis=0).compute().tolist() == [0.0] * 5
    assert da.ones((10,), chunks=((3, 0, 7),)).sum().compute() == 10.0
    frame = dd.from_pandas(pd.DataFrame({"a": range(10)}), npartitions=5)
    assert len(frame[frame.a > 100].compute()) == 0
    assert da.from_delayed(delayed(np.float64)(2.5), shape=(), dtype=float).compute() == 2.5


def compute_inside(n):
    with shoal.worker_client() as wc:
        x = da.arange(n, chunks=3)
        return (int(x.sum().compute()), int(wc.compute(x.max()).result()),
                dask.compute(db.from_sequence(range(n), npartitions=2).sum())[0])


def test_collections_computed_inside_tasks_and_passed_to_submit(client):
    assert client.submit(compute_inside, 10).result(timeout=60) == (45, 9, 45)
    frame = dd.from_pandas(pd.DataFrame({"a": range(10)}), npartitions=3)
    assert client.submit(len, frame).result(timeout=30) == 10  # as dask: the whole frame
    assert delayed(len)(frame).compute() == 10
    assert delayed(np.sum)(da.arange(10, chunks=4)).compute() == 45


# --- awkward values -------------------------------------------------------------------------

def awkward_values():
    n = np.arange(24.0).reshape(4, 6)
    readonly = np.arange(4)
    readonly.setflags(write=False)
    attrs = pd.DataFrame({"a": [1]})
    attrs.attrs["meta"] = 1
    return {
        "fortran": np.asfortranarray(n), "strided": n[:, ::2], "negative-stride": n[::-1],
        "broadcast": np.broadcast_to(np.arange(3), (1000, 3)),
        "big-endian": np.arange(5, dtype=">i4"), "0-d": np.array(5.5),
        "structured": np.array([(1, 2.5, b"ab")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")]),
        "datetime": np.arange("2024-01-01", "2024-01-05", dtype="datetime64[D]"),
        "masked": np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]), "read-only": readonly,
        "object": np.array([1, "a", None], dtype=object),
        "nullable": pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int64"),
                                  "s": pd.array(["a", None, "c"], dtype="string")}),
        "arrow": pd.Series(pd.array(["x", None], dtype="string[pyarrow]")),
        "tz": pd.Series(pd.date_range("2024", periods=3, tz="Europe/Paris")),
        "ordered-categorical": pd.Series(pd.Categorical(["b", "a"], categories=["b", "a"],
                                                        ordered=True)),
        "period": pd.Series(pd.period_range("2024-01", periods=3, freq="M")),
        "interval": pd.Series(pd.interval_range(0, 3)),
        "multiindex": pd.DataFrame({"v": [1, 2, 3, 4]}, index=pd.MultiIndex.from_product(
            [["a", "b"], [1, 2]], names=["x", "y"])),
        "sparse": pd.Series(pd.arrays.SparseArray([0, 0, 1, 0])), "attrs": attrs,
        "strided-block": pd.DataFrame(n[:, ::2]),
    }


def identity(x):
    return x


def test_awkward_numpy_and_pandas_values_travel_whole(client):
    # dask.distributed itself loses several of these (a strided array, a 0-d array, a
    # timezone series and frame attrs come back as "lost dependencies"); shoal keeps them.
    for name, value in awkward_values().items():
        [scattered] = client.scatter([value])
        ways = {"submit": client.submit(identity, value).result(timeout=30),
                "scatter": client.gather(scattered),
                "argument": client.submit(identity, scattered).result(timeout=30),
                "delayed": delayed(identity)(value).compute()}
        for way, got in ways.items():
            assert type(got) is type(value), (name, way)
            if isinstance(value, np.ma.MaskedArray):
                assert (got.mask == value.mask).all() and (got.data == value.data).all()
            elif isinstance(value, np.ndarray):
                assert got.dtype == value.dtype and got.shape == value.shape, (name, way)
                assert got.tolist() == value.tolist(), (name, way)
            else:
                assert_same(got, value)
                assert got.attrs == value.attrs, (name, way)
