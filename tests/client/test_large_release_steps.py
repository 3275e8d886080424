"""Dropping a million futures at once: the client's drain counts the deaths a few release
pieces at a time, so each loop step it takes stays short (issue 14's 1M map: 50,000
deaths a step held the loop 30-60 ms), and every key is still released once, in order.
No processes: the outbox half is driven directly, as in ``test_future_refs``."""

from __future__ import annotations

from typing import Any

from shoal.client import _outbox
from shoal.client._future import Future
from shoal.protocol._messages import ReleaseKeys, UpdateGraph

from .test_future_refs import _Client


def _drain_until_idle(client: _Client) -> list[int]:
    """Drain as the loop would until no drain is scheduled; the deaths each step counted."""
    counted = []
    while client._drain_scheduled:
        before = len(client._dead)
        client._drain()
        counted.append(before - len(client._dead))
    return counted


def test_a_large_drop_is_counted_a_few_pieces_per_step_and_released_whole() -> None:
    client = _Client()
    n = 5 * _outbox.DEAD_PER_STEP + 123
    held: list[Any] = [Future(f"k-{i}", client) for i in range(n)]  # type: ignore[arg-type]
    del held
    order = [key for key, _ in client._dead]
    client._drain_scheduled = True  # as the first death scheduled it

    counted = _drain_until_idle(client)

    assert max(counted) <= 2 * _outbox.RELEASE_PIECE  # each step short
    assert sum(counted) == n
    released = [k for m in client.sent if type(m) is ReleaseKeys for k in m.keys]
    assert released == order  # every key once, in the order the futures died
    assert all(len(m.keys) <= _outbox.RELEASE_PIECE for m in client.sent)
    assert not client._states


def _drop_in_order(held: list[Any]) -> None:
    for i in range(len(held)):
        held[i] = None  # k-0 dies first


def test_keys_submitted_again_during_a_large_release_stay_held() -> None:
    # Two keys are submitted again while the large release is under way: k-0, whose death
    # was counted in the first step (its release goes out before the new submission, which
    # starts afresh), and the last key, whose death was not counted yet (the new future
    # keeps it: it is never released).
    client = _Client()
    n = 3 * _outbox.DEAD_PER_STEP
    last = f"k-{n - 1}"
    held: list[Any] = [Future(f"k-{i}", client) for i in range(n)]  # type: ignore[arg-type]
    _drop_in_order(held)
    client._drain_scheduled = True
    client._drain()  # a first piece out, most deaths not counted yet
    assert "k-0" not in client._states and last in client._states
    again = [Future(k, client) for k in ("k-0", last)]  # type: ignore[arg-type]
    client._send(UpdateGraph([], ["k-0", last], {}))
    _drain_until_idle(client)

    released = [k for m in client.sent if type(m) is ReleaseKeys for k in m.keys]
    assert len(released) == n - 1 and last not in released
    sent_k0 = [i for i, m in enumerate(client.sent)
               if (type(m) is ReleaseKeys and "k-0" in m.keys) or type(m) is UpdateGraph]
    assert [type(client.sent[i]) for i in sent_k0] == [ReleaseKeys, UpdateGraph]
    assert client._held("k-0") and client._held(last)
    assert [f._state.refs for f in again] == [1, 1]
