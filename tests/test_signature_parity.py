"""shoal's public callables take dask.distributed's arguments in dask.distributed's order.

A program written for dask passes some of them positionally: ``LocalCluster`` (whose first
parameter is ``name``), ``cluster.scale(n, memory)``, ``worker.close(timeout, executor_wait)``
and ``KilledWorker(task, last_worker, allowed_failures)`` each bound the wrong parameter in
shoal. These tests read distributed's signatures (it is installed for the benchmarks) and
need no cluster.
"""

from __future__ import annotations

import inspect
import math
import pickle
import warnings
from typing import Any

import distributed
import pytest

import shoal


def _positional(obj: Any) -> list[str]:
    return [n for n, p in inspect.signature(obj).parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _comparable(default: Any) -> bool:
    """A default two libraries can share: not a sentinel object, class or function."""
    if default is inspect.Parameter.empty:
        return True
    return not (callable(default) or type(default).__name__ in ("object", "_NoDefault"))


PAIRS = {
    "LocalCluster": (shoal.LocalCluster, distributed.LocalCluster),
    "LocalCluster.scale": (shoal.LocalCluster.scale, distributed.LocalCluster.scale),
    "LocalCluster.adapt": (shoal.LocalCluster.adapt, distributed.LocalCluster.adapt),
    "LocalCluster.close": (shoal.LocalCluster.close, distributed.LocalCluster.close),
    "Lock": (shoal.Lock, distributed.Lock),
    "KilledWorker": (shoal.KilledWorker, distributed.KilledWorker),
    "futures_of": (shoal.futures_of, distributed.futures_of),
    "performance_report": (shoal.performance_report, distributed.performance_report),
    "Worker.close": (shoal.Worker.close, distributed.Worker.close),
    "Nanny.close": (shoal.Nanny.close, distributed.Nanny.close),
    "Scheduler.close": (shoal.Scheduler.close, distributed.Scheduler.close),
    "Nanny": (shoal.Nanny, distributed.Nanny),
    "Client": (shoal.Client, distributed.Client),
    "Future": (shoal.Future, distributed.Future),
    "Future.cancel": (shoal.Future.cancel, distributed.Future.cancel),
    "progress": (shoal.progress, distributed.progress),
    "SSHCluster": (shoal.SSHCluster, distributed.SSHCluster),
    "SpecCluster": (shoal.SpecCluster, distributed.SpecCluster),
    "SpecCluster.scale": (shoal.SpecCluster.scale, distributed.SpecCluster.scale),
    "SpecCluster.adapt": (shoal.SpecCluster.adapt, distributed.SpecCluster.adapt),
    "SubprocessCluster": (shoal.SubprocessCluster, distributed.SubprocessCluster),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_dask_positional_order_and_defaults(name: str) -> None:
    ours, theirs = PAIRS[name]
    kinds = {p.kind for p in inspect.signature(ours).parameters.values()}
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(theirs).parameters.values()):
        assert inspect.Parameter.VAR_KEYWORD in kinds, f"{name} takes no **kwargs, dask's does"
    order = _positional(theirs)
    assert _positional(ours)[:len(order)] == order
    mine = inspect.signature(ours).parameters
    for pname, p in inspect.signature(theirs).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        assert pname in mine, pname
        if _comparable(p.default):
            assert mine[pname].default == p.default, pname


def test_killed_worker_has_dasks_arguments_and_attributes() -> None:
    exc = shoal.KilledWorker("t-1", "tcp://w:1", 2)
    assert exc.args == ("t-1", "tcp://w:1", 2)
    assert (exc.task, exc.last_worker, exc.allowed_failures) == ("t-1", "tcp://w:1", 2)
    assert "tcp://w:1" in str(exc) and "'t-1'" in str(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.task, back.last_worker, back.allowed_failures) == ("t-1", "tcp://w:1", 2)
    assert str(back) == str(exc)


def test_local_cluster_first_positional_is_name_and_an_int_there_warns() -> None:
    # The warning comes before any start; the bad n_workers then stops it cheaply.
    with pytest.warns(UserWarning, match="n_workers=4"), pytest.raises(ValueError):
        shoal.LocalCluster(4, n_workers=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            shoal.LocalCluster("mine", n_workers=-1)


def test_adapt_refuses_bounds_passed_where_dask_takes_the_adaptive_class() -> None:
    cluster = object.__new__(shoal.LocalCluster)
    with pytest.raises(TypeError, match=r"adapt\(minimum=1, maximum=4\)"):
        cluster.adapt(1, 4)
    with pytest.raises(TypeError, match="Adaptive"):
        cluster.adapt(distributed.Adaptive)


def test_adapt_defaults_are_dasks() -> None:
    params = inspect.signature(shoal.LocalCluster.adapt).parameters
    assert params["minimum"].default == 0 and params["maximum"].default == math.inf


def test_nanny_refuses_a_dask_only_argument_given_positionally() -> None:
    # services is dask's seventh positional parameter; shoal refuses a value for it.
    with pytest.raises(TypeError, match="services"):
        shoal.Nanny("tcp://127.0.0.1:1", None, None, 0, 2, None, {"x": object})


def test_lock_takes_a_client_passed_where_older_dask_took_it() -> None:
    client = object.__new__(shoal.Client)
    assert shoal.Lock("parity-lock", client)._client is client
    assert shoal.Lock("parity-lock", "an rpc")._client is None


def test_performance_report_writes_through_fsspec_with_storage_options() -> None:
    import fsspec

    report = shoal.performance_report("memory://parity/report.html", 1, None, {})
    report._write([])
    with fsspec.open("memory://parity/report.html", "r") as f:
        assert "<html" in f.read().lower()
