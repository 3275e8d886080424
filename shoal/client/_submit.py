"""Turning calls into tasks: ``submit`` and ``map``, and ``cancel`` and ``retry`` of what
was submitted.

Owns: key naming (with ``pure=True`` a hash of the function's token and the arguments, like
dask's; a uuid otherwise), checking a call's options (workers, retries, resources, and
those of an active ``dask.annotate`` block), the payload the worker calls (a lean ``Call``,
or a dask ``Task`` when arguments refer to futures), and task rows, queued in one
``UpdateGraph`` with the function blobs the scheduler has not had yet.

A mixin of ``Client`` (see ``_outbox``); this module must not import the facade.
"""

from __future__ import annotations

import itertools
import numbers
import os
import types
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import dask
from dask._task_spec import Task, parse_input
from dask.base import tokenize
from dask.utils import funcname

from shoal import _gc
from shoal.client import _spans
from shoal.client._actor import NewActor
from shoal.client._annotations import other_annotations
from shoal.client._faces import answer
from shoal.client._future import Future, FutureState
from shoal.client._keys import check_user_keys
from shoal.client._outbox import Outbox
from shoal.client._results import cancelled_error
from shoal.client._structure import collect_futures
from shoal.client._tokens import call_tokens, token
from shoal.protocol._call import Call
from shoal.protocol._errors import ClosedClientError
from shoal.protocol._messages import (
    CancelKeys,
    GraphAnnotations,
    Message,
    RetryKeys,
    UpdateGraph,
)
from shoal.protocol._serialize import CallPickles, FunctionCache, Serialized, dumps_task
from shoal.protocol._wire_checks import is_worker_name

# Callables whose token can be cached by identity: they cannot change in place.
_STABLE_CALLABLES = (types.BuiltinFunctionType, types.MethodDescriptorType, type)


# Rows per UpdateGraph piece of a large graph: each piece is one short step of the
# scheduler's loop (about 15 µs a row to take in), and the first pieces run while the
# rest arrive. Smaller graphs go in one message.
PIECE_ROWS = 1_000


def inputs_first(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` reordered so that each row's inputs among them come before it (depth
    first, so a piece tends to hold whole branches), as the pieces of a graph must
    arrive. Rows in a cycle keep their place at the end (the scheduler reports them)."""
    if not any(row[2] for row in rows):  # no inputs at all (a map): already in order
        return rows
    index = {row[0]: i for i, row in enumerate(rows)}
    waiting = [0] * len(rows)
    _gc.settle()  # (shoal/_gc.py: a graph's worth of items, frozen now in bulk mode)
    users: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        for dep in row[2]:
            j = index.get(dep)
            if j is not None and j != i:
                waiting[i] += 1
                users.setdefault(j, []).append(i)
    if not users:
        return rows
    _gc.settle()
    ready = [i for i in range(len(rows) - 1, -1, -1) if not waiting[i]]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for u in users.get(i, ()):
            waiting[u] -= 1
            if not waiting[u]:
                ready.append(u)
    if len(order) < len(rows):
        placed = set(order)
        order.extend(i for i in range(len(rows)) if i not in placed)
    return [rows[i] for i in order]


class GraphPieces:
    """The rows of one large graph, queued for the scheduler in pieces of ``PIECE_ROWS``
    as they are made (``add``), so that its first tasks run while the client is still
    pickling the rest. Rows must come inputs first (each row after the rows of its inputs
    among them): the scheduler takes each piece's tasks at once and keeps the results later
    pieces use until the last piece (``close``) is in. ``abort`` ends a graph that could not be
    made: an empty last piece, so the scheduler lets go of what was sent.

    The pieces carry the graph's stream number: other submissions (other threads', or
    this thread's own while it pickles a row) may go out between two pieces.

    With ``users`` (how many tasks of the graph use each key as an input), each piece names
    the keys of the pieces so far whose users are not all sent yet (``UpdateGraph.held``):
    the scheduler keeps those for the later pieces and lets go of the rest as a whole
    graph's (a reduction's inputs once reduced), instead of every result until the last
    piece. A row the caller leaves out keeps its inputs kept (they count as still used).

    The graph belongs to the scheduler session its futures were made in (``session``). If
    that session is lost before the last piece is queued, the pieces sent went with it
    (the scheduler lets go of them as the session ends) and the loss cancelled the graph's
    futures, as dask's: the pieces still to come are dropped, since the next session,
    lacking the first ones, would fail them with "lost dependencies" (``lost`` says so)."""

    def __init__(self, client: Submitting, wanted: list[Any], session: int,
                 users: Callable[[Any], int] | None = None) -> None:
        self._client = client
        self._users = users
        self._left: dict[Any, int] = {}  # key sent -> its users not sent yet (only if any)
        self._session = session
        self.lost = False  # the session was lost: the rest of the graph is dropped
        self._wanted = dict.fromkeys(wanted)  # not yet named in a piece
        self._rows: list[tuple[Any, ...]] = []
        self._stream = next(client._streams)
        self.sent = 0  # pieces queued
        self._open = True

    def add(self, row: tuple[Any, ...]) -> None:
        rows = self._rows
        rows.append(row)
        users = self._users
        if users is not None:
            left = self._left
            for dep in row[2]:
                n = left.get(dep)
                if n is not None:
                    if n > 1:
                        left[dep] = n - 1
                    else:
                        del left[dep]
            n = users(row[0])
            if n:
                left[row[0]] = n
        if len(rows) >= PIECE_ROWS:
            self._queue(more=True)

    def close(self, also: Iterable[Any] = (), without: Iterable[Any] = (),
              annotations: Serialized | None = None) -> None:
        """Queue the last piece: the remaining rows, and the wanted keys no row had (the
        client submitted them earlier, or, in ``also``, their rows went in earlier pieces
        and they turned out wanted), except those in ``without`` (left out of the graph);
        with the graph's other ``annotations`` (``client/_annotations.py``)."""
        wanted = self._wanted
        for key in without:
            wanted.pop(key, None)
        wanted.update(dict.fromkeys(also))
        self._queue(more=False, rest=list(wanted), annotations=annotations)

    def abort(self) -> None:
        """End the graph without the rows not yet queued (when making one failed)."""
        if self._open:
            self._rows = []
            self._wanted = {}
            self._queue(more=False)

    def _queue(self, more: bool, rest: list[Any] | None = None,
               annotations: Serialized | None = None) -> None:
        client, rows, wanted = self._client, self._rows, self._wanted
        self._rows = []
        named = [r[0] for r in rows if r[0] in wanted]
        for k in named:
            del wanted[k]
        left = self._left
        # (keys of earlier pieces still used later were kept by their own piece's list)
        held = [r[0] for r in rows if r[0] in left] if more and self._users is not None else None
        if rest:
            named += rest
        with client._lock:
            if client.status == "closed":
                stale = client._drop_pending()
            elif self.lost or client._session != self._session:
                stale = None
                self.lost = True
            else:
                stale = None
                blobs = client._new_blobs(rows)
                if annotations is not None:  # (right before the piece: see GraphAnnotations)
                    client._outbox.append(GraphAnnotations(self._stream, annotations))
                client._outbox.append(UpdateGraph(rows, named, blobs, more=more,
                                                  stream=self._stream, held=held))
                client._sent_fids.update(blobs)  # (after the queueing: see _submit_rows)
        if stale is not None:
            client._refuse_closed(stale)
        if not more:
            self._open = False
        if self.lost:
            return
        self.sent += 1
        client._schedule_drain()


class Submitting(Outbox):
    """submit, map, cancel, retry: task rows for the outbox."""

    # Created by Client.__init__.
    _functions: FunctionCache
    _ftokens: dict[int, tuple[Any, str]]
    _call_pickles: dict[str, CallPickles]
    _sent_fids: set[str]
    _generation: itertools.count[int]
    _streams: itertools.count[int]  # numbers of the graphs sent in pieces (from 1)

    def _row(
        self, key: Any, task: Any, priority: Any, retries: int, workers: Any, prefix: str
    ) -> tuple[Any, ...]:
        payload, fids = dumps_task(task, self._functions)
        return (key, payload, list(task.dependencies), fids, priority, retries, workers, prefix)

    def _plain_payload(self, func: Any, args: tuple[Any, ...]) -> tuple[Any, list[str]] | None:
        """The payload of ``func(*args)`` and its fids, put together from constant pieces
        as ``map``'s are (``CallPickles``: no pickler and no reducer calls, about half
        the cost of a submit), when ``func`` is a Python function and every argument a
        plain value; None otherwise (the general path pickles it)."""
        if type(func) is not types.FunctionType:
            return None
        try:
            fid = self._functions.fid(func)
        except TypeError:  # the general path says what cannot be pickled
            return None
        maker = self._call_pickles.get(fid)
        if maker is None:
            maker = CallPickles.of(fid, {})
            if maker is None:
                return None
            if len(self._call_pickles) >= 256:
                self._call_pickles.clear()
            self._call_pickles[fid] = maker
        ser = maker(args)
        return None if ser is None else (ser, [fid])

    def _submit_rows(self, rows: list[tuple[Any, ...]], wanted: list[Any] | None,
                     actors: list[Any] | None = None,
                     restrictions: list[tuple[Any, Any, bool]] | None = None,
                     session: int | None = None,
                     annotations: Serialized | None = None) -> None:
        """Queue ``rows`` with the keys of ``wanted`` (None: every row's, as a map's), and
        the graph's other ``annotations`` (``client/_annotations.py``) right before its
        last message, unless
        ``session`` (the one the rows' futures were made in) has been lost since: the loss
        cancelled those futures (as dask's), and no future of the next session would want
        the rows, whose tasks it would hold until the client closed."""
        # Marking a blob sent and queueing the message carrying it are one step: another
        # thread's submit that skips the blob must queue its message after this one, and
        # the loop thread's DropFunctions never interleaves.
        # A large graph goes in pieces (inputs first) so that the scheduler starts on it
        # at once and its loop is never held long; actors and restrictions are rare in
        # such graphs and must be known before any task runs, so they go whole.
        split = len(rows) > PIECE_ROWS and not actors and not restrictions
        every = wanted is None
        if wanted is None and not split:
            wanted = [r[0] for r in rows]
        if split:
            rows = inputs_first(rows)
            _gc.settle()  # (shoal/_gc.py: the reordered list of a graph's rows)
        # The messages are made first and queued in one call, and the blobs marked sent only
        # then: a Ctrl-C (due at the end of any call) may cost a blob sent twice, never a
        # blob marked sent and not queued (every later task of its function failed), nor a
        # stream queued without its last piece (the scheduler held its tasks for good).
        with self._lock:
            # Closed since _check_open (a reconnect gave up): refuse, with no row queued.
            stale = self._drop_pending() if self.status == "closed" else None
            if stale is None and (session is None or session == self._session):
                fids = {fid for row in rows for fid in row[3]} - self._sent_fids
                blobs = {fid: self._functions.blob(fid) for fid in fids}
                msgs: list[Message]
                stream = 0
                if not split:
                    msgs = [UpdateGraph(rows, wanted or [], blobs, actors, restrictions)]
                else:
                    msgs = []
                    # Each piece names the wanted keys among its rows (the scheduler reports
                    # them as they finish, and never takes all wanted keys in one step); the
                    # last piece also names wanted keys the client had already submitted.
                    wanted_set = set(wanted or ())
                    last = (len(rows) - 1) // PIECE_ROWS * PIECE_ROWS
                    stream = next(self._streams)
                    for start in range(0, len(rows), PIECE_ROWS):
                        piece = rows[start:start + PIECE_ROWS]
                        if every:  # a map: no set of a million keys to look each up in
                            named = [r[0] for r in piece]
                        else:
                            named = [r[0] for r in piece if r[0] in wanted_set]
                        if start == last and wanted:
                            keys = {r[0] for r in rows}
                            named += [k for k in dict.fromkeys(wanted) if k not in keys]
                        msgs.append(UpdateGraph(
                            piece, named, blobs if start == 0 else {}, more=start != last,
                            stream=stream))
                if annotations is not None:  # right before the last (or only) message
                    msgs.insert(len(msgs) - 1, GraphAnnotations(stream, annotations))
                self._outbox.extend(msgs)
                self._sent_fids |= fids
        if stale is not None:
            self._refuse_closed(stale)
        self._schedule_drain()

    def _send_spans(self, spans: list[Any]) -> None:
        """Queue ``SpanTasks`` messages (``client/_spans.py``): before the graph they name
        (queued after this), so the scheduler knows a task's span before it can finish."""
        if not spans:
            return
        with self._lock:
            if self.status == "closed":
                return  # (the graph is refused by _submit_rows)
            self._outbox.extend(spans)
        self._schedule_drain()

    def _drop_pending(self) -> list[FutureState]:
        """Under ``_lock``, the client closed: take out the future states still pending
        (made after the close forgot the others, by a submission that raced it)."""
        stale = [st for st in self._states.values() if st.status == "pending"]
        for key in [k for k, st in self._states.items() if st.status == "pending"]:
            del self._states[key]
        return stale

    def _refuse_closed(self, stale: list[FutureState]) -> NoReturn:
        """A submission raced the client's close: its futures are cancelled, and it says so.

        Raises:
            ClosedClientError: always.
        """
        text = self._closed_text()
        for st in stale:
            st.error = {"kind": "cancelled", "type": "CancelledError", "message": text,
                        "exception": None, "traceback": None, "tb_text": ""}
            st.settle("cancelled")
        raise ClosedClientError(text)

    def _new_blobs(self, rows: list[tuple[Any, ...]]) -> dict[str, bytes]:
        """The blobs of the functions ``rows`` use that the scheduler has not been sent (the
        caller holds ``_lock``, queues them and then marks them sent, in the same step)."""
        fids = {fid for row in rows for fid in row[3]} - self._sent_fids
        if not fids:
            return {}
        return {fid: self._functions.blob(fid) for fid in fids}

    def _graph_pieces(self, wanted: list[Any], session: int,
                      users: Callable[[Any], int] | None = None) -> GraphPieces:
        """A large graph sent as it is made (see :class:`GraphPieces`)."""
        return GraphPieces(self, wanted, session, users)

    def _function_token(self, func: Any) -> str:
        """A token of ``func`` that changes when its content does. A Python function's is
        its fid, the hash of its pickle (cached while its globals, closure and defaults stay
        the same objects). Builtins and classes are tokenized once; other callables
        (partials, bound methods, callable objects may change in place) every time."""
        if type(func) is types.FunctionType:
            return self._functions.fid(func)
        if not isinstance(func, _STABLE_CALLABLES):
            return tokenize(func)
        hit = self._ftokens.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        token = tokenize(func)
        if len(self._ftokens) > 10_000:
            self._ftokens.clear()
        self._ftokens[id(func)] = (func, token)
        return token

    @staticmethod
    def _check_workers(workers: Any) -> list[Any] | None:
        if workers is None:
            return None
        try:  # one address or name (a str, a number) is a list of one, as in dask
            out = [workers] if isinstance(workers, (str, numbers.Number)) else list(workers)
        except TypeError:
            raise TypeError(f"workers= takes a worker address or name, or a list of them, got "
                            f"{workers!r}") from None
        if not all(_is_worker_name(w) for w in out):
            raise TypeError(f"workers= takes worker addresses or names (strings, ints such as "
                            f"LocalCluster's 0, 1, ..., or any name a worker may have: a "
                            f"float, bool, bytes or tuple), got {workers!r}")
        return out

    @staticmethod
    def _check_resources(resources: Any) -> dict[str, float] | None:
        if resources is None or resources == {}:
            return None
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and v >= 0 for k, v in resources.items()
        ):
            raise TypeError(
                "resources= takes a dict of resource names to non-negative amounts, like "
                f"{{'GPU': 1}}, got {resources!r}"
            )
        return {k: float(v) for k, v in resources.items()}

    def _restrictions(
        self, keys: list[Any], resources: Any, allow_other_workers: Any
    ) -> list[tuple[Any, dict[str, float] | None, bool]] | None:
        """submit's and map's resources and allow_other_workers (or those of the active
        ``dask.annotate`` block) as UpdateGraph rows; None when there are none."""
        if allow_other_workers not in (True, False, None):
            raise TypeError("allow_other_workers= must be True, False, or None")
        need = self._check_resources(resources)
        if not need and not allow_other_workers:
            return None
        return [(k, need, bool(allow_other_workers)) for k in keys]

    def _check_call(self, verb: str, func: Any, workers: Any, retries: Any) -> tuple[list[str | int] | None, int]:
        """What submit and map check first: an open client, a callable, and their options."""
        self._check_open()
        if not callable(func):
            raise TypeError(f"{verb} needs a callable as its first argument, got {func!r}")
        return self._check_workers(workers), self._check_retries(retries)

    @staticmethod
    def _check_priority(priority: Any) -> int | float:
        if isinstance(priority, (int, float)):
            return priority
        raise TypeError(f"priority must be a number (higher runs first; 0 by default), got "
                        f"{priority!r}")

    @staticmethod
    def _check_retries(retries: Any) -> int:
        if retries is None:
            return 0
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        return retries

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: Any = None,
        workers: Any = None,
        retries: int | None = None,
        priority: float = 0,
        pure: bool = True,
        allow_other_workers: bool = False,
        resources: Any = None,
        fifo_timeout: Any = None,
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; returns a Future.

        Futures among the arguments (also inside lists, tuples and dicts) become
        dependencies. With ``pure=True`` equal calls share a key (and a result).
        With ``actor=True`` (or its alias ``actors=True``) the result is an
        :class:`~shoal.Actor`: ``func`` (usually a class) is called on one worker and the
        object stays there; ``pure`` is then False, since an actor has state.

        Raises:
            TypeError: ``func`` is not callable, or an argument cannot be pickled.
            ClosedClientError: the client is closed.
        """
        active = dask.get_annotations()
        in_span = None
        if active:  # a dask.annotate block: its options, unless given here (dask's merge)
            workers, retries, priority, resources, allow_other_workers = _annotated(
                active, workers, retries, priority, resources, allow_other_workers)
            in_span = active.get("span")  # a shoal.span block (client/_spans.py)
        wl, nretries = self._check_call("submit", func, workers, retries)
        if priority.__class__ is not int:
            priority = self._check_priority(priority)
        self._restrictions([], resources, allow_other_workers)  # fail before any state
        is_actor = (actor or actors) and _actor_flag(actor, actors)
        if is_actor:
            pure = False
        if key is None:
            name = funcname(func)
            key = f"{name}-{token(self._function_token(func), kwargs, *args) if pure else _uuid4_hex()}"
        else:
            check_user_keys((key,), "Client.submit(key=)")
            name = ""  # (the scheduler takes dask's prefix of the key: key_prefix)
        with self._lock:  # the loop thread drops released keys under this lock
            session = self._session
            st = self._states.get(key)
            held = st is not None and st.refs > 0
            if st is None:
                st = self._states[key] = FutureState()
            # Made, then counted with no call in between: a Ctrl-C (due at a call's end or
            # a function's start) never leaves a count without the future that gives it back.
            fut = Future.__new__(Future)
            fut.key = key
            fut._client = self
            fut._state = st
            st.refs += 1
        if held:
            return fut
        prio = (-priority, next(self._generation), 0)
        if in_span is not None and not is_actor:
            func = _spans.InSpan(in_span, func)  # the task runs in the span, as dask's
            self._send_spans(_spans.span_tasks([(key, in_span)]))
        ser = None if is_actor or kwargs else self._plain_payload(func, args)
        row: tuple[Any, ...]
        if ser is not None:
            row = (key, ser[0], [], ser[1], prio, nretries, wl, name)
        else:
            task = _payload(key, NewActor(func) if is_actor else func, args, kwargs)
            row = self._row(key, task, prio, nretries, wl, name)
        self._submit_rows([row], [key], [key] if is_actor else None,
                          self._restrictions([key], resources, allow_other_workers), session,
                          other_annotations([key], active) if active else None)
        return fut

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: Any = None,
        workers: Any = None,
        retries: int | None = None,
        priority: float = 0,
        pure: bool = True,
        batch_size: int | None = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        fifo_timeout: Any = None,
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> list[Future]:
        """``submit`` over each element of ``iterables`` in one message; returns a list.
        With ``actor=True`` (alias ``actors=True``) each result is an Actor.

        Raises:
            TypeError: ``func`` is not callable, or iterables are missing or not iterable.
        """
        active = dask.get_annotations()
        in_span = None
        if active:
            workers, retries, priority, resources, allow_other_workers = _annotated(
                active, workers, retries, priority, resources, allow_other_workers)
            in_span = active.get("span")  # a shoal.span block (client/_spans.py)
        wl, nretries = self._check_call("map", func, workers, retries)
        if priority.__class__ is not int:
            priority = self._check_priority(priority)
        self._restrictions([], resources, allow_other_workers)
        is_actor = _actor_flag(actor, actors)
        if is_actor:
            pure = False
        if not iterables:
            raise TypeError("map needs at least one iterable of arguments")
        arg_lists = [list(it) for it in iterables]
        n = min(len(a) for a in arg_lists) if arg_lists else 0
        name = funcname(func) if not isinstance(key, str) else key
        if isinstance(key, (list, tuple)):
            name = ""  # (the scheduler takes dask's prefix of each key: key_prefix)
            keys = list(key)
            if len(keys) != n:
                raise ValueError(f"map got {len(keys)} keys for {n} tasks")
            check_user_keys(keys, "Client.map(key=[...])")
        elif key is not None and not isinstance(key, str):
            raise TypeError(f"Client.map(key={key!r}): key is a str prefix for the keys map "
                            "makes, or a list of one key per task; got a "
                            f"{type(key).__name__}")
        elif pure:
            with self._functions.batch():
                ftoken = tokenize(self._function_token(func), kwargs)
            keys = [f"{name}-{t}" for t in call_tokens(ftoken, zip(*arg_lists, strict=False))]
        else:
            keys = [f"{name}-{_uuid4_hex()}" for _ in range(n)]
        _gc.expect(len(keys))  # shoal/_gc.py: bulk mode before a big map's futures are made
        gen = next(self._generation)
        pkw = _parsed(kwargs)
        target = NewActor(func) if is_actor else _spans.in_span(func, in_span)
        rows: list[tuple[Any, ...]] = []
        futures = []
        # Which calls to send: each key's first, unless the key was held already (then it
        # is on the cluster). A flag per call, not a set of a million keys.
        send = bytearray(len(keys))
        states = self._states
        new_future = Future.__new__
        with self._lock:
            session = self._session
            for i, k in enumerate(keys):
                st = states.get(k)
                if st is None:
                    st = states[k] = FutureState()
                    send[i] = 1
                elif not st.refs:
                    send[i] = 1
                fut = new_future(Future)  # Future._new, inlined: a million of them
                fut.key = k
                fut._client = self
                fut._state = st
                st.refs += 1  # (before the append: a Ctrl-C comes after a call, see submit)
                futures.append(fut)
        with self._functions.batch():
            # A Python function over plain values (numbers, strings): payloads put
            # together from constant pieces (CallPickles), one shared fid list.
            fast = None
            if type(target) is types.FunctionType:
                fid = self._functions.pickler().fid(target)
                fast, fids = CallPickles.of(fid, kwargs), [fid]
            for i, (k, args) in enumerate(zip(keys, zip(*arg_lists, strict=False), strict=False)):
                if not send[i]:
                    continue
                ser = fast(args) if fast is not None else None
                if ser is not None:
                    rows.append((k, ser, (), fids, (-priority, gen, i), nretries, wl, name))
                    continue
                task = _payload(k, target, args, kwargs, pkw)
                rows.append(self._row(k, task, (-priority, gen, i), nretries, wl, name))
        if rows:
            wanted = [r[0] for r in rows]
            if in_span is not None and not is_actor:
                self._send_spans(_spans.span_tasks((k, in_span) for k in wanted))
            _gc.settle()  # (shoal/_gc.py: keys, rows, wanted are frozen now in bulk mode)
            self._submit_rows(rows, None, wanted if is_actor else None,
                              self._restrictions(wanted, resources, allow_other_workers),
                              session, other_annotations(wanted, active) if active else None)
        return futures

    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False,
               reason: Any = None, msg: Any = None) -> Any:
        """Cancel these futures: they end ``cancelled`` and this client drops its interest
        in their keys, so submitting the same task again starts a fresh computation.

        A task that other clients also want goes on for them, unless ``force=True``, which
        cancels it for every client. Dependents wanted by no one else are cancelled too.
        ``reason`` and ``msg`` are in the ``CancelledError`` their results raise, as dask's
        (``"<key> cancelled for reason: <reason>.\n<msg>"``).
        """
        self._check_open()
        flat: list[Future] = []
        collect_futures(futures, flat, collections=True)
        keys: dict[Any, None] = {}
        with self._lock:
            for f in flat:
                current = self._states.get(f.key)
                if current is f._state:
                    del self._states[f.key]
                elif current is not None:
                    continue  # cancelled before; the key was submitted again since
                keys[f.key] = None
        if keys:
            self._send(CancelKeys(list(keys), bool(force)))
        for st in {id(f._state): f._state for f in flat}.values():
            if (reason is not None or msg is not None) and st.status != "cancelled":
                st.error = cancelled_error(reason, msg)
            st.cancel_now()
        return answer(self, None, asynchronous)

    def retry(self, futures: Any, asynchronous: Any = None) -> Any:
        """Run failed futures (and their failed inputs) again."""
        self._check_open()
        flat: list[Future] = []
        collect_futures(futures, flat, collections=True)
        for f in flat:
            if f._state.status == "error":
                f._state.reset()
        self._send(RetryKeys([f.key for f in flat]))
        return answer(self, None, asynchronous)


def _payload(key: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             parsed_kwargs: Any = None) -> Any:
    """What the worker will call: a lean Call when no argument refers to a future,
    else a dask Task, which resolves the references to their values."""
    pargs = tuple(map(parse_input, args))
    pkw = _parsed(kwargs) if parsed_kwargs is None else parsed_kwargs
    if all(a is b for a, b in zip(pargs, args, strict=True)) and all(
        pkw[k] is v for k, v in kwargs.items()
    ):
        return Call(func, args, kwargs)
    return Task(key, func, *pargs, **pkw)


def _is_worker_name(w: Any) -> bool:
    """An address, or a worker name as dask allows one (``Worker(name=)``: a str, bytes,
    bool, int, float or a tuple of them; a numpy number travels as its Python number)."""
    return is_worker_name(w) or isinstance(w, (str, numbers.Real))


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` (a random version-4 UUID, dask's unique key suffix) without
    building a UUID object: half the cost, once per impure submitted task."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    return f"{n:032x}"


def _actor_flag(actor: Any, actors: Any) -> bool:
    for name, value in (("actor", actor), ("actors", actors)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}= takes True or False, got {value!r}")
    return actor or actors


def _parsed(kwargs: dict[str, Any]) -> Any:
    """Keyword arguments with futures inside them turned into graph references."""
    return {k: parse_input(v) for k, v in kwargs.items()}




def _annotated(
    active: dict[str, Any], workers: Any, retries: Any, priority: float, resources: Any,
    allow_other_workers: Any,
) -> tuple[Any, Any, Any, Any, Any]:
    """The options of a call made inside ``dask.annotate``: the call's own where given,
    else the block's (dask.distributed's merge)."""
    return (
        active.get("workers") if workers is None else workers,
        active.get("retries") if retries is None else retries,
        priority or active.get("priority", 0) or 0,  # (checked by the caller)
        resources if resources is not None else active.get("resources"),
        allow_other_workers or active.get("allow_other_workers", False),
    )
