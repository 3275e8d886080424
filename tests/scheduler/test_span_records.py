"""The scheduler's records of ``span`` blocks (dask's ``extensions["spans"]``): the keys
submitted in each span (``SpanSubmitted``), the span tree, and what the tasks' completions
add up to. The pure state, fed events."""

from __future__ import annotations

from shoal.scheduler._events import SpanSubmitted, TaskFinished
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, row


def test_a_span_counts_its_tasks_and_their_times_and_its_sub_spans_add_up() -> None:
    state = SchedulerState()
    state.spans.clock = lambda: 1000.0
    sim = Sim(state)
    sim.join("w1", nthreads=4)
    state.handle(SpanSubmitted(("outer",), ("o",), ["a", "b"]), now=10.0)
    state.handle(SpanSubmitted(("outer", "inner"), ("o", "i"), ["c"]), now=11.0)
    sim.submit([row("a", prefix="inc"), row("b", prefix="inc"), row("c", prefix="add"),
                row("free")])
    book = state.spans
    outer, inner = book.spans["o"], book.spans["i"]
    assert book.root_spans == [outer] and outer.children == [inner]
    assert inner.parent is outer and inner.annotation == {"name": ("outer", "inner"),
                                                          "ids": ("o", "i")}
    assert repr(outer) == "Span<name=('outer',), id=o>"
    assert list(book.find_by_tags("inner", "outer")) == [inner, outer]
    assert book.spans_search_by_name["outer", "inner"] == [inner]
    assert outer.states == {"processing": 3} and not outer.done
    assert outer.start == 0.0 and outer.stop == 1000.0  # nothing finished: running now

    state.handle(_done(sim, "a", 12.0, 13.0, 100), now=13.0)
    state.handle(_done(sim, "c", 12.5, 14.5, 10), now=14.5)
    assert inner.done and inner.states == {"memory": 1}
    assert (inner.start, inner.stop, inner.duration, inner.nbytes_total) == (12.5, 14.5, 2.0, 10)
    assert outer.start == 12.0 and outer.stop == 1000.0  # "b" still runs
    state.handle(_done(sim, "b", 13.0, 16.0, 100), now=16.0)
    sim.finish("free")  # not in a span: counted nowhere
    assert outer.done and outer.states == {"memory": 3}
    assert (outer.start, outer.stop, outer.nbytes_total) == (12.0, 16.0, 210)
    assert outer.all_durations == {"compute": 6.0} and outer.duration == 6.0
    assert outer.cumulative_worker_metrics == {("execute", "inc", "compute", "seconds"): 4.0,
                                               ("execute", "add", "compute", "seconds"): 2.0}
    sim.release("a", "b", "c")
    assert outer.done and sum(outer.states.values()) == 3  # released or forgotten: done


def _done(sim: Sim, key: str, start: float, stop: float, nbytes: int) -> TaskFinished:
    return TaskFinished("w1", key, nbytes, "int", start, stop, 0, None, sim.run_of(key))


def test_a_span_keeps_no_key_the_scheduler_forgot() -> None:
    """A long-lived scheduler's span records stay bounded by the tasks it still knows: a
    forgotten task is only counted (its key is not kept), as dask's spans keep groups."""
    state = SchedulerState()
    sim = Sim(state)
    sim.join("w1", nthreads=64)
    keys = [f"t-{i}" for i in range(50)]
    state.handle(SpanSubmitted(("work",), ("s",), keys), now=1.0)
    sim.submit([row(k, prefix="t") for k in keys])
    for k in keys:
        state.handle(_done(sim, k, 2.0, 3.0, 8), now=3.0)
    span = state.spans.spans["s"]
    assert span.states == {"memory": 50}
    sim.release(*keys)
    assert not any(k in state.tasks for k in keys)
    assert span.keys == {} and state.spans.by_key == {}
    assert span.states == {"forgotten": 50} and span.done
    assert (span.nbytes_total, span.duration) == (400, 50.0)


def test_a_key_submitted_again_in_another_span_moves_there() -> None:
    state = SchedulerState()
    state.handle(SpanSubmitted(("a",), ("a",), ["k"]), now=1.0)
    state.handle(SpanSubmitted(("b",), ("b",), ["k"]), now=2.0)
    a, b = state.spans.spans["a"], state.spans.spans["b"]
    assert list(a.keys) == [] and list(b.keys) == ["k"]
