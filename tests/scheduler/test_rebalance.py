"""Where replicate and rebalance put copies: pure decisions over who holds what."""

from __future__ import annotations

import random

import pytest

from shoal.scheduler._rebalance import plan_rebalance, plan_replicate

W = ["w1", "w2", "w3", "w4"]


def test_replicate_copies_each_key_to_the_least_loaded_workers_until_n_hold_it() -> None:
    plan = plan_replicate({"a": ["w1"]}, {"a": 10}, {"w1": 10, "w2": 500, "w3": 0, "w4": 100}, W, 3)
    assert plan.copies == {"a": ["w3", "w4"]}
    assert plan.drops == {}


def test_replicate_without_n_copies_to_every_worker() -> None:
    plan = plan_replicate({"a": ["w2"]}, {"a": 1}, {}, W, None)
    assert sorted(plan.copies["a"]) == ["w1", "w3", "w4"]


def test_replicate_spreads_many_keys_instead_of_piling_them_on_one_worker() -> None:
    holders = {f"k{i}": ["w1"] for i in range(6)}
    plan = plan_replicate(holders, dict.fromkeys(holders, 100), {"w1": 600}, W, 2)
    targets = [ws[0] for ws in plan.copies.values()]
    assert sorted(targets.count(w) for w in ("w2", "w3", "w4")) == [2, 2, 2]


def test_replicate_with_fewer_copies_wanted_drops_from_the_most_loaded_holders() -> None:
    plan = plan_replicate({"a": ["w1", "w2", "w3"]}, {"a": 5}, {"w1": 50, "w2": 900, "w3": 10},
                          W, 1)
    assert plan.copies == {}
    assert plan.drops == {"w2": ["a"], "w1": ["a"]}


def test_replicate_within_workers_leaves_copies_elsewhere_alone_and_keeps_one() -> None:
    plan = plan_replicate({"a": ["w1"]}, {"a": 5}, {}, ["w2", "w3"], 1)
    assert plan.copies == {"a": ["w2"]}
    assert plan.drops == {}
    # Held only inside the pool, above n: never drops the last copy.
    plan = plan_replicate({"b": ["w2", "w3"]}, {"b": 5}, {}, ["w2", "w3"], 1)
    assert sum(len(v) for v in plan.drops.values()) == 1


def test_replicate_already_satisfied_does_nothing() -> None:
    plan = plan_replicate({"a": ["w1", "w2"]}, {"a": 5}, {}, ["w1", "w2"], 2)
    assert plan.copies == {} and plan.drops == {}


@pytest.mark.parametrize("n", [0, -1])
def test_replicate_with_n_below_one_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        plan_replicate({"a": ["w1"]}, {"a": 1}, {}, W, n)


def test_replicate_without_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        plan_replicate({"a": ["w1"]}, {"a": 1}, {}, [], 1)


def _apply(held: dict[str, dict[str, int]], plan) -> dict[str, dict[str, int]]:
    out = {w: dict(keys) for w, keys in held.items()}
    sizes = {k: n for keys in held.values() for k, n in keys.items()}
    for key, targets in plan.copies.items():
        for t in targets:
            out[t][key] = sizes[key]
    for w, keys in plan.drops.items():
        for k in keys:
            del out[w][k]
    return out


def _loads(held: dict[str, dict[str, int]]) -> list[int]:
    return sorted(sum(keys.values()) for keys in held.values())


def test_rebalance_moves_keys_from_the_full_worker_to_the_empty_one() -> None:
    held = {"w1": {f"k{i}": 100 for i in range(10)}, "w2": {}}
    plan = plan_rebalance(held)
    assert _loads(_apply(held, plan)) == [500, 500]
    assert set(plan.drops) == {"w1"}
    assert all(t == ["w2"] for t in plan.copies.values())


def test_rebalance_of_balanced_workers_moves_nothing() -> None:
    held = {"w1": {"a": 100, "b": 100}, "w2": {"c": 100, "d": 100}}
    plan = plan_rebalance(held)
    assert plan.copies == {} and plan.drops == {}


def test_rebalance_within_tolerance_moves_nothing() -> None:
    held = {"w1": {"a": 105}, "w2": {"b": 100}}
    assert plan_rebalance(held, tolerance=0.1).copies == {}


def test_rebalance_never_moves_a_key_that_would_widen_the_gap() -> None:
    held = {"w1": {"big": 1000}, "w2": {"small": 10}}
    plan = plan_rebalance(held)
    assert plan.copies == {}


def test_rebalance_only_moves_the_keys_allowed() -> None:
    held = {"w1": {"a": 100, "b": 100, "c": 100, "d": 100}, "w2": {}}
    plan = plan_rebalance(held, movable={"a"})
    assert plan.copies == {"a": ["w2"]}


def test_rebalance_does_not_move_a_key_to_a_worker_already_holding_it() -> None:
    held = {"w1": {"a": 100, "b": 100}, "w2": {"a": 100}, "w3": {}}
    plan = plan_rebalance(held)
    assert "w2" not in plan.copies.get("a", [])


def test_rebalance_of_random_holdings_ends_within_tolerance_or_one_key() -> None:
    rng = random.Random(11)
    for _ in range(50):
        workers = [f"w{i}" for i in range(rng.randint(2, 6))]
        held: dict[str, dict[str, int]] = {w: {} for w in workers}
        for i in range(rng.randint(0, 60)):
            held[rng.choice(workers[:2])][f"k{i}"] = rng.randint(1, 100)
        plan = plan_rebalance(held, tolerance=0.1)
        after = _apply(held, plan)
        loads = _loads(after)
        mean = sum(loads) / len(loads)
        biggest = max((n for keys in held.values() for n in keys.values()), default=0)
        assert loads[-1] - loads[0] <= max(0.1 * mean, 2 * biggest)
        assert sum(loads) == sum(_loads(held))  # nothing lost, nothing duplicated
