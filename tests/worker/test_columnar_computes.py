"""Several assignments in one ``Computes`` (``ComputesAssigned``) are handled exactly as
their rows' ``ComputeAssigned`` one after the other, and a worker's consecutive results
leave for the scheduler as one ``TasksDone``, in order with its other reports."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.protocol._columns import compute_rows, computes
from shoal.protocol._framing import decode, encode
from shoal.protocol._messages import (
    Compute,
    Computes,
    Message,
    MissingData,
    TaskDone,
    TaskErred,
    TasksDone,
)
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    ComputesAssigned,
    DataStored,
    ExecuteDone,
    FetchDone,
    Report,
    WorkerState,
)

from ._shell import fresh_worker

ME = "tcp://me:1"
PEER = "tcp://peer:1"
PAYLOAD = Serialized([b"task"])


def assignments() -> list[Compute]:
    """No inputs; an input held here; inputs to fetch (two sharing one); an input said to
    be here that is not; a key already held; the same key twice (the second run wins);
    inputs to drop when the task succeeds."""
    return [
        Compute("a", PAYLOAD, [], {}, (0, 1), True, "", 1),
        Compute("b", PAYLOAD, [("held", [ME], 8)], {}, (0, 2), False, "", 2, ("held",)),
        Compute("c", PAYLOAD, [("x", [PEER], 8), ("y", [PEER], 9)], {}, (0, 3), True, "", 3),
        Compute("d", PAYLOAD, [("x", [PEER], 8)], {}, (1, 0), True, "", 4),
        Compute("e", PAYLOAD, [("ghost", [ME], 8)], {}, (0, 5), True, "", 5),
        Compute("held", PAYLOAD, [], {}, (0, 6), True, "", 6),
        Compute("a", PAYLOAD, [], {}, (0, 7), True, "", 7),
    ]


def through_wire(msg: Message) -> Any:
    (out,) = decode(encode([msg])[1:])
    return out


def fresh() -> WorkerState:
    ws = WorkerState(ME)
    ws.handle(DataStored("held", 8))
    return ws


def test_a_batch_of_computes_is_handled_as_its_rows_one_after_the_other() -> None:
    one, many = fresh(), fresh()
    rows = assignments()
    batch = through_wire(computes(rows, {}))
    assert isinstance(batch, Computes)
    out_one = one.handle(*(ComputeAssigned(c) for c in rows))
    out_many = many.handle(ComputesAssigned(batch))
    assert out_many == out_one
    assert {k: (t.state, t.run, t.deps, t.drop) for k, t in many.tasks.items()} == {
        k: (t.state, t.run, t.deps, t.drop) for k, t in one.tasks.items()}
    assert many.tasks["a"].run == 7
    for ws in (one, many):  # then the same results make the same reports
        got = ws.handle(FetchDone(PEER, {"x": 8, "y": 9}, [], 1.0, 2.0))
        got += ws.handle(*(ExecuteDone(k, 8, "int", 1.0, 2.0, 0, None, None)
                           for k in ("a", "b", "c", "d")))
        ws.validate()
        if ws is one:
            first = got
    assert got == first
    reports = [c.msg for c in got if isinstance(c, Report)]
    assert [(m.key, m.run, m.dropped) for m in reports if isinstance(m, TaskDone)] == [
        ("a", 7, ()), ("b", 2, ("held",)), ("c", 3, ()), ("d", 4, ())]
    assert [c.msg.key for c in out_many if isinstance(c, Report)
            and isinstance(c.msg, MissingData)] == ["ghost"]


def test_rows_read_back_as_the_computes_they_stand_for() -> None:
    rows = assignments()
    back = compute_rows(computes(rows, {"f": b"blob"}))
    assert [(c.key, c.payload, c.deps, c.priority, c.send_inline, c.run, c.drop)
            for c in back] == [(c.key, c.payload, c.deps, c.priority, c.send_inline, c.run,
                                c.drop) for c in rows]
    assert back[0].functions == {"f": b"blob"} and back[1].functions == {}



def test_consecutive_results_leave_as_one_message_in_order_with_other_reports() -> None:
    def ok(key: str, run: int) -> TaskDone:
        return TaskDone(key, 8, "int", 1.0, 2.0, 0, None, run)

    erred = TaskErred("c", {"kind": "exception", "message": "boom"}, 1.0, 2.0, 0, 3)

    async def scenario() -> list[Message]:
        worker, sched = fresh_worker()
        assert worker._executor is not None
        try:
            worker._carry_out([Report(ok("a", 1)), Report(ok("b", 2)), Report(erred),
                               Report(ok("d", 4))])
            sched.flush()
        finally:
            worker._executor.close()
        return sched.written

    written = asyncio.run(scenario())
    assert [type(m) for m in written] == [TasksDone, TaskErred, TaskDone]
    first = written[0]
    assert isinstance(first, TasksDone)
    assert list(first.keys) == ["a", "b"] and list(first.runs) == [1, 2]
    assert written[2] == ok("d", 4)
