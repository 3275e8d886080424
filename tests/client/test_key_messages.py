"""How the client's futures take the scheduler's word about their keys (no processes: the
client's message handler fed directly)."""

from __future__ import annotations

from types import SimpleNamespace

from shoal.client._client import Client
from shoal.client._future import FutureState
from shoal.protocol._messages import KeyDone
from shoal.protocol._serialize import dumps, loads


def test_a_key_done_resent_without_its_value_keeps_the_value_delivered_inline() -> None:
    client = SimpleNamespace(_states={"x": FutureState()})
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(7))])  # type: ignore[arg-type]
    # Sent again (the key wanted again, or its placement changed), now without the value.
    Client._on_message(client, None, [KeyDone("x", 28, "int", None)])  # type: ignore[arg-type]
    st = client._states["x"]
    assert st.status == "finished"
    assert st.inline is not None and loads(st.inline) == 7


def test_a_key_done_with_a_new_inline_value_replaces_the_old() -> None:
    client = SimpleNamespace(_states={"x": FutureState()})
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(7))])  # type: ignore[arg-type]
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(8))])  # type: ignore[arg-type]
    assert loads(client._states["x"].inline) == 8
