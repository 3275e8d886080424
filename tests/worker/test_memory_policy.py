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


def test_fetches_are_cut_to_the_request_limit() -> None:
    from collections import deque

    from shoal.worker._fetching import next_request

    sizes = {"a": 20, "b": 20, "c": 5, "huge": 100}
    keys = deque(["a", "b", "c", "huge", "unknown"])
    requests = []
    while keys:
        requests.append(next_request(keys, sizes, 30))
    assert requests == [(["a"], 20), (["b", "c"], 25), (["huge"], 100), (["unknown"], 0)]
    assert sizes == {}
    assert next_request(deque(), {}, 30) == ([], 0)


def test_a_request_asks_for_at_most_8_mib_or_less_when_configured_or_budgeted() -> None:
    from shoal.worker._fetching import request_limit

    mib = 2**20
    assert request_limit(50_000_000, 0) == 8 * mib  # dask's 50 MB default: capped
    assert request_limit(2 * mib, 0) == 2 * mib  # a smaller setting is kept
    assert request_limit(50_000_000, mib) == mib  # a memory limit's transfer budget


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


# --- max-spill: a cap on the bytes of the spill files ---------------------------------------


def test_max_spill_is_dasks_size_or_false() -> None:
    from shoal.worker._memory import max_spill_bytes

    assert max_spill_bytes(False) is None and max_spill_bytes(None) is None
    assert max_spill_bytes("false") is None  # as the nanny passes "no cap"
    assert max_spill_bytes("1GB") == 10**9 and max_spill_bytes("2 KiB") == 2048
    assert max_spill_bytes(1234) == 1234 and max_spill_bytes("1234") == 1234
    for bad in (True, "lots", -1):
        with pytest.raises(ValueError, match="max-spill"):
            max_spill_bytes(bad)


def _capped(max_spill: int) -> MemoryPolicy:
    return MemoryPolicy(MemoryLimits.from_fractions(LIMIT, max_spill=max_spill))


def test_values_are_spilled_while_they_fit_under_max_spill() -> None:
    p = _capped(250)
    p.handle(ValueStored("a", 300), ValueStored("b", 300))
    assert p.handle(ValueStored("c", 100)) == [Spill(["a"])]
    assert p.admit_spill("a", 200)  # written: 200 bytes (compressed) of the cap's 250
    assert p.disk_bytes == 200 and not p.disk_full
    p.validate()


def test_a_value_past_max_spill_stays_in_memory_and_spilling_stops() -> None:
    p = _capped(250)
    p.handle(ValueStored("a", 300), ValueStored("b", 300))
    assert p.handle(ValueStored("c", 100)) == [Spill(["a"])]
    assert not p.admit_spill("a", 300)  # would take the files past 250 bytes
    assert list(p.fast) == ["a", "b", "c"] and p.fast_bytes == 700 and p.slow_bytes == 0
    assert p.disk_full and p.disk_bytes == 0
    # No further spill is ordered, neither past the target nor past spill; pause still works.
    assert p.handle(ValueStored("d", 50)) == []
    assert p.handle(MemorySampled(900)) == [Pause()]
    p.validate()


def test_spilling_resumes_once_a_spilled_value_leaves_the_disk() -> None:
    p = _capped(250)
    p.handle(ValueStored("a", 400), ValueStored("b", 150))
    assert p.handle(ValueStored("c", 100)) == [Spill(["a"])]
    assert p.admit_spill("a", 200)
    assert p.handle(ValueStored("d", 400)) == [Spill(["b"])]
    assert not p.admit_spill("b", 100)  # 200 + 100 > 250
    assert p.handle(ValueStored("e", 10)) == []  # full: nothing ordered
    p.handle(ValueRemoved("a"))  # its file is deleted: room again
    assert not p.disk_full and p.disk_bytes == 0
    assert p.handle(ValueStored("f", 10)) == [Spill(["b"])]
    assert p.admit_spill("b", 100)
    p.validate()


def test_a_value_loaded_back_frees_its_bytes_on_disk() -> None:
    p = _capped(1000)
    p.handle(ValueStored("a", 300), ValueStored("b", 300))
    assert p.handle(ValueStored("c", 100)) == [Spill(["a"])]
    assert p.admit_spill("a", 300)
    p.handle(ValueRemoved("b"))
    assert p.handle(ValueLoaded("a")) == [Unspill("a")]
    assert p.disk_bytes == 0 and not p.disk
    p.validate()


def test_without_max_spill_every_ordered_spill_is_admitted() -> None:
    p = MemoryPolicy(MemoryLimits.from_fractions(LIMIT))
    assert p.handle(ValueStored("a", 10**6)) == [Spill(["a"])]  # over the target on its own
    assert p.admit_spill("a", 10**6) and p.disk_bytes == 10**6
    p.validate()
