"""Large graphs go to the scheduler in pieces (``_submit.PIECE_ROWS`` rows each): shrunk
here so that small graphs take that path, end to end."""

from __future__ import annotations

import operator

import dask
import dask.array as da
import pytest

from shoal import Client, wait
from shoal.client import _submit

pytestmark = pytest.mark.integration


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_submit, "PIECE_ROWS", 7)


def test_a_map_sent_in_pieces_gives_every_result(client: Client, small_pieces: None) -> None:
    futures = client.map(operator.neg, range(100))
    assert client.gather(futures) == [-i for i in range(100)]


def test_a_collection_sent_in_pieces_computes_as_sent_whole(
    client: Client, small_pieces: None
) -> None:
    x = da.arange(60, chunks=1)
    total = (x + 1).sum()
    assert total.compute() == sum(range(1, 61))
    assert client.compute(total).result() == sum(range(1, 61))


def test_a_delayed_tree_sent_in_pieces_keeps_intermediates_it_needs(
    client: Client, small_pieces: None
) -> None:
    leaves = [dask.delayed(operator.add)(i, 1) for i in range(32)]
    while len(leaves) > 1:
        leaves = [dask.delayed(operator.add)(a, b) for a, b in
                  zip(leaves[::2], leaves[1::2], strict=True)]
    future = client.compute(leaves[0])
    wait([future], timeout=60)
    assert future.result() == sum(range(1, 33))
