"""The network-namespace harness itself: it leaves nothing behind, also after a failure or a
killed run, and adds nothing to the machine's own network namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ._netns import (
    HERE,
    Network,
    Unavailable,
    _ip,
    check_available,
    remove_stale,
    skip_unless_required,
)


@pytest.fixture(autouse=True)
def _need_namespaces() -> None:
    try:
        check_available()
    except Unavailable as exc:
        skip_unless_required(f"multi-host tests need Linux network namespaces: {exc}")


def _namespaces() -> set[str]:
    return {line.split(" ", 1)[0] for line in _ip("netns", "list").stdout.splitlines() if line}


def _root_links() -> list[str]:
    return sorted(line.split(":")[1].strip().split("@")[0]
                  for line in _ip("-o", "link").stdout.splitlines())


def test_a_network_is_deleted_when_the_test_using_it_fails(tmp_path: Path) -> None:
    links = _root_links()
    with pytest.raises(RuntimeError, match="the test failed"), Network(tmp_path) as net:
        made = {net.ns(h) for h in ("switch", "sched", "w1", "w2", "cli")}
        assert made <= _namespaces()
        assert _root_links() == links  # the machine's own namespace is untouched
        net.spawn("w1", ["sleep", "600"])
        raise RuntimeError("the test failed")
    assert not made & _namespaces()


def test_namespaces_left_by_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys, pathlib; sys.path.insert(0, sys.argv[1]); "
         "from _netns import Network; net = Network(pathlib.Path(sys.argv[2])).__enter__(); "
         "print(net.run_id, flush=True); os.kill(os.getpid(), signal.SIGKILL)",
         str(HERE), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    run_id = killed.stdout.strip()
    assert run_id, killed.stderr
    left = {ns for ns in _namespaces() if ns.startswith(run_id)}
    assert len(left) == 5
    assert left <= set(remove_stale())
    assert not {ns for ns in _namespaces() if ns.startswith(run_id)}
