"""What goes out instead of a message that cannot be encoded.

Owns: the stand-ins that turn "a message was lost" into "the peer learns of a failure" for
the messages a peer waits on. Must not know about sockets: a transport whose batch did not
encode asks :func:`stand_ins` for each message that failed on its own, and sends what it
gets (each stand-in is encoded on its own too: one that fails as well is dropped).

- a reply (``Response``, ``ActorResult``, ``CoordReply``) becomes the same reply with
  ``ok=False`` and the encoding error, so the request raises instead of waiting forever;
- a task's result (``TaskDone``) becomes a ``TaskErred``, so the scheduler fails the task
  (and the client's future raises) instead of waiting for it;
- a result sent to a client (``KeyDone``) becomes a ``KeyErred``;
- a columnar message (``TasksDone``, ``KeysDone``) is split into its rows, each judged on
  its own, so one bad row does not take the others with it;
- ``Data`` (values asked of a worker) answers every key asked with the error;
- a message about a list of keys (``ReleaseKeys``, ``FreeKeys``, ``CancelKeys``,
  ``RetryKeys``, ``FireAndForget``) is split into one message a key: the other keys' release
  or free still goes (else the peer held them for ever);
- a client's ``UpdateGraph`` becomes one without rows, for what the peer relies on: its
  function blobs (the client counts them sent) and, for the last piece of a graph sent in
  pieces, the graph's end (the scheduler lets go of the pieces sent before).
  When an earlier piece of such a graph cannot go, its later pieces (which need that
  piece's tasks) go no more: :class:`BrokenGraphs` marks them failed with the same error,
  so that the graph's futures raise the error saying why instead of "lost dependencies".

Some messages ask the peer for an answer this side waits on: for those, when they cannot
go, :func:`local_answers` makes the answer the peer would have sent about the failure, which
the transport delivers to this side's own handler (as if it came from the peer):

- a scheduler's ``Compute`` (a key of a type msgpack cannot carry, from an in-process
  client) is answered by the worker's ``TaskErred``: the task fails instead of waiting;
- a request answered by a ``Response`` (``Request``, ``Scatter``, ``TopicGet``, the
  ``Dataset*`` messages of a client; ``Run``, ``PluginSetup``, ``PluginTeardown``,
  ``CopyKeys``, ``ProfileAsk`` of the scheduler) by a failed ``Response``;
- a coordination request (a ``Coord*`` message with a request id) by a failed
  ``CoordReply``;
- ``GetData`` by a ``Data`` that fails every key asked; ``ActorCall`` by a failed
  ``ActorResult``; a scheduler's ``Store`` (scattered data) by the worker's failed
  ``ScatterStored``: the scatter fails instead of waiting for the worker;
- a client's ``UpdateGraph`` (a remote scheduler) by a ``KeyErred`` for each key it wants:
  those futures fail instead of waiting.

``Computes`` is split into its rows (``Compute``) to be judged one by one; the function
blobs a failed ``Compute`` carried still go (in a ``Computes`` of no rows): the scheduler
counts them sent, and the worker's later tasks of those functions need them.

Anything else is dropped (the transport logs it); the rest of its batch still goes. Nobody
waits on an answer to those (``FreeKeys``, ``TopicLog``...).
"""

from __future__ import annotations

import time
from typing import Any

from shoal.protocol import _coord_messages as coord
from shoal.protocol._errors import exception_to_error
from shoal.protocol._messages import (
    ActorCall,
    ActorResult,
    CancelKeys,
    Compute,
    Computes,
    CopyKeys,
    Data,
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    FireAndForget,
    FreeKeys,
    GetData,
    KeyDone,
    KeyErred,
    KeysDone,
    Message,
    PluginSetup,
    PluginTeardown,
    ProfileAsk,
    ReleaseKeys,
    Request,
    Response,
    RetryKeys,
    Run,
    Scatter,
    ScatterStored,
    Store,
    TaskDone,
    TaskErred,
    TasksDone,
    TopicGet,
    UpdateGraph,
)

# Requests answered by a ``Response`` with the same ``request_id`` (0: nobody waits).
_ANSWERED_BY_RESPONSE: frozenset[type[Message]] = frozenset({
    Request, Scatter, TopicGet, DatasetPublish, DatasetUnpublish, DatasetGet, DatasetList,
    Run, PluginSetup, PluginTeardown, CopyKeys, ProfileAsk,
})
# Coordination requests, answered by a ``CoordReply`` with the same ``request_id``.
_COORD_REQUESTS: frozenset[type[Message]] = frozenset({
    coord.CoordSemaphoreAcquire, coord.CoordSemaphoreValue, coord.CoordSemaphoreClose,
    coord.CoordMultiLockAcquire, coord.CoordQueueCreate, coord.CoordQueuePut,
    coord.CoordQueueGet, coord.CoordQueueSize, coord.CoordVariableSet, coord.CoordVariableGet,
    coord.CoordEventSet, coord.CoordEventClear, coord.CoordEventWait, coord.CoordEventIsSet,
})

# Messages about a list of keys, split into one message a key when the list cannot go: the
# keys that can still go (a release, a free...), else held for ever.
_KEY_LISTS: frozenset[type[Message]] = frozenset({
    ReleaseKeys, FreeKeys, CancelKeys, RetryKeys, FireAndForget,
})


def _text(msg: Message, exc: BaseException) -> str:
    what = f"{msg.tag!r} message" + (f" (request {msg.op!r})" if type(msg) is Request else "")
    return (f"shoal could not encode a {what} to send it ({type(exc).__name__}: "
            f"{exc}): it holds a value the wire format (msgpack) cannot carry. Keys and "
            "names must be str, bytes, int, float or tuples of those; pass other objects as "
            "data (task arguments, scattered or published values), which is pickled")


def _error(msg: Message, exc: BaseException, key: Any) -> dict[str, Any]:
    return exception_to_error(TypeError(_text(msg, exc)), None, key, "", time.time())


def stand_ins(msg: Message, exc: BaseException) -> list[Message]:
    """The messages to send instead of ``msg``, which failed to encode with ``exc``
    (empty: nothing can stand in for it).

    Raises:
        ValueError: a columnar message's columns do not line up (a bug of its sender).
    """
    kind = type(msg)
    if kind is Response:
        assert isinstance(msg, Response)
        return [Response(msg.request_id, False, _error(msg, exc, None))]
    if kind is ActorResult:
        assert isinstance(msg, ActorResult)
        return [ActorResult(msg.request_id, False, _error(msg, exc, None))]
    if kind is coord.CoordReply:
        assert isinstance(msg, coord.CoordReply)
        return [coord.CoordReply(msg.request_id, False, ["TypeError", _text(msg, exc)])]
    if kind is TaskDone:
        assert isinstance(msg, TaskDone)
        return [TaskErred(msg.key, _error(msg, exc, msg.key), msg.start, msg.stop, msg.thread,
                          msg.run)]
    if kind is KeyDone:
        assert isinstance(msg, KeyDone)
        return [KeyErred(msg.key, _error(msg, exc, msg.key))]
    if kind is TasksDone:
        assert isinstance(msg, TasksDone)
        return [TaskDone(*row) for row in zip(msg.keys, msg.nbytes, msg.typenames, msg.starts,
                                              msg.stops, msg.threads, msg.inlines, msg.runs,
                                              msg.dropped, msg.pickled_types, strict=True)]
    if kind is KeysDone:
        assert isinstance(msg, KeysDone)
        return [KeyDone(*row) for row in zip(msg.keys, msg.nbytes, msg.typenames, msg.inlines,
                                             msg.pickled_types, strict=True)]
    if kind is Computes:
        assert isinstance(msg, Computes)
        rows = zip(msg.keys, msg.payloads, msg.deps, msg.priorities, msg.send_inline,
                   msg.runs, msg.drops, strict=True)
        return [Compute(key, payload, deps, {} if i else msg.functions, priority, inline, "",
                        run, drop)
                for i, (key, payload, deps, priority, inline, run, drop) in enumerate(rows)]
    if kind is Compute:
        assert isinstance(msg, Compute)
        if msg.functions:  # the scheduler counts them sent: later computes rely on them
            return [Computes([], [], [], msg.functions, [], [], [], [])]
        return []
    if kind is Data:
        assert isinstance(msg, Data)
        return [Data(msg.request_id, {}, list(msg.missing),
                     {key: _error(msg, exc, key) for key in msg.items}, msg.more)]
    if kind in _KEY_LISTS:
        keys = msg.keys  # type: ignore[attr-defined]
        if len(keys) < 2:
            return []
        if kind is CancelKeys:
            assert isinstance(msg, CancelKeys)
            return [CancelKeys([key], msg.force) for key in keys]
        return [kind([key]) for key in keys]  # type: ignore[call-arg]
    if kind is UpdateGraph:
        assert isinstance(msg, UpdateGraph)
        # Its blobs (the client counts them sent: its later graphs of those functions rely
        # on them), and a stream's end (else the scheduler keeps the earlier pieces' tasks
        # until the client leaves). Its wanted keys fail here (``local_answers``).
        if msg.functions or (msg.stream and not msg.more):
            return [UpdateGraph([], [], msg.functions, more=msg.more, stream=msg.stream)]
        return []
    return []


def local_answers(msg: Message, exc: BaseException) -> list[Message]:
    """What the peer would have answered had it received ``msg`` and failed on it, for
    this side's own handler (empty: nobody here waits on an answer to ``msg``)."""
    kind = type(msg)
    if kind is Compute:
        assert isinstance(msg, Compute)
        return [TaskErred(msg.key, _error(msg, exc, msg.key), 0.0, 0.0, -1, msg.run)]
    if kind is UpdateGraph:
        assert isinstance(msg, UpdateGraph)
        return [KeyErred(key, _error(msg, exc, key)) for key in dict.fromkeys(msg.wanted)]
    if kind in _ANSWERED_BY_RESPONSE or kind in _COORD_REQUESTS:
        rid = msg.request_id  # type: ignore[attr-defined]
        if not rid:
            return []
        if kind in _COORD_REQUESTS:
            return [coord.CoordReply(rid, False, ["TypeError", _text(msg, exc)])]
        return [Response(rid, False, _error(msg, exc, None))]
    if kind is GetData:
        assert isinstance(msg, GetData)
        return [Data(msg.request_id, {}, [], {key: _error(msg, exc, key) for key in msg.keys})]
    if kind is ActorCall:
        assert isinstance(msg, ActorCall)
        return [ActorResult(msg.request_id, False, _error(msg, exc, msg.key))]
    if kind is Store:
        assert isinstance(msg, Store)
        return [ScatterStored(msg.key, _error(msg, exc, msg.key))]
    return []


class BrokenGraphs:
    """The graphs sent in pieces (``UpdateGraph.stream``) of one connection a piece of
    which could not be encoded: their later pieces fail with that piece's error, without
    being encoded (their rows need the lost piece's tasks, which the scheduler would fail
    with "lost dependencies"). Only their stand-ins go (blobs, and the graph's end, at which
    the scheduler lets go of the pieces sent before), and their wanted keys are answered
    here. A graph is forgotten at its last piece."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        # stream -> the error of its piece that could not go (empty: the usual case, which
        # a transport checks before each batch)
        self.errors: dict[int, BaseException] = {}

    def failed(self, msg: Message, exc: BaseException) -> None:
        """``msg`` could not be encoded (``exc``): if it is a piece of a graph with more
        pieces to come, those fail too."""
        if type(msg) is UpdateGraph:
            assert isinstance(msg, UpdateGraph)
            if msg.stream and msg.more:
                self.errors.setdefault(msg.stream, exc)
            elif msg.stream:
                self.errors.pop(msg.stream, None)

    def error_of(self, msg: Message) -> BaseException | None:
        """The error of the earlier piece if ``msg`` is a later piece of a broken graph
        (which must not go: treat it as failed with that error), else None."""
        if type(msg) is not UpdateGraph or not self.errors:
            return None
        assert isinstance(msg, UpdateGraph)
        exc = self.errors.get(msg.stream) if msg.stream else None
        if exc is not None and not msg.more:
            del self.errors[msg.stream]
        return exc
