"""The scheduler's task table past a few hundred thousand tasks (issue 14: no step of the
scheduler's loop over 100 ms). One dict of a million tasks grows by rebuilding its whole
table in one step (27-121 ms measured at 699,050 tasks); the shards keep every table small
and let their growths happen in different pieces of a graph, while behaving as one dict."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from shoal.scheduler import _task_shards
from shoal.scheduler._events import GraphSubmitted, KeysReleased, Tick
from shoal.scheduler._state import SchedulerState
from shoal.scheduler._task_shards import SHARD_AT, TaskShards, merged_if_small, sharded_for
from shoal.scheduler._tasks import TaskState

from ._sim import Sim, row


def test_shards_behave_as_one_dict_under_random_operations() -> None:
    rng = random.Random(7)
    keys: list[Any] = [("k", i) for i in range(400)] + [f"s-{i}" for i in range(400)]
    model: dict[Any, TaskState] = {k: TaskState(k, "k") for k in keys[:150]}
    shards = TaskShards(dict(model))
    for _ in range(6000):
        key = rng.choice(keys)
        op = rng.randrange(7)
        if op == 0:
            model[key] = shards[key] = TaskState(key, "k")
        elif op == 1:
            assert shards.pop(key, None) is model.pop(key, None)
        elif op == 2:
            if key in model:
                del model[key]
                del shards[key]
            else:
                with pytest.raises(KeyError):
                    del shards[key]
                with pytest.raises(KeyError):
                    shards.pop(key)
        elif op == 3:
            assert shards.get(key) is model.get(key)
            assert shards.get(key, "none") is model.get(key, "none")
        elif op == 4:
            assert (key in shards) == (key in model)
            if key in model:
                assert shards[key] is model[key]
            else:
                with pytest.raises(KeyError):
                    shards[key]
        elif op == 5:
            assert len(shards) == len(model)
            assert bool(shards) == bool(model)
        elif rng.random() < 0.05:  # the base moved into the parts, a few at a time
            shards.move(3)
    assert sorted(map(repr, shards)) == sorted(map(repr, model))
    assert sorted(map(repr, shards.keys())) == sorted(map(repr, model.keys()))
    assert {id(v) for v in shards.values()} == {id(v) for v in model.values()}
    assert dict(shards.items()) == model
    assert shards.copy() == model
    assert dict(shards) == model  # dict() of it, as copy_live and plugins take one
    # a key still in the base, set again, stays one entry
    fresh = TaskShards({"b": TaskState("b", "k")})
    fresh["b"] = again = TaskState("b", "k")
    assert len(fresh) == 1 and fresh.parts()[0]["b"] is again
    shards.move(len(model))
    assert shards.parts()[0] == {} and shards.copy() == model


def test_no_part_grows_past_the_plain_tables_size_and_one_piece_grows_few_parts() -> None:
    # The plain table as the scheduler hands it over: just under SHARD_AT tasks.
    base = {("ones", i): None for i in range(SHARD_AT)}
    plain_size = sys.getsizeof(base)
    shards = TaskShards(base)  # type: ignore[arg-type]
    sizes = [sys.getsizeof(p) for p in shards.parts()]
    most_grown_at_once = 0
    for start in range(SHARD_AT, 1_400_000, 1000):  # 1.4M: da.ones(1M).sum()'s table
        for i in range(start, start + 1000):
            shards[("ones", i)] = None  # type: ignore[assignment]
        shards.move(_task_shards.MOVE_STEP)  # as each piece's intake does
        now = [sys.getsizeof(p) for p in shards.parts()]
        # (growths to tables of a megabyte or more: the small ones cost microseconds)
        grown = sum(a != b and b >= 1 << 20 for a, b in zip(sizes, now, strict=True))
        most_grown_at_once = max(most_grown_at_once, grown)
        sizes = now
    assert len(shards) == 1_400_000
    assert shards.parts()[0] == {}  # the base, moved into the parts, never grew meanwhile
    # no part's table is more than half the base's (a plain table of 1.4M tasks would be
    # four times the base's: the largest growth here is an eighth of that one)
    assert max(sizes[1:]) < 0.51 * plain_size, (max(sizes[1:]), plain_size)
    # uniform shares would grow all 16 parts within a few pieces of each other
    assert most_grown_at_once <= 2, most_grown_at_once


def test_a_plain_table_is_sharded_only_past_the_threshold_and_merged_back_when_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_task_shards, "SHARD_AT", 10)
    monkeypatch.setattr(_task_shards, "MERGE_AT", 4)
    small: dict[Any, TaskState] = {i: TaskState(i, "k") for i in range(8)}
    assert sharded_for(small, 2) is small
    big = sharded_for(small, 3)
    assert type(big) is TaskShards and big.copy() == small
    assert merged_if_small(big) is big
    for i in range(5):
        del big[i]
    merged = merged_if_small(big)
    assert type(merged) is dict and merged == {i: small[i] for i in range(5, 8)}


def test_a_graph_past_the_threshold_runs_on_shards_and_the_table_merges_back_after(
    monkeypatch: pytest.MonkeyPatch, sim: Sim, state: SchedulerState,
) -> None:
    monkeypatch.setattr(_task_shards, "SHARD_AT", 30)
    monkeypatch.setattr(_task_shards, "MERGE_AT", 10)
    sim.join("w1", nthreads=2)
    leaves = [("leaf", i) for i in range(60)]
    pieces = [leaves[i:i + 20] for i in range(0, 60, 20)]
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        rows = [row(k) for k in piece] + ([row("total", leaves)] if last else [])
        state.handle(GraphSubmitted(sim.client, rows, ["total"] if last else [],
                                    more=not last, stream=1))
        state.validate()
    assert type(state.tasks) is TaskShards  # 61 tasks > 30
    while running := [k for k, ts in state.tasks.items() if ts.state == "processing"]:
        for key in running:
            sim.finish(key)
        state.validate()
    assert sim.states("total") == ["memory"]
    assert all(state.tasks[k].state == "released" for k in leaves if k in state.tasks)
    state.handle(KeysReleased(sim.client, ["total"]))
    state.handle(Tick(now=1.0))
    assert type(state.tasks) is dict  # below MERGE_AT: one plain table again
    assert "total" not in state.tasks
