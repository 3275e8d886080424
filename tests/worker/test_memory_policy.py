"""The worker's memory policy (pure): what to spill and when to pause, from figures fed in
as events (dask's thresholds: target 0.6, spill 0.7, pause 0.8 of the limit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.worker._memory import (
    MemoryLimits,
    MemoryPolicy,
    MemorySampled,
    Pause,
    Resume,
    Spill,
    SpillFailed,
    Unspill,
    ValueLoaded,
    ValueRemoved,
    ValueStored,
    ValueUsed,
)

LIMIT = 1000  # target 600, spill 700, pause 800


@pytest.fixture
def policy() -> Iterator[MemoryPolicy]:
    p = MemoryPolicy(MemoryLimits.from_fractions(LIMIT))
    yield p
    p.validate()


def test_thresholds_are_dask_fractions_of_the_limit() -> None:
    lim = MemoryLimits.from_fractions(LIMIT)
    assert (lim.target, lim.spill, lim.pause) == (600, 700, 800)


def test_a_disabled_threshold_is_none() -> None:
    lim = MemoryLimits.from_fractions(LIMIT, target=False, spill=0.7, pause=None)
    assert (lim.target, lim.spill, lim.pause) == (None, 700, None)


def test_no_limit_means_no_rules(policy: MemoryPolicy) -> None:
    p = MemoryPolicy(MemoryLimits.from_fractions(0))
    assert p.handle(ValueStored("a", 10**12), MemorySampled(10**13)) == []


def test_values_under_the_target_stay_in_memory(policy: MemoryPolicy) -> None:
    assert policy.handle(ValueStored("a", 300), ValueStored("b", 300)) == []
    assert policy.managed == 600


def test_passing_the_target_spills_the_least_recently_used(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 200), ValueStored("b", 200), ValueStored("c", 200))
    assert policy.handle(ValueStored("d", 200)) == [Spill(["a"])]
    assert list(policy.slow) == ["a"]
    assert policy.managed == 600 and policy.slow_bytes == 200


def test_a_read_makes_a_value_most_recently_used(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 200), ValueStored("b", 200), ValueStored("c", 200))
    assert policy.handle(ValueUsed("a"), ValueStored("d", 200)) == [Spill(["b"])]


def test_the_value_just_stored_is_spared(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 100))
    assert policy.handle(ValueStored("b", 550)) == [Spill(["a"])]
    assert "b" in policy.fast


def test_a_value_bigger_than_the_target_goes_straight_to_disk(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 100))
    assert policy.handle(ValueStored("huge", 700)) == [Spill(["huge"])]
    assert "a" in policy.fast
    # Read back, it is served from disk and stays there.
    assert policy.handle(ValueLoaded("huge")) == []
    assert "huge" in policy.slow


def test_a_value_read_back_returns_to_memory_when_there_is_room(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 300), ValueStored("b", 300), ValueStored("c", 300))
    assert "a" in policy.slow
    policy.handle(ValueRemoved("c"))
    assert policy.handle(ValueLoaded("a")) == [Unspill("a")]
    assert "a" in policy.fast and policy.managed == 600


def test_a_value_read_back_into_full_memory_stays_on_disk(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 300), ValueStored("b", 300), ValueStored("c", 300))
    # Bringing "a" back would push "b" out, which a scan reads next: served from disk.
    assert policy.handle(ValueLoaded("a")) == []
    assert "a" in policy.slow and list(policy.fast) == ["b", "c"]


def test_removing_a_value_forgets_it_wherever_it_is(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 300), ValueStored("b", 400))
    policy.handle(ValueRemoved("a"), ValueRemoved("b"), ValueRemoved("never"))
    assert policy.managed == 0 and policy.slow_bytes == 0


def test_storing_again_replaces_the_old_size(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 300), ValueStored("a", 100))
    assert policy.managed == 100


def test_an_unpicklable_value_stays_in_memory_and_is_not_tried_again(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("lock", 200), ValueStored("b", 200), ValueStored("c", 200))
    assert policy.handle(ValueStored("d", 200)) == [Spill(["lock"])]
    policy.handle(SpillFailed("lock"))
    assert "lock" in policy.fast
    assert policy.handle(ValueStored("e", 200)) == [Spill(["b", "c"])]


def test_process_memory_past_spill_spills_down_to_the_target(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 100), ValueStored("b", 100), ValueStored("c", 100))
    # 750 > spill (700): 150 bytes over the target go, least recently used first.
    assert policy.handle(MemorySampled(750)) == [Spill(["a", "b"])]


def test_process_memory_under_spill_spills_nothing(policy: MemoryPolicy) -> None:
    policy.handle(ValueStored("a", 100))
    assert policy.handle(MemorySampled(690)) == []


def test_unmanaged_memory_cannot_be_spilled_but_pauses(policy: MemoryPolicy) -> None:
    assert policy.handle(MemorySampled(900)) == [Pause()]
    assert policy.paused


def test_pause_once_then_resume_below_the_pause_threshold(policy: MemoryPolicy) -> None:
    assert policy.handle(MemorySampled(850)) == [Pause()]
    assert policy.handle(MemorySampled(860)) == []
    assert policy.handle(MemorySampled(790)) == [Resume()]
    assert not policy.paused
    assert policy.handle(MemorySampled(500)) == []


def test_pause_disabled_never_pauses() -> None:
    p = MemoryPolicy(MemoryLimits.from_fractions(LIMIT, pause=False))
    assert p.handle(MemorySampled(990)) == []


def test_an_unknown_event_is_an_error(policy: MemoryPolicy) -> None:
    with pytest.raises(TypeError, match="unknown event"):
        policy.handle("nonsense")  # type: ignore[arg-type]


def test_used_is_handle_of_value_used(policy: MemoryPolicy) -> None:
    other = MemoryPolicy(MemoryLimits.from_fractions(LIMIT))
    for p in (policy, other):
        p.handle(ValueStored("a", 200), ValueStored("b", 200), ValueStored("c", 200))
    policy.used("a")
    other.handle(ValueUsed("a"))
    assert list(policy.fast) == list(other.fast) == ["b", "c", "a"]


def test_fetches_are_cut_to_the_transfer_budget() -> None:
    from shoal.worker._server import transfer_groups

    sizes = {"a": 20, "b": 20, "c": 5, "huge": 100}
    assert transfer_groups(["a", "b", "c", "huge", "unknown"], sizes, 30) == [
        (["a"], 20), (["b", "c"], 25), (["huge"], 100), (["unknown"], 0)]
    assert transfer_groups([], sizes, 30) == []


def test_a_fetch_order_carries_the_schedulers_sizes() -> None:
    from shoal.protocol._messages import Compute
    from shoal.protocol._serialize import Serialized
    from shoal.worker._state import ComputeAssigned, Fetch, WorkerState

    ws = WorkerState("tcp://me:1")
    msg = Compute("t", Serialized([b"x"]), [("a", ["p1"], 123), ("b", ["p1"], 7)], {}, (0,),
                  False, "t", 1)
    (fetch,) = ws.handle(ComputeAssigned(msg))
    assert isinstance(fetch, Fetch) and fetch.sizes == {"a": 123, "b": 7}


def test_between_samples_unmanaged_memory_counts_against_spill(policy: MemoryPolicy) -> None:
    policy.handle(MemorySampled(450))  # 450 unmanaged (the interpreter, libraries...)
    assert policy.handle(ValueStored("a", 100), ValueStored("b", 100)) == []
    # 450 + 300 > spill (700): down to the target (600) at once, not at the next sample.
    assert policy.handle(ValueStored("c", 100)) == [Spill(["a", "b"])]
    assert policy.unmanaged + policy.managed <= 600


def test_a_pause_by_memory_the_worker_cannot_spill_is_explained() -> None:
    from shoal.worker._memory_monitor import unmanaged_pause_warning

    limits = MemoryLimits.from_fractions(300 * 2**20)  # pause at 240 MiB
    text = unmanaged_pause_warning("tcp://w:1", limits, process=250 * 2**20, managed=0)
    assert text is not None
    assert "Unmanaged memory use is high" in text and "tcp://w:1" in text
    assert "250 MiB" in text and "memory_limit" in text
    assert "memory-not-released-back-to-the-os" in text


def test_a_pause_that_spilling_can_end_gets_no_unmanaged_warning() -> None:
    from shoal.worker._memory_monitor import unmanaged_pause_warning

    limits = MemoryLimits.from_fractions(300 * 2**20)
    # 100 MiB of values in memory: spilling them brings the process below pause.
    assert unmanaged_pause_warning("w", limits, process=250 * 2**20, managed=100 * 2**20) is None
    assert unmanaged_pause_warning("w", MemoryLimits.from_fractions(300 * 2**20, pause=False),
                                   process=290 * 2**20, managed=0) is None
