"""How the client's futures take the scheduler's word about their keys (no processes: the
client's message handler fed directly)."""

from __future__ import annotations

from types import SimpleNamespace

from shoal.client._client import Client
from shoal.client._future import FutureState
from shoal.protocol._messages import KeyDone
from shoal.protocol._serialize import dumps


def test_a_key_done_resent_without_its_value_keeps_the_value_delivered_inline() -> None:
    client = SimpleNamespace(_states={"x": FutureState()})
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(7))])  # type: ignore[arg-type]
    # Sent again (the key wanted again, or its placement changed), now without the value.
    Client._on_message(client, None, [KeyDone("x", 28, "int", None)])  # type: ignore[arg-type]
    st = client._states["x"]
    assert st.status == "finished"
    assert st.inline is not None and st.inline_value() == 7


def test_a_key_done_with_a_new_inline_value_replaces_the_old() -> None:
    client = SimpleNamespace(_states={"x": FutureState()})
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(7))])  # type: ignore[arg-type]
    Client._on_message(client, None, [KeyDone("x", 28, "int", dumps(8))])  # type: ignore[arg-type]
    assert client._states["x"].inline_value() == 8


def test_a_held_inline_result_keeps_only_its_one_frame_and_a_shared_type_name() -> None:
    # a million held futures: no Serialized wrapper and no type-name copy per future
    client = SimpleNamespace(_states={"x": FutureState(), "y": FutureState()})
    done = [KeyDone("x", 28, "".join("int"), dumps(7)), KeyDone("y", 28, "".join("int"), dumps(8))]
    Client._on_message(client, None, done)  # type: ignore[arg-type]
    x, y = client._states["x"], client._states["y"]
    assert type(x.inline) is bytes
    assert (x.inline_value(), y.inline_value()) == (7, 8)
    assert x.typename is y.typename


def test_held_futures_with_the_same_tiny_result_share_one_copy_of_it() -> None:
    # a million held futures of None: one pickled None, not a million 37-byte copies
    from shoal.client import _future

    for i in range(_future._SHARED_FRAMES):  # a table filled by other results first
        FutureState().keep_inline(dumps(i))
    client = SimpleNamespace(_states={"x": FutureState(), "y": FutureState(), "z": FutureState()})
    done = [KeyDone("x", 16, "NoneType", dumps(None)), KeyDone("y", 16, "NoneType", dumps(None)),
            KeyDone("z", 28, "str", dumps("a longer result, pickled past 32 bytes"))]
    Client._on_message(client, None, done)  # type: ignore[arg-type]
    x, y, z = client._states["x"], client._states["y"], client._states["z"]
    assert x.inline is y.inline
    assert (x.inline_value(), y.inline_value()) == (None, None)
    assert z.inline_value() == "a longer result, pickled past 32 bytes"


def test_tiny_plain_results_are_read_once_and_mutable_ones_each_time() -> None:
    from shoal.client._future import NOT_PLAIN

    a, b = FutureState(), FutureState()
    for st in (a, b):
        st.keep_inline(dumps(None))
    assert (a.inline_value(), b.inline_value()) == (None, None)
    assert b.plain_value() is None
    x, y = FutureState(), FutureState()
    for st in (x, y):
        st.keep_inline(dumps([1]))  # a list: every reader gets its own
    assert x.inline_value() == y.inline_value() == [1]
    assert x.inline_value() is not y.inline_value()
    assert x.plain_value() is NOT_PLAIN
