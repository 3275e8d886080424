"""A nanny plugin's ``teardown(nanny)`` when the nanny closes (dask's ``Nanny.close`` tears
its plugins down): run in the worker process on the nanny's behalf, as ``setup`` was, when
the nanny left its closing mark (``worker/_plugins.nanny_closing_mark``) before stopping
the process; not when the worker process ends for any other reason (the nanny restarts it)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from shoal import NannyPlugin
from shoal.worker import _plugins
from shoal.worker._plugins import NANNY_STATE_ENV, WorkerPlugins, nanny_closing_mark


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
