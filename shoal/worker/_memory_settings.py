"""dask's ``distributed.worker.memory.*`` settings, as a nanny reads them for its worker
process and as a worker without a nanny reads them itself.

Owns: the default fractions, the monitor interval (the worker's pace and the nanny's), and
the memory arguments of a worker process's command line (read here, in the nanny's process,
so that the worker starts without importing dask's config). Must not know processes.
"""

from __future__ import annotations

import tempfile
from typing import Any, NamedTuple

from shoal.worker._memory import max_spill_bytes
from shoal.worker._spawn_environ import shipped_defaults

MEMORY_TERMINATE_FRACTION = 0.95
# dask's defaults for distributed.worker.memory.* (used when its config does not say).
MEMORY_FRACTIONS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "transfer": 0.1,
                    "terminate": MEMORY_TERMINATE_FRACTION}
# How often a nanny samples its worker's memory (terminate threshold) unless dask's
# distributed.worker.memory.monitor-interval says otherwise (dask's own default, 100 ms,
# is the worker's pace: a nanny needs less).
NANNY_MONITOR_INTERVAL = 0.5
WORKER_MONITOR_INTERVAL = 0.1  # dask's default monitor-interval: the worker's memory samples
_MONITOR_INTERVAL_KEY = "distributed.worker.memory.monitor-interval"


def configured_monitor_interval() -> float:
    """dask's ``distributed.worker.memory.monitor-interval`` in seconds (default 100 ms).

    Raises:
        ValueError: not a positive duration.
    """
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get(_MONITOR_INTERVAL_KEY, None)
    if value is None:
        return WORKER_MONITOR_INTERVAL
    seconds = parse_timedelta(value, default="seconds")
    if not seconds or seconds <= 0:
        raise ValueError(f"dask config {_MONITOR_INTERVAL_KEY} must be a positive duration "
                         f"like '100ms', got {value!r}")
    return float(seconds)


class MemorySettings(NamedTuple):
    """What a nanny passes its worker process, and what it keeps for itself."""

    args: list[str]  # the worker's command-line arguments
    terminate_fraction: float  # of the memory limit, past which the nanny kills (0: never)
    monitor_interval: float  # the nanny's own pace of sampling its worker's memory
    space_parent: str  # where the worker makes its local directory


def memory_settings(local_directory: str | None) -> MemorySettings:
    """dask's ``distributed.worker.memory.*`` fractions and ``temporary-directory`` as
    arguments for a worker process (``local_directory``, when given, wins over the config).

    Raises:
        ValueError: a monitor interval that is not a positive duration.
    """
    import dask.config

    memory = {name: dask.config.get(f"distributed.worker.memory.{name}", default)
              for name, default in MEMORY_FRACTIONS.items()}
    terminate = memory["terminate"]
    terminate_fraction = float(terminate) if terminate not in (None, False) else 0.0
    args = []
    for name in ("target", "spill", "pause", "transfer", "terminate"):
        value = memory.get(name)
        args += [f"--memory-{name}", "false" if value in (None, False) else str(float(value))]
    compression = dask.config.get("distributed.worker.memory.spill-compression", "auto")
    args += ["--memory-spill-compression",
             "false" if compression in (None, False) else str(compression)]
    cap = max_spill_bytes(dask.config.get("distributed.worker.memory.max-spill", False))
    args += ["--memory-max-spill", "false" if cap is None else str(cap)]
    interval = configured_monitor_interval()
    args += ["--memory-monitor-interval", str(interval)]
    configured: Any = dask.config.get(_MONITOR_INTERVAL_KEY, None)
    shipped = shipped_defaults(_MONITOR_INTERVAL_KEY.rpartition(".")[0]).get("monitor-interval")
    mine = configured is not None and configured != shipped and configured != "100ms"
    # Always given ("" for the system's temporary directory), so that the worker need
    # not import dask's config to start.
    directory = local_directory or dask.config.get("temporary-directory", None)
    return MemorySettings(
        args=[*args, "--local-directory", str(directory or "")],
        terminate_fraction=terminate_fraction,
        monitor_interval=interval if mine else NANNY_MONITOR_INTERVAL,
        space_parent=str(directory or tempfile.gettempdir()),
    )
