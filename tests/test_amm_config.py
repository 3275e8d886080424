"""The Active Memory Manager's config (dask's ``distributed.scheduler.active-memory-manager``
keys, read by the shell) and ``client.amm``'s surface against dask's ``AMMClientProxy``."""

from __future__ import annotations

import inspect

import dask
import pytest

import shoal
from shoal.client._amm import AMMClientProxy
from shoal.scheduler import _amm as amm
from shoal.scheduler._amm_shell import AmmSettings
from shoal.scheduler._server import Scheduler

AMM = "distributed.scheduler.active-memory-manager"


def test_defaults_are_dasks() -> None:
    s = AmmSettings()
    assert (s.start, s.interval, s.measure, s.policies) == (True, 2.0, "optimistic",
                                                              [amm.REDUCE_REPLICAS])


def test_every_key_is_read() -> None:
    with dask.config.set({f"{AMM}.start": False, f"{AMM}.interval": "250ms",
                          f"{AMM}.measure": "process", f"{AMM}.policies": []}):
        s = AmmSettings()
    assert (s.start, s.interval, s.measure, s.policies) == (False, 0.25, "process", [])


def test_an_interval_of_zero_is_refused() -> None:
    with dask.config.set({f"{AMM}.interval": "0s"}), pytest.raises(ValueError, match="positive"):
        AmmSettings()


def test_a_policy_shoal_lacks_is_refused_naming_the_one_it_has() -> None:
    with dask.config.set({f"{AMM}.policies": [{"class": "mypkg.MyPolicy"}]}), \
            pytest.raises(ValueError, match="has only ReduceReplicas"):
        AmmSettings()


def test_an_unknown_measure_is_refused_by_the_scheduler() -> None:
    with dask.config.set({f"{AMM}.measure": "rss"}), pytest.raises(ValueError, match="measure"):
        Scheduler()


def test_client_amm_has_dasks_methods() -> None:
    import distributed.active_memory_manager as dask_amm

    assert isinstance(inspect.getattr_static(shoal.Client, "amm"), property)
    for name in ("start", "stop", "running", "run_once"):
        assert hasattr(dask_amm.AMMClientProxy, name)
        ours = inspect.signature(getattr(AMMClientProxy, name))
        theirs = inspect.signature(getattr(dask_amm.AMMClientProxy, name))
        assert list(ours.parameters) == list(theirs.parameters), name
