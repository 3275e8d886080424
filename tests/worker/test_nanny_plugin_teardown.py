"""A nanny plugin's ``teardown(nanny)`` when the nanny closes (dask's ``Nanny.close`` tears
its plugins down): run in the worker process on the nanny's behalf, as ``setup`` was, when
the nanny left its closing mark (``worker/_plugins.nanny_closing_mark``) before stopping
the process; not when the worker process ends for any other reason (the nanny restarts it).
What a gone worker process did not tear down, its nanny does as it closes
(``worker/_nanny_plugins.NannyPluginState.teardown_left``)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from shoal import NannyPlugin
from shoal.comm._connection import Connection
from shoal.protocol._messages import Message, PluginTeardown
from shoal.worker import _plugins
from shoal.worker._plugins import NANNY_STATE_ENV, WorkerPlugins, nanny_closing_mark


class _NoAnswers(Connection):
    def send(self, msg: Message) -> None:
        pass

    def _close(self) -> None:
        pass


class Records(NannyPlugin):
    def __init__(self, log: list[str], tag: str) -> None:
        self.log, self.tag = log, tag

    def teardown(self, nanny) -> None:
        self.log.append(f"{self.tag}:{nanny.name}")


class Fails(NannyPlugin):
    def teardown(self, nanny) -> None:
        raise RuntimeError("teardown broke")


class Hangs(NannyPlugin):
    async def teardown(self, nanny) -> None:
        await asyncio.Event().wait()  # ends: cancelled by the bounded wait under test


def _plugins_of(tmp_path, monkeypatch, closing: bool) -> WorkerPlugins:
    state = tmp_path / "nanny-state.json"
    monkeypatch.setenv(NANNY_STATE_ENV, str(state))
    if closing:
        open(nanny_closing_mark(str(state)), "w").close()
    worker = SimpleNamespace(name="w", address="tcp://127.0.0.1:1", local_directory=str(tmp_path))
    return WorkerPlugins(worker)


def test_the_nanny_closing_tears_its_plugins_down_logging_failures_and_bounding_waits(
        tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(_plugins, "NANNY_TEARDOWN_TIMEOUT", 0.05)
    plugins = _plugins_of(tmp_path, monkeypatch, closing=True)
    log: list[str] = []
    plugins.nanny_plugins.update({"fails": Fails(), "hangs": Hangs(),
                                  "records": Records(log, "r")})
    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        asyncio.run(asyncio.wait_for(plugins.close(), 10))  # ends: bounded teardowns
    assert log == ["r:w"]  # the others' failures did not stop it
    assert "teardown broke" in caplog.text
    assert "'hangs'" in caplog.text and "did not finish" in caplog.text
    assert plugins.nanny_plugins == {}


def test_a_worker_process_ending_while_its_nanny_stays_keeps_nanny_plugins_up(
        tmp_path, monkeypatch) -> None:
    plugins = _plugins_of(tmp_path, monkeypatch, closing=False)
    log: list[str] = []
    plugins.nanny_plugins["records"] = Records(log, "r")
    asyncio.run(plugins.close())
    assert log == []


@pytest.mark.parametrize("state", [None, "/nonexistent/dir/state.json"])
def test_without_a_nanny_or_its_mark_nothing_is_torn_down_for_it(state, monkeypatch) -> None:
    if state is None:
        monkeypatch.delenv(NANNY_STATE_ENV, raising=False)
    else:
        monkeypatch.setenv(NANNY_STATE_ENV, state)
    assert not _plugins.nanny_closing()


# --- the teardowns a gone worker process left to its nanny -----------------------------------

LOG: list[str] = []  # what the unpickled copies below did


class RemembersSetup(NannyPlugin):
    def __init__(self, tag: str) -> None:
        self.tag, self.found = tag, "nothing"

    def setup(self, nanny) -> None:
        self.found = f"set up by {nanny.name}"

    def teardown(self, nanny) -> None:
        LOG.append(f"{self.tag}: {self.found}, torn down by {nanny.name}")


class HangsAsync(NannyPlugin):
    async def teardown(self, nanny) -> None:
        await asyncio.Event().wait()  # ends: cancelled by the bounded wait under test


class FailsOnce(NannyPlugin):
    def teardown(self, nanny) -> None:
        raise RuntimeError("teardown broke")


@pytest.fixture
def nanny_state(monkeypatch):
    from shoal.worker._nanny_plugins import NannyPluginState

    LOG.clear()
    state = NannyPluginState()
    monkeypatch.setenv(NANNY_STATE_ENV, state.path)
    monkeypatch.setenv(_plugins.NANNY_PLUGINS_ENV, "[]")
    yield state
    state.remove()


def _set_up(tmp_path, *named: tuple[str, NannyPlugin]) -> WorkerPlugins:
    worker = SimpleNamespace(name="w", address="tcp://127.0.0.1:1", local_directory=str(tmp_path))
    plugins = WorkerPlugins(worker)
    for name, plugin in named:
        asyncio.run(plugins._nanny_setup(name, plugin, True))
    return plugins


def test_a_nanny_tears_down_what_its_gone_worker_process_left_once_as_set_up(
        tmp_path, nanny_state) -> None:
    # dask runs nanny plugins in the nanny: Nanny.close tears them down whatever became of
    # the worker. Here the worker process (gone: nothing tears down there) left them pickled.
    _set_up(tmp_path, ("a", RemembersSetup("a")), ("b", RemembersSetup("b")))
    asyncio.run(nanny_state.teardown_left("n0", "tcp://127.0.0.1:1", str(tmp_path)))
    assert LOG == ["a: set up by w, torn down by n0", "b: set up by w, torn down by n0"]
    asyncio.run(nanny_state.teardown_left("n0", None, None))  # at most once
    assert len(LOG) == 2


def test_what_the_worker_process_tore_down_is_not_torn_down_again_by_its_nanny(
        tmp_path, nanny_state) -> None:
    plugins = _set_up(tmp_path, ("a", RemembersSetup("a")), ("b", RemembersSetup("b")))
    plugins.on_message(_NoAnswers(), PluginTeardown(0, "a"))  # unregistered: torn down here
    nanny_state.mark_closing()
    asyncio.run(plugins.close())  # the nanny closing: "b" torn down here
    asyncio.run(nanny_state.teardown_left("n0", None, None))
    assert LOG == ["a: set up by w, torn down by w", "b: set up by w, torn down by w"]


def test_a_later_worker_process_tears_down_the_plugin_as_set_up_not_as_re_sent(
        tmp_path, nanny_state, monkeypatch) -> None:
    _set_up(tmp_path, ("a", RemembersSetup("a")))
    monkeypatch.setenv(_plugins.NANNY_PLUGINS_ENV, '["a"]')  # what a fresh process gets
    later = _set_up(tmp_path)
    asyncio.run(later._nanny_setup("a", RemembersSetup("a"), False))  # the re-send: skipped
    nanny_state.mark_closing()
    asyncio.run(later.close())
    assert LOG == ["a: set up by w, torn down by w"]


def test_the_nannys_own_teardowns_log_failures_and_bound_waits(
        tmp_path, nanny_state, monkeypatch, caplog) -> None:
    monkeypatch.setattr(_plugins, "NANNY_TEARDOWN_TIMEOUT", 0.05)
    _set_up(tmp_path, ("fails", FailsOnce()), ("hangs", HangsAsync()), ("a", RemembersSetup("a")))
    with caplog.at_level(logging.ERROR, logger="shoal.nanny"):
        asyncio.run(asyncio.wait_for(  # ends: bounded teardowns
            nanny_state.teardown_left("n0", None, None), 10))
    assert LOG == ["a: set up by w, torn down by n0"]
    assert "teardown broke" in caplog.text
    assert "'hangs'" in caplog.text and "did not finish" in caplog.text
