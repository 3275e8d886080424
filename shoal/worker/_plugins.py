"""The plugins and uploaded files of one worker process.

Owns: setting plugins up and tearing them down on the scheduler's ``PluginSetup`` /
``PluginTeardown`` (answering each with the outcome, or the traceback of a ``setup`` that
raised), the worker's local directory (on ``sys.path``; uploads land there), loading
uploaded files (a changed module is reloaded), calling plugins' ``transition`` hooks, and
running nanny plugins on the nanny's behalf (see ``shoal._plugin``). Plugins
outlive scheduler sessions of the process; the scheduler re-sends them on registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import pkgutil
import shutil
import sys
import tempfile
import time
from typing import Any

from shoal.comm import Connection
from shoal.protocol._errors import exception_to_error
from shoal.protocol._messages import PluginSetup, PluginTeardown, Response
from shoal.worker._execute import unpickle
from shoal.worker._task_view import Moving

logger = logging.getLogger("shoal.worker")

# Set by the nanny for the worker process: a JSON file where nanny plugins run in the
# worker leave what the nanny must keep (``env``, applied plugin names), and the names of
# the nanny plugins already applied to this process (not to be applied again).
NANNY_STATE_ENV = "SHOAL_NANNY_STATE"
NANNY_PLUGINS_ENV = "SHOAL_NANNY_PLUGINS"
# The longest the worker process waits for one nanny plugin's async ``teardown`` when its
# nanny closes (the nanny kills the process 5 s after its SIGTERM anyway).
NANNY_TEARDOWN_TIMEOUT = 2.0
# The longest a closing worker waits for one worker plugin's async ``teardown``: one that
# never returns must not keep the worker (an in-process one: the user's close) open.
TEARDOWN_TIMEOUT = 2.0
# The longest an async ``setup`` (of a worker or nanny plugin) or an unregistered plugin's
# async ``teardown`` may take before it is cancelled and the caller gets a TimeoutError
# naming it. dask awaits these without a bound: its register_plugin then never returns.
# Generous: a setup may download or wait for a service; one that never returns must still
# give the user an end (and not leave a task running in every worker for ever).
SETUP_TIMEOUT = 300.0


def nanny_closing_mark(state_file: str) -> str:
    """The file a closing nanny makes next to its state file before it stops its worker
    process: the process then tears the nanny plugins down (dask's ``Nanny.close`` does)."""
    return state_file + ".closing"


def nanny_closing() -> bool:
    """This worker process's nanny is closing (it left its mark), not restarting it."""
    state_file = os.environ.get(NANNY_STATE_ENV)
    return state_file is not None and os.path.exists(nanny_closing_mark(state_file))


class NannyView:
    """What a nanny plugin's ``setup(nanny)`` sees of the nanny: its ``env`` for worker
    processes (changes are kept by the nanny), and the worker's name and addresses."""

    def __init__(self, worker: Any) -> None:
        self.env: dict[str, str] = {}
        self.name = worker.name
        self.worker_address = worker.address
        self.local_directory = worker.local_directory


def _watches_transitions(plugin: Any) -> bool:
    for cls in type(plugin).__mro__:
        if "transition" in vars(cls):
            return cls.__name__ != "WorkerPlugin"
    return False


class WorkerPlugins:
    """The plugins set up in one worker process, by name."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.plugins: dict[str, Any] = {}
        # Nanny plugins run here (or before this process started) on the nanny's behalf:
        # kept for their ``teardown`` when unregistered or when the nanny closes. A worker
        # process closing otherwise is not its nanny closing: they are not torn down then.
        self.nanny_plugins: dict[str, Any] = {}
        self.watchers: list[Any] = []  # plugins with a ``transition`` hook of their own
        self.moving: Moving | None = None  # the move ``transition`` is telling them about
        self._directory: str | None = None

    # --- the local directory and uploads -----------------------------------------------------

    @property
    def local_directory(self) -> str:
        """A directory of this worker's own, on ``sys.path``; made on first use, as in dask
        under the worker's ``local_directory`` argument, else the ``temporary-directory``
        config, else the system's temporary directory. Spill files go in it too."""
        if self._directory is None:
            import dask.config

            parent = (getattr(self.worker, "_spill_parent", None)
                      or dask.config.get("temporary-directory", None) or None)
            if parent:
                os.makedirs(parent, exist_ok=True)
            # The pid in the name lets a nanny remove the directory of a worker process
            # that was killed (past its terminate threshold) and so could not remove it.
            self._directory = tempfile.mkdtemp(prefix=f"shoal-worker-space-{os.getpid()}-",
                                               dir=parent)
            sys.path.insert(0, self._directory)
        return self._directory

    def upload_file(self, filename: str, data: bytes, load: bool = True) -> dict[str, Any]:
        """Write ``data`` as ``filename`` into the local directory (atomically: a task never
        sees half a file); with ``load``, import it, reloading a module imported before.

        Raises:
            Whatever importing the file raises.
        """
        path = os.path.join(self.local_directory, os.path.basename(filename))
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        if load:
            load_file(path)
        return {"status": "OK", "nbytes": len(data)}

    # --- set up and tear down ----------------------------------------------------------------

    def on_message(self, conn: Connection, msg: PluginSetup | PluginTeardown) -> None:
        """Carry out a plugin message now: a synchronous ``setup`` is done before any task
        that arrived after it starts. An asynchronous one finishes in a task of the worker."""
        try:
            if isinstance(msg, PluginSetup):
                plugin = unpickle(msg.plugin)
                if msg.kind == "nanny":
                    # (request 0: the re-send to a joining worker; else a registration)
                    pending: Any = self._nanny_setup(msg.name, plugin, msg.request_id != 0)
                else:
                    pending = self._setup(msg.name, plugin)
            else:
                pending = self._teardown(msg.name)
        except BaseException as exc:  # reported to the caller, whatever it is
            self._answer(conn, msg, False, exc)
            return
        if inspect.isawaitable(pending):
            self.worker._spawn(self._finish(conn, msg, pending))
        else:
            self._answer(conn, msg, True, {"status": "OK"})

    async def _finish(self, conn: Connection, msg: Any, pending: Any) -> None:
        task = asyncio.ensure_future(pending)
        await asyncio.wait([task], timeout=SETUP_TIMEOUT)  # ends: the hook, or the bound
        if not task.done():
            task.cancel()
            # ends: its cancellation, or the bound (a hook ignoring it is left behind)
            await asyncio.wait([task], timeout=TEARDOWN_TIMEOUT)
            hook = "setup" if isinstance(msg, PluginSetup) else "teardown"
            self._answer(conn, msg, False, TimeoutError(
                f"the async {hook} of plugin {msg.name!r} did not finish within "
                f"{SETUP_TIMEOUT:g} s on worker {self.worker.address}; it was cancelled. A "
                f"{hook} must return: run longer work in a task it starts instead"))
            return
        try:
            value = task.result()  # ends at once: done (the bound above returned otherwise)
        except Exception as exc:
            self._answer(conn, msg, False, exc)
            return
        self._answer(conn, msg, True, value if isinstance(value, dict) else {"status": "OK"})

    def _answer(self, conn: Connection, msg: Any, ok: bool, value: Any) -> None:
        if not ok:
            logger.error("worker %s: plugin %r failed: %r", self.worker.address, msg.name, value)
            value = exception_to_error(value, value.__traceback__, f"plugin {msg.name}",
                                       self.worker.address, time.time())
        if msg.request_id and not conn.closed:
            conn.send(Response(msg.request_id, ok, value))

    def _setup(self, name: str, plugin: Any) -> Any:
        """Set ``plugin`` up under ``name``; one of that name is torn down first (and an
        async teardown finishes before the new ``setup`` starts), as in dask. Hooks get the
        worker by name (``setup(worker=...)``), as dask passes it."""
        old = self.plugins.pop(name, None)
        if old is not None:
            self._forget(old)
            try:  # (dask logs a failed teardown and sets the new plugin up anyway)
                done = old.teardown(worker=self.worker) if hasattr(old, "teardown") else None
            except Exception:
                logger.exception("worker %s: teardown of plugin %r failed",
                                 self.worker.address, name)
                done = None
            if inspect.isawaitable(done):
                return self._setup_after(done, name, plugin)
        return self._install(name, plugin)

    async def _setup_after(self, teardown: Any, name: str, plugin: Any) -> None:
        try:
            await teardown
        except Exception:
            logger.exception("worker %s: teardown of plugin %r failed", self.worker.address,
                             name)
        done = self._install(name, plugin)
        if inspect.isawaitable(done):
            await done

    def _install(self, name: str, plugin: Any) -> Any:
        self.plugins[name] = plugin
        if _watches_transitions(plugin):
            self.watchers.append(plugin)
        return plugin.setup(worker=self.worker) if hasattr(plugin, "setup") else None

    def _teardown(self, name: str) -> Any:
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            nanny = self.nanny_plugins.pop(name, None)
            if nanny is not None:
                _forget_torn_down(name)
            if nanny is not None and hasattr(nanny, "teardown"):  # unregistered: dask's too
                return nanny.teardown(nanny=NannyView(self.worker))
            return None
        self._forget(plugin)
        return plugin.teardown(worker=self.worker) if hasattr(plugin, "teardown") else None

    def _forget(self, plugin: Any) -> None:
        self.watchers = [p for p in self.watchers if p is not plugin]

    async def close(self) -> None:
        """The worker closes: tear every plugin down, remove the local directory."""
        for name in list(self.plugins):
            try:
                done = self._teardown(name)
                if inspect.isawaitable(done):
                    # ends: the teardown, or the timeout (which cancels it)
                    await asyncio.wait_for(done, TEARDOWN_TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError):
                logger.error("worker %s: teardown of plugin %r did not finish within %g s "
                             "as the worker closed; cancelled it", self.worker.address, name,
                             TEARDOWN_TIMEOUT)
            except Exception:
                logger.exception("worker %s: teardown of plugin %r failed",
                                 self.worker.address, name)
        if self.nanny_plugins and nanny_closing():
            await self._nanny_closes()
        if self._directory is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(self._directory)
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    async def _nanny_closes(self) -> None:
        """The nanny closes: every nanny plugin's ``teardown(nanny)``, as dask's
        ``Nanny.close`` runs them; a failure is logged, an async one is waited for
        ``NANNY_TEARDOWN_TIMEOUT`` at most, and neither stops the others."""
        view = NannyView(self.worker)
        plugins, self.nanny_plugins = self.nanny_plugins, {}
        for name, plugin in plugins.items():
            _forget_torn_down(name)  # (if this process dies during it, it is not run twice)
            if not hasattr(plugin, "teardown"):
                continue
            try:
                done = plugin.teardown(nanny=view)
                if inspect.isawaitable(done):
                    # ends: the teardown, or the timeout (which cancels it)
                    await asyncio.wait_for(done, NANNY_TEARDOWN_TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError):
                logger.error("worker %s: teardown of nanny plugin %r did not finish within "
                             "%g s as the nanny closed; cancelled it", self.worker.address,
                             name, NANNY_TEARDOWN_TIMEOUT)
            except Exception:
                logger.exception("worker %s: teardown of nanny plugin %r failed as the nanny "
                                 "closed", self.worker.address, name)

    def transition(self, key: Any, start: str, finish: str,
                   error: dict[str, Any] | None = None) -> None:
        """Tell the watchers; meanwhile ``worker.tasks[key]`` reads as in ``finish``, with
        ``error`` (the task's, when it failed), as dask's record does (``_task_view``)."""
        self.moving = Moving(key, finish, error)
        try:
            for plugin in self.watchers:
                try:
                    plugin.transition(key, start, finish)
                except Exception:
                    logger.exception("worker %s: transition hook of %r failed",
                                     self.worker.address, plugin)
        finally:
            self.moving = None

    # --- nanny plugins, run here on the nanny's behalf ----------------------------------------

    def _nanny_setup(self, name: str, plugin: Any, registered: bool) -> Any:
        """Keep the nanny plugin at once (a close that comes before its ``setup`` ran still
        tears it down, as the nanny would), and return the coroutine that sets it up."""
        self.nanny_plugins[name] = plugin
        return self._nanny_apply(name, plugin, registered)

    async def _nanny_apply(self, name: str, plugin: Any, registered: bool) -> dict[str, Any]:
        """Run a nanny plugin's ``setup`` here, unless it is re-sent to this process (not
        ``registered`` now) and was applied before the nanny started it. A registration
        runs it even if one of that name was applied: it replaces that one, as in dask."""
        applied = applied_nanny_plugins()
        if name in applied and not registered:  # applied before this process started
            kept = _as_set_up(name)
            if kept is not None:  # its teardown gets what its setup left, as in dask
                self.nanny_plugins[name] = kept
            return {"status": "OK"}
        view = NannyView(self.worker)
        before = dict(os.environ)
        done = plugin.setup(nanny=view)
        if inspect.isawaitable(done):
            await done
        # dask's setup runs in the nanny process, whose os.environ the worker processes it
        # starts later inherit: what setup put there is kept as if set in nanny.env.
        view.env = {**{k: v for k, v in os.environ.items() if before.get(k) != v}, **view.env}
        state_file = os.environ.get(NANNY_STATE_ENV)
        restart = bool(getattr(plugin, "restart", False))
        if state_file is None:  # no nanny: this process is all there is
            os.environ.update(view.env)
            return {"status": "OK"}
        state = read_nanny_state(state_file)
        state["env"].update(view.env)
        state["plugins"] = [*(n for n in state["plugins"] if n != name), name]
        pickled = _pickled(name, plugin)
        if pickled is not None:
            state["pickled"][name] = pickled
        else:
            state["pickled"].pop(name, None)
        write_nanny_state(state_file, state)
        os.environ[NANNY_PLUGINS_ENV] = json.dumps([*(n for n in applied if n != name), name])
        if restart:
            self.worker.restart_requested = True
            loop = asyncio.get_running_loop()
            # After the answer is on its way; the nanny starts the process again.
            loop.call_soon(lambda: loop.create_task(self.worker.close()))
        return {"status": "OK", "restarting": restart}


def applied_nanny_plugins() -> list[str]:
    """The nanny plugins already applied to this process (a JSON list from the nanny)."""
    try:
        names = json.loads(os.environ.get(NANNY_PLUGINS_ENV) or "[]")
    except ValueError:
        logger.warning("ignoring a malformed %s", NANNY_PLUGINS_ENV)
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def read_nanny_state(path: str) -> dict[str, Any]:
    """What nanny plugins left for the nanny: ``{"env": {...}, "plugins": [names],
    "pickled": {name: base64 pickle}}``; ``pickled`` holds each plugin applied and not yet
    torn down, as its ``setup`` left it, for the nanny to tear down itself if its worker
    process is gone as it closes (``_nanny_plugins.NannyPluginState.teardown_left``)."""
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    return {"env": dict(state.get("env", {})), "plugins": list(state.get("plugins", [])),
            "pickled": dict(state.get("pickled", {}))}


def write_nanny_state(path: str, state: dict[str, Any]) -> None:
    """Replace the state file at ``path`` atomically (a reader never sees half of it)."""
    with open(path + ".part", "w") as f:
        json.dump(state, f)
    os.replace(path + ".part", path)


def _pickled(name: str, plugin: Any) -> str | None:
    """``plugin`` pickled for its nanny's process (base64), or None (logged) if it cannot
    be: its teardown then cannot run once this process is gone."""
    import base64

    from shoal._run import pickle_code

    try:
        return base64.b64encode(bytes(pickle_code(plugin).frames[0])).decode("ascii")
    except TypeError as exc:
        logger.warning("nanny plugin %r cannot be pickled after its setup (%s): its teardown "
                       "will not run if its worker process is gone when the nanny closes",
                       name, exc)
        return None


def _as_set_up(name: str) -> Any:
    """Nanny plugin ``name`` as its ``setup`` left it (in an earlier process of this
    nanny), or None if not kept or not loadable here."""
    import base64

    from shoal.protocol._serialize import Serialized

    state_file = os.environ.get(NANNY_STATE_ENV)
    pickled = None if state_file is None else read_nanny_state(state_file)["pickled"].get(name)
    if pickled is None:
        return None
    try:
        return unpickle(Serialized([base64.b64decode(pickled)]))
    except Exception as exc:  # the re-sent copy stands in for it
        logger.warning("nanny plugin %r as set up could not be loaded (%r); its teardown "
                       "gets the plugin as registered", name, exc)
        return None


def _forget_torn_down(name: str) -> None:
    """Nanny plugin ``name`` was torn down here: its nanny must not tear it down again."""
    state_file = os.environ.get(NANNY_STATE_ENV)
    if state_file is None:
        return
    state = read_nanny_state(state_file)
    if state["pickled"].pop(name, None) is not None:
        write_nanny_state(state_file, state)


def load_file(path: str) -> list[Any]:
    """Import what ``path`` (.py, or a .zip/.egg/.pyz of modules) provides, reloading
    modules imported before so that a changed upload takes effect."""
    directory, filename = os.path.split(path)
    stem, ext = os.path.splitext(filename)
    if ext == ".py":
        names = [stem]
        with contextlib.suppress(OSError):  # never reuse bytecode of an older upload
            os.remove(importlib.util.cache_from_source(path))
        if directory not in sys.path:
            sys.path.insert(0, directory)
    else:
        # zipimport caches an archive's listing: a re-upload must be read afresh.
        import zipimport

        sys.path_importer_cache.pop(path, None)
        zipimport._zip_directory_cache.pop(path, None)  # type: ignore[attr-defined]
        if path not in sys.path:
            sys.path.insert(0, path)
        names = [m.name for m in pkgutil.iter_modules([path])]
    importlib.invalidate_caches()
    loaded = []
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            loaded.append(importlib.reload(module))
        else:
            loaded.append(importlib.import_module(name))
    return loaded
