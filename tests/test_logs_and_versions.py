"""The in-memory log rings behind ``get_scheduler_logs`` / ``get_worker_logs`` and the
version comparison behind ``get_versions(check=True)``."""

from __future__ import annotations

import logging

import pytest

from shoal import _logs, _versions


def test_a_ring_keeps_the_newest_records_newest_first() -> None:
    ring = _logs.LogRing(maxlen=3)
    log = logging.getLogger("shoal.test-ring")
    log.addHandler(ring)
    try:
        for i in range(5):
            log.warning("line %d", i)
    finally:
        log.removeHandler(ring)
    rows = ring.newest(fmt="%(levelname)s %(message)s")
    assert rows == [("WARNING", "WARNING line 4"), ("WARNING", "WARNING line 3"),
                    ("WARNING", "WARNING line 2")]
    assert ring.newest(1, fmt="%(message)s") == [("WARNING", "line 4")]
    ring.resize(2)
    assert [m for _l, m in ring.newest(fmt="%(message)s")] == ["line 4", "line 3"]


def test_a_ring_holds_no_arguments_nor_frames_alive() -> None:
    ring = _logs.LogRing()

    class Big:
        def __str__(self) -> str:
            return "big"

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "value %s", (Big(),),
                                   __import__("sys").exc_info())
    ring.emit(record)
    (kept,) = ring.records
    assert kept.args is None and kept.exc_info is None
    assert kept.getMessage() == "value big" and "ValueError: boom" in (kept.exc_text or "")


def test_ring_is_one_per_logger_per_process() -> None:
    assert _logs.ring("shoal.test-one") is _logs.ring("shoal.test-one")
    assert _logs.ring("shoal.test-one") in logging.getLogger("shoal.test-one").handlers


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_ring_sees_info_as_dask_rings_do_while_other_handlers_see_what_they_saw() -> None:
    root = logging.getLogger()
    elsewhere = _Collect()  # a user's handler on the root logger (level WARNING)
    root.addHandler(elsewhere)
    try:
        ring = _logs.ring("shoal.test-info")
        log = logging.getLogger("shoal.test-info.child")
        log.info("info-line")
        log.debug("debug-line")
        log.warning("warning-line")
    finally:
        root.removeHandler(elsewhere)
    assert [m for _l, m in ring.newest(fmt="%(message)s")] == ["warning-line", "info-line"]
    assert elsewhere.messages == ["warning-line"]


def test_a_logger_level_the_user_set_is_kept_and_passed_on() -> None:
    root = logging.getLogger()
    elsewhere = _Collect()
    root.addHandler(elsewhere)
    log = logging.getLogger("shoal.test-user-level")
    log.setLevel(logging.DEBUG)
    try:
        ring = _logs.ring("shoal.test-user-level")
        log.debug("debug-line")
    finally:
        root.removeHandler(elsewhere)
    assert [m for _l, m in ring.newest(fmt="%(message)s")] == ["debug-line"]
    assert elsewhere.messages == ["debug-line"]


def test_warnings_reach_stderr_when_nobody_configured_logging(monkeypatch) -> None:
    """As without the ring: a WARNING of a logger with a ring, in a process where no handler
    is configured anywhere, goes to Python's last-resort handler (stderr), as dask's
    warnings do; INFO does not."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    last = _Collect()
    last.setLevel(logging.WARNING)
    monkeypatch.setattr(logging, "lastResort", last)
    ring = _logs.ring("shoal.test-last-resort")
    log = logging.getLogger("shoal.test-last-resort")
    log.info("info-line")
    log.warning("warning-line")
    assert [m for _l, m in ring.newest(fmt="%(message)s")] == ["warning-line", "info-line"]
    assert last.messages == ["warning-line"]


@pytest.mark.parametrize("n", [0, -1, 1.5, "3", True])
def test_a_bad_count_is_refused(n: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        _logs.check_count(n)


def _side(**packages: str | None) -> dict[str, object]:
    return {"packages": packages}


def test_versions_that_agree_have_no_mismatch() -> None:
    same = _side(python="3.11.7", dask="2025.1.0")
    assert _versions.mismatches(same, same, {"w1": same}) == []


def test_a_mismatch_names_the_package_and_every_side() -> None:
    client = _side(python="3.11.7", dask="2025.1.0")
    worker = _side(python="3.11.7", dask="2024.12.0")
    (line,) = _versions.mismatches(client, client, {"tcp://w:1": worker})
    assert line.startswith("dask") and "worker tcp://w:1: 2024.12.0" in line
    missing = _side(python="3.11.7")
    (line,) = _versions.mismatches(client, missing, {})
    assert "scheduler: MISSING" in line


def test_get_versions_reports_host_and_packages() -> None:
    got = _versions.get_versions(["pytest", "no-such-package-here"])
    assert got["packages"]["pytest"] == pytest.__version__
    assert got["packages"]["no-such-package-here"] is None
    assert got["host"]["python"].startswith("3.")
    with pytest.raises(TypeError):
        _versions.check_packages("pytest")
