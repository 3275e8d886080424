"""Fixtures for shoal across machines on real network stacks (see ``_netns.py``).

- ``net``: a fresh ``Network`` of four hosts (scheduler, two workers, client) per test, deleted
  at teardown, also when the test fails; skipped, with the reason, only where network
  namespaces cannot be made (not Linux, no ``ip``, not permitted).
- ``start_scheduler`` / ``start_worker``: ``shoal scheduler`` / ``shoal worker`` in a host,
  returning once it runs.

Failure detection is configured small through dask's config variables (worker TTL, TCP and
connect timeouts) so a partition is noticed in seconds; every process gets the run's
``SHOAL_TOKEN``, so the tests hold whether or not the cluster authenticates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _waiting import wait_for

from ._netns import (
    Network,
    Process,
    Unavailable,
    check_available,
    remove_stale,
    skip_unless_required,
)

FAST_FAILURE_CONFIG = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "4s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "4s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
}
SCHEDULER_PORT = 8786


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.multihost)
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def net(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Network]:
    try:
        check_available()
    except Unavailable as exc:
        skip_unless_required(f"multi-host tests need Linux network namespaces: {exc}")
    remove_stale()
    with Network(tmp_path, env=FAST_FAILURE_CONFIG) as network:
        yield network
        if request.node.stash.get(_FAILED, False):
            print(network.logs())


def scheduler_address(proc: Process, timeout: float = 30) -> str:
    """The address ``shoal scheduler`` printed ("Scheduler at: ...")."""
    found: list[str] = []

    def printed() -> bool:
        m = re.search(r"Scheduler at: (\S+)", proc.output())
        if m:
            found.append(m.group(1))
        if proc.popen.poll() is not None and not m:
            raise AssertionError(f"the scheduler exited ({proc.popen.returncode}):\n"
                                 f"{proc.output()}")
        return bool(m)

    wait_for(printed, timeout=timeout, interval=0.05)
    return found[0]


@pytest.fixture
def start_scheduler(net: Network) -> Callable[..., tuple[Process, str]]:
    """``start_scheduler(*flags)`` -> (process, address): a scheduler in host "sched"
    (``--host 10.213.0.1 --port 8786 --no-dashboard`` unless ``flags`` give a host)."""

    def start(*flags: str, env: dict[str, str | None] | None = None) -> tuple[Process, str]:
        args = ["scheduler", "--port", str(SCHEDULER_PORT), "--no-dashboard", *flags]
        if "--host" not in flags and "--interface" not in flags:
            args += ["--host", net.ip("sched")]
        proc = net.shoal("sched", *args, env=env)
        return proc, scheduler_address(proc)

    return start


@pytest.fixture
def start_worker(net: Network) -> Callable[..., Process]:
    """``start_worker(host, *args)``: ``shoal worker ARGS --nworkers 1 --nthreads 1`` in ``host``, once it
    printed that its worker started."""

    def start(host: str, *args: str, env: dict[str, str | None] | None = None) -> Process:
        proc = net.shoal(host, "worker", *args, "--nworkers", "1", "--nthreads", "1", env=env)

        def started() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"shoal worker exited ({proc.popen.returncode}):\n"
                                     f"{proc.output()}")
            return "Started 1 worker" in proc.output()

        wait_for(started, timeout=30, interval=0.05)
        return proc

    return start
