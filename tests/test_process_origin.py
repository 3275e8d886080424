"""The root conftest's record of child processes (``_process_origin``) after every test."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from _process_origin import _descendants_from_proc, _first_seen, record


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_the_proc_walk_finds_the_same_descendants_as_psutil() -> None:
    # A child with a grandchild of its own: both must be found.
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & echo started; wait"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "started\n"
        found = _descendants_from_proc()
        expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert found is not None and set(found) == expected
        assert len(psutil.Process(parent.pid).children()) == 1  # the grandchild is in it
        record("a test")
        assert _first_seen[parent.pid] == "a test"
    finally:
        for proc in psutil.Process(parent.pid).children():
            proc.kill()
        parent.kill()
        parent.wait(timeout=30)
