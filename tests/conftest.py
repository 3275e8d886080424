"""Root hooks shared by every test directory: each child process is attributed to the test
after which it was first seen, and a process still alive once the session's fixtures are
all torn down fails the run, named with that test (``_process_origin``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _process_origin import describe, leftovers, record

# How long the session's last teardowns may take to end their processes.
LEFTOVER_GRACE = 20.0


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
