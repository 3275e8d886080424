"""A second round of collection programs on shoal, off the tutorial path: dask's raw
``Client.get`` interface, dask.array odds and ends (overlaps, blockwise, unique, argtopk,
masked and object arrays, from_delayed of futures), dask.dataframe beyond groupby (parquet
partitions, categorize, pivot tables, merge_asof, single-file CSV, published datasets read
by a second client), bags from gzip files, and failures inside collections. Each result is
checked against dask's local scheduler (``scheduler="sync"``) or plain pandas/numpy."""

from __future__ import annotations

import concurrent.futures
import operator

import pytest

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
