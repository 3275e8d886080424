"""A batch of results (``KeysDone``) settles its futures together: every key of the batch
is finished before any waiter wakes or done-callback runs, and each waiter and callback
still runs once (no processes: the client's message handler fed directly)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from _waiting import wait_for

from shoal.client._client import Client
from shoal.client._future import FutureState
from shoal.protocol._columns import keys_done
from shoal.protocol._messages import KeyDone
from shoal.protocol._serialize import dumps


def test_a_result_batch_is_all_finished_before_any_callback_runs() -> None:
    states = {k: FutureState() for k in "abc"}
    seen: list[tuple[str, list[str]]] = []
    for k, st in states.items():
        st.add_callback_if_pending(
            lambda k=k: seen.append((k, [s.status for s in states.values()])))
    client = SimpleNamespace(_states=states)
    batch = keys_done([KeyDone(k, 28, "int", dumps(i)) for i, k in enumerate("abc")])
    Client._on_message(client, None, [batch])  # type: ignore[arg-type]
    assert [k for k, _ in seen] == ["a", "b", "c"]
    assert all(statuses == ["finished"] * 3 for _, statuses in seen)
    assert [states[k].inline_value() for k in "abc"] == [0, 1, 2]


def test_a_result_batch_wakes_every_waiting_thread() -> None:
    states = {k: FutureState() for k in ("x", "y")}
    woke: list[bool] = []
    waiters = [threading.Thread(target=lambda st=st: woke.append(st.wait(30.0)))
               for st in states.values()]
    for t in waiters:
        t.start()
    # each waiter holds its latch before the results come
    wait_for(lambda: all(st._event is not None for st in states.values()))
    client = SimpleNamespace(_states=states)
    batch = keys_done([KeyDone(k, 16, "NoneType", None) for k in states])
    Client._on_message(client, None, [batch])  # type: ignore[arg-type]
    for t in waiters:
        t.join(30.0)
    assert woke == [True, True]
    assert all(st.status == "finished" and st._event is None for st in states.values())
