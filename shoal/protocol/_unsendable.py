"""What goes out instead of a message that cannot be encoded.

Owns: the stand-ins that turn "a message was lost" into "the peer learns of a failure" for
the messages a peer waits on. Must not know about sockets: a transport whose batch did not
encode asks :func:`stand_ins` for each message that failed on its own, and sends what it
gets (each stand-in is encoded on its own too: one that fails as well is dropped).

- a reply (``Response``, ``ActorResult``) becomes the same reply with ``ok=False`` and the
  encoding error, so the request raises instead of waiting forever;
- a task's result (``TaskDone``) becomes a ``TaskErred``, so the scheduler fails the task
  (and the client's future raises) instead of waiting for it;
- a result sent to a client (``KeyDone``) becomes a ``KeyErred``;
- a columnar message (``TasksDone``, ``KeysDone``) is split into its rows, each judged on
  its own, so one bad row does not take the others with it;
- ``Data`` (values asked of a worker) answers every key asked with the error.

Some messages ask the peer for an answer this side waits on: for those, when they cannot
go, :func:`local_answers` makes the answer the peer would have sent about the failure, which
the transport delivers to this side's own handler (as if it came from the peer):

- a scheduler's ``Compute`` (a key of a type msgpack cannot carry, from an in-process
  client) is answered by the worker's ``TaskErred``: the task fails instead of waiting;
- a ``Request`` is answered by a failed ``Response``;
- a client's ``UpdateGraph`` (a remote scheduler) is answered by a ``KeyErred`` for each
  key it wants: those futures fail instead of waiting.

``Computes`` is split into its rows (``Compute``) to be judged one by one; the function
blobs a failed ``Compute`` carried still go (in a ``Computes`` of no rows): the scheduler
counts them sent, and the worker's later tasks of those functions need them.

Anything else is dropped (the transport logs it); the rest of its batch still goes.
"""

from __future__ import annotations

import time
from typing import Any

from shoal.protocol._errors import exception_to_error
from shoal.protocol._messages import (
    ActorResult,
    Compute,
    Computes,
    Data,
    KeyDone,
    KeyErred,
    KeysDone,
    Message,
    Request,
    Response,
    TaskDone,
    TaskErred,
    TasksDone,
    UpdateGraph,
)


def _error(msg: Message, exc: BaseException, key: Any) -> dict[str, Any]:
    wrapped = TypeError(f"shoal could not encode a {msg.tag!r} message to send it "
                        f"({type(exc).__name__}: {exc}); it holds a value msgpack cannot "
                        "carry (a key or result of an unsupported type?)")
    return exception_to_error(wrapped, None, key, "", time.time())


def stand_ins(msg: Message, exc: BaseException) -> list[Message]:
    """The messages to send instead of ``msg``, which failed to encode with ``exc``
    (empty: nothing can stand in for it).

    Raises:
        ValueError: a columnar message's columns do not line up (a bug of its sender).
    """
    kind = type(msg)
    if kind is Response:
        assert isinstance(msg, Response)
        return [Response(msg.request_id, False,
                         f"TypeError: the reply could not be encoded ({type(exc).__name__}: "
                         f"{exc})")]
    if kind is ActorResult:
        assert isinstance(msg, ActorResult)
        return [ActorResult(msg.request_id, False, _error(msg, exc, None))]
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
                                              msg.dropped, strict=True)]
    if kind is KeysDone:
        assert isinstance(msg, KeysDone)
        return [KeyDone(*row) for row in zip(msg.keys, msg.nbytes, msg.typenames, msg.inlines,
                                             strict=True)]
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
    if kind is Request:
        assert isinstance(msg, Request)
        return [Response(msg.request_id, False,
                         f"TypeError: the request {msg.op!r} could not be encoded "
                         f"({type(exc).__name__}: {exc})")]
    return []
