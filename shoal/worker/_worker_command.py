"""How a nanny starts a worker process: its command line and its environment.

Owns: the arguments of ``python -m shoal.worker`` (dask's settings read here, in the
nanny's process, so that the worker starts without importing dask's config) and the
variables it gets (the user's ``env``, credentials, the hash seed, the inherited dask
config, the nanny's pid). Must not start or watch processes: the nanny does
(``_nanny``), with the pipes it opens.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from shoal.comm._tcp import comm_timeout
from shoal.worker._execute import WARM_CANDIDATES, WARM_IMPORTS_ENV, WARM_IMPORTS_MIN_MEMORY
from shoal.worker._inherited_config import INHERIT_CONFIG_ENV, inherited_config
from shoal.worker._resources import format_resources
from shoal.worker._spawn_environ import configured_spawn_environ

if TYPE_CHECKING:
    from shoal.worker._nanny import Nanny

# The hash seed every nanny gives its worker unless one is configured: dask's, so that a
# value a program saw under dask.distributed stays the same.
_HASH_SEED = "6640"


def connect_timeout() -> float:
    """dask's ``distributed.comm.timeouts.connect``: the bound of one connection attempt."""
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.connect", "30s")
    return float(parse_timedelta(value, default="seconds") or 30.0)


def worker_command(nanny: Nanny, *, standby: bool, memory_args: list[str],
                   lifetime: float | None) -> list[str]:
    """The command line of a worker process of ``nanny`` (without the pipes' arguments);
    ``memory_args``: ``_memory_settings.memory_settings(...).args`` when it has a limit;
    ``lifetime``: this process's (staggered) lifetime in seconds, or None."""
    args = [
        sys.executable, "-m", "shoal.worker", nanny.scheduler_address,
        "--nthreads", str(nanny.nthreads), "--memory-limit", str(nanny.memory_limit),
        "--host", nanny.host,
    ]
    if nanny.name is not None:
        if type(nanny.name) is str:
            args += ["--name", nanny.name]
        else:  # LocalCluster's 0, 1, ..., a float, a tuple: the same type there too
            args += ["--name", repr(nanny.name), "--name-is-literal"]
    if nanny.death_timeout is not None:
        args += ["--death-timeout", str(nanny.death_timeout)]
    if nanny.port:
        args += ["--port", str(nanny.port)]
    if nanny.contact_address is not None:
        args += ["--contact-address", nanny.contact_address]
    if nanny.scheduler_sni is not None:
        args += ["--scheduler-sni", nanny.scheduler_sni]
    args += ["--resources", format_resources(nanny.resources)]
    args += ["--connect-timeout", str(connect_timeout())]
    args += memory_args
    if lifetime is not None:
        args += ["--lifetime", str(lifetime)]
    for name in nanny.preload:
        args += ["--preload", name]
    if any(nanny.preload_argv):
        args += ["--preload-argv", json.dumps(nanny.preload_argv)]
    args += ["--comm-timeout", str(comm_timeout())]
    if standby:
        args.append("--standby")
    return args


def worker_environ(nanny: Nanny, *, standby: bool, plugin_env: dict[str, str]) -> dict[str, str]:
    """The environment of a worker process of ``nanny``: this process's, with what the
    nanny plugins left (``plugin_env``), then the nanny's own variables on top. Sets
    ``nanny.security`` (an empty ``Security``) when it had none."""
    env = dict(os.environ)
    # Like multiprocessing's spawn: the worker imports what its parent can import, so
    # functions from the user's modules (and test files) unpickle by reference.
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # shoal's defaults, dask's nanny config, the shell's exports, nanny.env: in that
    # order of precedence (shoal.worker._spawn_environ).
    configured = configured_spawn_environ(os.environ, nanny.env, nanny.memory_limit)
    env.update(configured)
    env.update(plugin_env)
    # Credentials never go on the command line: ``ps`` shows that to every user.
    if nanny.security is None:
        from shoal.comm._security import Security

        nanny.security = Security()
    env.update(nanny.security.to_env())
    # As dask's nanny: one hash seed for every worker (unless configured), so tasks that
    # partition by ``hash()`` agree whichever worker runs them.
    env["PYTHONHASHSEED"] = configured.get("PYTHONHASHSEED", _HASH_SEED)
    # The worker dies with this process (shoal.worker.__main__.PARENT_PID_ENV).
    env["SHOAL_NANNY_PID"] = str(os.getpid())
    if not nanny.memory_limit or nanny.memory_limit >= WARM_IMPORTS_MIN_MEMORY:
        env[WARM_IMPORTS_ENV] = ",".join(m for m in WARM_CANDIDATES if m in sys.modules)
    if not standby:  # a standby gets the config when it is activated, not stale
        env[INHERIT_CONFIG_ENV] = inherited_config()
    return env
