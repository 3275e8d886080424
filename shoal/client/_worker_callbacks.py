"""``client.register_worker_callbacks(setup)``: dask's older way to run a function on
every worker now and on each worker that joins later; here a worker plugin whose ``setup``
calls it (``dask_worker=`` is the worker when the function takes it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal._plugin import WorkerPlugin

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client


class WorkerSetup(WorkerPlugin):
    """Calls ``setup`` (with ``dask_worker=`` the worker, if it takes it) on each worker."""

    def __init__(self, setup: Callable[..., Any]) -> None:
        self.setup_function = setup

    def setup(self, worker: Any) -> Any:
        from shoal._run import inject

        return inject(self.setup_function, "dask_worker", worker)()


def register_worker_callbacks(self: Client, setup: Callable[..., Any] | None = None) -> Any:
    """Run ``setup`` on every worker now and on every worker that joins or restarts later
    (dask's name, kept for old code: ``register_plugin`` with a ``WorkerPlugin`` is the
    modern way). Returns ``{worker: {"status": "OK", ...}}``.

    Raises:
        TypeError: ``setup`` is not callable.
    """
    if not callable(setup):
        raise TypeError(f"register_worker_callbacks takes a function as setup=, got {setup!r}")
    name = f"{getattr(setup, '__name__', 'setup')}-{uuid.uuid4().hex}"
    return self.register_plugin(WorkerSetup(setup), name=name)  # type: ignore[attr-defined]
