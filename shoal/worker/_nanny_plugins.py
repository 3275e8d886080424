"""A nanny's side of its nanny plugins, which run in its worker process on its behalf
(``_plugins.WorkerPlugins``; dask runs them in the nanny's process).

Owns: the state file where the plugins leave what the nanny keeps across worker processes
(the ``env`` their ``setup`` set, the names of those applied), the variables that tell a
worker process where it is, and the closing mark that has the worker process tear the
plugins down when the nanny closes. Must not know the worker process's lifecycle.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from shoal.worker._plugins import (
    NANNY_PLUGINS_ENV,
    NANNY_STATE_ENV,
    nanny_closing_mark,
    read_nanny_state,
)


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

    def remove(self) -> None:
        for path in (self.path, nanny_closing_mark(self.path)):
            with contextlib.suppress(OSError):
                os.remove(path)
