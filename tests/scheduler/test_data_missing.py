"""Scenario tests of a worker reporting an input missing to the pure scheduler.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ReportErred,
    SendCompute,
)

from ._sim import Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1

# --- data missing --------------------------------------------------------------------------


def test_data_missing_recomputes_the_input(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w2"])], wanted=["b"])
    sim.finish("a")
    out = sim.missing("w2", "a", "w1", "b")
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    assert sim.state.workers["w1"].has_what == set()
    assert computes(sim.finish("a")) == [("w2", "b")]


def test_an_input_its_reporter_could_not_fetch_is_recomputed_on_the_reporter(sim: Sim) -> None:
    """w2 cannot reach w1 (a partition between workers, both still reach the scheduler).
    The input it lacks, held only by w1 and free to run elsewhere, is recomputed on w2,
    where b waits for it: recomputed on w1 again, b went back to the same failing fetch
    for ever. (A strict ``workers=`` still wins: see the test above.)"""
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w2"])], wanted=["b"])
    sim.state.tasks["a"].loose = True
    sim.finish("a")
    out = sim.missing("w2", "a", "w1", "b")
    out += sim.missing("w2", "a", "", "b")
    assert computes(out) == [("w2", "a")]
    assert computes(sim.finish("a")) == [("w2", "b")]
    rare = sim.state.tasks["a"].rare
    assert rare is not None and rare.recompute_on is None  # one time only
    sim.finish("b")
    sim.state.validate()


def test_data_missing_from_one_of_two_holders_keeps_the_other(sim: Sim) -> None:
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    sim.scatter([("x", 10)], workers=["w1", "w2"], broadcast=True)
    sim.submit([row("b", ["x"], workers=["w3"])])
    out = sim.missing("w3", "x", "w1", "b")
    assert sim.states("x") == ["memory"]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w2"}
    assert sim.state.workers["w1"].nbytes == 0
    # w3 keeps b and fetches x from the next holder: b is not run a second time
    assert out == []
    assert sim.state.tasks["b"].processing_on is sim.state.workers["w3"]
    # when w3 runs out of holders it drops b and says so (no holder named): b is sent again
    (cmd,) = sim.missing("w3", "x", "", "b")
    assert isinstance(cmd, SendCompute) and (cmd.worker, cmd.deps) == ("w3", [("x", ["w2"], 10)])


def test_data_missing_for_scattered_key_errs(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 10)], workers=["w1"])
    sim.submit([row("b", ["x"], workers=["w2"])])
    out = sim.missing("w2", "x", "w1", "b")
    assert sorted(r.key for r in of(out, ReportErred)) == ["b", "x"]
    assert sim.states("x", "b") == ["erred", "erred"]


def test_missing_input_on_its_only_holder_is_recomputed_not_resent(sim: Sim) -> None:
    """One worker: it is asked to run b but lacks its input a, which the scheduler thinks it
    holds. Naming itself (or no one) must drop that replica and recompute a, never send b
    back to the same stale holder."""
    for holder in ("w1", ""):
        sim.join("w1")
        sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
        sim.finish("a", nbytes=BIG)
        assert sim.states("b") == ["processing"]
        out = sim.missing("w1", "a", holder, "b")
        assert computes(out) == [("w1", "a")], holder
        assert sim.states("a", "b") == ["processing", "waiting"]
        assert sim.state.workers["w1"].has_what == set()
        assert computes(sim.finish("a", nbytes=BIG)) == [("w1", "b")]
        sim.finish("b")
        sim.release("b")
        sim.leave("w1")
        sim.state.validate()


def test_missing_input_named_by_the_reporter_is_fetched_from_another_holder(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    for holder in ("self", ""):
        x, b = f"x-{holder}", f"b-{holder}"
        sim.scatter([(x, BIG)], workers=["w1", "w2"], broadcast=True)
        sim.submit([row(b, [x])])
        w = sim.state.tasks[b].processing_on.address
        other = "w2" if w == "w1" else "w1"
        out = sim.missing(w, x, w if holder else "", b)
        assert {ws.address for ws in sim.state.tasks[x].who_has} == {other}
        assert sim.states(x) == ["memory"]
        (cmd,) = of(out, SendCompute)
        assert (cmd.key, cmd.deps) == (b, [(x, [other], BIG)])


def test_data_missing_about_unknown_keys_is_harmless(sim: Sim) -> None:
    sim.join("w1")
    assert sim.missing("w1", "nope", "w2", "nada") == []
