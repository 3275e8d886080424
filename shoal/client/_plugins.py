"""What the Client can add to a running cluster: plugins (worker, scheduler, nanny) and
uploaded files. Methods attached to Client; each written once as a coroutine.

The scheduler keeps worker and nanny plugins (an upload is an ``UploadFile`` plugin) and
sets them up on every worker that joins or restarts later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal._plugin import UploadFile, plugin_kind, plugin_name
from shoal._run import pickle_code
from shoal.protocol._errors import error_to_exception

if TYPE_CHECKING:
    from shoal.client._client import Client

RESTART_TIMEOUT = 60.0  # seconds for workers restarted by a nanny plugin to be back


def _raise_first(answers: dict[str, Any], what: str) -> dict[str, Any]:
    """The workers' answers, or the first worker's exception (its traceback included)."""
    out = {}
    for addr, (ok, value) in sorted(answers.items()):
        if not ok:
            exc = error_to_exception(value)
            if hasattr(exc, "add_note"):
                exc.add_note(f"(raised by {what} on worker {addr})")
            raise exc
        out[addr] = value
    return out


async def _register_plugin(self: Client, plugin: Any, name: str | None = None,
                           idempotent: bool | None = None) -> Any:
    kind = plugin_kind(plugin)
    name = plugin_name(plugin, name)
    if idempotent is None:
        idempotent = bool(getattr(plugin, "idempotent", False))
    blob = pickle_code(plugin)
    if kind == "scheduler":
        ok, value = await self._request("register_scheduler_plugin", name=name, plugin=blob,
                                        idempotent=idempotent)
        if not ok:
            raise error_to_exception(value)
        return value
    answers = await self._request("register_worker_plugin", name=name, plugin=blob, kind=kind,
                                  idempotent=idempotent)
    out = _raise_first(answers, f"the setup of plugin {name!r}")
    restarting = [a for a, v in out.items() if isinstance(v, dict) and v.get("restarting")]
    if restarting:
        back = await self._request("workers_replaced", gone=restarting, n=len(answers),
                                   timeout=RESTART_TIMEOUT)
        if not back:
            raise TimeoutError(f"workers restarted by plugin {name!r} were not back within "
                               f"{RESTART_TIMEOUT} s")
    return out


def register_plugin(self: Client, plugin: Any, name: str | None = None,
                    idempotent: bool | None = None) -> Any:
    """Register a ``WorkerPlugin``, ``SchedulerPlugin`` or ``NannyPlugin`` (dask's classes
    of those names work too). Worker and nanny plugins are set up on every worker now and
    on every worker that joins or restarts later; a plugin registered again under the same
    name replaces the old one (whose ``teardown`` runs), unless it is ``idempotent``.

    Args:
        name: defaults to the plugin's ``name`` attribute, else a unique name.
        idempotent: defaults to the plugin's ``idempotent`` attribute.

    Returns:
        For worker and nanny plugins ``{worker address: {"status": "OK", ...}}``.

    Raises:
        TypeError: not a plugin instance.
        Exception: the first exception a ``setup`` (or a scheduler plugin's ``start``)
            raised, with the remote traceback and a note naming the worker.
    """
    self._check_open()
    return self.sync(_register_plugin, self, plugin, name, idempotent)


async def _unregister_worker_plugin(self: Client, name: str, nanny: bool | None = None) -> Any:
    ok, value = await self._request("unregister_worker_plugin", name=name)
    if not ok:
        raise error_to_exception(value)
    return _raise_first(value, f"the teardown of plugin {name!r}")


def unregister_worker_plugin(self: Client, name: str, nanny: bool | None = None) -> Any:
    """Remove a worker (or nanny) plugin: its ``teardown`` runs on every worker, and
    workers joining later no longer get it.

    Raises:
        ValueError: no plugin of that name is registered.
    """
    self._check_open()
    return self.sync(_unregister_worker_plugin, self, name)


async def _unregister_scheduler_plugin(self: Client, name: str) -> None:
    ok, value = await self._request("unregister_scheduler_plugin", name=name)
    if not ok:
        raise error_to_exception(value)


def unregister_scheduler_plugin(self: Client, name: str) -> Any:
    """Remove a scheduler plugin (its ``close`` runs).

    Raises:
        ValueError: no scheduler plugin of that name is registered.
    """
    self._check_open()
    return self.sync(_unregister_scheduler_plugin, self, name)


async def _upload_file(self: Client, filename: str, load: bool = True) -> Any:
    plugin = UploadFile(filename, load=load)  # checked here: no worker gets a bad file
    return await _register_plugin(self, plugin, name=f"upload_file-{plugin.filename}")


def upload_file(self: Client, filename: str, load: bool = True) -> Any:
    """Send a ``.py``, ``.zip`` or ``.egg`` file to every worker, now and to workers that
    join or restart later. It lands in each worker's ``local_directory`` (on
    ``sys.path``) and, with ``load``, is imported; uploading a changed file again reloads
    the module.

    Returns:
        ``{worker address: {"status": "OK"}}``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a .py/.zip/.egg/.pyz file.
        SyntaxError: a .py file that does not compile (nothing is sent then).
        Exception: what importing it raised on a worker, with that worker's traceback.
    """
    self._check_open()
    return self.sync(_upload_file, self, filename, load)
