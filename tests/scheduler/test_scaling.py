"""The adaptive policy and the choice of workers to retire: pure functions of load."""

from __future__ import annotations

import math

import pytest

from shoal.scheduler._scaling import (
    AdaptivePolicy,
    Load,
    Same,
    ScaleDown,
    ScaleUp,
    WorkerLoad,
    choose_to_retire,
    target_workers,
)


def worker(name: str, *, processing: int = 0, occupancy: float = 0.0, nbytes: int = 0,
           nthreads: int = 1, memory_limit: int = 1000) -> WorkerLoad:
    return WorkerLoad(f"tcp://w:{name}", name, nthreads, processing, occupancy, nbytes, memory_limit)


def idle(n: int) -> tuple[WorkerLoad, ...]:
    return tuple(worker(str(i)) for i in range(n))


# --- target_workers ----------------------------------------------------------------------------


def test_no_work_and_no_workers_wants_none():
    assert target_workers(Load(()), 5.0) == 0


def test_queued_work_with_no_workers_wants_at_least_one():
    assert target_workers(Load((), ready=1, ready_seconds=0.001), 5.0) == 1


def test_queued_seconds_spread_over_the_target_duration():
    # 20 s of queued work to finish in 5 s: 4 single-threaded workers
    assert target_workers(Load(idle(1), ready=100, ready_seconds=20.0), 5.0) == 4


def test_few_long_tasks_do_not_ask_for_more_workers_than_tasks():
    assert target_workers(Load(idle(1), ready=2, ready_seconds=200.0), 5.0) == 2


def test_threads_per_worker_divide_the_target():
    workers = tuple(worker(str(i), nthreads=4) for i in range(2))
    assert target_workers(Load(workers, ready=100, ready_seconds=40.0), 5.0) == 2


def test_running_work_counts_like_queued_work():
    busy = (worker("0", processing=10, occupancy=10.0),)
    assert target_workers(Load(busy), 5.0) == 2


def test_memory_over_60_percent_full_asks_for_twice_the_workers():
    full = tuple(worker(str(i), nbytes=700) for i in range(2))
    assert target_workers(Load(full), 5.0) == 4


# --- choose_to_retire --------------------------------------------------------------------------


def test_idle_workers_holding_least_data_go_first():
    ws = (worker("0", nbytes=50), worker("1", processing=3), worker("2", nbytes=10),
          worker("3", nbytes=10))
    # among equals, the most recently added name goes first
    assert choose_to_retire(ws, 2) == ["tcp://w:3", "tcp://w:2"]


def test_busy_workers_are_chosen_last_and_never_when_idle_only():
    ws = (worker("0", processing=1), worker("1"))
    assert choose_to_retire(ws, 2) == ["tcp://w:1", "tcp://w:0"]
    assert choose_to_retire(ws, 2, idle_only=True) == ["tcp://w:1"]
    assert choose_to_retire(ws, 0) == []


# --- AdaptivePolicy ------------------------------------------------------------------------------


def test_scales_up_at_once_when_tasks_queue():
    policy = AdaptivePolicy(minimum=1, maximum=8, target_duration=1.0)
    assert policy.recommend(Load(idle(1), ready=50, ready_seconds=5.0)) == ScaleUp(5)


def test_scale_up_is_capped_by_the_maximum():
    policy = AdaptivePolicy(minimum=1, maximum=3, target_duration=1.0)
    assert policy.recommend(Load(idle(1), ready=50, ready_seconds=50.0)) == ScaleUp(3)


def test_never_goes_below_the_minimum():
    policy = AdaptivePolicy(minimum=2, maximum=8, wait_count=1)
    assert policy.recommend(Load(idle(2))) == Same()
    assert policy.recommend(Load(idle(1))) == ScaleUp(2)


def test_an_idle_worker_is_retired_only_after_wait_count_suggestions_in_a_row():
    policy = AdaptivePolicy(minimum=1, maximum=8, wait_count=3)
    load = Load(idle(3))
    assert policy.recommend(load) == Same()
    assert policy.recommend(load) == Same()
    assert policy.recommend(load) == ScaleDown(["tcp://w:2", "tcp://w:1"])


def test_a_burst_of_work_resets_the_count_towards_retiring():
    policy = AdaptivePolicy(minimum=1, maximum=8, wait_count=2, target_duration=1.0)
    quiet = Load(idle(2))
    assert policy.recommend(quiet) == Same()
    assert policy.recommend(Load(idle(2), ready=4, ready_seconds=2.0)) == Same()
    assert policy.recommend(quiet) == Same()  # counting starts again
    assert policy.recommend(quiet) == ScaleDown(["tcp://w:1"])


def test_busy_workers_are_not_retired_even_when_fewer_are_wanted():
    policy = AdaptivePolicy(minimum=0, maximum=8, wait_count=1, target_duration=100.0)
    ws = (worker("0", processing=1, occupancy=0.1), worker("1", processing=1, occupancy=0.1))
    assert policy.recommend(Load(ws)) == Same()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"minimum": -1}, "minimum"),
        ({"minimum": 3, "maximum": 2}, "below minimum"),
        ({"wait_count": 0}, "wait_count"),
        ({"target_duration": 0}, "target_duration"),
    ],
)
def test_bad_bounds_are_refused_naming_the_argument(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        AdaptivePolicy(**kwargs)


def test_unbounded_maximum_is_the_default():
    assert AdaptivePolicy().maximum == math.inf
