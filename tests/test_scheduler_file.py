"""Scheduler files: dask's JSON plus the token, private to their owner, waited for."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from pathlib import Path

import pytest

from shoal.cluster._scheduler_file import read_scheduler_file, write_scheduler_file
from shoal.comm._security import Security
from shoal.scheduler._server import Scheduler


def test_written_owner_only_even_over_a_wider_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_scheduler_file(str(path), {"address": "tcp://h:1"}, "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"address": "tcp://h:1", "token": "secret"}


def test_a_reader_waits_for_the_file_to_appear(tmp_path: Path) -> None:
    path = tmp_path / "later.json"
    timer = threading.Timer(0.2, write_scheduler_file, (str(path), {"address": "tcp://h:1"}, None))
    timer.start()
    try:
        assert read_scheduler_file(str(path), timeout=20)["address"] == "tcp://h:1"
    finally:
        timer.join()


def test_a_file_that_never_appears_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"did not appear within 0\.1 s"):
        read_scheduler_file(str(tmp_path / "never.json"), timeout=0.1)


def test_the_scheduler_writes_dasks_fields_and_removes_the_file_when_it_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "scheduler.json"

    async def main() -> dict:
        sched = Scheduler(scheduler_file=str(path), security=Security(token="tok"))
        await sched.start()
        info = json.loads(path.read_text())
        assert info["address"] == sched.address
        await sched.close()
        return info

    info = asyncio.run(main())
    assert set(info) == {"type", "id", "address", "services", "started", "workers", "token"}
    assert info["type"] == "Scheduler" and info["workers"] == {} and info["token"] == "tok"
    assert not path.exists()
