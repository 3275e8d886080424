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


def _exchange(batch: list[Message], here: list[Message] | None = None) -> list[Message]:
    """Send ``batch`` in one write over loopback TCP; what the other end received, up to
    the ``FreeKeys(["last"])`` that must end it (and in ``here``, what the sender's own
    handler was given)."""

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
            conn.send_many([*batch, FreeKeys(["last"])])
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
                      [None, None], [4, 5], [(), ()]),
            KeysDone(["k1", "k2"], [8, 8], [bad, "int"], [None, None]),  # type: ignore[list-item]
            FreeKeys([bad]),  # nothing stands in for it: dropped
            Response(8, True, "fine"),
        ])
    tags = [(m.tag, m.key if hasattr(m, "key") else list(getattr(m, "keys", ()))) for m in got]
    assert tags == [
        ("free-keys", ["first"]), ("response", []), ("task-erred", "t"),
        ("task-done", "ok"), ("task-erred", "no"), ("key-erred", "k1"), ("key-done", "k2"),
        ("response", []), ("free-keys", ["last"]),
    ]
    reply = got[1]
    assert isinstance(reply, Response) and reply.request_id == 7 and not reply.ok
    assert "could not be encoded" in reply.value and "Opaque" in reply.value
    erred = got[2]
    assert isinstance(erred, TaskErred) and erred.run == 3
    assert "could not encode a 'task-done' message" in erred.error["message"]
    assert isinstance(got[4], TaskErred) and got[4].run == 5
    assert isinstance(got[5], KeyErred) and isinstance(got[6], KeyDone)
    assert got[7] == Response(8, True, "fine")
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
    assert "'op' could not be encoded" in reply.value
    assert isinstance(erred, TaskErred) and erred.key == ("k", bad) and erred.run == 9
