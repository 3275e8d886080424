"""Worker and nanny plugin hooks as dask.distributed calls them (``WorkerPlugin`` and
``NannyPlugin`` in ``distributed/diagnostics/plugin.py``): ``setup``/``teardown`` get
the worker (or nanny) by name, a plugin registered again replaces the old one after its
teardown, a nanny plugin's teardown runs when it is unregistered. Driven through
``WorkerPlugins.on_message`` with a stand-in worker and a recording connection."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

import pytest

from shoal import NannyPlugin, WorkerPlugin
from shoal.comm._connection import Connection
from shoal.protocol._messages import Message, PluginSetup, PluginTeardown, Response
from shoal.protocol._serialize import dumps
from shoal.worker._plugins import NANNY_PLUGINS_ENV, NANNY_STATE_ENV, WorkerPlugins


class Answers(Connection):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Message] = []

    def send(self, msg: Message) -> None:
        self.sent.append(msg)

    def _close(self) -> None:
        pass


LOG: list[Any] = []  # what the plugins below did, in order (they are unpickled copies)


class ByName(WorkerPlugin):
    """Takes its arguments by name only, as dask passes them."""

    def setup(self, **kwargs: Any) -> None:  # type: ignore[override]
        LOG.append(("setup", sorted(kwargs)))

    def teardown(self, **kwargs: Any) -> None:  # type: ignore[override]
        LOG.append(("teardown", sorted(kwargs)))


class SlowTeardown(WorkerPlugin):
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def setup(self, worker: Any) -> None:
        LOG.append(("setup", self.tag))

    async def teardown(self, worker: Any) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        LOG.append(("teardown", self.tag))


class NannyByName(NannyPlugin):
    def setup(self, **kwargs: Any) -> None:  # type: ignore[override]
        LOG.append(("nanny setup", sorted(kwargs)))

    def teardown(self, **kwargs: Any) -> None:  # type: ignore[override]
        LOG.append(("nanny teardown", sorted(kwargs)))


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    LOG.clear()


def _host(tmp_path: Any) -> tuple[WorkerPlugins, list[asyncio.Task[Any]]]:
    spawned: list[asyncio.Task[Any]] = []
    worker = SimpleNamespace(name="w", address="tcp://127.0.0.1:1", local_directory=str(tmp_path),
                             _spawn=lambda coro: spawned.append(asyncio.ensure_future(coro)))
    return WorkerPlugins(worker), spawned


async def _settle(spawned: list[asyncio.Task[Any]]) -> None:
    while not all(t.done() for t in spawned):  # ends: each task is a few loop turns
        await asyncio.gather(*spawned)


def _oks(conn: Answers) -> list[tuple[int, bool]]:
    return [(m.request_id, m.ok) for m in conn.sent if isinstance(m, Response)]


def test_setup_and_teardown_get_the_worker_by_name(tmp_path: Any) -> None:
    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        host.on_message(conn, PluginSetup(1, "p", dumps(ByName()), "worker"))
        host.on_message(conn, PluginTeardown(2, "p"))
        await _settle(spawned)
        assert _oks(conn) == [(1, True), (2, True)]

    asyncio.run(scenario())
    assert LOG == [("setup", ["worker"]), ("teardown", ["worker"])]


def test_a_plugin_registered_again_is_set_up_after_the_old_ones_teardown(tmp_path: Any) -> None:
    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        host.on_message(conn, PluginSetup(1, "p", dumps(SlowTeardown("old")), "worker"))
        host.on_message(conn, PluginSetup(2, "p", dumps(SlowTeardown("new")), "worker"))
        await _settle(spawned)
        assert _oks(conn) == [(1, True), (2, True)]
        assert [type(p).__name__ for p in host.plugins.values()] == ["SlowTeardown"]
        assert host.plugins["p"].tag == "new"

    asyncio.run(scenario())
    assert LOG == [("setup", "old"), ("teardown", "old"), ("setup", "new")]


@pytest.fixture
def nanny_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The environment a nanny's plugins live in: a state file, and the names applied
    (set by the plugins' host in this process: removed afterwards)."""
    monkeypatch.setenv(NANNY_STATE_ENV, str(tmp_path / "nanny-state.json"))
    monkeypatch.delenv(NANNY_PLUGINS_ENV, raising=False)
    yield
    os.environ.pop(NANNY_PLUGINS_ENV, None)


def test_a_nanny_plugin_gets_the_nanny_by_name_and_its_teardown_runs_when_unregistered(
        tmp_path: Any, nanny_env: None) -> None:

    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        host.on_message(conn, PluginSetup(1, "n", dumps(NannyByName()), "nanny"))
        await _settle(spawned)
        host.on_message(conn, PluginTeardown(2, "n"))
        await _settle(spawned)
        assert _oks(conn) == [(1, True), (2, True)]

    asyncio.run(scenario())
    assert LOG == [("nanny setup", ["nanny"]), ("nanny teardown", ["nanny"])]


class NannyTagged(NannyPlugin):
    name = "tagged"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def setup(self, nanny: Any) -> None:
        LOG.append(("nanny setup", self.tag))


def test_a_nanny_plugin_registered_again_under_its_name_is_set_up_again(
        tmp_path: Any, nanny_env: None) -> None:
    # dask's nanny replaces it and runs the new setup; a joining worker's re-send
    # (request 0) of a plugin applied before this process started is not run again.

    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        for request_id, tag in ((1, "first"), (2, "second"), (0, "re-sent")):
            host.on_message(conn, PluginSetup(request_id, "tagged", dumps(NannyTagged(tag)),
                                              "nanny"))
            await _settle(spawned)
        assert _oks(conn) == [(1, True), (2, True)]

    asyncio.run(scenario())
    assert os.environ[NANNY_PLUGINS_ENV] == '["tagged"]'
    assert LOG == [("nanny setup", "first"), ("nanny setup", "second")]


class StuckTeardown(WorkerPlugin):
    def setup(self, worker: Any) -> None:
        LOG.append(("setup", "stuck"))

    async def teardown(self, worker: Any) -> None:
        await asyncio.Event().wait()  # never returns


def test_a_teardown_that_never_returns_does_not_keep_the_worker_open(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.worker import _plugins

    monkeypatch.setattr(_plugins, "TEARDOWN_TIMEOUT", 0.05)

    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        host.on_message(conn, PluginSetup(1, "stuck", dumps(StuckTeardown()), "worker"))
        host.on_message(conn, PluginSetup(2, "p", dumps(ByName()), "worker"))
        await _settle(spawned)
        await asyncio.wait_for(host.close(), 10)

    asyncio.run(scenario())
    assert LOG == [("setup", "stuck"), ("setup", ["worker"]), ("teardown", ["worker"])]


class NeverReady(WorkerPlugin):
    async def setup(self, worker: Any) -> None:
        await asyncio.Event().wait()  # ends: cancelled by the bound under test


class NannyNeverReady(NannyPlugin):
    async def setup(self, nanny: Any) -> None:
        await asyncio.Event().wait()  # ends: cancelled by the bound under test


class NeverGone(WorkerPlugin):
    async def teardown(self, worker: Any) -> None:
        await asyncio.Event().wait()  # ends: cancelled by the bound under test


@pytest.mark.parametrize("messages", [
    [PluginSetup(1, "never", dumps(NeverReady()), "worker")],
    [PluginSetup(1, "never", dumps(NannyNeverReady()), "nanny")],
    [PluginSetup(0, "never", dumps(NeverGone()), "worker"), PluginTeardown(1, "never")],
], ids=["worker setup", "nanny setup", "unregister teardown"])
def test_an_async_hook_that_never_returns_fails_after_a_bound_naming_the_plugin(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, messages: list[Message]) -> None:
    # dask awaits these without a bound (register_plugin then never returns); here the
    # caller gets a TimeoutError naming the plugin and the worker, and the hook is cancelled.
    from shoal.protocol._errors import error_to_exception
    from shoal.worker import _plugins

    monkeypatch.setattr(_plugins, "SETUP_TIMEOUT", 0.05)
    monkeypatch.delenv(NANNY_STATE_ENV, raising=False)

    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        for msg in messages:
            host.on_message(conn, msg)  # type: ignore[arg-type]
        await asyncio.wait_for(_settle(spawned), 10)  # ends: the bound under test
        assert _oks(conn) == [(1, False)]
        error = conn.sent[-1].value  # type: ignore[attr-defined]
        exc = error_to_exception(error)
        assert isinstance(exc, TimeoutError)
        assert "'never'" in str(exc) and "0.05 s" in str(exc) and "tcp://127.0.0.1:1" in str(exc)

    asyncio.run(scenario())


class OwnTimeout(WorkerPlugin):
    async def setup(self, worker: Any) -> None:
        raise TimeoutError("the service did not answer")


def test_an_async_setup_raising_its_own_timeout_is_reported_as_its_own(tmp_path: Any) -> None:
    from shoal.protocol._errors import error_to_exception

    async def scenario() -> None:
        host, spawned = _host(tmp_path)
        conn = Answers()
        host.on_message(conn, PluginSetup(1, "own", dumps(OwnTimeout()), "worker"))
        await _settle(spawned)
        assert _oks(conn) == [(1, False)]
        exc = error_to_exception(conn.sent[-1].value)  # type: ignore[attr-defined]
        assert str(exc) == "the service did not answer"

    asyncio.run(scenario())
