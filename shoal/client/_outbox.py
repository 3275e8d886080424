"""The client's ordered outbox to the scheduler, and the reference counts that feed it.

Owns: queueing messages for the scheduler in call order (``_send``, drained once per loop
iteration on shoal's loop), releasing keys whose last Future went away (counts per key; a
Future's ``__del__`` only records the death, lock-free, and the drain sends the release
after every message queued before it; once deaths come in, they are counted and released
in one batch every ``RELEASE_DELAY`` rather than wake the loop, or ride a submission, each),
and requests answered by a
``Response`` (``_request``; ``_request_within`` with a deadline).

A mixin of ``Client``: the facade (``_client.py``) creates the fields declared below in its
``__init__`` and handles what comes back. This module must not import the facade.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from typing import TYPE_CHECKING, Any

from shoal import _interrupts, _loop
from shoal.client import _reconnect
from shoal.client._future import Future, FutureState, line_of
from shoal.comm import Connection
from shoal.protocol._messages import Message, ReleaseKeys, Request, UpdateGraph

if TYPE_CHECKING:
    # For the type checker the mixins are what they become once assembled in Client: a
    # ClientCore (so they may hand ``self`` to Futures and helpers). At run time: object.
    from shoal.client._core import ClientCore as Assembled
else:
    Assembled = object


# Keys per ReleaseKeys message when many futures are dropped at once (the scheduler
# releases a key in about 10 µs), and dropped futures counted per loop step. A drain sends
# one piece, so counting two pieces' worth keeps ahead of sending; counting more only
# lengthens the step (0.7-1.2 µs a death: 50,000 a step held the loop 30-60 ms, two or
# three steps between the 1M map's probe ticks, issue 14).
RELEASE_PIECE = 1_000
DEAD_PER_STEP = 2 * RELEASE_PIECE
# Seconds a dropped future's release may wait. A drain that releases keys arms this delay;
# while it runs, a future dropped in a user thread wakes nobody and the drains that carry
# submissions leave its death for the timer's drain: sequential ``submit(...).result()``
# would otherwise wake the loop twice per call, or make each task wait for the release of
# the previous key (scheduler, worker) on its way out.
RELEASE_DELAY = 0.01


class Outbox(Assembled):
    """Messages to the scheduler in call order, releases of dead futures, requests."""

    # Created by Client.__init__.
    status: str
    asynchronous: bool
    _lock: threading.Lock
    _states: dict[Any, FutureState]
    _outbox: collections.deque[Message]
    _dead: collections.deque[Any]
    _drain_scheduled: bool
    _conn: Connection | None
    _request_ids: itertools.count[int]
    _requests: dict[int, asyncio.Future[Any]]
    _release_timer: asyncio.TimerHandle | None
    _session: int

    def _send(self, msg: Message) -> None:
        """Queue ``msg`` for the scheduler. Submissions and releases share this one ordered
        queue so that a release never overtakes the submission of a task that depends on
        the released key."""
        self._outbox.append(msg)
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                _loop.call_soon(self._drain)
            except BaseException:  # (a Ctrl-C at call_soon's first bytecode)
                # Else the flag stayed set with no drain to clear it: nothing this client
                # queued was ever sent again.
                self._drain_scheduled = False
                raise

    def _drain(self) -> None:
        """On the loop: send queued messages, then releases of futures that died meanwhile.

        Large work goes in steps, each its own frame, so that the loop (which the scheduler
        may share) is never held long and the scheduler takes it in short steps too: one
        piece of a large graph per step (see ``_submit``), releases in messages of
        ``RELEASE_PIECE`` keys, at most ``DEAD_PER_STEP`` dropped futures counted per step."""
        self._drain_scheduled = False
        dead = self._dead
        # Deaths are counted at most once per RELEASE_DELAY (the timer's drain, or the
        # first death after a quiet spell): a drain that carries a submission leaves them
        # be, so a sequential ``submit(...).result()`` does not wait for the scheduler and
        # a worker to release the previous key before its task is sent.
        if dead and self._release_timer is None:
            self._count_deaths(dead)
        outbox = self._outbox
        conn = self._conn
        if conn is None:  # reconnecting: it all waits for the new session, which drains it
            if dead and self._release_timer is None:
                self._schedule_drain()  # (ends: deaths counted DEAD_PER_STEP a step)
            return
        msgs: list[Message] = []
        while outbox:
            msg = outbox[0]
            heavy = (type(msg) is UpdateGraph and msg.more) or (
                type(msg) is ReleaseKeys and len(msg.keys) >= RELEASE_PIECE)
            if heavy and msgs:
                break
            msgs.append(outbox.popleft())
            if heavy:
                break
        if msgs:
            conn.hold()  # batched here already: written now, no loop turn for it
            try:
                conn.send_many(msgs)
            finally:
                conn.flush()
        if outbox or (dead and self._release_timer is None):  # after the flush: a step per frame
            self._schedule_drain()

    def _count_deaths(self, dead: collections.deque[Any]) -> None:
        """Count up to ``DEAD_PER_STEP`` recorded deaths, and queue the releases of the keys
        whose last future died. Releases queue behind what is in the outbox: a submission
        queued before a release was recorded (a dependent, then its input's future
        dropped) must go out before it."""
        released: list[Any] = []
        unsettled: list[FutureState] = []
        states = self._states
        with self._lock:
            budget = DEAD_PER_STEP
            while dead and budget:
                budget -= 1
                key, st = dead.popleft()
                current = states.get(key)
                if current is None or (st is not None and current is not st):
                    continue  # a future of a cancelled key: its count was dropped then
                current.refs -= 1
                if current.refs <= 0:
                    del states[key]
                    released.append(key)
                    if current.status == "pending":
                        unsettled.append(current)
        if not dead and self.status == "running":  # all counted: the next in a while
            self._arm_release()
        if unsettled:
            _cancel_released(unsettled)
        outbox = self._outbox
        for start in range(0, len(released), RELEASE_PIECE):
            outbox.append(ReleaseKeys(released[start:start + RELEASE_PIECE]))

    def _arm_release(self) -> None:
        self._release_timer = _loop.get_loop().call_later(RELEASE_DELAY, self._release_due)

    def _release_due(self) -> None:
        """On the loop, ``RELEASE_DELAY`` after a drain released keys: drain the deaths
        recorded since. The timer is cleared before ``_dead`` is looked at, so a death that
        saw it set (and woke nobody) is seen here."""
        self._release_timer = None
        if self._dead and self.status in ("running", "connecting"):
            self._schedule_drain()

    async def _request(self, op: str, **args: Any) -> Any:
        conn = self._conn
        if conn is None or self.status != "running":  # reconnecting: wait for the session
            conn = await _reconnect.connection(self)
        rid = next(self._request_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        conn.send(Request(rid, op, args))
        return await fut

    async def _request_within(self, op: str, within: float | None, /, **args: Any) -> Any:
        """``_request`` on an open client, raising TimeoutError after ``within`` seconds."""
        self._check_open()
        try:
            return await asyncio.wait_for(self._request(op, **args), within)
        except TimeoutError:
            raise TimeoutError(f"the scheduler did not answer {op!r} within {within} s") from None

    def _sync_request(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """``_request_within`` for a caller that blocks (whatever the client's mode)."""
        return self.sync(self._request_within, op, timeout, asynchronous=False, **args)

    # --- reference counting -------------------------------------------------------------------

    def _hold(self, key: Any, state: FutureState | None = None,
              fut: Future | None = None) -> FutureState:
        """A new Future of ``key``: its shared state (``state`` if given), counted, and set
        as ``fut._state`` in the same step: no bytecode that can take a Ctrl-C comes between
        the count and the future knowing it (else its death would not give it back)."""
        with self._lock:
            st = self._states.get(key)
            if state is not None and state is not st:
                if fut is not None:
                    fut._state = state
                return state  # a cancelled key's: not counted, its deaths are skipped
            if st is None:
                st = self._states[key] = FutureState()
            st.refs += 1
            if fut is not None:
                fut._state = st
            return st

    def _futures_in(self, session: int, keys: Any) -> list[Future]:
        """Futures of ``keys`` for a submission begun in ``session``, made in one step: if
        that session has been lost since, they are cancelled as its other futures were
        (the submission's rows will not be queued), never left pending in the next."""
        futures = []
        lost: list[FutureState] = []
        new_future = Future.__new__
        with self._lock:
            gone = session != self._session
            for key in keys:
                st = FutureState() if gone else self._states.get(key)
                if st is None:
                    st = self._states[key] = FutureState()
                fut = new_future(Future)  # (Future._new inlined, as map's: see below)
                fut.key = key
                fut._client = self
                fut._state = st
                if gone:
                    lost.append(st)  # not counted: a cancelled state's deaths are skipped
                else:
                    # Counted once the future knows its state, with no call in between
                    # (a Ctrl-C comes after a call): its death always gives it back.
                    st.refs += 1
                futures.append(fut)
        _reconnect.cancel(lost, _reconnect.LOST_TEXT)
        return futures

    def _held(self, key: Any) -> bool:
        """Whether a Future of this client holds ``key``."""
        st = self._states.get(key)
        return st is not None and st.refs > 0

    def _pin(self, keys: Any) -> list[tuple[Any, FutureState]]:
        """Of ``keys``, those a Future of this client holds now, each counted once more
        (atomically with the check) so that it stays on the cluster until the caller gives
        the pins back with ``_decref(key, state)``. A graph that leaves such a key's row out
        pins it until the graph is queued: a death counted meanwhile on the loop would
        otherwise send the key's release ahead of the graph that needs it."""
        pinned = []
        with self._lock:
            states = self._states
            for key in keys:
                st = states.get(key)
                if st is not None and st.refs > 0:
                    st.refs += 1
                    pinned.append((key, st))
        return pinned

    def _held_keys(self) -> list[Any]:
        return [k for k, st in list(self._states.items()) if st.refs > 0]

    def _decref(self, key: Any, state: FutureState | None = None) -> None:
        """A Future of ``key`` (sharing ``state``) went away. Lock-free: this runs from
        ``__del__``. No loop wake-up while the release delay runs (see ``_release_due``).
        Reconnecting, deaths are recorded too: the new session's futures die meanwhile."""
        if self.status != "running" and self.status != "connecting":
            return
        self._dead.append((key, state))
        if self._release_timer is not None:
            return
        try:
            self._schedule_drain()
        except RuntimeError:  # interpreter shutting down
            pass

    def _forget_state(self, key: Any, st: FutureState) -> None:
        """``key`` was cancelled: its futures keep ``st``; a new submission starts afresh."""
        with self._lock:
            if self._states.get(key) is st:
                del self._states[key]


def _cancel_released(states: list[FutureState]) -> None:
    """Settle the pending ``states`` whose last Future was dropped as cancelled, as dask's
    release of a key does: only a Future released by ``release()`` can still lead to one
    (a ``gather``, ``result()`` or ``as_completed`` given it, in another thread), and it
    would wait for good on a key that no message will settle any more."""
    for st in states:
        st.error = {"kind": "cancelled", "type": "CancelledError",
                    "message": "its future was released (future.release()) before it "
                               "finished; keep a Future you still need, or submit the "
                               "work again",
                    "exception": None, "traceback": None, "tb_text": ""}
    FutureState.settle_all(states, "cancelled")


_APPEND_LINE = line_of(Outbox._decref, "_dead")


def _resume_decref(frame: Any, line: int) -> None:
    """An interrupt came in ``_decref`` (run by ``Future.__del__``): record the death if it
    was not yet, and make sure a drain will count it."""
    client = frame.f_locals["self"]
    live = client.status in ("running", "connecting")
    if line < _APPEND_LINE and live:
        # (the append is its line's only call: an interrupt on that line came after it)
        client._dead.append((frame.f_locals["key"], frame.f_locals["state"]))
    if client._release_timer is None and live:
        client._schedule_drain()


_interrupts.resume_with(Outbox._decref, _resume_decref)
