"""Root hooks shared by every test directory: each child process is attributed to the test
after which it was first seen, and a process still alive once the session's fixtures are
all torn down fails the run, named with that test (``_process_origin``); the suite runs its
slow modules first (``pytest_collection_modifyitems``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _process_origin import describe, leftovers, record

# How long the session's last teardowns may take to end their processes.
LEFTOVER_GRACE = 20.0

# The run order, slowest first (paths under tests/; a folder covers its files; the rest
# keeps pytest's order after these). pytest-xdist's worksteal (pyproject's addopts) gives
# each process a contiguous share of this order and lets an idle one take the back half of
# the longest queue: with the minute-long tests first, the run ends on quick pure tests
# instead of one process finishing a slow module alone while the others wait (the tail
# was 77 of 470 s under --dist load). Each module's tests keep their order.
SLOW_FIRST = (
    "chaos/test_kill_workers.py",  # its 20-kill graph: over a minute
    "integration/test_cli_deployment.py",
    "multihost/test_network_faults.py",
    "multihost",
    "chaos",
    "integration/test_cluster_control.py",
    "integration/test_plugins_and_uploads.py",
    "integration/test_interrupts.py",
    "integration/programs",
    "dashboard",
    "integration",
    "test_demo.py",
    "test_notebook.py",
    "test_gc_policy.py",
)
_TESTS = Path(__file__).parent


def _rank(item: pytest.Item) -> int:
    try:
        path = Path(str(item.fspath)).relative_to(_TESTS).as_posix()
    except ValueError:
        return len(SLOW_FIRST)
    for rank, prefix in enumerate(SLOW_FIRST):
        if path == prefix or path.startswith(prefix + "/"):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each module's order stays


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    record(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    left = leftovers(LEFTOVER_GRACE)
    if left:
        text = describe(left)
        if hasattr(config, "workeroutput"):  # a pytest-xdist process: tell the controller
            config.workeroutput["shoal_leftovers"] = text
        config.stash[_LEFT] = config.stash.get(_LEFT, "") + text
    if config.stash.get(_LEFT, ""):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_testnodedown(node: object, error: object) -> None:
    """(pytest-xdist, in the controller) A test process ended: keep what it left running."""
    text = getattr(node, "workeroutput", {}).get("shoal_leftovers")
    if text:
        config = node.config  # type: ignore[attr-defined]
        config.stash[_LEFT] = config.stash.get(_LEFT, "") + text + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    text = terminalreporter.config.stash.get(_LEFT, None)
    if text:
        terminalreporter.section("processes left running after every teardown", red=True)
        terminalreporter.line(text)


_LEFT = pytest.StashKey[str]()
