"""A batch holding a message that cannot be encoded still delivers every other message,
and a message a peer waits on arrives as its failure instead (a reply with ok=False, a
task's result as TaskErred), with a log line naming the message and the peer. Once, the
whole batch was dropped: the rest of it was lost and the user's program hung.
Real sockets on this host; every wait has a deadline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from shoal.comm import connect, listen
from shoal.comm._tcp import TCPConnection
from shoal.protocol._messages import (
    Compute,
    Computes,
    FreeKeys,
    KeyDone,
    KeyErred,
    KeysDone,
    Message,
    ReleaseKeys,
    Request,
    Response,
    TaskDone,
    TaskErred,
    TasksDone,
)
from shoal.protocol._serialize import dumps

DEADLINE = 20.0


class Opaque:
    """A value msgpack cannot carry."""


def _exchange(batch: list[Message], here: list[Message] | None = None,
              then: list[Message] = ()) -> list[Message]:  # type: ignore[assignment]
    """Send ``batch`` in one write over loopback TCP (and ``then`` in a second one); what
    the other end received, up to the ``FreeKeys(["last"])`` that must end it (and in
    ``here``, what the sender's own handler was given)."""

    mine: list[Message] = here if here is not None else []

    async def main() -> list[Message]:
        got: list[Message] = []
        last = asyncio.Event()
        accepted: asyncio.Future[TCPConnection] = asyncio.get_running_loop().create_future()

        def on_batch(_conn: Any, msgs: list[Message] | None) -> None:
            for msg in msgs or ():
                got.append(msg)
                if isinstance(msg, FreeKeys) and list(msg.keys) == ["last"]:
                    last.set()

        def accept(conn: TCPConnection) -> None:
            conn.set_handler(on_batch)
            accepted.set_result(conn)

        server = await listen("127.0.0.1", 0, accept)
        try:
            conn = await connect(f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            conn.set_handler(lambda c, b: mine.extend(b or ()))
            await asyncio.wait_for(accepted, DEADLINE)
            if then:
                conn.send_many(batch)
                conn.flush()
            conn.send_many([*(then or batch), FreeKeys(["last"])])
            await asyncio.wait_for(last.wait(), DEADLINE)
            conn.close()
        finally:
            server.close()
        return got

    return asyncio.run(main())


def test_one_unencodable_message_does_not_lose_the_rest_of_its_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = Opaque()
    with caplog.at_level(logging.ERROR, logger="shoal.comm"):
        got = _exchange([
            FreeKeys(["first"]),
            Response(7, True, {"value": bad}),
            TaskDone("t", 8, bad, 0.0, 1.0, 1, None, 3),  # type: ignore[arg-type]
            TasksDone(["ok", "no"], [8, 8], ["int", bad], [0.0, 0.0], [1.0, 1.0], [1, 1],  # type: ignore[list-item]
                      [None, None], [4, 5], [(), ()], [None, None]),
            KeysDone(["k1", "k2"], [8, 8], [bad, "int"], [None, None], [None, None]),  # type: ignore[list-item]
            FreeKeys([bad]),  # nothing stands in for it: dropped
            ReleaseKeys(["r1", bad, "r2"]),  # split: the other keys' release still goes
            Response(8, True, "fine"),
        ])
    tags = [(m.tag, m.key if hasattr(m, "key") else list(getattr(m, "keys", ()))) for m in got]
    assert tags == [
        ("free-keys", ["first"]), ("response", []), ("task-erred", "t"),
        ("task-done", "ok"), ("task-erred", "no"), ("key-erred", "k1"), ("key-done", "k2"),
        ("release-keys", ["r1"]), ("release-keys", ["r2"]), ("response", []),
        ("free-keys", ["last"]),
    ]
    reply = got[1]
    assert isinstance(reply, Response) and reply.request_id == 7 and not reply.ok
    assert "could not encode a 'response'" in reply.value["message"]
    assert "Opaque" in reply.value["message"]
    erred = got[2]
    assert isinstance(erred, TaskErred) and erred.run == 3
    assert "could not encode a 'task-done' message" in erred.error["message"]
    assert isinstance(got[4], TaskErred) and got[4].run == 5
    assert isinstance(got[5], KeyErred) and isinstance(got[6], KeyDone)
    assert got[9] == Response(8, True, "fine")
    assert "could not encode a 'free-keys' message" in caplog.text
    assert "dropping it" in caplog.text and "Opaque" in caplog.text


def test_a_compute_or_request_that_cannot_go_is_answered_on_this_side() -> None:
    bad = Opaque()
    here: list[Message] = []
    got = _exchange([
        Request(3, "op", {"arg": bad}),
        Compute(("k", bad), dumps(1), [], {"f1": b"blob"}, 0, True, "p", 9),
    ], here)
    # The compute's function blob still goes (later computes rely on it), rowless.
    assert [m.tag for m in got] == ["computes-as-columns", "free-keys"]
    assert isinstance(got[0], Computes) and not got[0].keys
    assert got[0].functions == {"f1": b"blob"}
    # This side hears what the peer would have answered.
    assert [m.tag for m in here] == ["response", "task-erred"]
    reply, erred = here
    assert isinstance(reply, Response) and reply.request_id == 3 and not reply.ok
    assert "a 'request' message (request 'op')" in reply.value["message"]
    assert isinstance(erred, TaskErred) and erred.key == ("k", bad) and erred.run == 9


def test_every_request_that_cannot_go_is_answered_on_this_side() -> None:
    """Each message someone waits on the answer of: when it cannot go, the sender's own
    handler gets the answer the peer gives a failure, an error saying what could not be
    sent, instead of nothing (the waiter hung, or waited for its deadline)."""
    from shoal.protocol._coord_messages import CoordEventIsSet, CoordQueueCreate, CoordReply
    from shoal.protocol._errors import error_to_exception
    from shoal.protocol._messages import (
        ActorCall,
        ActorResult,
        CopyKeys,
        Data,
        DatasetGet,
        DatasetList,
        DatasetPublish,
        DatasetUnpublish,
        GetData,
        PluginSetup,
        PluginTeardown,
        ProfileAsk,
        Run,
        Scatter,
        ScatterStored,
        Store,
        TopicGet,
    )

    bad = Opaque()
    requests: list[Message] = [
        Scatter(1, [(("k", bad), dumps(1), 8, "int")], None, False),
        TopicGet(2, bad),  # type: ignore[arg-type]
        DatasetPublish(3, [(bad, b"x", [])], False),
        DatasetUnpublish(4, [bad]),
        DatasetGet(5, [bad]),
        Run(6, dumps(1), bad),  # type: ignore[arg-type]
        PluginSetup(7, bad, dumps(1), "worker"),  # type: ignore[arg-type]
        PluginTeardown(8, bad),  # type: ignore[arg-type]
        CopyKeys(9, [(bad, [])]),
        ProfileAsk(10, None, None, bad, False),  # type: ignore[arg-type]
    ]
    here: list[Message] = []
    got = _exchange([
        *requests,
        PluginSetup(0, bad, dumps(1), "worker"),  # a re-send nobody waits on: no answer
        GetData(11, ["fine", bad]),
        ActorCall(12, bad, "method", None),
        Store(bad, dumps(1), 8),
        CoordQueueCreate(13, bad, 0),  # type: ignore[arg-type]
        CoordEventIsSet(14, bad),  # type: ignore[arg-type]
        DatasetList(15),  # goes: the one of these that can
    ], here)
    assert [m.tag for m in got] == ["dataset-list", "free-keys"]
    assert [m.tag for m in here] == ["response"] * len(requests) + [
        "data", "actor-result", "scatter-stored", "coord-reply", "coord-reply"]
    for msg, answer in zip(requests, here, strict=False):
        assert isinstance(answer, Response)
        assert answer.request_id == msg.request_id and not answer.ok  # type: ignore[attr-defined]
        err = error_to_exception(answer.value)
        assert isinstance(err, TypeError)
        assert f"could not encode a {msg.tag!r} message" in str(err)
    data, actor, stored, *coord = here[len(requests):]
    assert isinstance(data, Data) and data.request_id == 11 and not data.items
    assert set(data.errors) == {"fine", bad}  # every key asked fails: none arrives
    assert isinstance(error_to_exception(data.errors[bad]), TypeError)
    assert isinstance(actor, ActorResult) and actor.request_id == 12 and not actor.ok
    assert "could not encode a 'actor-call' message" in actor.value["message"]
    assert isinstance(stored, ScatterStored) and stored.key is bad
    assert stored.error is not None and "'store' message" in stored.error["message"]
    for rid, reply in zip([13, 14], coord, strict=True):
        assert isinstance(reply, CoordReply) and reply.request_id == rid and not reply.ok
        kind, text = reply.value
        assert kind == "TypeError" and "could not encode a 'coord-" in text


def test_a_reply_that_cannot_go_fails_its_request_with_a_type_error() -> None:
    from shoal.protocol._coord_messages import CoordReply
    from shoal.protocol._errors import request_failed

    bad = Opaque()
    got = _exchange([Response(7, True, bad), CoordReply(8, True, bad)])
    reply, coord, _last = got
    assert isinstance(reply, Response) and not reply.ok
    err = request_failed(reply.value)
    assert isinstance(err, TypeError) and "could not encode a 'response' message" in str(err)
    assert isinstance(coord, CoordReply) and not coord.ok
    assert coord.value[0] == "TypeError" and "'coord-reply' message" in coord.value[1]


def test_a_graph_or_its_piece_that_cannot_go_still_delivers_its_functions_and_its_end() -> None:
    """The client counts a graph's function blobs sent, and the scheduler keeps a graph's
    earlier pieces until its last piece: both still go, without the rows."""
    from shoal.protocol._messages import UpdateGraph

    bad = Opaque()
    here: list[Message] = []
    got = _exchange([
        UpdateGraph([(bad, None, [], ["f1"], 0, 0, None, "p")], [bad], {"f1": b"blob"}),
        UpdateGraph([(bad, None, [], [], 0, 0, None, "p")], [bad], {}, more=True, stream=3),
        UpdateGraph([(bad, None, [], ["f2"], 0, 0, None, "p")], [bad, "k"], {"f2": b"b2"},
                    more=False, stream=3),
    ], here)
    assert [(list(m.tasks), list(m.wanted), m.functions, m.more, m.stream)  # type: ignore[attr-defined]
            for m in got[:-1]] == [([], [], {"f1": b"blob"}, False, 0),
                                   ([], [], {"f2": b"b2"}, False, 3)]
    assert [(m.tag, m.key) for m in here] == [  # type: ignore[attr-defined]
        ("key-erred", bad), ("key-erred", bad), ("key-erred", bad), ("key-erred", "k")]


def test_the_later_pieces_of_a_graph_whose_piece_cannot_go_fail_with_its_error() -> None:
    """They need that piece's tasks (the scheduler would fail them with "lost
    dependencies"): they do not go, their wanted keys fail here with the piece's error, and
    only the graph's end (and blobs) go. Another graph's pieces are not touched."""
    from shoal.protocol._messages import UpdateGraph

    bad = Opaque()
    here: list[Message] = []

    def row(key: Any) -> tuple[Any, ...]:
        return (key, None, [], [], 0, 0, None, "p")

    got = _exchange([
        UpdateGraph([row("a")], ["a"], {}, more=True, stream=5),
        UpdateGraph([row(bad)], [], {}, more=True, stream=5),
        UpdateGraph([row("b")], ["b"], {"f": b"blob"}, more=True, stream=5),
        UpdateGraph([row("x")], ["x"], {}, more=True, stream=6),
    ], here, then=[
        UpdateGraph([row("c")], ["c", "top"], {}, more=False, stream=5),
        UpdateGraph([row("y")], ["y"], {}, more=False, stream=6),
        UpdateGraph([row("d")], ["d"], {}, more=True, stream=7),  # a new graph goes
    ])
    assert [(m.stream, [r[0] for r in m.tasks], list(m.wanted), m.functions, m.more)  # type: ignore[attr-defined]
            for m in got[:-1]] == [
        (5, ["a"], ["a"], {}, True), (5, [], [], {"f": b"blob"}, True),
        (6, ["x"], ["x"], {}, True), (5, [], [], {}, False), (6, ["y"], ["y"], {}, False),
        (7, ["d"], ["d"], {}, True)]
    assert [m.key for m in here] == ["b", "c", "top"]  # type: ignore[attr-defined]
    assert all(isinstance(m, KeyErred) and "Opaque" in m.error["message"] for m in here)
