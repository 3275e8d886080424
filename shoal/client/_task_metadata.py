"""``get_task_metadata()``: what happened to the tasks computed inside a ``with`` block
(dask's context manager of that name).

Owns: the scheduler plugin that notes the keys of the graphs submitted while the block
runs and how each ended (``memory`` or ``erred``), and the context manager that adds it on
entry and reads and removes it on exit. Must not know: the scheduler's task states (it sees
the plugin hooks' arguments only).
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from shoal._plugin import SchedulerPlugin


class _CollectTaskMetadata(SchedulerPlugin):
    """Runs in the scheduler: the keys wanted by graphs submitted since it was added, and,
    for each that has finished since, its metadata and final state."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: set[Any] = set()
        self.metadata: dict[Any, Any] = {}
        self.state: dict[Any, str] = {}

    def update_graph(self, scheduler: Any, *, keys: set[Any], **kwargs: Any) -> None:
        self.keys.update(keys)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish in ("memory", "erred") and key in self.keys:
            self.keys.discard(key)
            # shoal's tasks carry no per-task metadata (dask's TaskState.metadata, which
            # only worker-side code fills): None, its default there
            self.metadata[key] = None
            self.state[key] = finish


def _collected(dask_scheduler: Any, name: str) -> dict[str, Any]:
    """Run on the scheduler: what the plugin ``name`` collected."""
    plugin = dask_scheduler.plugins.get(name)
    if not isinstance(plugin, _CollectTaskMetadata):
        raise ValueError(f"get_task_metadata: its scheduler plugin {name!r} is gone (was the "
                         "scheduler restarted, or the plugin unregistered?)")
    return {"metadata": dict(plugin.metadata), "state": dict(plugin.state)}


async def _answer(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class get_task_metadata:  # (dask's name)
    """Collect the metadata and final state of the tasks computed inside the block.

    The tasks are those a client wants (``compute``, ``persist``, ``submit``...) in graphs
    submitted to the scheduler of the current client (``get_client()``) while the block
    runs, that finish (in memory or erred) before it ends.

    Example::

        with get_task_metadata() as tmd:
            x.compute()
        tmd.state     # {key: "memory" or "erred"}
        tmd.metadata  # {key: None}: shoal's tasks carry no per-task metadata

    Attributes:
        name: the name of its scheduler plugin.
        metadata, state: None inside the block; dicts by key after it.
    Raises:
        ValueError: no client to find (as ``get_client()``).
    """

    def __init__(self) -> None:
        self.name = f"task-metadata-{uuid.uuid4().hex}"
        self.keys: set[Any] = set()
        self.metadata: dict[Any, Any] | None = None
        self.state: dict[Any, str] | None = None

    @staticmethod
    def _client() -> Any:
        from shoal.client._worker_client import get_client

        return get_client()

    async def __aenter__(self) -> get_task_metadata:
        client = self._client()
        await _answer(client.register_plugin(_CollectTaskMetadata(self.name), name=self.name))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        client = self._client()
        try:
            got = await _answer(client.run_on_scheduler(_collected, name=self.name))
        finally:
            await _answer(client.unregister_scheduler_plugin(self.name))
        self.metadata, self.state = got["metadata"], got["state"]

    def __enter__(self) -> get_task_metadata:
        client = self._client()
        client.register_plugin(_CollectTaskMetadata(self.name), name=self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        client = self._client()
        try:
            got = client.run_on_scheduler(_collected, name=self.name)
        finally:
            client.unregister_scheduler_plugin(self.name)
        self.metadata, self.state = got["metadata"], got["state"]
