"""Several collections of different kinds in one ``compute`` / ``persist`` call: each result
pairs with its own input, in place, and a dataframe keeps its partitions' order.

The truth is each collection computed on its own with dask's local scheduler: dask's
``dask.compute(array, bag, ...)`` (this version, any scheduler) groups graph-backed
collections by optimizer and returns their results in that grouped order, so a mixed
``dask.compute`` on the local scheduler is not a reference here."""

from __future__ import annotations

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:Computing mixed collections")]  # dask's advice


def alone(c):
    """``c`` computed by itself on dask's local scheduler."""
    return c.compute(scheduler="sync")


def assert_same(got, expected):
    assert type(got) is type(expected), (type(got), type(expected))
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)  # index order included
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for k in expected:
            assert_same(got[k], expected[k])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
    else:
        assert got == expected


@pytest.fixture(scope="module")
def kinds():
    x = da.arange(20, chunks=5)
    b = db.from_sequence(range(10), npartitions=3)
    d = delayed(sum)([1, 2, 3])
    # a reversed index: a frame put together in the wrong partition order shows it
    pdf = pd.DataFrame({"a": np.arange(30), "b": np.arange(30) * 2.0}, index=np.arange(30)[::-1])
    ddf = dd.from_pandas(pdf, npartitions=3, sort=False)  # kept in this order
    return {"x": x, "b": b, "d": d, "ddf": ddf, "pdf": pdf}


MIXES = {
    "array+bag": lambda k: [k["x"], k["b"].map(lambda v: v + 1)],
    "array+delayed": lambda k: [k["x"].sum(), k["d"], k["x"] * 2],
    "bag+dataframe": lambda k: [k["b"], k["ddf"], k["b"].sum()],
    "dataframe+array": lambda k: [k["ddf"].a + 1, k["x"] + 1, k["x"].sum()],
    "every kind": lambda k: [k["d"], k["ddf"], k["b"], k["x"], k["ddf"].b.sum(), k["b"].sum()],
}


@pytest.mark.parametrize("mix", MIXES)
def test_client_compute_pairs_each_result_with_its_collection(client, kinds, mix):
    colls = MIXES[mix](kinds)
    expected = [alone(c) for c in colls]
    assert_same(client.gather(client.compute(colls)), expected)
    assert_same(client.compute(tuple(colls), sync=True), expected)


@pytest.mark.parametrize("mix", MIXES)
def test_persist_returns_the_same_kinds_in_the_same_order(client, kinds, mix):
    colls = MIXES[mix](kinds)
    expected = [alone(c) for c in colls]
    persisted = client.persist(colls)
    assert [type(p) for p in persisted] == [type(c) for c in colls]
    assert_same([p.compute() for p in persisted], expected)
    assert_same([p.compute() for p in dask.persist(*colls)], expected)


def test_dataframe_beside_an_array_keeps_its_partition_order(client, kinds):
    ddf, pdf, x = kinds["ddf"], kinds["pdf"], kinds["x"]
    frame, arr = client.compute([ddf[ddf.a % 2 == 0] * 3, x], sync=True)
    pd.testing.assert_frame_equal(frame, pdf[pdf.a % 2 == 0] * 3)  # row for row, index too
    np.testing.assert_array_equal(arr, np.arange(20))
    series, _ = client.persist([ddf.a + 1, x])
    pd.testing.assert_series_equal(series.compute(), pdf.a + 1)


def test_nested_containers_of_mixed_collections(client, kinds):
    x, b, d, ddf = kinds["x"], kinds["b"], kinds["d"], kinds["ddf"]
    nested = {"a": [x.sum(), b], "b": (d, x * 2)}
    expected = {"a": [alone(x.sum()), alone(b)], "b": (alone(d), alone(x * 2))}
    assert_same(client.compute(nested, sync=True), expected)
    got = client.compute([nested, ddf.b.sum(), [b.sum(), x]], sync=True)
    assert_same(got, [expected, alone(ddf.b.sum()), [alone(b.sum()), alone(x)]])


def test_a_graph_larger_than_the_threshold_warns_as_dask_does(client, recwarn):
    blob = np.arange(50_000, dtype="f8")  # 400 kB, pickled into the graph
    arr = da.from_array(blob, chunks=25_000)
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "100kB"}):
        with pytest.warns(UserWarning, match=r"Sending large graph of size 39\d\.\d+ kiB"):
            assert client.compute(arr.sum(), sync=True) == blob.sum()
        with pytest.warns(UserWarning, match="Sending large graph"):
            client.persist(arr + 1)
        with pytest.warns(UserWarning, match="Sending large graph"):
            client.get({"x": (np.sum, blob)}, "x")
        with pytest.warns(UserWarning, match="Sending large graph"):
            arr.max().compute()
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "10MB"}):
        recwarn.clear()
        assert client.compute(arr.sum(), sync=True) == blob.sum()
        assert not [w for w in recwarn if "large graph" in str(w.message)]


def test_many_chunks_of_a_computed_array_are_no_large_graph(client, recwarn):
    # dask sends an array's expression (a few kB here) and does not warn; the parts every
    # task of a layer shares (its function, dtype, options) travel once, so they weigh
    # once, not once per chunk (this graph's 900 leaf tasks each carried ~2.7 kB of them).
    arr = da.ones((60, 60), chunks=(2, 2))
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}):
        assert client.compute(arr.sum(), sync=True) == 3600
    assert not [w for w in recwarn if "large graph" in str(w.message)]


def test_containers_of_collections_and_futures(client, kinds):
    import collections
    import operator

    f = client.submit(operator.add, 1, 2)
    pair = collections.namedtuple("pair", "left right")
    got = client.compute([{"f": f, "sum": kinds["x"].sum()}, pair(f, kinds["b"]), [f, 1],
                          iter([kinds["d"], 4]), {kinds["d"], 7}], sync=True)
    assert got == [{"f": 3, "sum": 190}, pair(3, list(range(10))), [3, 1], [6, 4], {6, 7}]
