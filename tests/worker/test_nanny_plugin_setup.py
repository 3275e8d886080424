"""A nanny plugin's ``setup`` run in the worker process on the nanny's behalf
(``worker/_plugins.WorkerPlugins._nanny_setup``): what it leaves for the nanny."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

from shoal import NannyPlugin
from shoal.worker._plugins import (
    NANNY_PLUGINS_ENV,
    NANNY_STATE_ENV,
    WorkerPlugins,
    read_nanny_state,
)


class SetsEnviron(NannyPlugin):
    def setup(self, nanny) -> None:
        os.environ["SOAK_NANNY_VAR"] = "from-os-environ"
        nanny.env["SOAK_NANNY_ENV"] = "from-nanny-env"


def test_os_environ_set_in_setup_is_kept_for_later_worker_processes(tmp_path, monkeypatch):
    # dask runs setup in the nanny process: the worker processes it starts later inherit
    # what it put in os.environ. A restarted shoal worker lost it (only nanny.env was kept).
    state = tmp_path / "nanny-state.json"
    monkeypatch.setenv(NANNY_STATE_ENV, str(state))
    monkeypatch.delenv(NANNY_PLUGINS_ENV, raising=False)
    monkeypatch.delenv("SOAK_NANNY_VAR", raising=False)
    monkeypatch.setenv("SOAK_UNCHANGED", "same")
    worker = SimpleNamespace(name="w", address="tcp://127.0.0.1:1", local_directory=str(tmp_path))
    try:
        answer = asyncio.run(WorkerPlugins(worker)._nanny_setup("sets-environ", SetsEnviron(), True))
        assert answer["status"] == "OK"
        kept = read_nanny_state(str(state))
        assert kept["env"] == {"SOAK_NANNY_VAR": "from-os-environ",
                               "SOAK_NANNY_ENV": "from-nanny-env"}
        assert kept["plugins"] == ["sets-environ"]
    finally:  # (delenv of an unset variable undoes nothing: setup sets both)
        os.environ.pop("SOAK_NANNY_VAR", None)
        os.environ.pop(NANNY_PLUGINS_ENV, None)
