"""Scenario tests of the pure scheduler's bookkeeping views (prefix counts, task stream, story) and its invariant checks.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

import pytest

from shoal.scheduler._events import (
    GraphSubmitted,
    TransferDone,
)
from shoal.scheduler._state import InvalidTransition, SchedulerState, key_prefix, stimulus_id
from shoal.scheduler._state_base import prefix_counts

from ._sim import Sim, row

# --- bookkeeping views ---------------------------------------------------------------------


def test_prefix_counts_follow_every_state(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row(f"inc-{i}", prefix="inc", priority=(i,)) for i in range(4)])
    counts = prefix_counts(sim.state)["inc"]
    assert (counts["processing"], counts["queued"]) == (1, 3)
    sim.finish("inc-0", duration=5.0)
    sim.fail("inc-1")
    counts = prefix_counts(sim.state)["inc"]
    assert (counts["memory"], counts["erred"], counts["processing"], counts["queued"]) == (
        1, 1, 1, 1,
    )
    sim.release("inc-0", "inc-1", "inc-2", "inc-3")
    assert "inc" not in prefix_counts(sim.state)  # the last task forgotten drops the row
    sim.state.validate()


def test_key_prefix_examples() -> None:
    assert key_prefix(("sum-abc123def456", 0)) == "sum"
    assert key_prefix("inc-9f2e4b1c0a0a0a0a") == "inc"
    assert key_prefix("load_file-3") == "load_file"
    assert key_prefix("x") == "x"
    assert key_prefix(42) == "42"


@pytest.mark.parametrize("key", [
    "inc-100b0c08-6649-4968-921d-0a1b2c3d4e5f",  # dask.delayed: the function name + a uuid4
    "inc-270f4f78-3002-4886-9fe5-e2fad4852574",
    ("add-8bbd6980-11b9-4199-b63a-9a8b7c6d5e4f", 3),
])
def test_delayed_keys_share_their_function_name_as_prefix(key: object) -> None:
    """Every dask.delayed call has a uuid in its key; the prefix must drop all of it, or each
    task is a prefix never seen before, estimated at half a second, and sent one at a time."""
    name = key[0] if isinstance(key, tuple) else key
    assert key_prefix(key) == str(name).split("-")[0]


def test_key_prefix_keeps_words_of_a_dashed_name() -> None:
    assert key_prefix("read-parquet-0a1b2c3d4e5f6a7b") == "read-parquet"
    assert key_prefix("my-task-name-1") == "my-task-name"


def test_task_stream_since_cursor() -> None:
    state = SchedulerState(task_stream_size=3)
    sim = Sim(state)
    sim.join("w1")
    assert state.task_stream_since(0) == (0, [])
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(5)])
    sim.finish("t-0")
    total, items = state.task_stream_since(0)
    assert total == 1 and [i["key"] for i in items] == ["t-0"]
    assert items[0]["kind"] == "compute" and items[0]["worker"] == "w1"
    assert items[0]["prefix"] == "t"
    for i in range(1, 5):
        sim.finish(f"t-{i}")
    total, items = state.task_stream_since(1)  # only the last 3 are kept
    assert total == 5 and [i["key"] for i in items] == ["t-2", "t-3", "t-4"]
    total, items = state.task_stream_since(3)
    assert total == 5 and [i["key"] for i in items] == ["t-3", "t-4"]
    assert state.task_stream_since(5) == (5, [])
    assert state.task_stream_since(9) == (5, [])
    assert state.task_stream_since(-1) == (5, [])  # "from now on"
    state.validate()


def test_task_stream_pages_are_bounded_and_follow_the_cursor() -> None:
    state = SchedulerState(task_stream_size=8)
    sim = Sim(state)
    sim.join("w1", nthreads=20)
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(10)])
    for i in range(10):
        sim.finish(f"t-{i}")
    # records 0 and 1 are gone (8 kept); pages of 3 walk the rest in order
    cursor, page = state.task_stream_since(0, limit=3)
    assert cursor == 5 and [r["key"] for r in page] == ["t-2", "t-3", "t-4"]
    cursor, page = state.task_stream_since(cursor, limit=3)
    assert cursor == 8 and [r["key"] for r in page] == ["t-5", "t-6", "t-7"]
    cursor, page = state.task_stream_since(cursor, limit=3)
    assert cursor == 10 and [r["key"] for r in page] == ["t-8", "t-9"]
    assert state.task_stream_since(cursor, limit=3) == (10, [])


def test_task_stream_records_errors_and_transfers(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    sim.state.handle(TransferDone("w1", ["a", "b"], "w2", 100, 1.0, 2.0))
    _, items = sim.state.task_stream_since(0)
    assert [(i["key"], i["kind"]) for i in items] == [("a", "error"), ("a", "transfer")]


def test_completed_total_counts_finished_tasks(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row("a"), row("b")])
    sim.finish("a")
    sim.finish("b")
    assert sim.state.completed_total == 2


def test_story_lists_every_transition(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    sim.release("a")
    assert sim.state.story("a") == [  # the sim passes no ``now``: time 0.0
        ("a", "released", "waiting", "GraphSubmitted", 0.0),
        ("a", "waiting", "queued", "GraphSubmitted", 0.0),
        ("a", "queued", "processing", "GraphSubmitted", 0.0),
        ("a", "processing", "memory", "TaskFinished", 0.0),
        ("a", "memory", "released", "KeysReleased", 0.0),
        ("a", "released", "forgotten", "KeysReleased", 0.0),
    ]


def test_story_rows_carry_the_time_handle_was_given_and_its_stimulus_id() -> None:
    sim = Sim(SchedulerState())
    sim.join("w1")
    state = sim.state
    state.handle(GraphSubmitted(sim.client, [row("a")], ["a"]), now=2.5)
    rows = state.story("a")
    assert rows and {r[4] for r in rows} == {2.5}
    assert stimulus_id(rows[0][3], rows[0][4]) == "update-graph-2.5"  # (dask's name)
    assert state.stimulus_story("update-graph-2.5") == rows
    assert state.stimulus_story("update-graph-9.0") == []


def test_story_is_bounded() -> None:
    state = SchedulerState(story_size=3)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert [r[2] for r in state.story("a")] == ["queued", "processing", "memory"]
    state.validate()


# --- invalid transitions -------------------------------------------------------------------


def test_impossible_transition_raises_with_key_states_and_story(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    ts = sim.state.tasks["b"]
    with pytest.raises(InvalidTransition) as info:
        sim.state._go(ts, "memory")
    err = info.value
    assert (err.key, err.start, err.finish) == ("b", "waiting", "memory")
    text = str(err)
    assert "'b'" in text and "'waiting'" in text and "'memory'" in text
    assert "('b', 'released', 'waiting', 'GraphSubmitted', 0.0)" in text
    assert ts.state == "waiting"  # nothing changed


def test_validate_catches_a_broken_invariant(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    ts = sim.state.tasks["a"]
    saved = ts.who_has
    ts.who_has = frozenset()  # empty, of the declared type (the compiled build checks it)
    with pytest.raises(AssertionError):
        sim.state.validate()
    ts.who_has = saved


def test_first_measured_duration_replaces_the_guess_of_running_tasks(sim: Sim) -> None:
    """Both workers keep getting work once the prefix turns out to be short (before, the
    worker still running its first task looked busy for the guessed half second)."""
    sim.join("w1")
    sim.join("w2")
    sim.submit([row(f"t{i}", prefix="t") for i in range(20)])
    first = {ws.address: {t.key for t in ws.processing} for ws in sim.state.workers.values()}
    assert all(len(keys) == 1 for keys in first.values())
    sim.finish(next(iter(first["w1"])), duration=0.001)
    w2 = sim.state.workers["w2"]
    assert w2.occupancy < 0.01
    assert len(w2.processing) > 1, "w2 should be sent more work, not left with its guess"
