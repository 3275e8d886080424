"""A remote client's scheduler session: opening it, losing it, and opening it again.

Owns: the first connection's retries (``connect_retrying``), the hello that opens a
session on a new connection (``open_session``), what a lost
connection does to a TCP client (``lost``: every future cancelled with dask's
"scheduler-connection-lost" reason, pending requests failed, status ``"connecting"``),
the retries until the client's ``timeout`` (``reconnect``, one task per outage, owned by
the client: ``close`` cancels it and awaits its end, ``stopped``), the new session once the scheduler answers again
(``resume``: status ``"running"``, subscriptions renewed, what was queued meanwhile sent),
and giving up (``give_up``: status ``"closed"``, everything still waiting failed).
Calls made during an outage wait for the new session (``connection``), as dask's client
buffers them: submissions wait in the ordered outbox, requests here.

Must not know: tasks and results (the facade reads what arrives), how futures are built.
The in-process client of a ``LocalCluster`` does not reconnect: its scheduler lives in its
process, so losing it means the cluster closed (``closed_for_good``: its futures ``lost``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.client import _coordination, _timeouts, _topics
from shoal.protocol._errors import ClosedClientError
from shoal.protocol._messages import PROTOCOL_VERSION, Hello, Response, TopicSubscribe

if TYPE_CHECKING:
    from shoal.client._client import Client
    from shoal.client._future import FutureState
    from shoal.comm import Connection

logger = logging.getLogger("shoal.client")

# dask's reason and message for the futures of a client whose connection dropped.
LOST_REASON = "scheduler-connection-lost"
LOST_MESSAGE = ("Client lost the connection to the scheduler. Please check your connection "
                "and re-run your work.")
LOST_TEXT = f"cancelled for reason: {LOST_REASON}. {LOST_MESSAGE}"
# Seconds between attempts: the first soon (a scheduler restarted at once), then slower.
FIRST_DELAY = 0.05
MAX_DELAY = 0.5
# Seconds ``close`` waits for a cancelled reconnect task to end (it ends at its next
# await: far sooner).
STOP_WITHIN = 5.0


class Outage:
    """One outage of a client's scheduler connection: its retries and who waits for them."""

    def __init__(self, address: str, deadline: float) -> None:
        self.address = address
        self.deadline = deadline  # loop time: give up then
        self.last_error = ""  # the last attempt's failure, for the give-up message
        # Requests made during the outage await this (shielded): the new session, or
        # ClosedClientError when the client gives up or is closed.
        self.back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.back.add_done_callback(_retrieve)
        self.task: asyncio.Task[None] | None = None


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # nobody may be waiting: no "never retrieved" warning


async def open_session(client: Client, conn: Connection, within: float) -> dict[str, Any]:
    """Say hello on ``conn`` and wait (``within`` seconds) for the scheduler's welcome, then
    hand the connection's messages to the client. The hello names the client's previous
    session, if it had one, which the scheduler then drops at once (its connection may
    still look open there: a half-open link). Until the welcome the connection has a
    handler of its own, so one that closes fails this attempt only, never the client's
    other waiters.

    Raises:
        ConnectionError: the connection closed first (a relay whose scheduler is down,
            a protocol mismatch the scheduler closed on).
        TimeoutError: no welcome within ``within`` seconds.
    """
    welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def first(c: Connection, batch: list[Any] | None) -> None:
        if welcome.done():
            return
        if batch is None:
            welcome.set_exception(ConnectionError(
                "the scheduler closed the connection before welcoming this client"))
            return
        head, rest = batch[0], batch[1:]
        if type(head) is not Response or head.request_id != 0:
            welcome.set_exception(ConnectionError(
                f"the scheduler answered the hello with {type(head).__name__}"))
            c.close()
            return
        welcome.set_result(head.value)
        client._session_name = head.value.get("client", "")  # the one a reconnect names
        c.set_handler(client._on_message)  # what follows is the session's
        if rest:
            client._on_message(c, rest)

    conn.set_handler(first)
    # On a reconnect, the session before (the last one welcomed, even if its connection
    # dropped at once): the scheduler drops it now if it still looks open there.
    conn.send(Hello("client", PROTOCOL_VERSION, client.id, client._session_name))
    try:
        return await asyncio.wait_for(welcome, within)
    except BaseException:
        conn.close()
        raise


async def connect_retrying(client: Client, address: str) -> Connection:
    """The first connection to the scheduler, trying again while it does not answer yet
    (a scheduler still starting), as dask's client does; the caller bounds the whole by
    the client's timeout. A refusal of our credentials is final here.

    Raises:
        HandshakeError: the scheduler refused us (or we it); says why.
        ValueError: the address needs credentials this client does not have.
    """
    from shoal.comm import connect
    from shoal.comm._handshake import HandshakeError

    delay = 0.01
    within = client._timeout or 30.0
    deadline = time.monotonic() + within  # the caller bounds it too (Client start-up)
    while True:  # ends: connected, a refusal, or the deadline
        try:
            return await connect(address, timeout=within, security=client.security)
        except (ValueError, HandshakeError):
            raise
        except OSError as exc:
            client._last_connect_error = str(exc)
            if time.monotonic() + delay > deadline:
                raise TimeoutError(f"no scheduler answered at {address} within {within:g} s "
                                   f"(last error: {exc})") from exc
            logger.debug("could not reach the scheduler at %s yet (%s); retrying", address, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def closed_for_good(client: Client) -> None:
    """On the loop: the connection of a client that does not reconnect dropped (an
    in-process client whose LocalCluster closed, a closed cluster's, a worker's client
    closing with its worker): it is closed, and its futures, finished ones too (their
    values are out of reach), are ``lost``; whatever waits for an answer fails."""
    client.status = "closed"
    client._release_gc()
    if client._is_default:  # dask.compute goes to the newest client still open
        client._step_down_as_default()
    for st in list(client._states.values()):
        if st.status in ("pending", "finished"):
            st.error = {"kind": "lost", "type": "CommClosedError",
                        "message": "the connection to the scheduler was lost; connect a new "
                                   "Client and run the work again",
                        "exception": None, "traceback": None, "tb_text": ""}
            st.inline = None
            st.settle("lost")
    fail_requests(client, ConnectionError("the connection to the scheduler was lost"))
    _coordination.fail_pending(client, "the connection to the scheduler was lost")


def lost(client: Client) -> None:
    """On the loop: the running client's connection to its scheduler dropped. As dask's:
    every future is cancelled (the scheduler has forgotten this session's work, or is
    gone), requests waiting for answers fail, and the client keeps trying to connect
    until its timeout; calls made meanwhile wait for the new session."""
    loop = asyncio.get_running_loop()
    client.status = "connecting"
    client._conn = None
    outage = client._outage = Outage(client._connect_address,
                                      loop.time() + (client._timeout or 0.0))
    states = forget_session(client)
    cancel(states, LOST_TEXT)
    fail_requests(client, ConnectionError(
        "the connection to the scheduler was lost before it answered; the client is "
        "reconnecting: ask again"))
    logger.info("Client %s lost its connection to the scheduler at %s; reconnecting for "
                "up to %s s", client.id, outage.address, client._timeout)
    outage.task = loop.create_task(reconnect(client, outage), name=f"{client.id}-reconnect")


def forget_session(client: Client, closing: bool = False) -> list[FutureState]:
    """Drop what belonged to the ended session, in one step under the client's lock (a
    user thread queueing a submission sees all of it or none): every future state (its
    futures keep it), deaths not yet counted, messages not yet sent, the functions the
    scheduler knew; and the session's number moves on, so that a submission whose futures
    were made before (and are cancelled now) drops its rows rather than queue them for the
    next session (``_submit_rows``, ``GraphPieces``), where no future would want them.
    ``closing``: the client is closed in the same step, so a submission that passed its
    check before is refused when it queues. Returns the states to settle."""
    with client._lock:
        client._session += 1
        if closing:
            client.status = "closed"
        states = list(client._states.values())
        client._states.clear()
        client._dead.clear()
        client._outbox.clear()
        client._sent_fids.clear()
        _coordination.fail_pending(
            client, "the connection to the scheduler was lost before it answered; this "
            "request was not applied and will not be sent again: make it again")
    return states


def cancel(states: list[FutureState], message: str) -> None:
    for st in states:
        if st.status == "cancelled":
            continue
        st.error = {"kind": "cancelled", "type": "CancelledError", "message": message,
                    "exception": None, "traceback": None, "tb_text": ""}
        st.inline = None
        st.settle("cancelled")


def fail_requests(client: Client, error: BaseException) -> None:
    requests = client._requests
    while requests:
        _, fut = requests.popitem()
        if not fut.done():
            fut.set_exception(error)


async def reconnect(client: Client, outage: Outage) -> None:
    """Try to open a new session until ``outage.deadline`` (ends: a session, the deadline,
    or ``close`` cancelling this task). Each attempt is bounded by the connect timeout."""
    from shoal.comm import connect

    loop = asyncio.get_running_loop()
    delay = FIRST_DELAY
    while client.status == "connecting":
        left = outage.deadline - loop.time()
        if left <= 0:
            give_up(client, outage)
            return
        within = min(left, _timeouts.connect_timeout())
        try:
            conn = await connect(outage.address, timeout=within, security=client.security)
            info = await open_session(client, conn, max(outage.deadline - loop.time(), 0.01))
        except ValueError as exc:  # credentials this client lacks: no retry helps
            outage.last_error = str(exc)
            give_up(client, outage)
            return
        except (OSError, TimeoutError) as exc:  # refused, closed, silent, a token refused
            outage.last_error = str(exc) or type(exc).__name__
            logger.debug("reconnecting %s to %s: %s", client.id, outage.address, exc)
            await asyncio.sleep(min(delay, max(outage.deadline - loop.time(), 0)))
            delay = min(delay * 2, MAX_DELAY)
            continue
        if client.status != "connecting" or conn.closed:  # closed meanwhile, or it dropped
            conn.close()
            if client.status == "connecting":
                outage.last_error = "the new connection closed at once"
                continue
            return
        resume(client, outage, conn, info)
        return


def resume(client: Client, outage: Outage, conn: Connection, info: dict[str, Any]) -> None:
    """The scheduler welcomed the client again: a fresh session. Subscriptions are renewed
    first, then what was queued during the outage goes out, then waiting requests."""
    client._conn = conn
    client.scheduler_address = info["address"]
    client._outage = None
    client.status = "running"
    renew = []
    handlers = _topics.handlers(client)
    for topic in _topics.DEFAULT_HANDLERS:
        if topic not in handlers:  # the scheduler subscribes every client to these
            renew.append(TopicSubscribe(topic, False))
    renew += [TopicSubscribe(t, True) for t in handlers if t not in _topics.DEFAULT_HANDLERS]
    with client._lock:
        client._outbox.extendleft(reversed(renew))
    client._schedule_drain()
    logger.info("Client %s reconnected to the scheduler at %s", client.id, outage.address)
    if not outage.back.done():
        outage.back.set_result(None)


def give_up(client: Client, outage: Outage) -> None:
    """The outage outlasted the client's timeout: close the client, as dask's does."""
    why = (f"it lost its connection to the scheduler at {outage.address} and could not "
           f"reconnect within {client._timeout} s"
           + (f" (last attempt: {outage.last_error})" if outage.last_error else ""))
    logger.error("Client %s: %s; closing the client", client.id, why)
    client._closed_because = why
    client.status = "closing"
    client._close_now(f"cancelled: the client was closed because {why}")
    if client._is_default:
        client._step_down_as_default()


def end(client: Client, error: ClosedClientError) -> None:
    """The client closes during an outage: stop retrying and fail whoever waits for the
    new session now."""
    outage = client._outage
    if outage is None:
        return
    client._outage = None
    if outage.task is not None and outage.task is not _current_task():
        outage.task.cancel()
    if not outage.back.done():
        outage.back.set_exception(error)


async def stopped(outage: Outage) -> None:
    """After ``end``: wait until the outage's reconnect task has ended (a cancelled attempt
    ends at its next await, closing its connection), so that ``close`` leaves no task of
    the client running. Ends: the task ends, or ``STOP_WITHIN`` seconds (then it is said)."""
    task = outage.task
    if task is None or task.done() or task is _current_task():
        return
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN)
    if not done:
        logger.warning("the reconnect task of a closed client (to %s) did not end within "
                       "%s s of its cancellation; left to end on its own", outage.address,
                       STOP_WITHIN)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def connection(client: Any) -> Connection:
    """The client's connection, once there is one: during an outage, wait for the new
    session (ends: reconnected, given up or closed).

    Raises:
        ClosedClientError: the client is closed, or closes before it reconnects.
    """
    while True:  # ends: each turn returns, raises, or waits for the outage's end
        conn = client._conn
        if conn is not None and client.status == "running":
            return conn
        outage = client._outage
        if outage is None:
            raise ClosedClientError(client._closed_text())
        await asyncio.shield(outage.back)
