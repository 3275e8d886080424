"""Preload modules (dask's "Customizing initialization"): ``--preload`` of ``shoal
scheduler`` and ``shoal worker``, ``--preload-nanny``, and the config keys
``distributed.{scheduler,worker,nanny}.preload`` / ``preload-argv``.

A preload is a module name (``foo.bar``) or a path to a ``.py`` file. Its
``dask_setup(server)`` runs once the server listens (the scheduler, before it is announced;
a worker, before it registers; a nanny, before it starts its worker process), and its
``dask_teardown(server)`` when the server closes; either may be a coroutine function. A
``dask_setup`` that is a ``click.Command`` gets the command line's extra arguments
(``preload-argv``), as in dask. ``server`` is the object plugins see: the
``shoal.scheduler._server.Scheduler`` (a ``SchedulerPlugin.start`` argument), the worker
process's ``Worker`` (``get_worker()``, a ``WorkerPlugin.setup`` argument), or the
``shoal worker`` command's ``Nanny`` (``env`` is what its worker processes start with).

Unlike dask, which logs a failing ``dask_setup`` and starts anyway, a preload that cannot be
imported or whose setup raises fails the start with :class:`PreloadError`: a server missing
its setup (credentials, a plugin, an environment) is worse than no server. A failing
teardown is logged. Web addresses (dask downloads and runs them) are refused.

Owns loading and running those modules; knows nothing of what a server is.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

logger = logging.getLogger("shoal.preload")


class PreloadError(RuntimeError):
    """A preload module could not be imported, or its ``dask_setup`` raised."""


def _import(name: str) -> ModuleType:
    """The module ``name`` names: a ``.py`` file's path, else an importable module name.

    Raises:
        PreloadError: not found, not importable, or a web address.
    """
    if name.startswith(("http://", "https://")):
        raise PreloadError(f"preload {name!r}: shoal does not download preloads; save the "
                           "file and give its path")
    try:
        if name.endswith(".py"):
            path = os.path.abspath(name)
            if not os.path.isfile(path):
                raise PreloadError(f"preload {name!r}: no such file")
            modname = os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:
                raise PreloadError(f"preload {name!r}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module  # as dask's import_file: importable by name after
            # Its directory on the path too, so that it imports its neighbours.
            folder = os.path.dirname(path)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except PreloadError:
        raise
    except Exception as exc:  # not swallowed: re-raised as PreloadError, naming the module
        raise PreloadError(f"preload {name!r} could not be imported: "
                           f"{type(exc).__name__}: {exc}") from exc


def _is_click_command(obj: Any) -> bool:
    click = sys.modules.get("click")
    return click is not None and isinstance(obj, click.Command)


class Preload:
    """One preload module, imported at construction."""

    def __init__(self, name: str, argv: Sequence[str] = ()) -> None:
        self.name = name
        self.argv = list(argv)
        self.module = _import(name)
        # Arguments reach only a dask_setup that is a click command (dask ignores them
        # otherwise; load_preloads refuses arguments that no module takes).
        self.takes_argv = _is_click_command(getattr(self.module, "dask_setup", None))

    async def setup(self, server: Any) -> None:
        """Run ``dask_setup(server)`` if the module has one.

        Raises:
            PreloadError: it raised (the original exception is its cause).
        """
        setup = getattr(self.module, "dask_setup", None)
        if setup is None:
            return
        logger.info("preload %s: running dask_setup", self.name)
        try:
            if self.takes_argv:
                context = setup.make_context("dask_setup", list(self.argv),
                                             allow_extra_args=False)
                result = setup.callback(server, *context.args, **context.params)
            else:
                result = setup(server)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # not swallowed: re-raised as PreloadError, naming the module
            raise PreloadError(f"preload {self.name!r}: dask_setup raised "
                               f"{type(exc).__name__}: {exc}") from exc

    async def teardown(self, server: Any) -> None:
        """Run ``dask_teardown(server)`` if the module has one; log what it raises."""
        teardown = getattr(self.module, "dask_teardown", None)
        if teardown is None:
            return
        try:
            result = teardown(server)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("preload %s: dask_teardown failed", self.name)


class Preloads:
    """The preloads of one server, set up in order and torn down in reverse."""

    def __init__(self, preloads: list[Preload]) -> None:
        self.preloads = preloads
        self._server: Any = None
        self._started: list[Preload] = []

    def __len__(self) -> int:
        return len(self.preloads)

    async def setup(self, server: Any) -> None:
        """Run each ``dask_setup``; the first that raises stops the others (those set up
        already are torn down) and its :class:`PreloadError` propagates."""
        self._server = server
        for preload in self.preloads:
            try:
                await preload.setup(server)
            except PreloadError:
                await self.teardown()
                raise
            self._started.append(preload)

    async def teardown(self) -> None:
        """Run the ``dask_teardown`` of each preload set up, last first (once)."""
        started, self._started = self._started, []
        for preload in reversed(started):
            await preload.teardown(self._server)


def normalize(names: str | Sequence[str] | None,
              argv: Sequence[str] | Sequence[Sequence[str]] | None = None,
              ) -> list[tuple[str, list[str]]]:
    """``(name, arguments)`` per module, without importing anything: ``names`` is one
    string or several; ``argv`` one list of arguments for every module, or one list per
    module (dask's ``preload-argv``).

    Raises:
        ValueError: neither one list nor one per module.
    """
    if names is None:
        names = []
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    argv = list(argv or [])
    if argv and all(isinstance(a, str) for a in argv):
        per_module: list[list[str]] = [list(argv)] * len(names)  # type: ignore[arg-type]
    elif not argv:
        per_module = [[] for _ in names]
    else:
        per_module = [list(a) for a in argv]  # type: ignore[arg-type]
        if len(per_module) != len(names):
            raise ValueError(f"preload-argv holds {len(per_module)} argument lists for "
                             f"{len(names)} preload modules: give one list per module, or "
                             "one list for all")
    return list(zip(names, per_module, strict=True))


def load_preloads(names: str | Sequence[str] | None,
                  argv: Sequence[str] | Sequence[Sequence[str]] | None = None) -> Preloads:
    """Import the modules :func:`normalize` lists.

    Raises:
        PreloadError: a module could not be imported, or arguments were given that no
            module's ``dask_setup`` takes.
        ValueError: as many argument lists as modules were not given.
    """
    preloads = [Preload(n, a) for n, a in normalize(names, argv)]
    given = [p for p in preloads if p.argv]
    if given and not any(p.takes_argv for p in given):
        raise PreloadError(
            f"arguments {given[0].argv} were given for preload {given[0].name!r}, whose "
            "dask_setup takes none (only a click command does): remove them or check "
            "their spelling")
    return Preloads(preloads)


def configured(role: str, names: str | Sequence[str] | None = None,
               argv: Sequence[Any] | None = None) -> tuple[Any, Any]:
    """``(names, argv)`` as given, else dask's ``distributed.<role>.preload`` /
    ``preload-argv`` (role: scheduler, worker or nanny)."""
    import dask.config

    if not names:
        names = dask.config.get(f"distributed.{role}.preload", None) or []
        argv = argv or dask.config.get(f"distributed.{role}.preload-argv", None) or []
    return names, argv


def configured_preloads(role: str, names: str | Sequence[str] | None = None,
                        argv: Sequence[Any] | None = None) -> Preloads:
    """:func:`load_preloads` of :func:`configured` ``(role, names, argv)``."""
    return load_preloads(*configured(role, names, argv))
