"""Controlling a running cluster from the Client: restart it, restart or retire some
workers. Methods attached to Client; each is written once as a coroutine and exposed
through ``Client.sync`` (awaitable for an asynchronous client, blocking otherwise).

The scheduler does the work (``scheduler/_control.py``); this module turns arguments into
a request, the answer into a return value or a clear error, and ``ClusterRestarted`` into
cancelled futures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.client._timeouts import NO_DEFAULT, seconds

if TYPE_CHECKING:
    from shoal.client._client import Client

RESTART_MESSAGE = "Scheduler has restarted. Please re-run your work."


def on_restarted(client: Client, reason: str) -> None:
    """The scheduler forgot every task (``client.restart()``, ours or another client's):
    every future this client holds is cancelled, as in dask. Their keys are no longer
    counted, so a future that dies later releases nothing (its key may be in use again)."""
    states = list(client._states.values())
    with client._lock:
        client._states.clear()
    client._dead.clear()
    for st in states:
        st.error = {"kind": "cancelled", "type": "CancelledError",
                    "message": f"cancelled for reason: scheduler-restart ({reason}). "
                               + RESTART_MESSAGE,
                    "exception": None, "traceback": None, "tb_text": ""}
        st.inline = None
        st.settle("cancelled")


def _unwrap(answer: Any) -> Any:
    if isinstance(answer, (list, tuple)) and answer and answer[0] == "error":
        raise ValueError(answer[2])
    return answer[1]


def restart(self: Client, timeout: Any = NO_DEFAULT, wait_for_workers: bool = True,
            asynchronous: bool | None = None) -> Any:
    """Restart every worker (fresh processes) and forget every task: all data is dropped
    and every future of every client is cancelled. Waits until as many workers as before
    are back (``wait_for_workers=True``), or only until the old ones left.

    Args:
        timeout: seconds (or "2 minutes") to wait; default 4 times the client's timeout.

    Raises:
        TimeoutError: the workers did not come back (or leave) within ``timeout``.
    """
    if not isinstance(wait_for_workers, bool):
        raise TypeError(f"wait_for_workers must be True or False, got {wait_for_workers!r}")
    limit = seconds(timeout, "restart", default=4 * self._timeout if self._timeout else None)
    self._check_open()
    return self.sync(self._restart, limit, wait_for_workers, asynchronous=asynchronous)


async def _restart(self: Client, timeout: float | None, wait_for_workers: bool) -> None:
    answer = await self._request("restart", timeout=timeout, wait_for_workers=wait_for_workers)
    if answer["status"] != "OK":
        raise TimeoutError(answer["message"])


def restart_workers(self: Client, workers: list[Any], timeout: Any = NO_DEFAULT,
                    raise_for_error: bool = True, asynchronous: bool | None = None) -> Any:
    """Restart just ``workers`` (addresses or names) through their nannies; the tasks they
    ran are run elsewhere or after. Returns ``{worker: "OK" | "timed out"}``.

    Raises:
        ValueError: a worker is not in the cluster (the message lists those that are).
        TimeoutError: with ``raise_for_error``, some did not come back within ``timeout``.
    """
    if isinstance(workers, (str, bytes)) or not hasattr(workers, "__iter__"):
        raise TypeError(f"restart_workers takes a list of worker addresses or names, got {workers!r}")
    limit = seconds(timeout, "restart_workers", default=4 * self._timeout if self._timeout else None)
    self._check_open()
    return self.sync(self._restart_workers, list(workers), limit, raise_for_error,
                     asynchronous=asynchronous)


async def _restart_workers(self: Client, workers: list[Any], timeout: float | None,
                           raise_for_error: bool) -> dict[Any, str]:
    out: dict[Any, str] = _unwrap(await self._request("restart_workers", workers=workers,
                                                      timeout=timeout))
    late = [w for w, status in out.items() if status != "OK"]
    if late and raise_for_error:
        raise TimeoutError(f"workers {late} did not come back within {timeout} s")
    return out


def retire_workers(self: Client, workers: list[Any] | None = None, close_workers: bool = True,
                   n: int | None = None, asynchronous: bool | None = None,
                   **kwargs: Any) -> Any:
    """Retire workers gracefully: the results they hold that a client or a task still
    needs are first copied to other workers, then they leave (with ``close_workers``
    their processes end, and their nannies do not restart them). Returns
    ``{address: worker info}`` of the workers retired; one holding needed data that no
    other worker can take is not retired.

    Args:
        workers: addresses or names; None with ``n``: the ``n`` idle workers holding the
            least data.
        names: (dask's scheduler keyword) worker names, instead of ``workers``.
        remove, stimulus_id: dask's scheduler keywords: True (its default) and a label.

    Workers that are not in the cluster are left out, as in dask.

    Raises:
        TypeError: both ``workers`` and ``names``.
    """
    names = kwargs.pop("names", None)
    kwargs.pop("stimulus_id", None)  # dask's scheduler keyword: a label, unused here
    if not kwargs.pop("remove", True):
        raise TypeError("retire_workers(remove=False) is not supported: shoal removes a "
                        "retired worker from the scheduler (dask's default, remove=True)")
    if kwargs:
        raise TypeError(f"retire_workers got unexpected arguments {sorted(kwargs)}; it takes "
                        "workers (or names), close_workers and n")
    if names is not None:
        if workers is not None:
            raise TypeError("retire_workers takes workers or names, not both (they are "
                            "mutually exclusive, as in dask)")
        if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
            raise TypeError(f"names= takes a list of worker names, got {names!r}")
        workers = list(names)
    if workers is not None and (isinstance(workers, (str, bytes)) or not hasattr(workers, "__iter__")):
        raise TypeError(f"retire_workers takes a list of worker addresses or names, got {workers!r}")
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    self._check_open()
    return self.sync(self._retire_workers, None if workers is None else list(workers),
                     close_workers, n, asynchronous=asynchronous)


async def _retire_workers(self: Client, workers: list[Any] | None, close_workers: bool,
                          n: int | None) -> dict[str, Any]:
    timeout = self._timeout or 30.0
    out: dict[str, Any] = _unwrap(await self._request(
        "retire_workers", workers=workers, n=n, close_workers=bool(close_workers),
        timeout=timeout))
    return out
