"""dask.distributed's module-level names for task control and errors: ``Reschedule`` raised
in a task places it again, ``CancelledError`` / ``TimeoutError`` are what waits raise, and
``local_client`` is ``worker_client``'s old name."""

from __future__ import annotations

import os

import pytest

import shoal
from shoal import CancelledError, Reschedule, TimeoutError

from ._helpers import gated

pytestmark = pytest.mark.integration


def reschedule_once(marker: str, value: int) -> int:
    """Raise Reschedule on the first run (no marker yet), return ``value`` on the next."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        raise Reschedule()
    return value


def dask_reschedule_once(marker: str, value: int) -> int:
    import distributed

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise distributed.Reschedule()
    return value


def test_a_task_raising_reschedule_runs_again_and_succeeds(client, tmp_path):
    marker = str(tmp_path / "ran-once")
    fut = client.submit(reschedule_once, marker, 42, pure=False)
    assert fut.result(timeout=30) == 42
    assert os.path.exists(marker)
    events = [r for r in client.get_task_stream(count=1000) if r["key"] == fut.key]
    assert [r["status"] for r in events] == ["OK"]  # the first run is no failure


def test_reschedule_uses_no_retry_and_feeds_dependents(client, tmp_path):
    marker = str(tmp_path / "ran-once")
    first = client.submit(reschedule_once, marker, 5, pure=False, retries=0)
    second = client.submit(lambda x: x * 2, first, pure=False)
    assert second.result(timeout=30) == 10


def test_dasks_own_reschedule_is_understood_too(client, tmp_path):
    marker = str(tmp_path / "ran-once")
    fut = client.submit(dask_reschedule_once, marker, "again", pure=False)
    assert fut.result(timeout=30) == "again"


def test_cancelled_error_is_what_a_cancelled_futures_result_raises(client, gate):
    fut = client.submit(gated, gate.path, 1, pure=False)
    fut.cancel()
    with pytest.raises(CancelledError):
        fut.result(timeout=10)
    assert CancelledError is __import__("distributed").CancelledError


def test_timeout_error_is_what_a_wait_past_its_deadline_raises(client, gate):
    fut = client.submit(gated, gate.path, 1, pure=False)
    with pytest.raises(TimeoutError, match="did not finish within"):
        fut.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        shoal.wait([fut], timeout=0.05)
    assert TimeoutError is __import__("distributed").TimeoutError


def test_local_client_is_worker_clients_old_name(client):
    def inside() -> int:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with shoal.local_client() as c:
                value = c.submit(lambda: 7, pure=False).result()
        assert any("worker_client" in str(w.message) for w in caught)
        return value

    assert client.submit(inside, pure=False).result(timeout=30) == 7
