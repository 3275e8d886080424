"""A client reconnecting while its old connection still looks open to the scheduler (a
half-open link: the client's host saw the loss, the scheduler's socket waits for TCP
keepalive). The client's ``Hello`` names the session it had; the scheduler drops that
session at once, as if its connection had closed, before taking the new one. Driven
through in-process connection pairs on one loop: the client's end of the old pair is
simply abandoned, so the scheduler's end stays open, as a half-open socket does."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from shoal.comm import inproc_pair
from shoal.protocol import _coord_messages as cm
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    Hello,
    Message,
    Response,
    UpdateGraph,
    from_wire,
)
from shoal.scheduler._server import Scheduler

from ._sim import row


class Session:
    """A client's connection to ``scheduler``, opened with a ``Hello``; keeps what arrives."""

    def __init__(self, scheduler: Scheduler, client_id: str, previous: str = "") -> None:
        self.conn, self.server_end = inproc_pair(client_id, "scheduler")
        scheduler._on_connection(self.server_end)  # type: ignore[arg-type]
        self.got: list[Message] = []
        self._arrived = asyncio.Event()
        self.conn.set_handler(self._on)
        self.conn.send(Hello("client", PROTOCOL_VERSION, client_id, previous))

    def _on(self, conn: Any, batch: list[Message] | None) -> None:
        self.got.extend(batch or [])
        self._arrived.set()

    async def first(self, kind: type, test: Any = lambda m: True, timeout: float = 5) -> Any:
        async def arrived() -> Any:
            while True:  # ends: a match, or the deadline below
                for msg in self.got:
                    if isinstance(msg, kind) and test(msg):
                        return msg
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(arrived(), timeout)

    async def name(self) -> str:
        welcome = await self.first(Response, lambda r: r.request_id == 0)
        return str(welcome.value["client"])

    async def lock(self, rid: int, name: str = "L") -> bool:
        self.conn.send(cm.CoordSemaphoreAcquire(rid, name, 1, f"lease-{rid}", None, None))
        reply = await self.first(cm.CoordReply, lambda r: r.request_id == rid)
        return bool(reply.value)


def run(scenario: Any) -> None:
    async def main() -> None:
        scheduler = Scheduler()
        try:
            await scenario(scheduler)
        finally:
            scheduler.state.validate()
            scheduler.coordination.state.validate()
            await scheduler.close()

    asyncio.run(main())


async def _settled() -> None:
    for _ in range(3):  # in-process deliveries and closes take a loop turn each
        await asyncio.sleep(0)


def test_a_reconnecting_client_drops_its_half_open_session_and_all_it_held() -> None:
    async def scenario(s: Scheduler) -> None:
        old = Session(s, "Client-1")
        old_name = await old.name()
        old.conn.send(UpdateGraph([row("x")], ["x"], {}))
        assert await old.lock(1)
        other = Session(s, "Client-2")
        other_name = await other.name()
        other.conn.send(cm.CoordSemaphoreAcquire(1, "L", 1, "lease-o", None, None))
        await _settled()
        assert s.state.clients[old_name] == {s.state.tasks["x"]}
        assert not [m for m in other.got if isinstance(m, cm.CoordReply)]  # it waits

        # The client saw its link drop; the scheduler did not (its end stays open).
        new = Session(s, "Client-1", previous=old_name)
        new_name = await new.name()
        assert new_name != old_name
        assert old_name not in s.state.clients and old_name not in s._clients
        assert "x" not in s.state.tasks  # nobody wants it any more
        assert old.server_end.closed
        reply = await other.first(cm.CoordReply, lambda r: r.request_id == 1)
        assert reply.value is True  # the old session's lock went to the next waiter
        assert set(s.state.clients) >= {new_name, other_name}
        # The new session works as any.
        new.conn.send(UpdateGraph([row("y")], ["y"], {}))
        await _settled()
        assert s.state.clients[new_name] == {s.state.tasks["y"]}

    run(scenario)


def test_an_old_connection_that_speaks_after_its_session_was_dropped_is_closed_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(s: Scheduler) -> None:
        old = Session(s, "Client-1")
        old_name = await old.name()
        new = Session(s, "Client-1", previous=old_name)
        await new.name()
        old.server_end.closed = False  # as if bytes were still on their way from it
        with caplog.at_level(logging.WARNING, logger="shoal.scheduler"):
            old.server_end._deliver([UpdateGraph([row("late")], ["late"], {})])
        assert "late" not in s.state.tasks and old_name not in s.state.clients
        assert old.server_end.closed
        assert any(old_name in r.getMessage() and "dropped" in r.getMessage()
                   for r in caplog.records), caplog.text
        old.server_end._deliver(None)  # its close, heard later, changes nothing
        await _settled()
        assert old_name not in s.state.clients

    run(scenario)


def test_a_hello_naming_another_clients_session_drops_nothing() -> None:
    async def scenario(s: Scheduler) -> None:
        victim = Session(s, "Client-1")
        victim_name = await victim.name()
        victim.conn.send(UpdateGraph([row("x")], ["x"], {}))
        stranger = Session(s, "Client-2", previous=victim_name)
        await stranger.name()
        assert s._clients[victim_name] is victim.server_end and not victim.server_end.closed
        assert "x" in s.state.tasks
        # A session the scheduler does not know (it restarted, or the session's close was
        # heard first) is nothing to drop either.
        late = Session(s, "Client-3", previous="Client-3-99")
        assert (await late.name()).startswith("Client-3-")

    run(scenario)


def test_a_hello_of_an_older_protocol_is_read_so_the_version_check_can_say_so() -> None:
    hello = from_wire(("hello", "client", PROTOCOL_VERSION - 1, "Client-1"))
    assert hello == Hello("client", PROTOCOL_VERSION - 1, "Client-1", "")
    assert from_wire(Hello("client", 3, "c", "c-1").to_wire()) == Hello("client", 3, "c", "c-1")



def test_a_reconnect_also_drops_the_sessions_of_earlier_attempts_whose_welcome_was_lost() -> None:
    # Each attempt of one outage names the same previous session (the last one welcomed):
    # an attempt whose welcome never reached the client opened a session the client never
    # learnt the name of. The next attempt's Hello drops it too (it may be half-open).
    async def scenario(s: Scheduler) -> None:
        first = Session(s, "Client-1")
        first_name = await first.name()
        lost = Session(s, "Client-1", previous=first_name)  # its welcome is "lost"
        lost_name = await lost.name()
        lost.conn.send(UpdateGraph([row("x")], ["x"], {}))
        # A session of the same id naming no previous one is no attempt of this outage.
        namesake = Session(s, "Client-1")
        namesake_name = await namesake.name()
        new = Session(s, "Client-1", previous=first_name)
        new_name = await new.name()
        await _settled()
        assert lost_name not in s._clients and lost_name not in s.state.clients
        assert lost.server_end.closed and "x" not in s.state.tasks
        assert first_name not in s._clients
        assert {new_name, namesake_name} <= set(s._clients)
        assert not namesake.server_end.closed

    run(scenario)


def test_a_first_connection_drops_the_sessions_of_its_earlier_attempts_whose_welcome_was_lost(
) -> None:
    # A client's first connection retries too: an attempt whose welcome never came (the
    # client timed out waiting) opened a session the client never learnt of, which would
    # hold its work until keepalive. Client ids are unique to a client (Client-<uuid>).
    async def scenario(s: Scheduler) -> None:
        lost = Session(s, "Client-5e1f")
        lost_name = await lost.name()
        lost.conn.send(UpdateGraph([row("x")], ["x"], {}))
        other = Session(s, "Client-07aa")
        other_name = await other.name()
        await _settled()
        assert "x" in s.state.tasks
        new = Session(s, "Client-5e1f")
        new_name = await new.name()
        await _settled()
        assert lost_name not in s._clients and lost_name not in s.state.clients
        assert lost.server_end.closed and "x" not in s.state.tasks
        assert {new_name, other_name} <= set(s._clients)
        assert not other.server_end.closed

    run(scenario)
