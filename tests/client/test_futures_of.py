"""``futures_of`` on a list of futures (``wait``'s usual argument): each Future object once,
in order (as dask's, distinct Future objects of one key are each kept)."""

from __future__ import annotations

from typing import Any

from shoal.client._future import Future, FutureState
from shoal.client._structure import futures_of


def _futures(keys: list[str]) -> list[Future]:
    states: dict[str, FutureState] = {}
    client: Any = None
    return [Future._new(k, client, states.setdefault(k, FutureState())) for k in keys]


def test_futures_of_a_list_of_distinct_futures_is_that_list() -> None:
    futs = _futures([f"k-{i}" for i in range(1_000)])
    got = futures_of(futs)
    assert got == futs and all(a is b for a, b in zip(got, futs, strict=True))
    assert futures_of(tuple(futs)) == futs


def test_futures_of_a_list_with_repeated_keys_keeps_each_future_object() -> None:
    futs = _futures(["a", "b", "a", "c", "b"])
    got = futures_of(futs)
    assert [f.key for f in got] == ["a", "b", "a", "c", "b"]
    assert all(a is b for a, b in zip(got, futs, strict=True))


def test_futures_of_lists_a_future_object_given_twice_once() -> None:
    futs = _futures(["a", "b"])
    got = futures_of([futs[0], futs[1], futs[0]])
    assert len(got) == 2 and got[0] is futs[0] and got[1] is futs[1]


def test_futures_of_a_list_mixing_futures_and_other_values_finds_the_futures() -> None:
    futs = _futures(["a", "b"])
    assert futures_of([futs[0], 1, [futs[1], "x"]]) == futs
