"""The statistical profiler's sampling thread (``shoal._profiler``), fed stacks by a test
``pick``: it samples only while its owner is busy, files cycles into a bounded history,
stops on close, and, disabled by its settings, never samples. Also what a server's loop
sampler picks: its work, never its idling."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import uvloop

from shoal import _profile_tree as trees
from shoal._profiler import Sampler, Settings, loop_thread
from tests._waiting import wait_for

FAST = Settings(True, 0.001, 0.02)
STACK = [("main", "app.py", 1, 2), ("work", "app.py", 5, 6)]


class Picks:
    def __init__(self) -> None:
        self.calls = 0
        self.busy_calls = 0
        self.busy = True

    def pick(self, frames: dict) -> list:
        self.calls += 1
        return [("inc", STACK)]

    def is_busy(self) -> bool:
        self.busy_calls += 1
        return self.busy


@pytest.fixture
def picks():
    return Picks()


def test_samples_count_into_the_group_the_pick_names(picks):
    sampler = Sampler(picks.pick, picks.is_busy, lambda: FAST)
    try:
        wait_for(lambda: sampler.samples >= 5, timeout=30)
    finally:
        sampler.close()
    tree = sampler.profile()
    trees.validate(tree)
    assert tree["count"] == sampler.samples
    assert tree["children"]["main;app.py;1"]["children"]["work;app.py;5"]["count"] == tree["count"]
    assert sampler.profile(key="inc") == tree
    assert sampler.profile(key="other") == trees.new()
    assert not sampler._thread.is_alive()


def test_an_idle_owner_is_never_sampled(picks):
    picks.busy = False
    sampler = Sampler(picks.pick, picks.is_busy, lambda: FAST)
    try:
        wait_for(lambda: picks.busy_calls >= 20, timeout=30)
    finally:
        sampler.close()
    assert picks.calls == 0 and sampler.profile() == trees.new()
    assert not sampler._history  # idle cycles leave nothing behind


def test_cycles_are_filed_with_their_times_and_stay_selectable_by_time(picks):
    before = time.time()
    sampler = Sampler(picks.pick, picks.is_busy, lambda: FAST)
    try:
        wait_for(lambda: len(sampler._history) >= 2, timeout=30)
    finally:
        sampler.close()
    begin, end, groups = sampler._history[0]
    assert before <= begin < end and set(groups) == {"inc"}
    assert sampler.profile(stop=before - 1) == trees.new()
    assert sampler.profile(start=time.time() + 60) == trees.new()
    assert sampler.profile(start=before)["count"] == sampler.profile()["count"] > 0


def test_the_history_drops_its_oldest_cycles_past_its_node_budget(picks):
    sampler = Sampler(picks.pick, picks.is_busy, lambda: FAST, max_nodes=7)
    try:
        first_begin: list[float] = []

        def dropped_one() -> bool:
            if sampler._history and not first_begin:
                first_begin.append(sampler._history[0][0])
            return bool(first_begin) and sampler._history[0][0] > first_begin[0]

        wait_for(dropped_one, timeout=30)
    finally:
        sampler.close()
    # each cycle here is one tree of 3 nodes: two fit the budget of 7
    assert len(sampler._history) <= 2
    assert sampler._history_nodes == sum(trees.cycles_size(g) for _, _, g in sampler._history)


def test_disabled_by_its_settings_the_thread_ends_without_sampling(picks):
    sampler = Sampler(picks.pick, picks.is_busy, lambda: Settings(False, 0.001, 0.02))
    wait_for(lambda: not sampler._thread.is_alive(), timeout=30)
    assert sampler.settings == Settings(False, 0.001, 0.02)
    assert picks.calls == 0 and sampler.profile() == trees.new()


def test_bad_settings_disable_the_profiler_with_a_logged_reason(picks, caplog):
    def bad() -> Settings:
        raise ValueError("distributed.worker.profile.interval must be a positive duration")

    sampler = Sampler(picks.pick, picks.is_busy, bad)
    wait_for(lambda: not sampler._thread.is_alive(), timeout=30)
    assert picks.calls == 0
    assert "profiler disabled" in caplog.text


def test_settings_come_from_dasks_config_with_dasks_defaults():
    import dask.config

    from shoal._profiler import settings_from_config

    assert settings_from_config() == Settings(True, 0.01, 1.0)
    with dask.config.set({"distributed.worker.profile.interval": "5ms",
                          "distributed.worker.profile.cycle": "2s",
                          "distributed.worker.profile.enabled": False}):
        assert settings_from_config() == Settings(False, 0.005, 2.0)
    # event loops: sampled only when shoal.profile.event-loops asks (they cost a busy loop)
    assert settings_from_config(event_loop=True).enabled is False
    with dask.config.set({"shoal.profile.event-loops": True}):
        assert settings_from_config(event_loop=True) == Settings(True, 0.01, 1.0)
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            assert settings_from_config(event_loop=True).enabled is False
    with dask.config.set({"distributed.worker.profile.interval": "0ms"}), \
            pytest.raises(ValueError, match="interval must be a positive duration"):
        settings_from_config()


def busy_here(pick) -> list:
    return pick(sys._current_frames())


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_loop_sampler_picks_the_loops_work_and_skips_its_waiting(new_loop):
    async def main() -> tuple[list, list]:
        pick = loop_thread()
        working = busy_here(pick)
        await asyncio.sleep(0)
        # asked from another thread while this loop waits for that thread: once the loop
        # is back in its wait (at once, unless the machine is loaded), the pick is empty
        def idle_seen() -> list:
            deadline = time.monotonic() + 30
            while pick(sys._current_frames()) and time.monotonic() < deadline:
                time.sleep(0.01)
            return pick(sys._current_frames())

        waiting = await asyncio.get_running_loop().run_in_executor(None, idle_seen)
        return working, waiting

    loop = new_loop()
    try:
        working, waiting = loop.run_until_complete(main())
    finally:
        loop.close()
    assert waiting == []
    ((group, stack),) = working
    assert group == "" and [f[0] for f in stack][-2:] == ["main", "busy_here"]


def test_settings_wait_until_the_owner_is_ready(picks):
    ready: list[bool] = []
    read: list[bool] = []

    def settings() -> Settings:
        read.append(True)
        return FAST

    sampler = Sampler(picks.pick, picks.is_busy, settings, ready=lambda: bool(ready))
    try:
        assert sampler.settings is None and not read and picks.calls == 0
        ready.append(True)
        wait_for(lambda: sampler.samples > 0, timeout=30)
    finally:
        sampler.close()
    assert read == [True]


def test_close_before_ready_ends_the_thread(picks):
    sampler = Sampler(picks.pick, picks.is_busy, lambda: FAST, ready=lambda: False)
    sampler.close()
    assert not sampler._thread.is_alive() and sampler.settings is None


def test_an_idle_owner_is_looked_at_less_often_and_sampled_again_once_busy(picks):
    picks.busy = False
    sampler = Sampler(picks.pick, picks.is_busy, lambda: Settings(True, 0.001, 0.01))
    try:
        # idle past one cycle (10 ticks of 1 ms): then one look per 10 ms
        wait_for(lambda: picks.busy_calls >= 15, timeout=30)
        start, looks = time.monotonic(), picks.busy_calls
        wait_for(lambda: picks.busy_calls >= looks + 5, timeout=30)
        # Five looks span at least four whole 10 ms gaps (the first may come at once);
        # busy, they would take about 5 ms.
        assert time.monotonic() - start >= 4 * 0.01 * 0.9
        picks.busy = True
        wait_for(lambda: sampler.samples >= 20, timeout=30)
    finally:
        sampler.close()
