"""Scenario tests of task failure in the pure scheduler: errors reach dependents, retries, missing dependencies.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.protocol._errors import LostDataError, error_to_exception
from shoal.scheduler._events import (
    ReportDone,
    ReportErred,
    SendFree,
)

from ._sim import Sim, computes, of, row

# --- errors --------------------------------------------------------------------------------


def test_failure_reports_error_with_exception(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    (cmd,) = sim.fail("a", exc=ValueError("bad input"))
    assert isinstance(cmd, ReportErred) and cmd.client == "c" and cmd.key == "a"
    assert cmd.error["key"] == "a"
    ts = sim.state.tasks["a"]
    assert isinstance(ts.exception, ValueError) and str(ts.exception) == "bad input"
    assert ts.exception_blame == "a"
    assert "ValueError" in ts.traceback_text
    assert ts.exception_text == "bad input"


def test_error_propagates_to_dependents(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"]), row("c", ["b"]), row("d", ["a"])], wanted=["c", "d"])
    out = sim.fail("a")
    reports = of(out, ReportErred)
    assert sorted(r.key for r in reports) == ["c", "d"]
    assert all(r.client == "c" for r in reports)
    assert sim.states("a", "b", "c", "d") == ["erred"] * 4
    origin = sim.state.tasks["a"].error
    for key in "bcd":
        ts = sim.state.tasks[key]
        assert ts.error is origin
        assert ts.exception is None  # only the task that raised has an exception
        assert ts.exception_blame == "a"
    assert isinstance(sim.state.tasks["a"].exception, ZeroDivisionError)
    assert sim.state.first_failure("c") is sim.state.tasks["a"]


def test_submitting_on_top_of_erred_task_errs_at_once(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    out = sim.submit([row("b", ["a"])])
    (cmd,) = out
    assert isinstance(cmd, ReportErred) and cmd.key == "b" and cmd.error["key"] == "a"


def test_resubmitting_erred_key_reports_the_error(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    (cmd,) = sim.submit([row("a")])
    assert isinstance(cmd, ReportErred) and cmd.key == "a"


def test_retries_send_the_task_again(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", retries=2)])
    assert computes(sim.fail("a")) == [("w1", "a")]
    assert computes(sim.fail("a")) == [("w1", "a")]
    out = sim.fail("a")
    assert [type(c) for c in out] == [ReportErred]
    assert sim.states("a") == ["erred"]


def test_retry_then_success(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", retries=1)])
    sim.fail("a")
    assert sim.finish("a") == [ReportDone("c", "a", 8, "int", None)]


def test_keys_retried_reruns_the_failed_chain(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.fail("a")
    assert sim.states("a", "b") == ["erred", "erred"]
    out = sim.retry("b")
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    assert sim.state.tasks["b"].error is None
    assert computes(sim.finish("a")) == [("w1", "b")]
    assert sim.finish("b") == [ReportDone("c", "b", 8, "int", None), SendFree("w1", ["a"])]


def test_keys_retried_ignores_tasks_not_erred(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    assert sim.retry("a", "unknown") == []
    assert sim.states("a") == ["processing"]


def test_missing_dependency_at_submit_errs_naming_it(sim: Sim) -> None:
    sim.join("w1")
    (cmd,) = sim.submit([row("b", ["gone"])])
    assert isinstance(cmd, ReportErred) and cmd.key == "b"
    assert "lost dependencies" in cmd.error["message"]
    assert "'gone'" in cmd.error["message"]
    assert isinstance(error_to_exception(cmd.error), LostDataError)


def test_missing_dependency_fails_dependents_in_same_graph(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("b", ["gone"]), row("c", ["b"])], wanted=["c"])
    (cmd,) = out
    assert isinstance(cmd, ReportErred) and cmd.key == "c"
    assert "'gone'" in cmd.error["message"]
    assert sim.states("b", "c") == ["erred", "erred"]


def test_task_depending_on_itself_errs_instead_of_waiting_forever(sim: Sim) -> None:
    # A graph with a cycle can never run; a peer sending one must not leave it (and its
    # client) waiting: the task errs naming the cycle, and its dependents with it.
    sim.join("w1")
    cmds = sim.submit([row("a", ["a"]), row("b", ["a"])])
    erred = {c.key: c for c in cmds if isinstance(c, ReportErred)}
    assert set(erred) == {"a", "b"}
    assert "depends on itself" in erred["a"].error["message"]
    assert sim.states("a", "b") == ["erred", "erred"]
    a = sim.state.tasks["a"]
    assert a not in a.dependents and a not in a.dependencies
