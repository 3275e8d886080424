"""A large graph is sent in pieces, inputs first (``_submit.inputs_first``)."""

from __future__ import annotations

import random

from shoal.client._submit import inputs_first


def _row(key: object, deps: list[object]) -> tuple[object, ...]:
    return (key, None, deps, (), (0,), 0, None, "t")


def test_inputs_come_before_their_dependents_whatever_the_order_given() -> None:
    rng = random.Random(14)
    rows = [_row(i, rng.sample(range(i), min(i, 3))) for i in range(500)]
    rng.shuffle(rows)
    out = inputs_first(rows)
    assert sorted(r[0] for r in out) == list(range(500))
    seen: set[object] = set()
    for key, _, deps, *_ in out:
        assert all(d in seen for d in deps), key
        seen.add(key)


def test_inputs_outside_the_graph_do_not_hold_a_row_back() -> None:
    rows = [_row("b", ["held-future", "a"]), _row("a", ["held-future"])]
    assert [r[0] for r in inputs_first(rows)] == ["a", "b"]


def test_rows_in_a_cycle_are_kept_at_the_end_for_the_scheduler_to_report() -> None:
    rows = [_row("x", ["y"]), _row("y", ["x"]), _row("z", [])]
    assert [r[0] for r in inputs_first(rows)] == ["z", "x", "y"]


def test_a_graph_without_edges_keeps_its_order() -> None:
    rows = [_row(i, []) for i in range(10)]
    assert inputs_first(rows) is rows
