"""dask's ``LocalCluster`` keywords that shoal refuses, and how it reads the ones it takes
(``cluster/_local_options.py``). Nothing here starts a process: each refusal comes before
the cluster starts; their effects on a running cluster are in
tests/integration/test_local_cluster_keywords.py."""

from __future__ import annotations

import logging

import distributed
import pytest

from shoal import LocalCluster
from shoal.cluster import _local_options as options
from shoal.worker._nanny import Nanny
from shoal.worker._server import Worker


@pytest.mark.parametrize(("name", "value"), [
    ("services", {"extra": object}),
    ("worker_services", {"extra": object}),
    ("service_kwargs", {"dashboard": {"prefix": "/foo"}}),
    ("blocked_handlers", ["feed"]),
])
def test_server_add_on_keywords_are_refused_by_name(name, value):
    with pytest.raises(TypeError, match=rf"LocalCluster\({name}=\.\.\.\) is not supported"):
        LocalCluster(n_workers=0, dashboard_address=None, **{name: value})


def test_an_unknown_keyword_is_named_with_the_ones_taken():
    with pytest.raises(TypeError, match=r"unexpected arguments \['n_procs'\].*interface"):
        LocalCluster(n_procs=2)


def test_a_custom_worker_class_is_refused_with_what_to_do():
    class MyWorker(distributed.Worker):
        pass

    with pytest.raises(TypeError, match=r"worker_class=.*WorkerPlugin"):
        LocalCluster(n_workers=0, worker_class=MyWorker)


def test_worker_class_contradicting_processes_is_refused():
    with pytest.raises(ValueError, match="processes=True with worker_class=Worker"):
        LocalCluster(n_workers=0, processes=True, worker_class=distributed.Worker)


@pytest.mark.parametrize(("processes", "worker_class", "expected"), [
    (None, None, True),
    (False, None, False),
    (None, distributed.Nanny, True),
    (None, distributed.Worker, False),
    (None, Nanny, True),
    (None, Worker, False),
    (False, Worker, False),
])
def test_worker_class_chooses_processes_or_threads(processes, worker_class, expected):
    assert options.choose_processes(processes, worker_class) is expected


def test_host_ip_and_interface_resolve_to_the_address_bound():
    assert options.resolve_host(None, None, None) == "127.0.0.1"
    assert options.resolve_host("0.0.0.0", None, None) == "0.0.0.0"
    with pytest.warns(DeprecationWarning, match="`ip` parameter has been deprecated"):
        assert options.resolve_host(None, "127.0.0.2", None) == "127.0.0.2"
    assert options.resolve_host(None, None, "lo") == "127.0.0.1"


def test_host_and_ip_disagreeing_or_with_interface_are_refused():
    with (pytest.raises(ValueError, match="ip is the old name of host"),
          pytest.warns(DeprecationWarning)):
        LocalCluster(n_workers=0, host="127.0.0.1", ip="0.0.0.0")
    with pytest.raises(ValueError, match="give one"):
        LocalCluster(n_workers=0, host="127.0.0.1", interface="lo")


def test_an_unknown_interface_lists_the_ones_there_are():
    with pytest.raises(ValueError, match=r"no network interface 'nope0'.*'lo'"):
        LocalCluster(n_workers=0, interface="nope0")


def test_scheduler_kwargs_are_read_into_the_schedulers_settings():
    got = options.scheduler_options(
        {"allowed_failures": 7, "worker_ttl": "1 minute", "bandwidth": "50MB", "port": 0,
         "dashboard_address": None},
        8786, ":8787", {"allowed_failures": 3, "worker_ttl": 300.0, "bandwidth": 1e8})
    assert got == {"allowed_failures": 7, "worker_ttl": 60.0, "bandwidth": 50e6, "port": 0,
                   "dashboard_address": None}
    assert options.scheduler_options(None, 8786, None, {"bandwidth": 1.0}) == {
        "bandwidth": 1.0, "port": 8786, "dashboard_address": None}


@pytest.mark.parametrize(("given", "error", "match"), [
    ({"idle_timeout": "1h"}, TypeError, r"\['idle_timeout'\] are not supported.*allowed_failures"),
    ([("port", 1)], TypeError, "must be a dict"),
    ({"allowed_failures": -1}, ValueError, "non-negative integer"),
    ({"port": 70000}, ValueError, "port number"),
    ({"bandwidth": 0}, ValueError, "positive"),
])
def test_scheduler_kwargs_shoal_cannot_honour_are_refused(given, error, match):
    with pytest.raises(error, match=match):
        LocalCluster(n_workers=0, dashboard_address=None, scheduler_kwargs=given)


@pytest.mark.parametrize(("given", "level"), [
    (logging.WARN, logging.WARNING), ("error", logging.ERROR), ("INFO", logging.INFO),
    (False, None), (None, None), (0, None), (logging.CRITICAL, logging.CRITICAL),
])
def test_silence_logs_is_a_level_or_leaves_logging_alone(given, level):
    assert options.log_level(given) == level


@pytest.mark.parametrize("given", [True, "loud", 1.5])
def test_silence_logs_that_is_not_a_level_is_refused(given):
    with pytest.raises(ValueError, match="silence_logs must be a logging level"):
        LocalCluster(n_workers=0, silence_logs=given)


def test_quiet_logs_sets_shoals_level_and_gives_it_back_but_keeps_the_users():
    shoal_logger = logging.getLogger("shoal")
    assert shoal_logger.level == logging.NOTSET
    quiet = options.QuietLogs(logging.ERROR)
    assert shoal_logger.level == logging.ERROR
    quiet.release()
    quiet.release()
    assert shoal_logger.level == logging.NOTSET
    options.QuietLogs(logging.WARNING).release()  # dask's default: what shoal prints anyway
    assert shoal_logger.level == logging.NOTSET
    shoal_logger.setLevel(logging.DEBUG)
    try:
        options.QuietLogs(logging.ERROR).release()
        assert shoal_logger.level == logging.DEBUG  # the user's own choice stays
    finally:
        shoal_logger.setLevel(logging.NOTSET)


def test_worker_processes_are_told_a_level_other_than_warning():
    assert options.worker_level(None) is None
    assert options.worker_level(logging.WARNING) is None
    assert options.worker_level(logging.ERROR) == "40"


def test_scheduler_sync_interval_must_be_a_duration():
    with pytest.raises(TypeError, match="scheduler_sync_interval must be seconds"):
        LocalCluster(n_workers=0, scheduler_sync_interval=[1])
