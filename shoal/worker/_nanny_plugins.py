"""A nanny's side of its nanny plugins, which run in its worker process on its behalf
(``_plugins.WorkerPlugins``; dask runs them in the nanny's process).

Owns: the state file where the plugins leave what the nanny keeps across worker processes
(the ``env`` their ``setup`` set, the names of those applied, each plugin pickled as its
``setup`` left it), the variables that tell a worker process where it is, the closing mark
that has the worker process tear the plugins down when the nanny closes, and the teardown
of those it did not (its process was gone: retired, died for good, killed during it): run
here, in the nanny's process, as dask runs them. Must not know the worker process's
lifecycle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import os
import pickle
import tempfile
from types import SimpleNamespace
from typing import Any

from shoal.worker import _plugins
from shoal.worker._plugins import (
    NANNY_PLUGINS_ENV,
    NANNY_STATE_ENV,
    NannyView,
    nanny_closing_mark,
    read_nanny_state,
    write_nanny_state,
)

logger = logging.getLogger("shoal.nanny")


class NannyPluginState:
    """One nanny's state file (a temporary file, removed by :meth:`remove`)."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="shoal-nanny-", suffix=".json")
        os.close(fd)

    def environ(self) -> dict[str, str]:
        """The variables a new worker process gets: the ``env`` the plugins set, where the
        state file is, and the plugins applied (not to be set up again in it)."""
        kept = read_nanny_state(self.path)
        env = dict(kept["env"])
        env[NANNY_STATE_ENV] = self.path
        env[NANNY_PLUGINS_ENV] = json.dumps(kept["plugins"])  # names may hold any character
        return env

    def mark_closing(self) -> None:
        """The nanny closes: the worker process it stops next tears the plugins down (as
        dask's ``Nanny.close`` does), not one that ends for any other reason."""
        with contextlib.suppress(OSError):
            open(nanny_closing_mark(self.path), "w").close()

    async def teardown_left(self, name: Any, worker_address: str | None,
                            local_directory: str | None) -> None:
        """Tear down, here, each nanny plugin its worker process did not (the process was
        gone as the nanny closed): the plugin as its ``setup`` left it, its ``teardown``
        given a view of this nanny (``name``, the last ``worker_address``,
        ``local_directory``, an ``env``). Failures are logged, an async teardown is waited
        for ``NANNY_TEARDOWN_TIMEOUT`` at most; neither stops the others."""
        state = read_nanny_state(self.path)
        left, state["pickled"] = state["pickled"], {}
        if not left:
            return
        write_nanny_state(self.path, state)  # (torn down at most once)
        view = NannyView(SimpleNamespace(name=name, address=worker_address,
                                         local_directory=local_directory))
        for plugin_name, pickled in left.items():
            try:
                plugin = pickle.loads(base64.b64decode(pickled))
                if not hasattr(plugin, "teardown"):
                    continue
                done = plugin.teardown(nanny=view)
                if inspect.isawaitable(done):
                    # ends: the teardown, or the timeout (which cancels it)
                    await asyncio.wait_for(done, _plugins.NANNY_TEARDOWN_TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError):
                logger.error("nanny %s: teardown of nanny plugin %r did not finish within %g s "
                             "as the nanny closed; cancelled it", name, plugin_name,
                             _plugins.NANNY_TEARDOWN_TIMEOUT)
            except Exception:
                logger.exception("nanny %s: teardown of nanny plugin %r failed as the nanny "
                                 "closed", name, plugin_name)

    def remove(self) -> None:
        for path in (self.path, nanny_closing_mark(self.path)):
            with contextlib.suppress(OSError):
                os.remove(path)
