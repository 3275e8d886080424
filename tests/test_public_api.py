"""Pins shoal's public surface: what ``from shoal import ...`` offers, nothing more or less."""

from __future__ import annotations

import importlib

import dask._task_spec
import pytest

import shoal

PUBLIC = [
    "ALL_COMPLETED",
    "Actor",
    "ActorFuture",
    "Adaptive",
    "BaseActorFuture",
    "CancelledError",
    "Client",
    "CompatibleExecutor",
    "CondaInstall",
    "Environ",
    "Event",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "FailureStory",
    "Future",
    "InstallPlugin",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "LostDataError",
    "MultiLock",
    "Nanny",
    "NannyPlugin",
    "PipInstall",
    "Queue",
    "RemoteError",
    "Reschedule",
    "SSHCluster",
    "Scheduler",
    "SchedulerPlugin",
    "Security",
    "Semaphore",
    "SpecCluster",
    "Status",
    "SubprocessCluster",
    "TimeoutError",
    "UploadDirectory",
    "UploadFile",
    "Variable",
    "Worker",
    "WorkerPlugin",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_metadata",
    "get_task_stream",
    "get_worker",
    "local_client",
    "performance_report",
    "print",
    "progress",
    "rejoin",
    "secede",
    "span",
    "sync",
    "wait",
    "warn",
    "worker_client",
]

# What a user of dask.distributed (and of the seed notebook) imports.
DASK_DISTRIBUTED_NAMES = [
    "Client",
    "LocalCluster",
    "as_completed",
    "wait",
    "Future",
    "futures_of",
    "get_client",
    "progress",
    "performance_report",
    "KilledWorker",
    "Lock",
    "MultiLock",
    "Semaphore",
    "Queue",
    "Variable",
    "Event",
    "Actor",
    "ActorFuture",
    "BaseActorFuture",
    "worker_client",
    "secede",
    "rejoin",
    "get_worker",
    "fire_and_forget",
    "Security",
    "print",
    "warn",
    "SSHCluster",
    "get_task_stream",
    "WorkerPlugin",
    "SchedulerPlugin",
    "NannyPlugin",
    "UploadFile",
    "UploadDirectory",
    "Environ",
    "PipInstall",
    "default_client",
    "Reschedule",
    "CancelledError",
    "TimeoutError",
    "local_client",
    "Scheduler",
    "Worker",
    "Nanny",
    "Status",
    "Adaptive",
    "get_task_metadata",
    "InstallPlugin",
    "CondaInstall",
]


def test_all_is_pinned() -> None:
    assert sorted(shoal.__all__) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(shoal, name)
    assert value is not None
    assert name in dir(shoal)


def test_dask_distributed_names_are_there() -> None:
    missing = [n for n in DASK_DISTRIBUTED_NAMES if n not in shoal.__all__]
    assert missing == []
    for name in DASK_DISTRIBUTED_NAMES:
        assert callable(getattr(shoal, name)), name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from shoal import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC


def test_the_namespace_holds_no_helpers() -> None:
    # typing's Any and TYPE_CHECKING, and __future__'s annotations, were attributes of shoal
    for name in ("Any", "TYPE_CHECKING", "annotations"):
        assert name not in dir(shoal)
        assert not hasattr(shoal, name)
    assert [n for n in dir(shoal) if n.startswith("_") and not n.startswith("__")] == []


def test_star_import_gives_what_dask_distributed_gives_where_shoal_has_it() -> None:
    import distributed

    theirs: dict[str, object] = {}
    exec("from distributed import *", theirs)
    # What shoal leaves out on purpose: dask's config and dask modules, its Jupyter
    # templates (shoal/_not_offered.py says why, and what to use).
    left_out = {"config", "dask", "rpc", "connect", "widgets"}
    missing = sorted(set(distributed.__all__) - set(shoal.__all__) - left_out)
    assert missing == []
    assert set(shoal.__all__) - set(theirs) <= {  # shoal's own additions
        "FailureStory", "LostDataError", "RemoteError", "ALL_COMPLETED", "FIRST_COMPLETED",
        "FIRST_EXCEPTION"}


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        shoal.no_such_thing  # noqa: B018


def test_future_is_a_dask_task_ref() -> None:
    assert issubclass(shoal.Future, dask._task_spec.TaskRef)


def test_killed_worker_is_an_exception() -> None:
    assert issubclass(shoal.KilledWorker, Exception)


def test_wait_constants_match_concurrent_futures() -> None:
    """dask.distributed's ``wait(return_when=...)`` takes concurrent.futures' constants."""
    futures = importlib.import_module("concurrent.futures")
    for name in ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"):
        assert getattr(shoal, name) == getattr(futures, name)


def test_version_is_a_string() -> None:
    assert isinstance(shoal.__version__, str) and shoal.__version__


def test_plugin_classes_are_importable_from_dasks_path_too() -> None:
    """``from distributed.diagnostics.plugin import WorkerPlugin`` has a shoal twin."""
    plugin = importlib.import_module("shoal.diagnostics.plugin")
    for name in ("WorkerPlugin", "SchedulerPlugin", "NannyPlugin", "UploadFile",
                 "UploadDirectory", "Environ", "PipInstall", "InstallPlugin", "CondaInstall"):
        assert getattr(plugin, name) is getattr(shoal, name)


def test_coordination_primitives_take_dask_arguments() -> None:
    """Same parameter names and defaults as dask.distributed's (shoal adds ``client=``
    where dask has none)."""
    import inspect

    import distributed

    for name in ("Lock", "MultiLock", "Semaphore", "Queue", "Variable", "Event"):
        ours = inspect.signature(getattr(shoal, name)).parameters
        theirs = inspect.signature(getattr(distributed, name)).parameters
        for pname, p in theirs.items():
            assert pname in ours, (name, pname)
            assert ours[pname].default == p.default, (name, pname)
        for method in ("acquire", "release", "locked", "get_value", "put", "get", "qsize",
                       "set", "delete", "clear", "wait", "is_set"):
            if not hasattr(getattr(distributed, name), method):
                continue
            ours_m = inspect.signature(getattr(getattr(shoal, name), method)).parameters
            theirs_m = inspect.signature(getattr(getattr(distributed, name), method)).parameters
            for pname, p in theirs_m.items():
                assert pname in ours_m, (name, method, pname)
                assert ours_m[pname].default == p.default, (name, method, pname)


CLIENT_METHODS_FROM_DASK = [
    "processing", "nbytes", "call_stack", "get_versions", "set_metadata", "get_metadata",
    "get_scheduler_logs", "get_worker_logs", "write_scheduler_file", "as_current",
    "futures_of", "normalize_collection", "get_executor", "start", "dump_cluster_state",
    "forward_logging", "unforward_logging", "register_worker_callbacks",
]


@pytest.mark.parametrize("method", CLIENT_METHODS_FROM_DASK)
def test_client_methods_take_dasks_arguments(method: str) -> None:
    """Same parameter names and defaults as dask.distributed's ``Client`` methods."""
    import inspect

    import distributed

    ours = inspect.signature(getattr(shoal.Client, method)).parameters
    theirs = inspect.signature(getattr(distributed.Client, method)).parameters
    for pname, p in theirs.items():
        if p.kind is p.VAR_KEYWORD:
            assert any(q.kind is q.VAR_KEYWORD for q in ours.values()), (method, pname)
            continue
        assert pname in ours, (method, pname)
        if p.default is not inspect.Parameter.empty and pname != "default":
            assert ours[pname].default == p.default, (method, pname)


def test_client_asynchronous_is_a_property_as_in_dask() -> None:
    assert isinstance(inspect_static(shoal.Client, "asynchronous"), property)


def inspect_static(cls: type, name: str) -> object:
    import inspect

    return inspect.getattr_static(cls, name)


def test_client_get_takes_dasks_arguments_in_dasks_order() -> None:
    """``Client.get(dsk, keys, workers, ...)``: dask's positional order and defaults (a
    program calling ``client.get(dsk, keys, None)`` failed with a TypeError)."""
    import inspect

    import distributed

    ours = inspect.signature(shoal.Client.get).parameters
    theirs = inspect.signature(distributed.Client.get).parameters

    def positional(params):
        return [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]

    assert positional(ours) == positional(theirs)
    for pname, p in theirs.items():
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not inspect.Parameter.empty:
            assert ours[pname].default == p.default, pname


def test_client_methods_take_dasks_positional_arguments_in_dasks_order() -> None:
    """Every method shared with dask.distributed's ``Client`` takes dask's positional
    arguments in dask's order (``client.compute(x, False, True, None, True)`` is
    ``allow_other_workers=True`` in dask; it was ``retries=True`` in shoal)."""
    import inspect

    import distributed

    checked = 0
    for name in sorted(set(dir(distributed.Client)) & set(dir(shoal.Client))):
        theirs = inspect.getattr_static(distributed.Client, name)
        ours = inspect.getattr_static(shoal.Client, name)
        if name.startswith("_") or not callable(theirs) or not callable(ours):
            continue
        try:
            p_theirs = inspect.signature(theirs).parameters
            p_ours = inspect.signature(ours).parameters
        except (TypeError, ValueError):  # (a builtin without a signature)
            continue
        order_theirs = [n for n, p in p_theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        order_ours = [n for n, p in p_ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert order_ours[:len(order_theirs)] == order_theirs, name
        checked += 1
    assert checked > 50
