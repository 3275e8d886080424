"""``client.profile``: dask.distributed's statistical profiler. A task spending its time in
a known function shows under that function, for its key prefix, its worker and its time;
the scheduler's and the workers' event loops have profiles of their own; disabled by
dask's config, workers sample nothing; bad arguments are refused with the fix."""

from __future__ import annotations

import asyncio
import os
import time

import dask
import pytest

from shoal import Client
from shoal import _profile_tree as trees

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def profiled_marker(path: str) -> int:
    """Busy (holding the GIL, as computing does) until the file ``path`` exists."""
    spins = 0
    while not os.path.exists(path):
        for _ in range(10_000):
            spins += 1
    return spins


def spin_task(path: str) -> int:
    return profiled_marker(path)


def samples_in(tree: dict, name: str) -> int:
    """Samples through any node of ``tree`` running the function ``name``."""
    here = tree["count"] if tree["description"]["name"] == name else 0
    return here + sum(samples_in(c, name) for c in tree["children"].values())


@pytest.fixture
def spinning(client, tmp_path):
    """A task spinning in ``profiled_marker`` until the test ends; yields its future once
    the profile shows it."""
    path = str(tmp_path / "stop")
    fut = client.submit(spin_task, path, pure=False)
    wait_for(lambda: samples_in(client.profile(), "profiled_marker") > 0, timeout=60)
    yield fut
    open(path, "w").close()
    fut.result(timeout=60)


def test_a_task_shows_under_the_function_it_spends_its_time_in(client, spinning):
    tree = client.profile()
    trees.validate(tree)
    assert samples_in(tree, "profiled_marker") > 0
    assert samples_in(tree, "spin_task") >= samples_in(tree, "profiled_marker")
    # below the worker's own frames: no executor loop in a task's profile
    assert samples_in(tree, "_run") == 0 and samples_in(tree, "_execute") == 0


def test_key_picks_the_tasks_of_one_key_prefix(client, spinning):
    assert samples_in(client.profile(key="spin_task"), "profiled_marker") > 0
    assert client.profile(key="no_such_prefix") == trees.new()


def test_start_and_stop_bound_the_samples_by_time(client, spinning):
    now = time.time()
    assert samples_in(client.profile(start=now - 3600), "profiled_marker") > 0
    assert client.profile(stop=now - 3600) == trees.new()
    assert client.profile(start=now + 3600) == trees.new()
    with pytest.raises(ValueError, match="start is after stop"):
        client.profile(start=now, stop=now - 1)


def test_merge_workers_false_answers_per_worker(client, spinning):
    per_worker = client.profile(merge_workers=False)
    assert set(per_worker) == set(client.scheduler_info()["workers"])
    (runner,) = client.who_has(spinning).get(spinning.key, ()) or [
        w for w, keys in client.processing().items() if spinning.key in keys]
    assert samples_in(per_worker[runner], "profiled_marker") > 0
    assert all(samples_in(t, "profiled_marker") == 0 for w, t in per_worker.items() if w != runner)
    assert set(client.profile(workers=[runner], merge_workers=False)) == {runner}
    others = [w for w in per_worker if w != runner]
    assert samples_in(client.profile(workers=others), "profiled_marker") == 0


def test_filename_writes_an_html_chart_of_the_tree(client, spinning, tmp_path):
    path = tmp_path / "profile.html"
    tree, figure = client.profile(filename=str(path))  # dask: (state, figure)
    assert samples_in(tree, "profiled_marker") > 0 and figure is None
    text = path.read_text()
    assert "<script>" in text and "profiled_marker" in text


def test_event_loops_are_not_sampled_by_default_and_a_warning_says_how(client):
    for where in ({"scheduler": True}, {"server": True}):
        with pytest.warns(RuntimeWarning, match="shoal.profile.event-loops: True"):
            assert client.profile(**where) == trees.new()


def inc(x: int) -> int:
    return x + 1


def test_event_loops_are_sampled_when_the_config_asks(make_client):
    with dask.config.set({"shoal.profile.event-loops": True}):
        c = make_client(n_workers=1)

    def loops_sampled() -> bool:
        c.gather(c.map(inc, range(2000), pure=False))  # work for the loops
        return (c.profile(scheduler=True)["count"] > 0
                and c.profile(server=True)["count"] > 0)

    wait_for(loops_sampled, timeout=120)
    for tree in (c.profile(scheduler=True), c.profile(server=True)):
        trees.validate(tree)
        assert samples_in(tree, "inc") == 0  # the loops' work, not the tasks'
    # key picks tasks: an event loop runs none, so it is ignored there (as in dask)
    assert c.profile(scheduler=True, key="inc")["count"] > 0


def test_bad_arguments_are_refused_with_the_fix(client):
    with pytest.raises(TypeError, match="key prefix"):
        client.profile(key=1)
    with pytest.raises(TypeError, match="seconds since the epoch"):
        client.profile(start="yesterday")
    with pytest.raises(TypeError, match="merge_workers"):
        client.profile(merge_workers="no")
    with pytest.raises(NotImplementedError, match="filename="):
        client.profile(plot=True)
    with pytest.raises(TypeError, match="workers="):
        client.profile(workers=[object()])


def test_the_async_client_profiles_too(client):
    address = client.scheduler_info()["address"]

    async def main() -> dict:
        async with Client(address, asynchronous=True) as ac:
            return await ac.profile(merge_workers=False)

    assert set(asyncio.run(main())) == set(client.scheduler_info()["workers"])


def test_disabled_by_config_workers_sample_nothing(make_client, tmp_path):
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        c = make_client(n_workers=1)

    def sampler_state(dask_worker):
        tasks = dask_worker._profiler.tasks
        return tasks.settings, tasks._thread.is_alive()

    wait_for(lambda: all(not alive for _, alive in c.run(sampler_state).values()), timeout=60)
    assert [settings[0] for settings, _ in c.run(sampler_state).values()] == [False]
    path = str(tmp_path / "stop")
    fut = c.submit(spin_task, path, pure=False)
    # the task spins in profiled_marker (what the enabled profiler shows, above)
    wait_for(lambda: any("profiled_marker" in "".join(lines) for stacks in
                         c.call_stack(fut).values() for lines in stacks.values()), timeout=60)
    open(path, "w").close()
    fut.result(timeout=60)
    assert c.profile() == trees.new()
