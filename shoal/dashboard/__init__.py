"""Read-only web dashboard for a shoal scheduler: ``/status``, ``/workers``, ``/tasks``,
``/system``, ``/graph``, ``/groups``, ``/exceptions``, ``/metrics``, dask's
``/individual-*`` plots...

The scheduler's I/O shell implements :class:`DashboardSource` and calls
:func:`open_dashboard_with_fallback` (or :func:`open_dashboard`) on its event loop.
"""

from shoal.dashboard._server import DashboardServer, open_dashboard, open_dashboard_with_fallback
from shoal.dashboard._source import (
    DashboardSource,
    GraphDocument,
    PrefixCounts,
    SchedulerInfo,
    Snapshot,
    TaskStreamRecord,
    Totals,
    WorkerInfo,
)

__all__ = [
    "DashboardServer",
    "DashboardSource",
    "GraphDocument",
    "PrefixCounts",
    "SchedulerInfo",
    "Snapshot",
    "TaskStreamRecord",
    "Totals",
    "WorkerInfo",
    "open_dashboard",
    "open_dashboard_with_fallback",
]
