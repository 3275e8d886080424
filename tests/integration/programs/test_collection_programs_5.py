"""A fifth round of programs on shoal, each run on dask.distributed first: the defects they
found, kept as tests. The programs covered dask.array stencils (``map_overlap`` with every
boundary), ``da.linalg`` (qr, tsqr, svd, lstsq), custom ``da.reduction``, ``apply_gufunc``
and ``blockwise(concatenate=True)``; dataframe ``groupby().apply/transform``, time-window
rolling, categoricals, ``merge_asof``, partitioned parquet read with OR filters, csv/json
round trips; bag ``foldby`` and ``groupby(shuffle="disk")``; mixed collections in one
``dask.compute``; xarray resample/groupby/rolling/``apply_ufunc``/``map_blocks``; tasks that
submit tasks (``worker_client``, ``secede``/``rejoin``); ``run_on_scheduler``,
``replicate``, ``rebalance``, ``who_has``/``has_what``/``processing``; ``fire_and_forget``,
``wait(FIRST_COMPLETED)``, ``as_completed.add``, done callbacks, datasets; worker,
scheduler and nanny plugins; ``dask.config.set(scheduler=...)``, task streams,
``performance_report``; resources and annotations; errors, cancellation and
``recreate_error_locally``; ``retire_workers`` and ``restart``; scatter, executors and
the Future API."""

from __future__ import annotations

import collections
import concurrent.futures

import pytest
from _waiting import wait_for

import shoal

pytestmark = pytest.mark.integration


def test_the_result_of_a_released_future_is_a_cancelled_error(client):
    # dask: FutureCancelledError; shoal raised AttributeError ('NoneType' has no '_result').
    fut = client.submit(lambda: "x" * 10, pure=False)
    assert fut.result(timeout=30) == "x" * 10
    fut.release()
    with pytest.raises(concurrent.futures.CancelledError, match="released"):
        fut.result(timeout=5)
    with pytest.raises(concurrent.futures.CancelledError, match="released"):
        fut.exception(timeout=5)
    fut.release()  # a second release does nothing, as dask's


def test_a_client_made_with_set_as_default_false_is_not_the_default(client):
    # dask: only clients made with set_as_default=True (or as_current) are the default;
    # shoal returned the newest client whatever its set_as_default.
    with shoal.Client(client.scheduler.address, set_as_default=False) as other:
        assert shoal.default_client() is client
        assert shoal.get_client() is client
        with other.as_current():
            assert shoal.default_client() is other
        assert shoal.default_client() is client


def test_retiring_a_worker_that_is_not_there_retires_nothing(client):
    # dask ignores workers it does not know (one that just left, say) and returns {}; shoal
    # raised ValueError.
    workers = sorted(client.scheduler_info()["workers"])
    assert client.retire_workers(["tcp://127.0.0.1:1"]) == {}
    assert client.retire_workers(names=["no-such-worker"]) == {}
    assert sorted(client.scheduler_info()["workers"]) == workers



Point = collections.namedtuple("Point", "x y")


class Bunch(dict):
    """A dict subclass with attribute access, as scikit-learn's datasets are."""

    def __getattr__(self, name):
        return self[name]


def test_scatter_keeps_the_containers_dask_keeps_and_sends_subclasses_whole(client):
    # dask unpacks exactly dict, list, tuple, set, frozenset and namedtuples, and keeps
    # their type; any other object (a dict or list subclass too) is one future. shoal
    # raised TypeError on a namedtuple, gave lists for sets and unpacked dict subclasses
    # (a task then got a plain dict without the Bunch's attributes).
    x, y = client.scatter(Point(1, 2))
    assert type(client.scatter(Point(1, 2))) is Point
    assert client.gather([x, y]) == [1, 2]
    assert type(client.scatter({1, 2})) is set
    assert type(client.scatter(frozenset({3}))) is frozenset
    assert sorted(client.gather(list(client.scatter({1, 2})))) == [1, 2]
    bunch = client.scatter(Bunch(a=1, b=2))
    assert isinstance(bunch, shoal.Future)
    assert client.submit(lambda b: b.a + b.b, bunch).result(timeout=30) == 3
    counts = client.scatter(collections.Counter("aab"))
    assert client.gather(counts) == collections.Counter("aab")
    assert type(client.gather(client.scatter(collections.OrderedDict(a=1)))) is collections.OrderedDict
    assert client.gather(client.scatter({"k": [1]})) == {"k": [1]}


def test_client_futures_maps_the_keys_it_holds(client):
    # dask's ``client.futures`` (key -> state); shoal had no such attribute.
    fut = client.submit(lambda: 5, pure=False)
    fut.result(timeout=30)
    held = client.futures
    assert fut.key in held and held[fut.key].status == "finished"
    key = fut.key
    del fut
    wait_for(lambda: key not in client.futures, timeout=30)  # released after a short delay


def test_wait_with_an_unknown_return_when_raises_not_implemented_error(client):
    # dask's type; shoal raised ValueError.
    fut = client.submit(lambda: 1, pure=False)
    with pytest.raises(NotImplementedError, match="SOMETIMES"):
        shoal.wait([fut], return_when="SOMETIMES")


def test_who_has_has_what_and_scheduler_info_are_dask_dict_types_with_a_notebook_view(client):
    # dask returns WhoHas, HasWhat and SchedulerInfo (dicts with _repr_html_); shoal gave
    # plain dicts, which a notebook shows as text.
    fut = client.submit(lambda: 3, pure=False)
    fut.result(timeout=30)
    views = {"WhoHas": client.who_has([fut]), "HasWhat": client.has_what(),
             "SchedulerInfo": client.scheduler_info()}
    for name, view in views.items():
        assert type(view).__name__ == name and isinstance(view, dict)
        assert view._repr_html_().startswith("<div>")
    assert fut.key in views["WhoHas"]._repr_html_()
