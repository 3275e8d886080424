"""What the scheduler keeps per task, measured with tracemalloc (deterministic): issue 14's
large graphs need a few hundred bytes a task, not kilobytes."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

import pytest

from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import ClientJoined, GraphSubmitted, SendCompute, TaskFinished
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, row

N = 5_000


def _fresh() -> tuple[SchedulerState, Sim]:
    state = SchedulerState(story_size=100, task_stream_size=100)
    sim = Sim(state)
    for i in range(4):
        sim.join(f"w{i}")
    return state, sim


def _traced(fn: Any) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / N
    finally:
        tracemalloc.stop()


def test_a_queued_task_of_a_map_costs_under_448_bytes_its_priority_included() -> None:
    state, _ = _fresh()
    wanted = [("noop", i) for i in range(N)]
    # Rows made inside the measure (from keys made before): what the scheduler keeps of
    # them (the priority: it used to keep the client's tuple) counts, the rest is freed.
    # Priorities as the client makes them: (-priority, generation, order).
    assert _traced(lambda: state.handle(GraphSubmitted(
        "c", [row(k, priority=(0, 1, i), prefix="noop") for i, k in enumerate(wanted)],
        wanted))) < 448  # 567 with the client's priority tuple kept, 513 packed, 413 now
    state.validate()


def test_a_queued_task_of_a_map_costs_under_half_a_kilobyte_its_key_included() -> None:
    # issue 14's "scheduler memory per queued task, futures released": the scheduler then
    # holds the only copy of each key, so the keys are made inside the measure too
    state, _ = _fresh()

    def submit() -> None:
        wanted = [("noop", i) for i in range(N)]
        state.handle(GraphSubmitted(
            "c", [row(k, priority=(0, 1, i), prefix="noop") for i, k in enumerate(wanted)],
            wanted))

    assert _traced(submit) < 512  # 599 before the queue shared priorities and rare fields moved out, 499 now
    state.validate()


def test_a_queued_task_of_a_reduction_tree_costs_under_512_bytes_its_priority_included() -> None:
    state, _ = _fresh()
    tree: list[tuple[Any, list[Any]]] = [(("leaf", i), []) for i in range(N // 2)]
    layer = [k for k, _ in tree]
    while len(layer) > 1:
        pairs = [[layer[j], layer[j + 1]] for j in range(0, len(layer) - 1, 2)]
        nxt = [("add", len(tree) + j) for j in range(len(pairs))]
        tree += list(zip(nxt, pairs, strict=True))
        layer = nxt + ([layer[-1]] if len(layer) % 2 else [])
    assert _traced(lambda: state.handle(GraphSubmitted(
        "c", [row(k, deps, priority=(0, 1, i)) for i, (k, deps) in enumerate(tree)],
        [layer[0]]))) < 512  # 592 with the client's priority tuples kept, 538 packed, 460 now
    state.validate()


def test_a_held_result_costs_under_448_bytes() -> None:
    state, _ = _fresh()
    wanted = [("noop", i) for i in range(N)]

    def run() -> None:
        todo = list(state.handle(ClientJoined("c")))
        rows = [row(k, priority=(0, 1, i), prefix="noop") for i, k in enumerate(wanted)]
        todo += state.handle(GraphSubmitted("c", rows, wanted))
        del rows
        while todo:
            c = todo.pop()
            if isinstance(c, SendCompute):
                # a fresh typename string per report, as decoding a message makes it
                todo += state.handle(TaskFinished(c.worker, c.key, 8, "".join("int"), 0.0,
                                                  0.001, 0, None, c.run))

    assert _traced(run) < 448  # 542 with the client's priority tuple kept, 487 packed, 405 now
    assert all(ts.state == "memory" for ts in state.tasks.values())
    state.validate()


def test_tasks_share_their_prefix_and_result_type_names() -> None:
    state, sim = _fresh()
    sim.submit([row("a", prefix="".join("inc")), row("b", prefix="".join("inc"))])
    a, b = state.tasks["a"], state.tasks["b"]
    assert a.prefix is b.prefix
    state.handle(TaskFinished(a.processing_on.address, "a", 8, "".join("int"), 0, 1, 0, None,
                              a.run))
    state.handle(TaskFinished(b.processing_on.address, "b", 8, "".join("int"), 0, 1, 0, None,
                              b.run))
    assert a.typename is b.typename
    state.validate()


def test_tasks_of_one_call_share_their_function_ids() -> None:
    state, sim = _fresh()
    # as decoded from a message: an equal but distinct list of ids per row
    sim.submit([row(("f", i), fids=["".join("fid1")], prefix="f") for i in range(3)])
    first, *rest = (state.tasks[("f", i)] for i in range(3))
    assert first.fids == ("fid1",)
    assert all(ts.fids is first.fids for ts in rest)
    state.validate()


def test_the_task_stream_keeps_the_tasks_own_key() -> None:
    state, sim = _fresh()
    sim.submit([row("".join(["noop-", "a"]), prefix="noop")])
    ts = state.tasks["noop-a"]
    decoded = "".join(["noop-", "a"])  # the worker's report carries its own copy of the key
    assert decoded is not ts.key
    state.handle(TaskFinished(ts.processing_on.address, decoded, 8, "int", 0.0, 1.0, 0, None,
                              ts.run))
    assert state.task_stream[-1][0] is ts.key
    state.validate()


def test_a_task_keeps_a_one_frame_payload_as_its_bytes_and_sends_it_whole() -> None:
    state, sim = _fresh()
    payload = Serialized((b"call noop",))
    cmds = sim.submit([row("a", payload=payload)])
    assert state.tasks["a"].payload == b"call noop"  # no Serialized kept around it
    (compute,) = [c for c in cmds if isinstance(c, SendCompute)]
    assert compute.payload == payload
    state.validate()


def test_a_held_result_lost_with_its_worker_is_recomputed_from_its_compact_payload() -> None:
    state, sim = _fresh()
    payload = Serialized((b"call noop",))
    sim.submit([row("a", payload=payload, fids=["".join("fid1")])])
    holder = state.tasks["a"].processing_on.address
    sim.finish("a")
    assert state.tasks["a"].state == "memory"
    cmds = sim.leave(holder)  # the only copy is gone: run it again elsewhere
    (again,) = [c for c in cmds if isinstance(c, SendCompute)]
    assert again.key == "a" and again.worker != holder
    assert again.payload == payload and again.fids == ("fid1",)
    assert ("a", "memory", "released") in [r[:3] for r in state.story("a")]  # story answers
    state.validate()


def test_a_task_keeps_its_priority_packed_into_one_int() -> None:
    # (-priority, generation, order): a 64-byte tuple and a 28-byte order int per task
    # when kept as given; one 32-byte int packed. Read back as the tuple.
    state, _ = _fresh()
    state.handle(GraphSubmitted("c", [row(f"t-{i}", priority=(0, 7, 1000 + i)) for i in range(3)],
                                ["t-0", "t-1", "t-2"]))
    ts = state.tasks["t-1"]
    assert type(ts.prio) is int and sys.getsizeof(ts.prio) <= 32
    assert ts.priority == (0, 7, 1001)
    state.validate()


def test_a_priority_that_does_not_pack_turns_every_tasks_back_into_its_tuple() -> None:
    state, sim = _fresh()
    for w in list(state.workers):
        sim.leave(w)
    state.handle(GraphSubmitted("c", [row("a", priority=(0, 1, 2)), row("b", priority=(1,))],
                                ["a", "b"]))
    state.handle(GraphSubmitted("c", [row("odd", priority=(0.5,))], ["odd"]))
    assert [state.tasks[k].prio for k in ("a", "b", "odd")] == [(0, 1, 2), (1,), (0.5,)]
    assert state.tasks["a"].priority == (0, 1, 2)
    state.validate()
    out = sim.join("w9", nthreads=4)
    sent = [c.key for c in out if isinstance(c, SendCompute)]
    assert sent[:3] == ["a", "odd", "b"]  # still in priority order
    assert [c.priority for c in out if isinstance(c, SendCompute)][:3] == [(0, 1, 2), (0.5,), (1,)]


def test_a_finished_task_keeps_no_run_number() -> None:
    # the assignment number matters only while the task runs; kept, it is an int per task
    state, sim = _fresh()
    todo = sim.submit([row(f"t-{i}", priority=(0, 1, i)) for i in range(300)])
    runs = []
    while todo:
        c = todo.pop()
        if isinstance(c, SendCompute):
            assert state.tasks[c.key].run == c.run  # numbered while it runs
            runs.append(c.run)
            todo += state.handle(TaskFinished(c.worker, c.key, 8, "int", 0.0, 0.001, 0, None,
                                              c.run))
    assert len(runs) == 300 and max(runs) > 256  # past the small ints CPython shares
    assert all(ts.state == "memory" and ts.run == 0 for ts in state.tasks.values())
    state.validate()


def test_a_queued_tasks_queue_entry_is_a_pair_sharing_the_tasks_priority() -> None:
    # (priority packed with a sequence number, task) cost a 48-byte int per queued task
    state, sim = _fresh()
    for w in list(state.workers):
        sim.leave(w)
    state.handle(GraphSubmitted("c", [row(f"t-{i}", priority=(0, 1, i)) for i in range(3)],
                                ["t-0", "t-1", "t-2"]))
    assert len(state._queue) == 3
    for entry in state._queue:
        prio, ts = entry
        assert prio is ts.prio and type(prio) is int
    state.validate()


def test_a_plain_task_keeps_no_rare_fields_from_submission_to_memory() -> None:
    # restrictions, retries, errors, actor marks live in one ``RareFields`` made on their
    # first write: a task with none of them keeps seven slots (56 bytes) fewer
    state, sim = _fresh()
    sim.submit([row("a", prefix="noop")])
    ts = state.tasks["a"]
    assert ts.rare is None and ts.state == "processing"
    sim.finish("a")
    assert ts.rare is None and ts.state == "memory"
    assert (ts.workers, ts.resources, ts.retries, ts.error, ts.killed_on, ts.actor, ts.loose,
            ts.held_on) == (None, None, 0, None, (), False, False, None)
    state.validate()


def test_a_tasks_rare_fields_are_kept_and_read_back_once_set() -> None:
    state, sim = _fresh()
    sim.submit([row("r", retries=1, workers=["w1"])], restrictions={"r": ({"GPU": 1.0}, True)})
    ts = state.tasks["r"]
    assert ts.rare is not None
    assert (ts.retries, ts.workers, ts.resources, ts.loose) == (1, frozenset({"w1"}),
                                                                 {"GPU": 1.0}, True)
    sim.submit([row("e")])
    sim.fail("e")
    assert state.tasks["e"].error is not None and state.tasks["e"].state == "erred"
    sim.retry("e")  # erred -> released: the error is cleared, the record stays
    assert state.tasks["e"].error is None and state.tasks["e"].killed_on == ()
    state.validate()


@pytest.mark.parametrize("arg", [7, "x" * 3000], ids=["small", "past-the-sliced-size"])
def test_a_call_payload_is_kept_without_its_functions_head_and_sent_byte_for_byte(
        arg: Any) -> None:
    # client.map's payloads start with the same 58 bytes per function (the call and the
    # function's id): the task keeps the rest, and the worker gets the payload unchanged,
    # the first time and when the result is lost and recomputed
    from shoal.protocol._serialize import CallPickles, call_head

    fid = "".join(["ab" * 12])
    made = CallPickles.of(fid, {})
    assert made is not None
    payload = made((arg,))
    assert payload is not None and payload.frames[0].startswith(call_head(fid))
    state, sim = _fresh()
    cmds = sim.submit([row("a", payload=payload, fids=[fid])])
    kept = state.tasks["a"].payload
    assert type(kept) is bytes and kept[:1] == b"\x00" and not gc.is_tracked(kept)
    assert len(kept) == len(payload.frames[0]) - len(call_head(fid)) + 1
    (compute,) = [c for c in cmds if isinstance(c, SendCompute)]
    assert compute.payload.frames == payload.frames
    holder = compute.worker
    sim.finish("a")
    (again,) = [c for c in sim.leave(holder) if isinstance(c, SendCompute)]
    assert again.payload.frames == payload.frames
    state.validate()


def test_a_payload_that_does_not_start_with_its_functions_head_is_kept_whole() -> None:
    state, sim = _fresh()
    payload = Serialized((b"\x80\x05 another function's call",))
    cmds = sim.submit([row("a", payload=payload, fids=["f1"]), row("b", payload=payload)])
    assert state.tasks["a"].payload == payload.frames[0]
    assert type(state.tasks["a"].payload) is bytes
    assert all(c.payload.frames == payload.frames for c in cmds if isinstance(c, SendCompute))
    state.validate()


def test_a_whole_payload_starting_with_the_cut_mark_is_kept_as_it_came() -> None:
    # not a pickle (they start with 0x80), but the scheduler does not look inside: it must
    # not take the first byte for the mark of a cut call payload
    state, sim = _fresh()
    payload = Serialized((b"\x00 not a call",))
    cmds = sim.submit([row("a", payload=payload, fids=["f1"])])
    assert state.tasks["a"].payload is payload
    (compute,) = [c for c in cmds if isinstance(c, SendCompute)]
    assert compute.payload.frames == payload.frames
    state.validate()
