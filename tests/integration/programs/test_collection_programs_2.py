"""A second round of collection programs on shoal, off the tutorial path: dask's raw
``Client.get`` interface, dask.array odds and ends (overlaps, blockwise, unique, argtopk,
masked and object arrays, from_delayed of futures), dask.dataframe beyond groupby (parquet
partitions, categorize, pivot tables, merge_asof, single-file CSV, published datasets read
by a second client), bags from gzip files, and failures inside collections. Each result is
checked against dask's local scheduler (``scheduler="sync"``) or plain pandas/numpy."""

from __future__ import annotations

import concurrent.futures
import operator
import traceback

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import delayed

pytestmark = pytest.mark.integration


def test_the_raw_get_interface_with_nested_keys_futures_and_a_missing_key(client):
    dsk = {"x": 1, "y": (operator.add, "x", 10), ("z", 0): (operator.mul, "y", 2),
           ("z", 1): (operator.mul, "y", 3)}
    assert client.get(dsk, [["y", ("z", 0)], [("z", 1)]]) == [[11, 22], [33]]
    assert client.get(dsk, "y") == 11
    f = client.submit(operator.add, 40, 1)
    assert client.get({"a": (operator.add, f, 1)}, "a") == 42
    futures = client.get(dsk, ["x", ["y"]], sync=False)  # dask: the futures, in keys' shape
    assert client.gather(futures) == [1, [11]]
    assert type(futures[1][0]).__name__ == "Future"
    # dask cancels a key that is in neither the graph nor the cluster; shoal waited forever
    with pytest.raises(concurrent.futures.CancelledError, match="not in the graph"):
        client.get({"z": 1}, "missing")


class ApiError(Exception):
    """An exception as libraries write them: its own ``__init__`` arguments, a message
    passed up (so ``pickle``'s ``cls(*args)`` cannot rebuild it)."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"{status} from {url}")
        self.status, self.url = status, url


def fetch_partition(df: pd.DataFrame) -> pd.DataFrame:
    if df.a.iloc[0] >= 5:
        raise ApiError(503, "http://example.invalid/part")
    return df


def test_errors_inside_collections_keep_their_type_attributes_and_traceback(client):
    ddf = dd.from_pandas(pd.DataFrame({"a": np.arange(10)}), npartitions=2)
    with pytest.raises(ApiError) as info:
        ddf.map_partitions(fetch_partition, meta=ddf._meta).compute()
    assert info.value.status == 503 and str(info.value).startswith("503 from")
    tb = "".join(traceback.format_exception(info.type, info.value, info.tb))
    assert "fetch_partition" in tb  # the worker's frames come back
    with pytest.raises(ApiError):
        delayed(fetch_partition)(pd.DataFrame({"a": [7]})).compute()
    with pytest.raises(TypeError, match="unsupported operand"):
        db.from_sequence([1, 2, "x"], npartitions=2).map(lambda v: v + "!").compute()
    with pytest.raises(ZeroDivisionError):
        da.ones(10, chunks=5).map_blocks(lambda b: b * (1 / 0), dtype=float).compute()
    assert ddf.a.sum().compute() == 45  # the client is fine afterwards


@pytest.mark.filterwarnings("ignore:Computing mixed collections")  # dask's own advice
def test_array_arithmetic_with_a_dataframe_reduction_and_compute_variants(client):
    # dask computes ``ddf.v.sum()`` while it builds ``arr.mean() + ddf.v.sum()`` and drops
    # that future; shoal then lost the key between its graph and the release (issue of
    # this round: LostDataError on the first compute of each such expression).
    pdf = pd.DataFrame({"k": np.arange(300) % 7, "v": np.linspace(0, 1, 300)})
    ddf = dd.from_pandas(pdf, npartitions=4)
    arr = da.ones((100, 10), chunks=10)
    for _ in range(3):
        mixed = arr.mean() + ddf.v.sum()
        assert client.compute(mixed).result(timeout=30) == pytest.approx(1 + pdf.v.sum())
    futures = client.compute([ddf.k.max(), arr.sum()], traverse=False)
    assert client.gather(futures) == [6, 1000.0]
    persisted = client.persist([ddf.v, arr])
    assert [type(p).__name__ for p in persisted] == ["Series", "Array"]
    assert persisted[0].sum().compute() == pytest.approx(pdf.v.sum())
    with dask.config.set(scheduler=client):
        assert db.from_sequence(range(10), npartitions=3).sum().compute() == 45
