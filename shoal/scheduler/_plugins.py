"""The scheduler's plugins and the worker plugins it keeps for workers to come.

Owns: the registry of worker and nanny plugins (pickled, by name, in registration order)
that every worker gets on registration, so that restarted and new workers are set up like
the others; the scheduler plugins themselves and calling their hooks. The scheduler shell
tells it what happened (a worker joined, a graph arrived, transitions); it never reads or
changes the task state. A hook that raises is logged and does not stop the scheduler.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from shoal.protocol._serialize import Serialized, loads

logger = logging.getLogger("shoal.scheduler")


def _overrides(plugin: Any, hook: str) -> bool:
    for cls in type(plugin).__mro__:
        if hook in vars(cls):
            return cls.__name__ != "SchedulerPlugin"
    return False


class SchedulerPlugins:
    def __init__(self) -> None:
        self.for_workers: dict[str, tuple[Serialized, str]] = {}  # name -> (plugin, kind)
        self.plugins: dict[str, Any] = {}  # scheduler plugins, by name
        self.watching = False  # some scheduler plugin has a transition hook

    # --- worker and nanny plugins -------------------------------------------------------------

    def keep(self, name: str, plugin: Serialized, kind: str) -> None:
        self.for_workers.pop(name, None)  # re-registered: goes last, like a new one
        self.for_workers[name] = (plugin, kind)

    def forget(self, name: str) -> None:
        """Raises: ValueError naming the plugin when none has that name."""
        if self.for_workers.pop(name, None) is None:
            raise ValueError(f"no worker plugin named {name!r} is registered")

    # --- scheduler plugins ----------------------------------------------------------------------

    async def add(self, scheduler: Any, name: str, blob: Serialized) -> None:
        """Unpickle a scheduler plugin and start it (replacing one of the same name).

        Raises: whatever unpickling or the plugin's ``start`` raises (it is not kept then).
        """
        plugin = loads(blob)
        if name in self.plugins:
            await self.remove(name)
        if hasattr(plugin, "start"):
            done = plugin.start(scheduler)
            if inspect.isawaitable(done):
                await done
        self.plugins[name] = plugin
        self.watching = any(_overrides(p, "transition") for p in self.plugins.values())

    async def remove(self, name: str) -> None:
        """Raises: ValueError naming the plugin when none has that name."""
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"no scheduler plugin named {name!r} is registered")
        self.watching = any(_overrides(p, "transition") for p in self.plugins.values())
        await self._close_one(name, plugin)

    async def close(self) -> None:
        self.call("before_close")
        for name, plugin in list(self.plugins.items()):
            await self._close_one(name, plugin)
        self.plugins.clear()

    async def _close_one(self, name: str, plugin: Any) -> None:
        try:
            done = plugin.close() if hasattr(plugin, "close") else None
            if inspect.isawaitable(done):
                await done
        except Exception:
            logger.exception("scheduler plugin %r failed to close", name)

    def call(self, hook: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call ``hook`` on every scheduler plugin that has it; returns the awaitables
        some hooks gave back (the shell runs them)."""
        pending = []
        for name, plugin in list(self.plugins.items()):
            method: Callable[..., Any] | None = getattr(plugin, hook, None)
            if method is None:
                continue
            try:
                done = method(*args, **kwargs)
            except Exception:
                logger.exception("the %s hook of scheduler plugin %r failed", hook, name)
                continue
            if inspect.isawaitable(done):
                pending.append(done)
        return pending
