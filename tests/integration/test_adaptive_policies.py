"""Custom adaptive policies, as dask documents them: ``cluster.adapt(Adaptive=MyAdaptive,
minimum=..., maximum=...)`` with a subclass of ``Adaptive`` overriding ``target``,
``workers_to_close`` or ``recommendations``. One in-process cluster for the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shoal import Adaptive, Client, LocalCluster, SchedulerPlugin

from ._helpers import wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=0, processes=False, threads_per_worker=1,
                      dashboard_address=None) as c:
        yield c


@pytest.fixture
def adapting(cluster: LocalCluster) -> Iterator[list[Any]]:
    """Adaptives a test starts; stopped, and the cluster back to no workers, after it."""
    made: list[Any] = []
    yield made
    for a in made:
        a.stop()
    cluster.scale(0)


def n_workers(cluster: LocalCluster) -> int:
    return len(cluster.scheduler.state.workers)


class Two(Adaptive):
    async def target(self) -> int:
        return 2


def test_a_subclass_target_sets_the_worker_count(cluster, adapting):
    adaptive = cluster.adapt(Adaptive=Two, minimum=0, maximum=5, interval="20ms")
    adapting.append(adaptive)
    assert isinstance(adaptive, Two) and adaptive.maximum == 5
    wait_for(lambda: n_workers(cluster) == 2, timeout=30)
    when, what = adaptive.log[0]  # dask's entries: (time, the recommendation)
    assert isinstance(when, float) and what == {"status": "up", "n": 2}
    assert adaptive.plan == adaptive.observed == set(cluster.workers)


class Many(Adaptive):
    def target(self) -> int:  # a plain method works too
        return 50


def test_the_target_is_kept_within_the_bounds(cluster, adapting):
    adaptive = cluster.adapt(Adaptive=Many, maximum=1, interval="20ms")
    adapting.append(adaptive)
    wait_for(lambda: n_workers(cluster) == 1 and len(adaptive.log) >= 1, timeout=30)
    assert [what for _, what in adaptive.log] == [{"status": "up", "n": 1}]


class NoneButTheseGo(Adaptive):
    """Wants none, and names (dask's ``cluster.workers`` keys) the workers to close."""

    async def target(self) -> int:
        return 0

    async def workers_to_close(self, target: int) -> list[Any]:
        self.asked = target
        return [max(self.cluster.workers)]  # the youngest, one step at a time


def test_workers_to_close_by_name_are_retired(cluster, adapting):
    cluster.scale(2)
    adaptive = cluster.adapt(Adaptive=NoneButTheseGo, wait_count=1, interval="20ms")
    adapting.append(adaptive)
    wait_for(lambda: n_workers(cluster) == 0, timeout=30)
    # Stopped as the last retire may still be closing its worker: that retire ends anyway
    # (a stop cut it short once, leaving a worker the scheduler no longer knew of).
    adaptive.stop()
    wait_for(lambda: not cluster.workers, timeout=30)
    assert adaptive.asked == 0
    assert [what["status"] for _, what in adaptive.log] == ["down", "down"]


class Recommends(Adaptive):
    async def recommendations(self, target: int) -> dict[str, Any]:
        return {"status": "up", "n": 1} if not self.cluster.workers else {"status": "same"}


def test_a_subclass_recommendations_are_carried_out(cluster, adapting):
    adaptive = cluster.adapt(Adaptive=Recommends, interval="20ms")
    adapting.append(adaptive)
    wait_for(lambda: n_workers(cluster) == 1, timeout=30)
    assert [what for _, what in adaptive.log] == [{"status": "up", "n": 1}]


def _parity(ws: Any) -> int:
    return int(ws.name) % 2


def test_worker_key_retires_whole_groups_only(cluster, adapting):
    # dask's worker_key: workers of one group (e.g. one host, one batch job) leave
    # together, and a group leaves only if what remains still meets the target.
    cluster.scale(4)
    wait_for(lambda: n_workers(cluster) == 4, timeout=30)
    adaptive = cluster.adapt(Adaptive=Two, wait_count=1, interval="20ms", worker_key=_parity)
    adapting.append(adaptive)
    wait_for(lambda: n_workers(cluster) == 2 and len(adaptive.log) >= 1, timeout=30)
    names = {ws.name for ws in cluster.scheduler.state.workers.values()}
    assert {int(n) % 2 for n in names} in ({0}, {1}), names  # one whole group is left
    # (without the key, the two youngest, 3 and 2, would have gone: names 0 and 1 left)
    down = [what for _, what in adaptive.log if what["status"] == "down"]
    assert len(down) == 1 and len(down[0]["workers"]) == 2


def test_dasks_own_adaptive_class_is_refused_with_the_fix(cluster):
    import distributed

    with pytest.raises(TypeError, match=r"shoal\.Adaptive"):
        cluster.adapt(Adaptive=distributed.Adaptive)


def test_the_default_policy_is_shoal_adaptive(cluster, adapting):
    adaptive = cluster.adapt(minimum=1, maximum=1, interval="20ms")
    adapting.append(adaptive)
    assert type(adaptive) is Adaptive
    wait_for(lambda: n_workers(cluster) == 1, timeout=30)


class KeepsOne(SchedulerPlugin):
    """dask's valid_workers_downscaling: the worker named ``keep`` may not go."""

    name = "keeps-one"

    def __init__(self, keep: str) -> None:
        self.keep = keep

    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        return [ws for ws in workers if str(ws.name) != self.keep]


def test_scheduler_plugins_narrow_which_workers_adaptive_closes(cluster, adapting):
    cluster.scale(3)
    wait_for(lambda: n_workers(cluster) == 3, timeout=30)
    oldest, _middle, youngest = sorted((ws.name for ws in cluster.scheduler.state.workers.values()),
                                       key=int)
    with Client(cluster) as client:
        client.register_plugin(KeepsOne(str(youngest)))
        try:
            adaptive = cluster.adapt(Adaptive=Two, wait_count=1, interval="20ms")
            adapting.append(adaptive)
            wait_for(lambda: n_workers(cluster) == 2, timeout=30)
            # (without the plugin the youngest goes first: see choose_to_retire)
            names = {ws.name for ws in cluster.scheduler.state.workers.values()}
            assert names == {oldest, youngest}
        finally:
            client.unregister_scheduler_plugin("keeps-one")
