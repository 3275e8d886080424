"""Issue 2: values cross the wire intact (pickle protocol 5, out-of-band buffers).

Zero-copy transport must not change what the user gets back: dtype, shape, memory order and
writeability all survive, in tasks and in the client, exactly as on dask.distributed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def identity(x):
    return x


def is_writeable(array):
    return bool(array.flags.writeable)


def add_one_in_place(array):
    array += 1
    return array


ARRAYS = {
    "large-float64": np.arange(1_000_000, dtype="float64"),
    "fortran-order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided-view": np.arange(100)[::3],
    "empty": np.array([], dtype="int32"),
    "object": np.array(["a", None, 3], dtype=object),
    "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")]),
    "zero-dim": np.array(7.5),
}


def _assert_same_array(got, expected):
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.flags.f_contiguous == expected.flags.f_contiguous or expected.ndim < 2
    if expected.dtype == object:
        assert got.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip_through_a_task(client, name):
    array = ARRAYS[name]
    got = client.submit(identity, array, pure=False).result(timeout=10)
    _assert_same_array(got, array)
    assert got.flags.writeable


@pytest.mark.parametrize("name", list(ARRAYS))
def test_scattered_arrays_are_intact_and_writeable(client, name):
    array = ARRAYS[name]
    [fut] = client.scatter([array])
    assert client.submit(is_writeable, fut, pure=False).result(timeout=10)
    got = client.gather(fut)
    _assert_same_array(got, array)
    assert got.flags.writeable


def test_in_place_changes_on_a_worker_do_not_leak_into_the_clients_array(client):
    array = np.zeros(10_000)
    result = client.submit(add_one_in_place, array, pure=False).result(timeout=10)
    np.testing.assert_array_equal(result, np.ones(10_000))
    np.testing.assert_array_equal(array, np.zeros(10_000))


def test_pandas_values_round_trip(client):
    frame = pd.DataFrame(
        {"i": range(5), "s": list("abcde"), "f": np.linspace(0, 1, 5)},
        index=pd.Index(list("vwxyz"), name="idx"),
    )
    pd.testing.assert_frame_equal(client.submit(identity, frame).result(timeout=10), frame)
    series = pd.Series(pd.Categorical(["a", "b", "a"]), name="cat")
    pd.testing.assert_series_equal(client.submit(identity, series).result(timeout=10), series)
