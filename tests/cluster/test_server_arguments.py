"""The public ``Scheduler``, ``Worker`` and ``Nanny`` take dask's keywords: the ones shoal
honours with dask's defaults, the others refused at construction with a message naming them
(never ignored). Nothing here starts a server: constructing one starts nothing."""

from __future__ import annotations

import inspect

import dask
import distributed
import pytest

from shoal import Nanny, Scheduler, Security, Worker
from shoal.cluster import _server_options as opts

ADDRESS = "tcp://127.0.0.1:8786"


@pytest.mark.parametrize("cls", [Scheduler, Worker, Nanny])
def test_supported_keywords_have_dasks_names_and_defaults(cls: type) -> None:
    ours = inspect.signature(cls).parameters
    theirs = dict(inspect.signature(getattr(distributed, cls.__name__)).parameters)
    if cls is Nanny:  # dask's nanny passes the rest on to its Worker (**worker_kwargs)
        worker = inspect.signature(distributed.Worker).parameters
        theirs.update({k: v for k, v in worker.items() if k not in theirs})
    for name, p in ours.items():
        if p.kind is p.VAR_KEYWORD:
            continue
        assert name in theirs, (cls.__name__, name)
        expected = theirs[name].default
        if cls is Scheduler and name == "preload_argv":
            expected = ()
        assert p.default == expected, (cls.__name__, name, p.default, expected)


@pytest.mark.parametrize("cls", [Scheduler, Worker, Nanny])
def test_every_dask_keyword_is_supported_or_refused_by_name(cls: type) -> None:
    ours = set(inspect.signature(cls).parameters)
    refused = {Scheduler: opts.SCHEDULER_REFUSED, Worker: opts.WORKER_REFUSED,
               Nanny: opts.NANNY_REFUSED}[cls]
    theirs = {name for name, p in inspect.signature(getattr(distributed, cls.__name__)).parameters
              .items() if p.kind is not p.VAR_KEYWORD and name != "self"}
    assert theirs - ours - set(refused) == set()


@pytest.mark.parametrize(("cls", "args", "keyword", "value"), [
    (Scheduler, (), "services", {"x": object}),
    (Scheduler, (), "plugins", [object()]),
    (Scheduler, (), "jupyter", True),
    (Scheduler, (), "contact_address", "tcp://10.0.0.1:8786"),
    (Worker, (ADDRESS,), "executor", "offload"),
    (Worker, (ADDRESS,), "dashboard", True),
    (Worker, (ADDRESS,), "heartbeat_interval", "5s"),
    (Worker, (ADDRESS,), "plugins", (object(),)),
    (Worker, (ADDRESS,), "data", dict),
    (Nanny, (ADDRESS,), "port", 9000),
    (Nanny, (ADDRESS,), "worker_class", "distributed.Worker"),
    (Nanny, (ADDRESS,), "reconnect", False),
    (Nanny, (ADDRESS,), "config", {"a": 1}),
])
def test_a_dask_keyword_shoal_does_not_honour_is_refused_by_name(
        cls: type, args: tuple, keyword: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"{cls.__name__}\({keyword}=.*not supported by shoal"):
        cls(*args, **{keyword: value})


@pytest.mark.parametrize(("cls", "args", "defaults"), [
    (Scheduler, (), {"services": None, "plugins": (), "http_prefix": "/", "jupyter": False,
                     "validate": None, "transition_counter_max": False}),
    (Worker, (ADDRESS,), {"executor": None, "dashboard": False, "heartbeat_interval": "1s",
                          "metrics": {}, "plugins": (), "nanny": None, "validate": None}),
    (Nanny, (ADDRESS,), {"port": None, "reconnect": True, "quiet": False, "config": None,
                         "worker_class": None, "validate": False}),
])
def test_dasks_defaults_spelled_out_are_accepted(cls: type, args: tuple,
                                                 defaults: dict[str, object]) -> None:
    cls(*args, **defaults)


@pytest.mark.parametrize(("cls", "args"), [(Scheduler, ()), (Worker, (ADDRESS,)),
                                           (Nanny, (ADDRESS,))])
def test_an_unknown_keyword_is_a_type_error_listing_what_it_takes(cls: type, args: tuple) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'colour'; it takes .*"):
        cls(*args, colour="blue")


def test_scheduler_values_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="port"):
        Scheduler(port=-1)
    with pytest.raises(ValueError, match="allowed_failures"):
        Scheduler(allowed_failures=-2)
    with pytest.raises(ValueError, match="protocol"):
        Scheduler(protocol="ucx")
    with pytest.raises(ValueError, match="worker_ttl"):
        Scheduler(worker_ttl="soon")
    with pytest.raises(ValueError, match=r"host=.*interface=.*give one"):
        Scheduler(host="127.0.0.1", interface="lo")


def test_scheduler_defaults_bind_loopback_and_serve_a_dashboard_at_8787() -> None:
    s = Scheduler()
    assert s.status == "init" and s.address is None
    assert s._server.host == "127.0.0.1" and s._server.port == 0
    assert s._server.dashboard_address == ":8787"
    assert Scheduler(dashboard=False)._server.dashboard_address is None
    assert Scheduler(dashboard_address=":0")._server.dashboard_address == ":0"


def test_scheduler_reads_dasks_config_for_what_is_not_given() -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 7,
                          "distributed.scheduler.worker-ttl": "2 minutes"}):
        s = Scheduler()
        assert s._server.state.allowed_failures == 7
        assert Scheduler(allowed_failures=1, worker_ttl="10s")._server.state.allowed_failures == 1


def test_security_is_taken_as_dasks_dict_too() -> None:
    s = Scheduler(security={"token": "sesame"})
    assert isinstance(s.security, Security) and s.security.token == "sesame"
    with pytest.raises(TypeError, match="security"):
        Scheduler(security="sesame")


def test_worker_defaults_are_dasks() -> None:
    from dask.system import CPU_COUNT

    from shoal.cluster._sizing import parse_memory_limit

    w = Worker(ADDRESS)
    assert w.nthreads == CPU_COUNT
    assert w.memory_limit == parse_memory_limit("auto", CPU_COUNT)
    assert w.name is None and w.address is None and w.status == "init"
    assert Worker(ADDRESS, memory_limit=None).memory_limit == 0
    assert Worker(ADDRESS, memory_limit="1GB", nthreads=3).memory_limit == 10**9


@pytest.mark.parametrize("cls", [Worker, Nanny])
def test_scheduler_addresses_are_read_as_dask_reads_them(cls: type) -> None:
    assert cls("127.0.0.1:8786")._args.address == "tcp://127.0.0.1:8786"
    assert cls("127.0.0.1", 8786)._args.address == "tcp://127.0.0.1:8786"
    assert cls("tls://10.0.0.1:9000")._args.address == "tls://10.0.0.1:9000"
    assert cls("127.0.0.1:8786", protocol="tls")._args.address == "tls://127.0.0.1:8786"
    assert cls(scheduler_file="/tmp/nowhere.json")._args.address is None
    with pytest.raises(TypeError, match="needs the scheduler's address"):
        cls()
    with pytest.raises(TypeError, match="give one"):
        cls(ADDRESS, scheduler_file="/tmp/x.json")
    with pytest.raises(ValueError, match="contradicts"):
        cls(ADDRESS, protocol="tls")
    with pytest.raises(ValueError, match="has no port"):
        cls("tcp://127.0.0.1")


@pytest.mark.parametrize("cls", [Worker, Nanny])
def test_worker_values_are_checked_at_construction(cls: type) -> None:
    with pytest.raises(ValueError, match="nthreads"):
        cls(ADDRESS, nthreads=0)
    with pytest.raises(ValueError, match="memory_limit"):
        cls(ADDRESS, memory_limit="lots")
    with pytest.raises(ValueError, match="death_timeout"):
        cls(ADDRESS, death_timeout="never")
    with pytest.raises(ValueError):
        cls(ADDRESS, resources={"GPU": -1})


def test_a_worker_without_a_nanny_refuses_lifetime_restart() -> None:
    with pytest.raises(ValueError, match=r"use shoal\.Nanny"):
        Worker(ADDRESS, lifetime="1 hour", lifetime_restart=True)


def test_awaiting_outside_an_event_loop_says_what_to_do() -> None:
    s = Scheduler()
    with pytest.raises(RuntimeError, match="outside a running event loop"):
        s.__await__().send(None)


def test_local_cluster_takes_the_public_classes_as_worker_class() -> None:
    from shoal.cluster._local_options import choose_processes

    assert choose_processes(None, Nanny) is True
    assert choose_processes(None, Worker) is False


def test_scheduler_http_prefix_reaches_its_dashboard() -> None:
    # dask's http_prefix (dask scheduler --dashboard-prefix): the dashboard's pages under it
    # (served so by shoal.dashboard: tests/dashboard/test_dashboard_proxy.py).
    assert Scheduler(http_prefix="/dask")._server.http_prefix == "/dask"


def test_dasks_work_stealing_config_reaches_the_scheduler_state() -> None:
    import dask

    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        assert Scheduler()._server.state.work_stealing is False
    assert Scheduler()._server.state.work_stealing is True
